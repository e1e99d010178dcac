//! One full PAM transaction per attempt through the system's libpam:
//! `pam_start_confdir` (a private directory of service files, so nothing
//! under /etc/pam.d changes), `pam_authenticate`, `pam_end`. The
//! conversation answers every prompt with the code it was given.

use std::ffi::{c_int, c_void, CStr, CString};

use otpgate_tests::libpam::{
    self, PamMessage, PamResponse, PAM_BUF_ERR, PAM_CONV_ERR, PAM_PROMPT_ECHO_OFF,
    PAM_PROMPT_ECHO_ON,
};
pub use otpgate_tests::libpam::{strerror, PAM_AUTH_ERR, PAM_SUCCESS};

/// What the conversation answers with, and how often it was asked.
struct Answer<'a> {
    code: &'a CStr,
    prompts: u32,
}

unsafe extern "C" fn conversation(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    // SAFETY: appdata is the `Answer` that `authenticate` passed to
    // pam_start_confdir; it outlives the handle.
    let answer = unsafe { &mut *(appdata as *mut Answer) };
    let Ok(n) = usize::try_from(num_msg) else {
        return PAM_CONV_ERR;
    };
    if n == 0 {
        return PAM_CONV_ERR;
    }
    // SAFETY: calloc of n zeroed responses; the module frees them (that is
    // the PAM conversation contract).
    let out = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
    if out.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: Linux-PAM passes an array of n message pointers.
        let m = unsafe { &**msg.add(i) };
        if matches!(m.msg_style, PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON) {
            answer.prompts += 1;
            // SAFETY: strdup gives the malloc()ed string the module frees;
            // `out` has n slots.
            unsafe { (*out.add(i)).resp = libc::strdup(answer.code.as_ptr()) };
        }
    }
    // SAFETY: resp is PAM's out pointer.
    unsafe { *resp = out };
    PAM_SUCCESS
}

/// One transaction's outcome.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Outcome {
    /// `pam_authenticate`'s result.
    pub rc: c_int,
    /// How many prompts the stack asked.
    pub prompts: u32,
}

/// Runs pam_start_confdir, pam_authenticate, pam_end for `user` with the
/// service file `confdir/service`, answering prompts with `code`.
/// `Err` only when the transaction could not start.
pub fn authenticate(
    confdir: &CStr,
    service: &CStr,
    user: &CStr,
    code: &CStr,
) -> Result<Outcome, String> {
    let mut answer = Answer { code, prompts: 0 };
    let rc = libpam::authenticate(confdir, service, user, conversation, &mut answer)
        .map_err(|rc| format!("pam_start_confdir: {}", strerror(rc)))?;
    Ok(Outcome {
        rc,
        prompts: answer.prompts,
    })
}

/// A C string from Rust text that has no NUL (names, paths, codes).
pub fn cstring(s: &str) -> CString {
    CString::new(s).expect("no NUL in names, paths and codes")
}
