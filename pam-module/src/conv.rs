//! The PAM conversation, done by hand through the `PAM_CONV` item.
//!
//! pamsm's `conv()` neither checks the application's answer for NULL nor
//! frees it, and never wipes it: a verification code would stay in the
//! host's heap. Here the answer is copied into a zeroizing buffer, the
//! application's copy is wiped and `free()`d, and a missing answer is an
//! error rather than a crash.

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use std::ptr;

use zeroize::{Zeroize, Zeroizing};

use crate::error::Error;

pub const PAM_SUCCESS: c_int = 0;
pub const PAM_CONV: c_int = 5;
pub const PAM_TTY: c_int = 3;

pub const PAM_PROMPT_ECHO_OFF: c_int = 1;
pub const PAM_ERROR_MSG: c_int = 3;
pub const PAM_TEXT_INFO: c_int = 4;

#[repr(C)]
struct PamMessage {
    msg_style: c_int,
    msg: *const c_char,
}

#[repr(C)]
struct PamResponse {
    resp: *mut c_char,
    resp_retcode: c_int,
}

type ConvFn = unsafe extern "C" fn(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata_ptr: *mut c_void,
) -> c_int;

#[repr(C)]
struct PamConv {
    conv: Option<ConvFn>,
    appdata_ptr: *mut c_void,
}

#[link(name = "pam")]
extern "C" {
    fn pam_get_item(pamh: *const c_void, item_type: c_int, item: *mut *const c_void) -> c_int;
}

/// A string item of the PAM handle (`PAM_TTY`, ...), if set and valid UTF-8.
///
/// # Safety
/// `pamh` must be the live handle PAM passed to the running `pam_sm_*` call.
pub unsafe fn string_item(pamh: *const c_void, item_type: c_int) -> Option<String> {
    let mut item: *const c_void = ptr::null();
    // SAFETY: the caller guarantees `pamh` is live; PAM writes one pointer.
    let rc = unsafe { pam_get_item(pamh, item_type, &mut item) };
    if rc != PAM_SUCCESS || item.is_null() {
        return None;
    }
    // SAFETY: string items are NUL-terminated strings owned by PAM that stay
    // valid until the item is changed, which nothing does during this copy.
    let s = unsafe { CStr::from_ptr(item as *const c_char) };
    s.to_str().ok().map(str::to_owned)
}

/// Sends one message of `style` and returns the answer, if the application
/// gave one. The answer lives only in zeroizing memory on our side.
///
/// # Safety
/// `pamh` must be the live handle PAM passed to the running `pam_sm_*` call.
pub unsafe fn converse(
    pamh: *const c_void,
    style: c_int,
    text: &str,
) -> Result<Option<Zeroizing<String>>, Error> {
    let mut item: *const c_void = ptr::null();
    // SAFETY: the caller guarantees `pamh` is live; PAM writes one pointer.
    let rc = unsafe { pam_get_item(pamh, PAM_CONV, &mut item) };
    if rc != PAM_SUCCESS || item.is_null() {
        return Err(Error::Conversation(
            "the application set no conversation".into(),
        ));
    }
    // SAFETY: the PAM_CONV item is a `struct pam_conv` owned by PAM for the
    // life of the handle.
    let conv = unsafe { &*(item as *const PamConv) };
    let Some(conv_fn) = conv.conv else {
        return Err(Error::Conversation(
            "the conversation function is NULL".into(),
        ));
    };
    let text = CString::new(text.replace('\0', ""))
        .map_err(|_| Error::Conversation("message contains NUL".into()))?;
    let message = PamMessage {
        msg_style: style,
        msg: text.as_ptr(),
    };
    let mut messages: *const PamMessage = &message;
    let mut resp: *mut PamResponse = ptr::null_mut();
    // SAFETY: one valid message (Linux-PAM and Solaris read the array the same
    // way for a single message); `text` and `message` outlive the call.
    let rc = unsafe { conv_fn(1, &mut messages, &mut resp, conv.appdata_ptr) };
    // SAFETY: whatever `resp` the application returned is ours to wipe and free.
    let answer = unsafe { take_response(resp) };
    if rc != PAM_SUCCESS {
        return Err(Error::Conversation(format!(
            "the application's conversation failed ({rc})"
        )));
    }
    Ok(answer)
}

/// Copies the answer out, wipes the application's buffer and frees both
/// allocations, which the application made with `malloc()`.
///
/// # Safety
/// `resp` is NULL or an array of one `pam_response` from `malloc()` whose
/// `resp` is NULL or a `malloc()`ed NUL-terminated string.
unsafe fn take_response(resp: *mut PamResponse) -> Option<Zeroizing<String>> {
    if resp.is_null() {
        return None;
    }
    // SAFETY: non-NULL, so one element as the caller guarantees.
    let text = unsafe { (*resp).resp };
    let answer = if text.is_null() {
        None
    } else {
        // SAFETY: a NUL-terminated string of `len` bytes that we own now.
        let bytes = unsafe {
            let len = libc::strlen(text);
            std::slice::from_raw_parts_mut(text as *mut u8, len)
        };
        let copy = Zeroizing::new(String::from_utf8_lossy(bytes).into_owned());
        bytes.zeroize();
        // SAFETY: allocated by the application with malloc(), not used again.
        unsafe { libc::free(text as *mut c_void) };
        Some(copy)
    };
    // SAFETY: allocated by the application with malloc(), not used again.
    unsafe { libc::free(resp as *mut c_void) };
    answer
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_null_response_is_no_answer() {
        // SAFETY: NULL is allowed.
        assert!(unsafe { take_response(ptr::null_mut()) }.is_none());
    }

    #[test]
    fn the_answer_is_copied_and_the_c_buffers_freed() {
        // SAFETY: allocations made as an application would; take_response frees them.
        unsafe {
            let text = libc::strdup(c"123456".as_ptr());
            let resp = libc::calloc(1, std::mem::size_of::<PamResponse>()) as *mut PamResponse;
            (*resp).resp = text;
            let got = take_response(resp).unwrap();
            assert_eq!(got.as_str(), "123456");

            let resp = libc::calloc(1, std::mem::size_of::<PamResponse>()) as *mut PamResponse;
            assert!(take_response(resp).is_none());
        }
    }
}
