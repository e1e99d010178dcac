//! Where a call comes from, as the PAM module reports it (`service`,
//! `rhost`, `ruser`, `tty`, and at Challenge the `method` asked for). Used for the audit trail and, from root's
//! callers only, for the per-source limit; never to decide who may do what.

#[derive(Debug, Clone, Default)]
pub struct Context {
    pub service: String,
    pub rhost: String,
    pub ruser: String,
    pub tty: String,
    /// Challenge: the method the user asked for instead of the first
    /// (`email`); empty for the first.
    pub method: String,
}
