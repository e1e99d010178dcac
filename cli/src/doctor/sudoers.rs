//! sudoers checks (the real ones come from the h/doctor-sshd branch; this
//! placeholder keeps the command compiling until it is merged).

use std::path::Path;

use super::finding::Finding;

/// What the PAM check needs to know from sudoers.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct SudoFacts {
    /// `Defaults pam_service=X`: sudo authenticates through stack X.
    pub pam_service: Option<String>,
}

pub fn check(_root: &Path) -> (SudoFacts, Vec<Finding>) {
    (SudoFacts::default(), Vec::new())
}
