//! The engine's rules, tested directly: an in-memory store, a clock the
//! test moves, a fixed table of accounts, a fake outbox, no bus. Codes come
//! from `oathtool`, not from our TOTP code.

use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use otpgate_proto::{ChallengeState, MethodUsed, ServiceError, VerifyResult};
use zeroize::Zeroizing;

use super::{Context, Engine, Enrollment};
use crate::accounts::TableAccounts;
use crate::audit::Audit;
use crate::authz::Caller;
use crate::clock::{Clock, ManualClock};
use crate::config::Config;
use crate::crypto::MasterKey;
use crate::email::{Purpose, SendCode};
use crate::store::{MemoryStore, Store};

const T0: u64 = 1_900_000_000;
const ALICE: u32 = 1001;
const BOB: u32 = 1002;
const ANN: u32 = 1003; // in the admin group

/// A mail server that records what it is asked to send, or refuses.
#[derive(Default)]
struct Outbox {
    sent: Mutex<Vec<(String, String)>>,
    down: AtomicBool,
}

impl SendCode for Outbox {
    fn send_code<'a>(
        &'a self,
        to: &'a str,
        code: &'a str,
        _purpose: Purpose,
        _ttl_secs: u64,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            if self.down.load(Ordering::SeqCst) {
                return Err("connection refused".into());
            }
            self.sent
                .lock()
                .unwrap()
                .push((to.to_string(), code.to_string()));
            Ok(())
        })
    }
}

struct Harness {
    engine: Arc<Engine>,
    clock: Arc<ManualClock>,
    outbox: Arc<Outbox>,
    store: Arc<MemoryStore>,
}

/// A store shared between the engine and the test: the test's records,
/// whether other hosts share them (a fleet), and a count of the
/// transactions the engine asked for.
struct Shared {
    records: Arc<MemoryStore>,
    fleet: bool,
    updates: Arc<std::sync::atomic::AtomicUsize>,
}

impl Shared {
    fn new(records: &Arc<MemoryStore>) -> Shared {
        Shared {
            records: Arc::clone(records),
            fleet: false,
            updates: Arc::default(),
        }
    }
}

impl Store for Shared {
    fn get(&self, key: &str) -> Result<Option<crate::record::UserRecord>, crate::error::Error> {
        self.records.get(key)
    }
    fn update(
        &self,
        key: &str,
        decide: &mut dyn FnMut(Option<crate::record::UserRecord>) -> crate::store::Write,
    ) -> Result<(), crate::error::Error> {
        self.updates.fetch_add(1, Ordering::SeqCst);
        self.records.update(key, decide)
    }
    fn remove(&self, key: &str) -> Result<bool, crate::error::Error> {
        self.records.remove(key)
    }
    fn keys(&self) -> Result<Vec<String>, crate::error::Error> {
        self.records.keys()
    }
    fn shared(&self) -> bool {
        self.fleet
    }
}

fn harness(config_toml: &str) -> Harness {
    // Two backup codes unless a test says otherwise: each costs an argon2
    // hash, and these tests are about the rules, not the hashing.
    let config_toml = if config_toml.contains("[backup_codes]") {
        config_toml.to_string()
    } else {
        format!("[backup_codes]\ncount = 2\n{config_toml}")
    };
    let config = Config::parse(&config_toml, std::path::Path::new("test.toml")).expect("config");
    let clock = Arc::new(ManualClock::new(T0));
    let outbox = Arc::new(Outbox::default());
    let store = Arc::new(MemoryStore::new());
    let accounts = TableAccounts(vec![
        ("alice".into(), ALICE),
        ("ALICE".into(), ALICE),
        ("bob".into(), BOB),
        ("ann".into(), ANN),
        ("root".into(), 0),
    ]);
    let engine = Engine::new(
        config,
        Box::new(Shared::new(&store)),
        MasterKey::generate().unwrap(),
        clock.clone(),
        Audit::kept(),
        tokio::runtime::Handle::current(),
    )
    .with_accounts(Arc::new(accounts))
    .with_hostname("testhost")
    .with_code_sender(Some(outbox.clone() as Arc<dyn SendCode>));
    Harness {
        engine: Arc::new(engine),
        clock,
        outbox,
        store,
    }
}

