//! `otpgate doctor`: minimal module list so the sshd, sudoers and host
//! checks compile on their own; the command itself lives in another branch.

pub mod finding;
pub mod host;
pub mod sshd;
pub mod sudoers;
