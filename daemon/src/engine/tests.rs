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

    fn send_notice<'a>(
        &'a self,
        to: &'a str,
        subject: &'a str,
        _body: &'a str,
    ) -> std::pin::Pin<Box<dyn std::future::Future<Output = Result<(), String>> + Send + 'a>> {
        Box::pin(async move {
            self.sent
                .lock()
                .unwrap()
                .push((to.to_string(), format!("notice: {subject}")));
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
    enrolled_on(&h.engine, &h.clock, name).await
}

/// As [`enrolled`], on any engine (a fleet's host) with its clock.
async fn enrolled_on(
    engine: &Arc<Engine>,
    clock: &ManualClock,
    name: &str,
) -> (String, Vec<Zeroizing<String>>) {
    let e = engine
        .enroll(&root(), name, None, None, None)
        .await
        .unwrap();
    let Enrollment::Totp { secret, uri, .. } = e else {
        panic!("not a TOTP enrolment")
    };
    assert!(uri.contains("testhost"), "{}", uri.as_str());
    let secret = secret.to_string();
    let c = oathtool(&secret, clock.now());
    let backup = engine.confirm(&root(), name, code(&c)).await.unwrap();
    // The confirming code is used; log in with the next step's.
    clock.advance(30);
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
        .enroll(&user("alice", ALICE), "alice", None, None, None)
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
        .enroll(&user("alice", ALICE), "alice", None, None, None)
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
            None,
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
    // Only the counters are left.
    let rec = h.store.get(&format!("uid:{ALICE}")).unwrap().unwrap();
    assert!(rec.retired(h.clock.now()), "{rec:?}");
    assert!(rec.backup.is_none() && rec.binding.is_none(), "{rec:?}");
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

/// One host of a fleet: its own engine and name service, the fleet's
/// records (`records`, shared) and key, the harness's clock.
fn fleet_host(
    h: &Harness,
    records: &Arc<MemoryStore>,
    key: [u8; 32],
    accounts: Vec<(String, u32)>,
) -> Arc<Engine> {
    let config = Config::parse("[backup_codes]\ncount = 2\n", std::path::Path::new("t")).unwrap();
    Arc::new(
        Engine::new(
            config,
            Box::new(Shared {
                fleet: true,
                ..Shared::new(records)
            }),
            MasterKey::from_bytes(key),
            h.clock.clone(),
            Audit::kept(),
            tokio::runtime::Handle::current(),
        )
        .with_accounts(Arc::new(TableAccounts(accounts)))
        .with_hostname("testhost"),
    )
}

/// Two hosts of one fleet (records, host a, host b) that disagree on
/// uid 1001: alice on a, mallory on b.
fn alice_and_mallory(h: &Harness) -> (Arc<MemoryStore>, Arc<Engine>, Arc<Engine>) {
    let key = *MasterKey::generate().unwrap().as_bytes();
    let records = Arc::new(MemoryStore::new());
    let a = fleet_host(h, &records, key, vec![("alice".into(), ALICE)]);
    let b = fleet_host(h, &records, key, vec![("mallory".into(), ALICE)]);
    (records, a, b)
}

/// Two hosts of a fleet that disagree on uid 1001 (alice on one, mallory
/// on the other): mallory's logins never use alice's record.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_fleet_host_that_gives_a_uid_another_name_decides_nothing() {
    let h = harness("");
    let (_, a, b) = alice_and_mallory(&h);
    let (secret, _) = enrolled_on(&a, &h.clock, "alice").await;
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

/// Disable and Reset leave the counters (Stats still counts them) and
/// nothing that authenticates; neither is listed; both enrol again.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn disable_and_reset_keep_the_counts_and_nothing_else() {
    let h = harness("");
    let (a, _) = enrolled(&h, "alice").await;
    let (b, bob_backup) = enrolled(&h, "bob").await;
    let now = h.clock.now();
    assert_eq!(
        verify(&h, &root(), "alice", &wrong(&a, now)).await.result,
        VerifyResult::Invalid
    );
    assert_eq!(
        verify(&h, &root(), "bob", &oathtool(&b, now)).await.result,
        VerifyResult::Ok
    );
    h.clock.advance(30);
    // Alice disables with a code: counted as a success too.
    let c = oathtool(&a, h.clock.now());
    h.engine
        .disable(&user("alice", ALICE), "alice", code(&c), None)
        .await
        .unwrap();
    h.engine.reset(&root(), "bob").await.unwrap();

    let s = h.engine.stats(&root()).await.unwrap();
    assert_eq!(
        (s.users_enrolled, s.successes, s.failures),
        (0, 2, 1),
        "{s:?}"
    );
    assert_eq!((s.enrolments, s.disabled, s.resets), (2, 1, 1), "{s:?}");
    assert!(h.engine.list_users(&root()).await.unwrap().is_empty());
    for (name, uid) in [("alice", ALICE), ("bob", BOB)] {
        let rec = h.store.get(&format!("uid:{uid}")).unwrap().unwrap();
        assert!(rec.retired(h.clock.now()), "{rec:?}");
        assert!(rec.factors.is_empty() && rec.backup.is_none(), "{rec:?}");
        assert_eq!(rec.name.as_deref(), Some(name));
        let st = h.engine.status(&root(), name).await.unwrap();
        assert!(!st.enrolled && !st.pending, "{st:?}");
        let ch = h
            .engine
            .challenge(&root(), name, Context::default())
            .await
            .unwrap();
        assert_ne!(ch.state, ChallengeState::CodeRequired, "{name}");
        assert!(matches!(
            h.engine.unlock(&root(), name).await,
            Err(ServiceError::NotEnrolled(_))
        ));
    }
    let c = oathtool(&b, h.clock.now());
    assert_eq!(
        verify(&h, &root(), "bob", &c).await.result,
        VerifyResult::NotEnrolled
    );
    assert_eq!(
        verify(&h, &root(), "bob", &bob_backup[0]).await.result,
        VerifyResult::NotEnrolled
    );
    // Nothing left to disable or reset.
    let r = h.engine.reset(&root(), "bob").await;
    assert!(matches!(r, Err(ServiceError::NotEnrolled(_))), "{r:?}");
    let r = h.engine.disable(&root(), "alice", code(""), None).await;
    assert!(matches!(r, Err(ServiceError::NotEnrolled(_))), "{r:?}");

    // Both enrol afresh; the counters go on.
    let (a2, _) = enrolled(&h, "alice").await;
    enrolled(&h, "bob").await;
    assert_ne!(a2, a);
    let c = oathtool(&a2, h.clock.now());
    assert_eq!(
        verify(&h, &root(), "alice", &c).await.result,
        VerifyResult::Ok
    );
    let s = h.engine.stats(&root()).await.unwrap();
    assert_eq!(
        (s.users_enrolled, s.successes, s.failures),
        (2, 3, 1),
        "{s:?}"
    );
    assert_eq!((s.enrolments, s.disabled, s.resets), (4, 1, 1), "{s:?}");
    assert_eq!(h.engine.list_users(&root()).await.unwrap().len(), 2);
}

/// A retired record is kept while Stats reports its counters, and goes
/// once they are all older than the days kept.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_record_goes_once_its_counters_are_old() {
    let h = harness("");
    enrolled(&h, "alice").await;
    h.engine.reset(&root(), "alice").await.unwrap();
    h.clock.advance(29 * crate::record::SECS_PER_DAY);
    let s = h.engine.stats(&root()).await.unwrap();
    assert_eq!((s.enrolments, s.resets), (1, 1), "{s:?}");
    assert_eq!(h.store.keys().unwrap().len(), 1);
    h.clock.advance(crate::record::SECS_PER_DAY);
    let s = h.engine.stats(&root()).await.unwrap();
    assert_eq!((s.enrolments, s.resets), (0, 0), "{s:?}");
    assert_eq!(h.store.keys().unwrap().len(), 1, "still within DAYS_KEPT");
    h.clock.advance(crate::record::SECS_PER_DAY);
    h.engine.stats(&root()).await.unwrap();
    assert!(h.store.keys().unwrap().is_empty());
}

