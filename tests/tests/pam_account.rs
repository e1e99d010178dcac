//! The module's account phase (`account required pam_otpgate.so`), through
//! pamtester's `acct_mgmt`: the check that still runs when sshd accepted a
//! public key alone and the auth stack never ran.

mod pam_common;

use otpgate_tests::*;
use pam_common::*;

/// pam_strerror(PAM_PERM_DENIED).
const PERM_DENIED: &str = "Permission denied";
const REQUIRES: &str =
    "No second factor is set up for this account, and this host requires one: ask an administrator.";

fn account_service(bus: &Bus, args: &str) -> (String, EtcFile) {
    // pam_permit for auth; ours first in the account stack, pam_permit
    // (from service_text) after it.
    let lines = format!(
        "auth required pam_permit.so\naccount required {} {} {args}",
        otpgate_tests::pam_module().display(),
        bus.module_args()
    );
    etc_pam_service("acct", &lines)
}

#[test]
fn account_passes_an_enrolled_user_and_refuses_one_who_is_not() {
    require_root();
    let bus = Bus::start();
    let _d = Daemon::start(&bus, "");
    let enrolled = test_user("otpg-pam-acct-e");
    enroll(&bus, &enrolled.name);
    let not_enrolled = test_user("otpg-pam-acct-n");

    let (svc, _f) = account_service(&bus, "");
    let o = pamtester_op(&svc, &enrolled.name, "acct_mgmt", "");
    assert!(o.success, "{o:#?}");

    let o = pamtester_op(&svc, &not_enrolled.name, "acct_mgmt", "");
    assert_outcome(&o, false, PERM_DENIED, REQUIRES);

    // nullok overrides the (default) require in this stack only.
    let (svc, _f) = account_service(&bus, "nullok");
    let o = pamtester_op(&svc, &not_enrolled.name, "acct_mgmt", "");
    assert!(o.success, "{o:#?}");
}
