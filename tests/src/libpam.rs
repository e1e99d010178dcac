//! The few libpam declarations a PAM *application* needs, for the test
//! host (`pam_host`) and the benchmark's load generator: `pam_start_confdir`
//! (Linux-PAM ≥ 1.4) takes a private directory of service files, so no
//! file under /etc/pam.d changes. Declared by hand: the `pam`/`pam-client`
//! crates need bindgen and libclang (FIELD-NOTES).

use std::ffi::{c_char, c_int, c_void};

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