/// In a fleet, a retired record holds nothing to protect: a host that
/// gives its uid another name may enrol that name over it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_retired_fleet_record_does_not_clash() {
    let h = harness("");
    let (records, a, b) = alice_and_mallory(&h);
    enrolled_on(&a, &h.clock, "alice").await;
    assert!(b.status(&root(), "mallory").await.is_err());
    a.disable(&root(), "alice", code(""), None).await.unwrap();
    let st = b.status(&root(), "mallory").await.unwrap();
    assert!(!st.enrolled);
    b.enroll(&root(), "mallory", None, None, None)
        .await
        .unwrap();
    let rec = records.get(&format!("uid:{ALICE}")).unwrap().unwrap();
    assert_eq!(rec.name.as_deref(), Some("mallory"));
    assert_eq!(rec.days.iter().map(|d| d.disabled).sum::<u32>(), 1);
}

// ---- several devices, several methods ------------------------------------

/// Adds a TOTP device named `name` to an enrolled `user` as root and
/// confirms it; its secret. No new backup codes come with it.
async fn added_device(h: &Harness, name: &str, device: &str) -> String {
    let e = h
        .engine
        .enroll(&root(), name, None, None, Some(device.into()))
        .await
        .unwrap();
    let Enrollment::Totp { secret, .. } = e else {
        panic!("not a TOTP enrolment")
    };
    let secret = secret.to_string();
    let codes = h
        .engine
        .confirm(&root(), name, code(&oathtool(&secret, h.clock.now())))
        .await
        .unwrap();
    assert!(codes.is_empty(), "no new backup codes for a second device");
    h.clock.advance(30);
    secret
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn any_device_verifies_with_its_own_replay_mark() {
    let h = harness("");
    let (phone, backup) = enrolled(&h, "alice").await;
    // Without a name, an enrolled user stays enrolled; bad or taken names
    // are refused.
    let r = h.engine.enroll(&root(), "alice", None, None, None).await;
    assert!(
        matches!(&r, Err(ServiceError::AlreadyEnrolled(m)) if m.contains("--name")),
        "{r:?}"
    );
    for bad in ["", "Spare", "a b", "x/y", &"a".repeat(33)] {
        let r = h
            .engine
            .enroll(&root(), "alice", None, None, Some(bad.into()))
            .await;
        assert!(
            matches!(r, Err(ServiceError::InvalidArgument(_))),
            "{bad:?}: {r:?}"
        );
    }
    let r = h
        .engine
        .enroll(&root(), "alice", None, None, Some("default".into()))
        .await;
    assert!(
        matches!(&r, Err(ServiceError::InvalidArgument(m)) if m.contains("exists")),
        "{r:?}"
    );
    let spare = added_device(&h, "alice", "spare").await;
    // The backup codes handed out at enrolment still work.
    let st = h.engine.status(&root(), "alice").await.unwrap();
    assert_eq!(st.backup_codes_left as usize, backup.len());
    let names: Vec<&str> = st.devices.iter().map(|d| d.name.as_str()).collect();
    assert_eq!(names, ["default", "spare"]);
    assert!(st
        .devices
        .iter()
        .all(|d| d.method == "totp" && d.last_used == 0));
    // A code from either device logs in; each device's replay mark is its own.
    let now = h.clock.now();
    let (p, s) = (oathtool(&phone, now), oathtool(&spare, now));
    let o = verify(&h, &root(), "alice", &p).await;
    assert_eq!(
        (o.result, o.method_used),
        (VerifyResult::Ok, Some(MethodUsed::Totp))
    );
    assert_eq!(
        verify(&h, &root(), "alice", &p).await.result,
        VerifyResult::Replayed
    );
    assert_eq!(
        verify(&h, &root(), "alice", &s).await.result,
        VerifyResult::Ok
    );
    assert_eq!(
        verify(&h, &root(), "alice", &s).await.result,
        VerifyResult::Replayed
    );
    let st = h.engine.status(&root(), "alice").await.unwrap();
    assert!(st.devices.iter().all(|d| d.last_used == now), "{st:?}");
    let history: Vec<String> = h
        .engine
        .history(&root(), "alice")
        .await
        .unwrap()
        .into_iter()
        .map(|e| e.event)
        .collect();
    assert!(history.contains(&"device-added".to_string()), "{history:?}");
    // A wrong code that is another step's code of the spare: the drift is
    // the spare's.
    h.clock.advance(30);
    let ahead = oathtool(&spare, h.clock.now() + 600);
    let o = verify(&h, &root(), "alice", &ahead).await;
    assert_eq!(o.result, VerifyResult::Invalid);
    assert!(o.notice.contains("fast"), "{o:?}");
    let rec = h.store.get(&format!("uid:{ALICE}")).unwrap().unwrap();
    let drift: Vec<bool> = rec
        .factors
        .iter()
        .map(|f| matches!(f, crate::record::Factor::Totp(t) if t.drift.is_some()))
        .collect();
    assert_eq!(drift, [false, true]);
}

/// Two devices holding one secret (the same QR code scanned twice): a code
/// accepted on one is not a second success on the other.
#[test]
fn a_code_accepted_on_one_device_is_replayed_on_another() {
    use crate::record::{Factor, TotpFactor, UserRecord};
    let key = MasterKey::generate().unwrap();
    let config = Config::parse("", std::path::Path::new("t")).unwrap();
    let account = crate::accounts::Account {
        uid: ALICE,
        name: "alice".into(),
    };
    let ctx = Context::default();
    let env = super::Env {
        config: &config,
        key: &key,
        now: T0,
        caller_uid: 0,
        account: &account,
        ctx: &ctx,
    };
    let secret = b"12345678901234567890";
    let mut rec = UserRecord::new(&account.key(), T0);
    for (id, name) in [("f1", None), ("f2", Some("spare".to_string()))] {
        let sealed = crate::crypto::seal(&key, rec.bound_to(), id, secret).unwrap();
        rec.factors.push(Factor::Totp(TotpFactor {
            name,
            ..TotpFactor::new(id, sealed, T0, "enrolled")
        }));
    }
    let c = oathtool(&crate::totp::base32(secret), T0);
    let first = super::verify::check_code(&mut rec, &c, &env, None, None)
        .ok()
        .unwrap();
    assert_eq!(first.outcome.result, VerifyResult::Ok);
    assert_eq!(rec.accepted.len(), 1);
    // The first device's mark would not stop it on the second: the kept
    // hash does.
    let Factor::Totp(f1) = &mut rec.factors[0] else {
        unreachable!()
    };
    f1.last_step = None;
    let again = super::verify::check_code(&mut rec, &c, &env, None, None)
        .ok()
        .unwrap();
    assert_eq!(again.outcome.result, VerifyResult::Replayed);
    // Kept only while the code could be typed within the window.
    let later = super::Env {
        now: T0 + 120,
        ..env
    };
    let c2 = oathtool(&crate::totp::base32(secret), T0 + 120);
    let o = super::verify::check_code(&mut rec, &c2, &later, None, None)
        .ok()
        .unwrap();
    assert_eq!(o.outcome.result, VerifyResult::Ok);
    assert_eq!(rec.accepted.len(), 1, "the old hash was dropped");
}

/// A record as otpgated wrote it before devices had names: the TOTP
/// factor below is the one a daemon wrote to disk in a test run (the
/// master key is that run's), moved from `pending` to `factors` as
/// Confirm does. It loads unchanged, verifies, shows as "default", and
/// writes no new key until one is needed.
#[test]
fn a_record_written_before_devices_loads_and_verifies() {
    const KEY: &str = "93c107338289872acb9f0b31bc09815c5f054f9a3770ea322fbdcc7b980cddbc";
    const RECORD: &str = r#"{
  "version": 1,
  "user": "uid:1002",
  "name": "otpga-crash-0",
  "factors": [
    {
      "kind": "totp",
      "id": "5d84e2fd95f8514a",
      "secret": {
        "nonce": "WuxtJrY+3Gycj2/XvXWPHvHa6CeMXOqv",
        "ciphertext": "3pXoPsGLKhTcPfvZc7KE+Sn71CvjHm193jpR66GKP8mCrQhf"
      },
      "algorithm": "SHA1",
      "digits": 6,
      "period": 30,
      "last_step": 59877432,
      "created_at": 1796322964,
      "origin": "enrolled"
    }
  ],
  "pending": null,
  "backup": null,
  "failures": 0,
  "locked_until": 0,
  "lock_streak": 0,
  "created_at": 1796322964,
  "updated_at": 1796322964,
  "days": [],
  "email_code": null,
  "email_sends": []
}
"#;
    let mut bytes = [0u8; 32];
    for (i, b) in bytes.iter_mut().enumerate() {
        *b = u8::from_str_radix(&KEY[2 * i..2 * i + 2], 16).unwrap();
    }
    let key = MasterKey::from_bytes(bytes);
    let mut rec = crate::record::UserRecord::from_bytes("uid:1002", RECORD.as_bytes()).unwrap();
    assert_eq!(rec.factors[0].name(), "default");
    let again = String::from_utf8(rec.to_bytes()).unwrap();
    assert!(
        !again.contains("last_used_at") && !again.contains("accepted"),
        "{again}"
    );
    let crate::record::Factor::Totp(f) = &rec.factors[0] else {
        panic!("not TOTP")
    };
    let secret = crate::crypto::open(&key, rec.bound_to(), &f.id, &f.secret).unwrap();
    let b32 = crate::totp::base32(&secret);
    let now = 1_796_323_000;
    let config = Config::parse("", std::path::Path::new("t")).unwrap();
    let account = crate::accounts::Account {
        uid: 1002,
        name: "otpga-crash-0".into(),
    };
    let ctx = Context::default();
    let env = super::Env {
        config: &config,
        key: &key,
        now,
        caller_uid: 0,
        account: &account,
        ctx: &ctx,
    };
    let c = oathtool(&b32, now);
    let o = super::verify::check_code(&mut rec, &c, &env, None, None)
        .ok()
        .unwrap();
    assert_eq!(o.outcome.result, VerifyResult::Ok);
    let st = super::manage::status_of(Some(&rec), "otpga-crash-0".into(), now);
    assert_eq!(st.devices.len(), 1);
    assert_eq!(
        (st.devices[0].name.as_str(), st.devices[0].last_used),
        ("default", now)
    );
}