fn denied<T>(r: Result<T, ServiceError>) -> bool {
    matches!(r, Err(ServiceError::AccessDenied(_)))
}

fn root() -> Caller {
    Caller::root()
}

fn user(name: &str, uid: u32) -> Caller {
    Caller {
        uid,
        name: Some(name.into()),
        admin: false,
        pid: None,
    }
}

fn admin(name: &str, uid: u32) -> Caller {
    Caller {
        admin: true,
        ..user(name, uid)
    }
}

fn code(s: &str) -> Zeroizing<String> {
    Zeroizing::new(s.to_string())
}

/// The SHA1 6-digit 30 s code for `secret_b32` at `unix`, by oathtool.
fn oathtool(secret_b32: &str, unix: u64) -> String {
    use std::io::Write;
    let mut child = Command::new("oathtool")
        .args(["--totp", "-b", "-", "-N", &format!("@{unix}")])
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .spawn()
        .expect("oathtool (apt-get install oathtool)");
    child
        .stdin
        .take()
        .unwrap()
        .write_all(secret_b32.as_bytes())
        .unwrap();
    let out = child.wait_with_output().unwrap();
    assert!(out.status.success());
    String::from_utf8(out.stdout).unwrap().trim().to_string()
}

/// A code that is wrong at `unix` for every step of the window.
fn wrong(secret_b32: &str, unix: u64) -> String {
    let near: Vec<String> = (0..7)
        .map(|i| oathtool(secret_b32, unix - 90 + i * 30))
        .collect();
    (0..1_000_000)
        .map(|n| format!("{n:06}"))
        .find(|c| !near.contains(c))
        .unwrap()
}

/// Enrols `name` by TOTP as root and confirms; the secret and backup codes.
async fn enrolled(h: &Harness, name: &str) -> (String, Vec<Zeroizing<String>>) {
    let e = h.engine.enroll(&root(), name, None, None).await.unwrap();
    let Enrollment::Totp { secret, uri, .. } = e else {
        panic!("not a TOTP enrolment")
    };
    assert!(uri.contains("testhost"), "{}", uri.as_str());
    let secret = secret.to_string();
    let c = oathtool(&secret, h.clock.now());
    let backup = h.engine.confirm(&root(), name, code(&c)).await.unwrap();
    // The confirming code is used; log in with the next step's.
    h.clock.advance(30);
    (secret, backup)
}

