//! sshd_config checks (the real ones come from the h/doctor-sshd branch;
//! this placeholder keeps the command compiling until it is merged).

use std::path::Path;

use super::finding::Finding;

pub fn check(_root: &Path) -> Vec<Finding> {
    Vec::new()
}
