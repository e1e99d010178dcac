//! The few libpam declarations a PAM *application* needs, for the test
//! host (`pam_host`) and the benchmark's load generator: `pam_start_confdir`
//! (Linux-PAM ≥ 1.4) takes a private directory of service files, so no
//! file under /etc/pam.d changes. Declared by hand: the `pam`/`pam-client`
//! crates need bindgen and libclang (measured on Debian 12).

use std::ffi::{c_char, c_int, c_void, CStr};
use std::ptr;

pub const PAM_SUCCESS: c_int = 0;
pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
pub const PAM_PROMPT_ECHO_ON: c_int = 2;
pub const PAM_BUF_ERR: c_int = 5;
pub const PAM_AUTH_ERR: c_int = 7;
pub const PAM_CONV_ERR: c_int = 19;

#[repr(C)]
pub struct PamMessage {
    pub msg_style: c_int,
    pub msg: *const c_char,
}

#[repr(C)]
pub struct PamResponse {
    pub resp: *mut c_char,
    pub resp_retcode: c_int,
}

pub type ConvFn = unsafe extern "C" fn(
    c_int,
    *mut *const PamMessage,
    *mut *mut PamResponse,
    *mut c_void,
) -> c_int;

#[repr(C)]
pub struct PamConv {
    pub conv: Option<ConvFn>,
    pub appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    pub fn pam_start_confdir(
        service: *const c_char,
        user: *const c_char,
        conv: *const PamConv,
        confdir: *const c_char,
        pamh: *mut *mut c_void,
    ) -> c_int;
    pub fn pam_authenticate(pamh: *mut c_void, flags: c_int) -> c_int;
    pub fn pam_end(pamh: *mut c_void, status: c_int) -> c_int;
    pub fn pam_strerror(pamh: *mut c_void, errnum: c_int) -> *const c_char;
}

/// One transaction: `pam_start_confdir` with the service file
/// `confdir/service`, `pam_authenticate`, `pam_end`. `conv` is called with
/// `appdata` (it must treat its last argument as a `*mut T`). Returns
/// pam_authenticate's result, or `Err` with pam_start_confdir's.
pub fn authenticate<T>(
    confdir: &CStr,
    service: &CStr,
    user: &CStr,
    conv: ConvFn,
    appdata: &mut T,
) -> Result<c_int, c_int> {
    let conv = PamConv {
        conv: Some(conv),
        appdata_ptr: appdata as *mut T as *mut c_void,
    };
    let mut pamh: *mut c_void = ptr::null_mut();
    // SAFETY: every string is NUL-terminated; `conv` and the `appdata` it
    // points to outlive the handle, which pam_end closes before returning.
    let rc = unsafe {
        pam_start_confdir(
            service.as_ptr(),
            user.as_ptr(),
            &conv,
            confdir.as_ptr(),
            &mut pamh,
        )
    };
    if rc != PAM_SUCCESS {
        return Err(rc);
    }
    // SAFETY: a live handle from pam_start_confdir.
    let result = unsafe { pam_authenticate(pamh, 0) };
    // SAFETY: ends the handle; nothing uses it afterwards.
    unsafe { pam_end(pamh, result) };
    Ok(result)
}

/// PAM's name for a result code, e.g. `Authentication failure`.
pub fn strerror(code: c_int) -> String {
    // SAFETY: Linux-PAM's pam_strerror ignores the handle and returns a
    // static string.
    let s = unsafe { pam_strerror(ptr::null_mut(), code) };
    if s.is_null() {
        return code.to_string();
    }
    // SAFETY: a static NUL-terminated string.
    unsafe { CStr::from_ptr(s) }.to_string_lossy().into_owned()
}