async fn verify(h: &Harness, caller: &Caller, name: &str, c: &str) -> super::VerifyOutcome {
    h.engine
        .verify(caller, name, code(c), Context::default())
        .await
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_access_table() {
    let h = harness("");
    enrolled(&h, "alice").await;
    enrolled(&h, "bob").await;
    let ctx = Context::default;
    // Auth: root any user, anyone else its own account only.
    assert!(h.engine.challenge(&root(), "bob", ctx()).await.is_ok());
    assert!(h
        .engine
        .challenge(&user("alice", ALICE), "alice", ctx())
        .await
        .is_ok());
    assert!(denied(
        h.engine
            .challenge(&user("alice", ALICE), "bob", ctx())
            .await
    ));
    // An alias of one's own account is one's own account.
    assert!(h
        .engine
        .challenge(&user("alice", ALICE), "ALICE", ctx())
        .await
        .is_ok());
    // The admin group manages others, but verifies only its own codes.
    assert!(denied(
        h.engine.challenge(&admin("ann", ANN), "bob", ctx()).await
    ));
    assert!(h.engine.status(&admin("ann", ANN), "bob").await.is_ok());
    assert!(h.engine.list_users(&admin("ann", ANN)).await.is_ok());
    // Manager: own account only; Admin: never.
    assert!(h
        .engine
        .status(&user("alice", ALICE), "alice")
        .await
        .is_ok());
    assert!(denied(h.engine.status(&user("alice", ALICE), "bob").await));
    assert!(denied(h.engine.list_users(&user("alice", ALICE)).await));
    assert!(denied(
        h.engine.unlock(&user("alice", ALICE), "alice").await
    ));
    assert!(denied(h.engine.stats(&user("bob", BOB)).await));
    // A name the accounts do not know is refused, whoever asks.
    for caller in [root(), user("alice", ALICE)] {
        let r = h.engine.challenge(&caller, "carol", ctx()).await;
        assert!(matches!(r, Err(ServiceError::InvalidUser(_))), "{r:?}");
        let r = h
            .engine
            .verify(&caller, "carol", code("123456"), ctx())
            .await;
        assert!(matches!(r, Err(ServiceError::InvalidUser(_))), "{r:?}");
    }
    let lines = h.engine.audit().lines();
    assert!(
        lines.iter().any(|l| l.contains("event=access-denied")),
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn aliases_share_one_record_and_its_marks() {
    let h = harness("");
    let (secret, _) = enrolled(&h, "alice").await;
    let c = oathtool(&secret, h.clock.now());
    assert_eq!(
        verify(&h, &root(), "ALICE", &c).await.result,
        VerifyResult::Ok
    );
    assert_eq!(
        verify(&h, &root(), "alice", &c).await.result,
        VerifyResult::Replayed
    );
    assert_eq!(h.store.keys().unwrap(), [format!("uid:{ALICE}")]);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn failures_lock_and_locks_double() {
    let h = harness("[lockout]\nmax_failures = 3\nduration_secs = 100\nmax_duration_secs = 1000\n");
    let (secret, _) = enrolled(&h, "alice").await;
    let bad = wrong(&secret, h.clock.now());
    for left in [2, 1] {
        let o = verify(&h, &root(), "alice", &bad).await;
        assert_eq!(
            (o.result, o.attempts_left),
            (VerifyResult::Invalid, Some(left))
        );
    }
    let o = verify(&h, &root(), "alice", &bad).await;
    assert_eq!(o.result, VerifyResult::Invalid);
    assert_eq!(
        o.locked_until,
        h.clock.now() + 100,
        "the third failure locks"
    );
    // Locked: even the right code is refused, and nothing more is counted.
    let right = oathtool(&secret, h.clock.now());
    let o = verify(&h, &root(), "alice", &right).await;
    assert_eq!(o.result, VerifyResult::Locked);
    let st = h.engine.status(&root(), "alice").await.unwrap();
    assert!(st.locked && st.failures == 3, "{st:?}");
    // The lock runs out: a fresh set of tries; the next lock lasts twice as long.
    h.clock.advance(100);
    let bad = wrong(&secret, h.clock.now());
    for _ in 0..3 {
        verify(&h, &root(), "alice", &bad).await;
    }
    let st = h.engine.status(&root(), "alice").await.unwrap();
    assert_eq!(st.locked_until, h.clock.now() + 200, "{st:?}");
    // Unlock clears it; a success ends the streak.
    h.engine.unlock(&root(), "alice").await.unwrap();
    h.clock.advance(30);
    let right = oathtool(&secret, h.clock.now());
    assert_eq!(
        verify(&h, &root(), "alice", &right).await.result,
        VerifyResult::Ok
    );
    let lines = h.engine.audit().lines();
    assert_eq!(
        lines.iter().filter(|l| l.contains("event=locked ")).count(),
        2,
        "{lines:?}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_code_logs_in_once_and_a_replay_counts_as_a_failure() {
    let h = harness("");
    let (secret, _) = enrolled(&h, "alice").await;
    let c = oathtool(&secret, h.clock.now());
    let o = verify(&h, &root(), "alice", &c).await;
    assert_eq!(
        (o.result, o.method_used),
        (VerifyResult::Ok, Some(MethodUsed::Totp))
    );
    let o = verify(&h, &root(), "alice", &c).await;
    assert_eq!(o.result, VerifyResult::Replayed);
    assert_eq!(o.attempts_left, Some(4));
    // A step older than the last one used is a replay too (a code from
    // a clock running ahead, then the current one).
    h.clock.advance(30);
    let ahead = oathtool(&secret, h.clock.now() + 30);
    assert_eq!(
        verify(&h, &root(), "alice", &ahead).await.result,
        VerifyResult::Ok
    );
    let o = verify(&h, &root(), "alice", &oathtool(&secret, h.clock.now())).await;
    assert_eq!(o.result, VerifyResult::Replayed);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_backup_code_works_once() {
    let h = harness("[backup_codes]\ncount = 3\n");
    let (_, backup) = enrolled(&h, "alice").await;
    assert_eq!(backup.len(), 3);
    let o = verify(&h, &root(), "alice", &backup[1]).await;
    assert_eq!(o.result, VerifyResult::Ok);
    assert_eq!(o.method_used, Some(MethodUsed::Backup));
    assert_eq!(o.backup_codes_left, Some(2));
    let o = verify(&h, &root(), "alice", &backup[1]).await;
    assert_eq!(o.result, VerifyResult::Invalid);
    // New codes replace the old ones; a user proves the factor for that.
    let r = h
        .engine
        .regenerate_backup_codes(&user("alice", ALICE), "alice", code(""), None)
        .await;
    assert!(matches!(r, Err(ServiceError::InvalidCode(_))), "{r:?}");
    let fresh = h
        .engine
        .regenerate_backup_codes(&user("alice", ALICE), "alice", code(&backup[0]), None)
        .await
        .unwrap();
    let o = verify(&h, &root(), "alice", &backup[2]).await;
    assert_eq!(o.result, VerifyResult::Invalid, "the old set is gone");
    let o = verify(&h, &root(), "alice", &fresh[0]).await;
    assert_eq!(o.result, VerifyResult::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_pending_enrolment_expires_and_takes_five_wrong_codes() {
    let h = harness("");
    let e = h
        .engine
        .enroll(&user("alice", ALICE), "alice", None, None)
        .await
        .unwrap();
    let Enrollment::Totp { secret, .. } = e else {
        panic!()
    };
    // Only the uid that started it (or root) confirms it.
    let c = oathtool(&secret, h.clock.now());
    let r = h
        .engine
        .confirm(&admin("ann", ANN), "alice", code(&c))
        .await;
    assert!(matches!(r, Err(ServiceError::AccessDenied(_))), "{r:?}");
    let bad = wrong(&secret, h.clock.now());
    for _ in 0..4 {
        let r = h
            .engine
            .confirm(&user("alice", ALICE), "alice", code(&bad))
            .await;
        assert!(matches!(r, Err(ServiceError::InvalidCode(_))), "{r:?}");
    }
    let r = h
        .engine
        .confirm(&user("alice", ALICE), "alice", code(&bad))
        .await;
    assert!(
        matches!(&r, Err(ServiceError::InvalidCode(m)) if m.contains("dropped")),
        "{r:?}"
    );
    let r = h
        .engine
        .confirm(&user("alice", ALICE), "alice", code(&c))
        .await;
    assert!(
        matches!(r, Err(ServiceError::NoPendingEnrollment(_))),
        "{r:?}"
    );
    // Ten minutes and one second later, an enrolment is gone.
    h.engine
        .enroll(&user("alice", ALICE), "alice", None, None)
        .await
        .unwrap();
    h.clock.advance(601);
    let r = h
        .engine
        .confirm(&user("alice", ALICE), "alice", code("123456"))
        .await;
    assert!(matches!(r, Err(ServiceError::PendingExpired(_))), "{r:?}");
    assert!(!h.engine.status(&root(), "alice").await.unwrap().enrolled);
}

/// Enrols `name` by e-mail as root; the backup codes.
async fn enrolled_by_mail(h: &Harness, name: &str) -> Vec<Zeroizing<String>> {
    h.engine
        .enroll(
            &root(),
            name,
            Some("email".into()),
            Some("a@example.org".into()),
        )
        .await
        .unwrap();
    let c = h.outbox.sent.lock().unwrap().last().unwrap().1.clone();
    h.engine.confirm(&root(), name, code(&c)).await.unwrap()
}

/// Waits (a few seconds at most) for the outbox to hold `n` mails.
async fn mails(h: &Harness, n: usize) -> Vec<(String, String)> {
    for _ in 0..500 {
        let sent = h.outbox.sent.lock().unwrap().clone();
        if sent.len() >= n {
            return sent;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    panic!("fewer than {n} mails")
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn mailed_codes_expire_cool_down_and_are_limited() {
    let h = harness(
        "[email]\nsmtp_url = \"smtp://127.0.0.1:1\"\nfrom = \"o@example.org\"\ncode_ttl_secs = 60\nresend_cooldown_secs = 30\n",
    );
    enrolled_by_mail(&h, "alice").await;
    let ch = h
        .engine
        .challenge(&root(), "alice", Context::default())
        .await
        .unwrap();
    assert_eq!(ch.state, ChallengeState::CodeRequired);
    let c = mails(&h, 2).await[1].1.clone();
    // Within the cooldown the code already sent stands: no new mail.
    h.engine
        .challenge(&root(), "alice", Context::default())
        .await
        .unwrap();
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(h.outbox.sent.lock().unwrap().len(), 2);
    // Expired: said once, then plain wrong.
    h.clock.advance(61);
    assert_eq!(
        verify(&h, &root(), "alice", &c).await.result,
        VerifyResult::Expired
    );
    assert_eq!(
        verify(&h, &root(), "alice", &c).await.result,
        VerifyResult::Invalid
    );
    // Five mails an hour (the enrolment's included), then none; the user
    // is still prompted, and told to use a backup code.
    for n in 3..=5 {
        h.engine
            .challenge(&root(), "alice", Context::default())
            .await
            .unwrap();
        mails(&h, n).await;
        h.clock.advance(61);
    }
    let ch = h
        .engine
        .challenge(&root(), "alice", Context::default())
        .await
        .unwrap();
    assert_eq!(ch.state, ChallengeState::CodeRequired);
    assert!(ch.message.contains("backup code"), "{}", ch.message);
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(h.outbox.sent.lock().unwrap().len(), 5);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_mail_that_cannot_be_sent_is_withdrawn_and_a_backup_code_works() {
    let h = harness(
        "[email]\nsmtp_url = \"smtp://127.0.0.1:1\"\nfrom = \"o@example.org\"\nresend_cooldown_secs = 60\n",
    );
    let backup = enrolled_by_mail(&h, "alice").await;
    h.outbox.down.store(true, Ordering::SeqCst);
    let ch = h
        .engine
        .challenge(&root(), "alice", Context::default())
        .await
        .unwrap();
    assert_eq!(ch.state, ChallengeState::CodeRequired, "prompted anyway");
    // The send fails in the background; the code is then withdrawn.
    let key = format!("uid:{ALICE}");
    for _ in 0..500 {
        if h.store.get(&key).unwrap().unwrap().email_code.is_none() {
            break;
        }
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let rec = h.store.get(&key).unwrap().unwrap();
    assert!(rec.email_code.is_none(), "withdrawn");
    assert_eq!(rec.email_sends.len(), 1, "only the enrolment's mail counts");
    let o = verify(&h, &root(), "alice", "123456").await;
    assert!(o.notice.contains("No code could be mailed"), "{o:?}");
    // Within the cooldown no new try; the prompt says why.
    let ch = h
        .engine
        .challenge(&root(), "alice", Context::default())
        .await
        .unwrap();
    assert!(
        ch.message.contains("No code could be mailed"),
        "{}",
        ch.message
    );
    let o = verify(&h, &root(), "alice", &backup[0]).await;
    assert_eq!(o.result, VerifyResult::Ok);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_local_user_gets_sixty_calls_a_minute() {
    let h = harness("");
    let alice = user("alice", ALICE);
    for _ in 0..60 {
        h.engine.status(&alice, "alice").await.unwrap();
    }
    let r = h.engine.status(&alice, "alice").await;
    assert!(matches!(r, Err(ServiceError::TooManyRequests(_))), "{r:?}");
    // Root (every PAM login) is not limited this way.
    for _ in 0..100 {
        h.engine.status(&root(), "alice").await.unwrap();
    }
    h.clock.advance(60);
    h.engine.status(&alice, "alice").await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_needs_a_code_from_a_user_and_none_from_an_admin() {
    let h = harness("");
    let (secret, _) = enrolled(&h, "alice").await;
    let r = h
        .engine
        .disable(&user("alice", ALICE), "alice", code(""), None)
        .await;
    assert!(matches!(r, Err(ServiceError::InvalidCode(_))), "{r:?}");
    let c = oathtool(&secret, h.clock.now());
    h.engine
        .disable(&user("alice", ALICE), "alice", code(&c), None)
        .await
        .unwrap();
    assert!(h.store.keys().unwrap().is_empty());
    enrolled(&h, "bob").await;
    h.engine
        .disable(&admin("ann", ANN), "bob", code(""), None)
        .await
        .unwrap();
    let st = h.engine.status(&root(), "bob").await.unwrap();
    assert!(!st.enrolled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn password_and_code_asks_a_user_for_the_password_first_and_an_admin_for_nothing() {
    // A service file that is not there: the password is never reached in
    // this test, and a missing file must never fall back to PAM's "other".
    let h = harness(
        "[self_service]\nreauth = \"password+code\"\npam_service = \"otpgate-test-absent\"\n",
    );
    let (secret, _) = enrolled(&h, "alice").await;
    let c = oathtool(&secret, h.clock.now());
    for regenerate in [false, true] {
        let r = if regenerate {
            h.engine
                .regenerate_backup_codes(&user("alice", ALICE), "alice", code(&c), None)
                .await
                .map(drop)
        } else {
            h.engine
                .disable(&user("alice", ALICE), "alice", code(&c), None)
                .await
        };
        assert!(matches!(r, Err(ServiceError::PasswordRequired(_))), "{r:?}");
    }
    // Asked for nothing: no failure counted, the code not used up.
    let st = h.engine.status(&root(), "alice").await.unwrap();
    assert_eq!((st.enrolled, st.failures), (true, 0));
    let r = h
        .engine
        .disable(&user("alice", ALICE), "alice", code(&c), Some(code("pw")))
        .await;
    assert!(matches!(r, Err(ServiceError::Unavailable(_))), "{r:?}");
    assert_eq!(h.engine.status(&root(), "alice").await.unwrap().failures, 0);
    // Administrators: neither password nor code.
    h.engine
        .disable(&admin("ann", ANN), "alice", code(""), None)
        .await
        .unwrap();
    enrolled(&h, "bob").await;
    h.engine
        .disable(&root(), "bob", code(""), None)
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_corrupt_record_is_an_error_for_that_user_only_until_reset() {
    let h = harness("");
    enrolled(&h, "bob").await;
    h.store.put_raw(&format!("uid:{ALICE}"), b"not a record");
    let r = h
        .engine
        .challenge(&root(), "alice", Context::default())
        .await;
    assert!(matches!(r, Err(ServiceError::CorruptRecord(_))), "{r:?}");
    assert!(h.engine.status(&root(), "bob").await.unwrap().enrolled);
    let list = h.engine.list_users(&root()).await.unwrap();
    assert!(list
        .iter()
        .any(|e| matches!(e, Err((n, _)) if n == "alice")));
    h.engine.reset(&root(), "alice").await.unwrap();
    assert!(!h.engine.status(&root(), "alice").await.unwrap().enrolled);
    let lines = h.engine.audit().lines();
    assert!(
        lines
            .iter()
            .any(|l| l.contains("event=storage-error user=alice")),
        "{lines:?}"
    );
}

/// Two hosts of a fleet that disagree on uid 1001 (alice on one, mallory
/// on the other): mallory's logins never use alice's record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_host_that_gives_a_uid_another_name_decides_nothing() {
    let h = harness("");
    let key = *MasterKey::generate().unwrap().as_bytes();
    let records = Arc::new(MemoryStore::new());
    let host = |accounts: Vec<(String, u32)>| {
        let config =
            Config::parse("[backup_codes]\ncount = 2\n", std::path::Path::new("t")).unwrap();
        Arc::new(
            Engine::new(
                config,
                Box::new(Shared {
                    fleet: true,
                    ..Shared::new(&records)
                }),
                MasterKey::from_bytes(key),
                h.clock.clone(),
                Audit::kept(),
                tokio::runtime::Handle::current(),
            )
            .with_accounts(Arc::new(TableAccounts(accounts)))
            .with_hostname("testhost"),
        )
    };
    let a = host(vec![("alice".into(), ALICE)]);
    let b = host(vec![("mallory".into(), ALICE)]);
    let Enrollment::Totp { secret, .. } = a.enroll(&root(), "alice", None, None).await.unwrap()
    else {
        panic!("not a TOTP enrolment")
    };
    let secret = secret.to_string();
    a.confirm(&root(), "alice", code(&oathtool(&secret, h.clock.now())))
        .await
        .unwrap();
    h.clock.advance(30);
    let c = oathtool(&secret, h.clock.now());
    let e = b
        .verify(&root(), "mallory", code(&c), Context::default())
        .await
        .unwrap_err();
    assert!(
        matches!(&e, ServiceError::Storage(m) if m.contains("same uid")),
        "{e:?}"
    );
    // Untouched: the code is still alice's to use, on her host.
    let out = a
        .verify(&root(), "alice", code(&c), Context::default())
        .await
        .unwrap();
    assert_eq!(out.result, VerifyResult::Ok);
}

/// Challenge for an app's code reads the record and takes no transaction
/// (a fleet's database is spared a row lock per login); Verify takes one.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_challenge_that_changes_nothing_takes_no_transaction() {
    let h = harness("");
    enrolled(&h, "alice").await;
    let config = Config::parse("", std::path::Path::new("t")).unwrap();
    // The same records, through a store that counts (another key: only
    // whether a transaction is taken matters here).
    let counted = Shared::new(&h.store);
    let updates = Arc::clone(&counted.updates);
    let engine = Arc::new(
        Engine::new(
            config,
            Box::new(counted),
            MasterKey::generate().unwrap(),
            h.clock.clone(),
            Audit::kept(),
            tokio::runtime::Handle::current(),
        )
        .with_accounts(Arc::new(TableAccounts(vec![("alice".into(), ALICE)]))),
    );
    let out = engine
        .challenge(&root(), "alice", Context::default())
        .await
        .unwrap();
    assert_eq!(out.state, ChallengeState::CodeRequired);
    assert_eq!(updates.load(Ordering::SeqCst), 0);
    let _ = engine
        .verify(&root(), "alice", code("000000"), Context::default())
        .await;
    assert_eq!(updates.load(Ordering::SeqCst), 1);
}