const REQUIRE_ALICE: &str =
    "[[policy]]\nusers = [\"alice\"]\nservices = [\"sshd\"]\nmode = \"require\"\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn removing_a_device_takes_a_code_and_the_last_one_a_policy_that_allows_it() {
    let h = harness(REQUIRE_ALICE);
    let (phone, _) = enrolled(&h, "alice").await;
    let spare = added_device(&h, "alice", "spare").await;
    let alice = user("alice", ALICE);
    let r = h
        .engine
        .remove_device(&alice, "alice", "spare", code(""), None)
        .await;
    assert!(matches!(r, Err(ServiceError::InvalidCode(_))), "{r:?}");
    let r = h
        .engine
        .remove_device(&alice, "alice", "tablet", code(""), None)
        .await;
    assert!(
        matches!(&r, Err(ServiceError::InvalidArgument(m)) if m.contains("default, spare")),
        "{r:?}"
    );
    // A wrong code counts like a login's.
    let bad = wrong(&phone, h.clock.now());
    let r = h
        .engine
        .remove_device(&alice, "alice", "spare", code(&bad), None)
        .await;
    assert!(matches!(r, Err(ServiceError::InvalidCode(_))), "{r:?}");
    assert_eq!(h.engine.status(&root(), "alice").await.unwrap().failures, 1);
    // A code from the other device removes it.
    let c = oathtool(&phone, h.clock.now());
    h.engine
        .remove_device(&alice, "alice", "spare", code(&c), None)
        .await
        .unwrap();
    let st = h.engine.status(&root(), "alice").await.unwrap();
    assert_eq!(st.devices.len(), 1);
    assert_eq!(
        verify(&h, &root(), "alice", &oathtool(&spare, h.clock.now()))
            .await
            .result,
        VerifyResult::Invalid
    );
    // The last one: a require rule for alice (on sshd only) says no, to
    // her; to disable too. An administrator may.
    h.clock.advance(30);
    let c = oathtool(&phone, h.clock.now());
    let r = h
        .engine
        .remove_device(&alice, "alice", "default", code(&c), None)
        .await;
    assert!(
        matches!(&r, Err(ServiceError::AccessDenied(m)) if m.contains("rule 1")),
        "{r:?}"
    );
    let r = h.engine.disable(&alice, "alice", code(&c), None).await;
    assert!(
        matches!(&r, Err(ServiceError::AccessDenied(m)) if m.contains("rule 1")),
        "{r:?}"
    );
    h.engine
        .remove_device(&admin("ann", ANN), "alice", "default", code(""), None)
        .await
        .unwrap();
    assert!(!h.engine.status(&root(), "alice").await.unwrap().enrolled);
    // Without such a rule, bob removes his last device with its code.
    let (secret, _) = enrolled(&h, "bob").await;
    let c = oathtool(&secret, h.clock.now());
    h.engine
        .remove_device(&user("bob", BOB), "bob", "default", code(&c), None)
        .await
        .unwrap();
    assert!(!h.engine.status(&root(), "bob").await.unwrap().enrolled);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_app_user_with_email_too_is_offered_a_mail() {
    let h = harness(
        "[email]\nsmtp_url = \"smtp://127.0.0.1:1\"\nfrom = \"o@example.org\"\nresend_cooldown_secs = 30\n",
    );
    let (phone, backup) = enrolled(&h, "alice").await;
    h.engine
        .enroll(
            &root(),
            "alice",
            Some("email".into()),
            Some("a@example.org".into()),
            Some("mail".into()),
        )
        .await
        .unwrap();
    let c = mails(&h, 1).await[0].1.clone();
    let codes = h.engine.confirm(&root(), "alice", code(&c)).await.unwrap();
    assert!(codes.is_empty());
    // A second e-mail factor is refused.
    let r = h
        .engine
        .enroll(
            &root(),
            "alice",
            Some("email".into()),
            Some("b@example.org".into()),
            Some("mail2".into()),
        )
        .await;
    assert!(matches!(r, Err(ServiceError::InvalidArgument(_))), "{r:?}");
    // The app first, e-mail offered; no mail yet.
    let ch = h
        .engine
        .challenge(&root(), "alice", Context::default())
        .await
        .unwrap();
    assert_eq!(ch.state, ChallengeState::CodeRequired);
    assert_eq!(ch.method, Some(otpgate_proto::Method::Totp));
    assert_eq!(ch.alternatives, "email");
    tokio::time::sleep(std::time::Duration::from_millis(50)).await;
    assert_eq!(h.outbox.sent.lock().unwrap().len(), 1);
    // Asked for a mail: it goes, and the mailed code logs in.
    let by_mail = Context {
        method: "email".into(),
        ..Context::default()
    };
    let ch = h
        .engine
        .challenge(&root(), "alice", by_mail.clone())
        .await
        .unwrap();
    assert_eq!(ch.method, Some(otpgate_proto::Method::Email));
    assert!(ch.alternatives.is_empty());
    assert!(ch.message.contains("a***@example.org"), "{}", ch.message);
    let mailed = mails(&h, 2).await[1].1.clone();
    let o = verify(&h, &root(), "alice", &mailed).await;
    assert_eq!(
        (o.result, o.method_used),
        (VerifyResult::Ok, Some(MethodUsed::Email))
    );
    // The app's code and the backup codes still work.
    let o = verify(&h, &root(), "alice", &oathtool(&phone, h.clock.now())).await;
    assert_eq!(o.result, VerifyResult::Ok);
    let o = verify(&h, &root(), "alice", &backup[0]).await;
    assert_eq!(o.method_used, Some(MethodUsed::Backup));
    let st = h.engine.status(&root(), "alice").await.unwrap();
    let methods: Vec<&str> = st.devices.iter().map(|d| d.method.as_str()).collect();
    assert_eq!(methods, ["totp", "email"]);
    assert_eq!(st.method, "totp");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn only_allowed_methods_are_enrolled() {
    let h = harness(
        "[methods]\nallowed = [\"totp\"]\n[email]\nsmtp_url = \"smtp://127.0.0.1:1\"\nfrom = \"o@example.org\"\n",
    );
    let r = h
        .engine
        .enroll(
            &root(),
            "alice",
            Some("email".into()),
            Some("a@example.org".into()),
            None,
        )
        .await;
    assert!(
        matches!(&r, Err(ServiceError::InvalidArgument(m)) if m.contains("[methods]")),
        "{r:?}"
    );
    enrolled(&h, "alice").await;
}
