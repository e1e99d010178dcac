//! A PAM application for the tests: it loads `pam_otpgate.so` through the
//! real libpam and checks that the module is a good guest.
//!
//! ```text
//! pam_host auth CONFDIR SERVICE USER ITERATIONS CODES_FILE [fork=CHILD_ITERATIONS]
//! pam_host fake-daemon BUS_ADDRESS [ok|unknown-word|wrong-type|record]
//! pam_host fake-socket PATH [ok|unknown-word|wrong-type] [LISTEN_UID]
//! ```
//!
//! `auth` runs ITERATIONS full PAM transactions (`pam_start_confdir`,
//! `pam_authenticate`, `pam_end`) with the service file CONFDIR/SERVICE,
//! answering each prompt with the next line of CODES_FILE (cycling). Before
//! the first and after the last it counts `/proc/self/task` and
//! `/proc/self/fd` and reads the disposition of every signal, and prints
//! one line of `key=value` figures, plus the PAM results and the messages
//! the module showed. With `fork=N` it forks after the first transaction
//! and the child runs N more and prints its own figures (prefixed `child`);
//! the parent waits for it with a deadline.
//!
//! `fake-daemon` owns `org.otpgate.Otpgate1` on BUS_ADDRESS and answers
//! every Challenge with `code-required` and every Verify with `ok`: the
//! impostor of the hijack tests. It prints `ready` once it owns the name.
//! `unknown-word` and `wrong-type` make it answer Verify with something the
//! contract does not allow, for the tests of unparseable answers.
//! `record` serves no interface: it prints `call INTERFACE.MEMBER` for every
//! method call it receives (never the arguments, which may hold a secret),
//! answers `org.freedesktop.DBus.Peer.Ping` (the tests' way to know every
//! earlier call was seen) and refuses everything else with an error.
//!
//! `fake-socket` is the same impostor on a direct socket (peer-to-peer
//! D-Bus, as otpgated's `[pam] socket`): it binds PATH, then, given
//! LISTEN_UID, becomes that user before it listens, so that the kernel
//! names that uid as the listener. It prints `ready`, then `call METHOD`
//! for every call it answers (never the arguments).
//!
//! Arguments are positional and fixed: this is a test tool, not a CLI.

use std::collections::BTreeMap;
use std::ffi::{c_int, c_void, CStr, CString};
use std::io::Write;
use std::ptr;
use std::time::{Duration, Instant};

use otpgate_tests::libpam::*;

/// What the conversation function works with.
struct Answers {
    codes: Vec<String>,
    next: usize,
    prompts: usize,
    messages: BTreeMap<String, usize>,
}

unsafe extern "C" fn conversation(
    num_msg: c_int,
    msg: *mut *const PamMessage,
    resp: *mut *mut PamResponse,
    appdata: *mut c_void,
) -> c_int {
    // SAFETY: appdata is the `Answers` this program passed to pam_start.
    let answers = unsafe { &mut *(appdata as *mut Answers) };
    let Ok(n) = usize::try_from(num_msg) else {
        return PAM_CONV_ERR;
    };
    // SAFETY: calloc of n responses; freed by the module (that is the API).
    let out = unsafe { libc::calloc(n, std::mem::size_of::<PamResponse>()) } as *mut PamResponse;
    if out.is_null() {
        return PAM_BUF_ERR;
    }
    for i in 0..n {
        // SAFETY: Linux-PAM passes an array of n message pointers.
        let m = unsafe { &**msg.add(i) };
        // SAFETY: PAM messages are NUL-terminated strings.
        let text = unsafe { CStr::from_ptr(m.msg) }
            .to_string_lossy()
            .into_owned();
        match m.msg_style {
            PAM_PROMPT_ECHO_OFF | PAM_PROMPT_ECHO_ON => {
                answers.prompts += 1;
                let code = &answers.codes[answers.next % answers.codes.len()];
                answers.next += 1;
                let c = CString::new(code.as_str()).expect("codes have no NUL");
                // SAFETY: strdup gives the malloc()ed string the module frees.
                unsafe { (*out.add(i)).resp = libc::strdup(c.as_ptr()) };
            }
            _ => *answers.messages.entry(text).or_insert(0) += 1,
        }
    }
    // SAFETY: resp is PAM's out pointer.
    unsafe { *resp = out };
    PAM_SUCCESS
}

#[derive(Debug, Clone, PartialEq, Eq)]
struct Figures {
    threads: usize,
    fds: Vec<String>,
    signals: Vec<(c_int, usize, c_int)>,
}

fn figures() -> Figures {
    let threads = std::fs::read_dir("/proc/self/task")
        .expect("/proc/self/task")
        .count();
    let mut fds: Vec<String> = std::fs::read_dir("/proc/self/fd")
        .expect("/proc/self/fd")
        .filter_map(|e| e.ok())
        .map(|e| {
            let target = std::fs::read_link(e.path())
                .map(|p| p.display().to_string())
                .unwrap_or_default();
            format!("{}->{}", e.file_name().to_string_lossy(), target)
        })
        .collect();
    // The directory being read shows up as one fd, under a number that can
    // differ between two reads: drop it so the lists compare.
    fds.retain(|f| !f.ends_with(&format!("/proc/{}/fd", std::process::id())));
    fds.sort();
    let mut signals = Vec::new();
    for sig in 1..=libc::SIGRTMAX() {
        // SAFETY: a zeroed sigaction is a valid out-parameter; querying with a
        // NULL new action changes nothing.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(sig, ptr::null(), &mut old) == 0 {
                signals.push((sig, old.sa_sigaction, old.sa_flags));
            }
        }
    }
    Figures {
        threads,
        fds,
        signals,
    }
}

/// PAM's name for a result code, one word for the figures line.
fn result_word(code: c_int) -> String {
    strerror(code).replace(' ', "_")
}

fn authenticate_once(confdir: &CStr, service: &CStr, user: &CStr, answers: &mut Answers) -> c_int {
    authenticate(confdir, service, user, conversation, answers).unwrap_or_else(|rc| {
        eprintln!("pam_start_confdir failed: {}", result_word(rc));
        std::process::exit(3);
    })
}

fn run(
    confdir: &CStr,
    service: &CStr,
    user: &CStr,
    iterations: usize,
    answers: &mut Answers,
    label: &str,
) -> bool {
    let before = figures();
    let mut results: BTreeMap<String, usize> = BTreeMap::new();
    let started = Instant::now();
    let mut slowest = Duration::ZERO;
    for _ in 0..iterations {
        let t = Instant::now();
        let rc = authenticate_once(confdir, service, user, answers);
        slowest = slowest.max(t.elapsed());
        *results.entry(result_word(rc)).or_insert(0) += 1;
    }
    let elapsed = started.elapsed();
    let after = figures();
    let same = before == after;
    let results: Vec<String> = results.iter().map(|(k, v)| format!("{k}:{v}")).collect();
    println!(
        "{label} iterations={iterations} threads_before={} threads_after={} fds_before={} fds_after={} \
         signals_checked={} signals_same={} prompts={} results={} elapsed_ms={} mean_us={} slowest_ms={} same={same}",
        before.threads,
        after.threads,
        before.fds.len(),
        after.fds.len(),
        before.signals.len(),
        before.signals == after.signals,
        answers.prompts,
        results.join(","),
        elapsed.as_millis(),
        elapsed.as_micros() / iterations.max(1) as u128,
        slowest.as_millis(),
    );
    for (m, n) in &answers.messages {
        println!("{label} message={m:?} count={n}");
    }
    if before.fds != after.fds {
        println!("{label} fds_before_list={:?}", before.fds);
        println!("{label} fds_after_list={:?}", after.fds);
    }
    let _ = std::io::stdout().flush();
    same
}

fn auth(args: &[String]) -> i32 {
    if args.len() < 5 {
        eprintln!("usage: pam_host auth CONFDIR SERVICE USER ITERATIONS CODES_FILE [fork=N]");
        return 2;
    }
    let confdir = CString::new(args[0].as_str()).expect("confdir");
    let service = CString::new(args[1].as_str()).expect("service");
    let user = CString::new(args[2].as_str()).expect("user");
    let iterations: usize = args[3].parse().expect("ITERATIONS is a number");
    let codes: Vec<String> = std::fs::read_to_string(&args[4])
        .expect("CODES_FILE readable")
        .lines()
        .map(str::to_owned)
        .collect();
    assert!(!codes.is_empty(), "CODES_FILE is empty");
    let fork_children: Option<usize> = args
        .get(5)
        .and_then(|a| a.strip_prefix("fork="))
        .map(|n| n.parse().expect("fork=N"));
    let mut answers = Answers {
        codes,
        next: 0,
        prompts: 0,
        messages: BTreeMap::new(),
    };

    let Some(child_iterations) = fork_children else {
        let same = run(&confdir, &service, &user, iterations, &mut answers, "host");
        return if same { 0 } else { 1 };
    };

    // Fork mode: one transaction in the parent (the module is loaded and has
    // run), then a child, as sshd does, authenticates again.
    let same = run(&confdir, &service, &user, 1, &mut answers, "parent");
    let _ = std::io::stdout().flush();
    // SAFETY: this program is single-threaded (checked by `run` above when
    // the module left no thread), so the child may run anything.
    let pid = unsafe { libc::fork() };
    if pid < 0 {
        eprintln!("fork failed");
        return 3;
    }
    if pid == 0 {
        answers.messages.clear();
        let same = run(
            &confdir,
            &service,
            &user,
            child_iterations,
            &mut answers,
            "child",
        );
        let _ = std::io::stdout().flush();
        // SAFETY: leave without running the parent's atexit handlers twice.
        unsafe { libc::_exit(if same { 0 } else { 1 }) };
    }
    let deadline = Instant::now() + Duration::from_secs(120);
    loop {
        let mut status = 0;
        // SAFETY: waits for our own child without blocking.
        let r = unsafe { libc::waitpid(pid, &mut status, libc::WNOHANG) };
        if r == pid {
            let ok = libc::WIFEXITED(status) && libc::WEXITSTATUS(status) == 0;
            println!("parent child_exit_ok={ok} child_status={status}");
            return if same && ok { 0 } else { 1 };
        }
        if Instant::now() > deadline {
            // SAFETY: kills our own child by pid.
            unsafe {
                libc::kill(pid, libc::SIGKILL);
                libc::waitpid(pid, &mut status, 0);
            }
            println!("parent child_deadlocked=true");
            return 1;
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// How the impostor answers Verify.
#[derive(Clone, Copy)]
enum Fake {
    /// `ok`: the attack.
    Yes,
    /// A result word the contract does not have.
    UnknownWord,
    /// `invalid` with `attempts_left` of the wrong type.
    WrongType,
}

/// The impostor: Challenge says `code-required`, Verify answers as `Fake` says.
struct FakeAuth(Fake);

/// The same impostor, telling on stdout which calls it took.
struct TellingAuth(Fake);

#[zbus::interface(name = "org.otpgate.Otpgate1.Auth")]
impl TellingAuth {
    fn challenge(
        &self,
        user: &str,
        context: otpgate_proto::OwnedDict,
    ) -> (String, otpgate_proto::OwnedDict) {
        tell("call Challenge");
        FakeAuth(self.0).challenge(user, context)
    }

    fn verify(
        &self,
        user: &str,
        code: &str,
        context: otpgate_proto::OwnedDict,
    ) -> (
        String,
        std::collections::HashMap<String, zbus::OwnedVariant>,
    ) {
        tell("call Verify");
        FakeAuth(self.0).verify(user, code, context)
    }
}

fn tell(line: &str) {
    let mut out = std::io::stdout();
    let _ = writeln!(out, "{line}");
    let _ = out.flush();
}

fn parse_fake(mode: Option<&str>) -> Option<Fake> {
    match mode {
        None | Some("ok") => Some(Fake::Yes),
        Some("unknown-word") => Some(Fake::UnknownWord),
        Some("wrong-type") => Some(Fake::WrongType),
        Some(_) => None,
    }
}

fn fake_socket(args: &[String]) -> i32 {
    use nix::sys::socket::{
        bind, listen, socket, AddressFamily, Backlog, SockFlag, SockType, UnixAddr,
    };
    use std::os::fd::AsRawFd;
    let Some(path) = args.first() else {
        eprintln!("usage: pam_host fake-socket PATH [ok|unknown-word|wrong-type] [LISTEN_UID]");
        return 2;
    };
    let Some(fake) = parse_fake(args.get(1).map(String::as_str)) else {
        eprintln!("fake-socket: unknown answer {:?}", args.get(1));
        return 2;
    };
    let listen_uid: Option<u32> = match args.get(2).map(|u| u.parse()) {
        None => None,
        Some(Ok(uid)) => Some(uid),
        Some(Err(_)) => {
            eprintln!("fake-socket: LISTEN_UID must be a number");
            return 2;
        }
    };
    let fd = match socket(
        AddressFamily::Unix,
        SockType::Stream,
        SockFlag::SOCK_CLOEXEC,
        None,
    ) {
        Ok(fd) => fd,
        Err(e) => {
            eprintln!("fake-socket: socket: {e}");
            return 1;
        }
    };
    let addr = UnixAddr::new(path.as_str()).expect("a socket path");
    if let Err(e) = bind(fd.as_raw_fd(), &addr) {
        eprintln!("fake-socket: bind {path}: {e}");
        return 1;
    }
    if let Some(uid) = listen_uid {
        // The kernel records the listener's credentials at listen().
        let id = nix::unistd::Uid::from_raw(uid);
        if let Err(e) = nix::unistd::setgid(nix::unistd::Gid::from_raw(uid))
            .and_then(|_| nix::unistd::setuid(id))
        {
            eprintln!("fake-socket: becoming uid {uid}: {e}");
            return 1;
        }
    }
    if let Err(e) = listen(&fd, Backlog::new(16).expect("a backlog")) {
        eprintln!("fake-socket: listen: {e}");
        return 1;
    }
    let listener = std::os::unix::net::UnixListener::from(fd);
    tell("ready");
    for stream in listener.incoming() {
        let Ok(stream) = stream else { continue };
        zruntime::block_on(async {
            let conn = zbus::connection::Builder::unix_stream(stream)
                .server(zbus::Guid::generate())
                .p2p()
                .serve_at(otpgate_proto::OBJECT_PATH, TellingAuth(fake))
                .build()
                .await;
            if let Ok(conn) = conn {
                conn.closed().await;
            }
        });
    }
    0
}

#[zbus::interface(name = "org.otpgate.Otpgate1.Auth")]
impl FakeAuth {
    fn challenge(
        &self,
        _user: &str,
        _context: otpgate_proto::OwnedDict,
    ) -> (String, otpgate_proto::OwnedDict) {
        ("code-required".into(), Default::default())
    }

    fn verify(
        &self,
        _user: &str,
        _code: &str,
        _context: otpgate_proto::OwnedDict,
    ) -> (
        String,
        std::collections::HashMap<String, zbus::OwnedVariant>,
    ) {
        match self.0 {
            Fake::Yes => ("ok".into(), Default::default()),
            Fake::UnknownWord => ("OK".into(), Default::default()),
            Fake::WrongType => {
                let mut d = std::collections::HashMap::new();
                d.insert(
                    otpgate_proto::info::ATTEMPTS_LEFT.to_string(),
                    zbus::OwnedVariant::try_from(zbus::Variant::from("three"))
                        .expect("a string variant"),
                );
                ("invalid".into(), d)
            }
        }
    }
}

fn fake_daemon(args: &[String]) -> i32 {
    let (Some(address), mode) = (args.first(), args.get(1).map(String::as_str)) else {
        eprintln!("usage: pam_host fake-daemon BUS_ADDRESS [ok|unknown-word|wrong-type]");
        return 2;
    };
    let fake = match mode {
        Some("record") => return record(address),
        None | Some("ok") => Fake::Yes,
        Some("unknown-word") => Fake::UnknownWord,
        Some("wrong-type") => Fake::WrongType,
        Some(other) => {
            eprintln!("fake-daemon: unknown answer {other:?}");
            return 2;
        }
    };
    zruntime::block_on(async {
        let conn = zbus::connection::Builder::address(address.as_str())
            .name(otpgate_proto::BUS_NAME)
            .serve_at(otpgate_proto::OBJECT_PATH, FakeAuth(fake))
            .build()
            .await;
        match conn {
            Ok(_conn) => {
                println!("ready");
                let _ = std::io::stdout().flush();
                std::future::pending::<()>().await;
                0
            }
            Err(e) => {
                eprintln!("fake-daemon: {e}");
                1
            }
        }
    })
}

/// The impostor that takes every call and keeps a list, for the tests that
/// prove a client sends nothing to it.
fn record(address: &str) -> i32 {
    use zbus::export::futures_core::Stream;
    zruntime::block_on(async {
        let conn = match zbus::connection::Builder::address(address)
            .name(otpgate_proto::BUS_NAME)
            .build()
            .await
        {
            Ok(c) => c,
            Err(e) => {
                eprintln!("fake-daemon: {e}");
                return 1;
            }
        };
        // Made before `ready`, so no call the test causes can slip past it.
        let mut stream = zbus::MessageStream::from(&conn);
        println!("ready");
        let _ = std::io::stdout().flush();
        loop {
            let next = std::future::poll_fn(|cx| std::pin::Pin::new(&mut stream).poll_next(cx));
            let msg = match next.await {
                Some(Ok(m)) => m,
                Some(Err(_)) => continue,
                None => return 0,
            };
            let header = msg.header();
            if header.message_type() != zbus::message::Type::MethodCall {
                continue;
            }
            let interface = header
                .interface()
                .map(|i| i.to_string())
                .unwrap_or_default();
            let member = header.member().map(|m| m.to_string()).unwrap_or_default();
            println!("call {interface}.{member}");
            let _ = std::io::stdout().flush();
            let _ = if interface == "org.freedesktop.DBus.Peer" && member == "Ping" {
                conn.reply(&header, &()).await
            } else {
                conn.reply_error(&header, "org.otpgate.Otpgate1.Error.Failed", &("impostor",))
                    .await
            };
        }
    })
}

fn main() {
    let args: Vec<String> = std::env::args().skip(1).collect();
    let code = match args.first().map(String::as_str) {
        Some("auth") => auth(&args[1..]),
        Some("fake-daemon") => fake_daemon(&args[1..]),
        Some("fake-socket") => fake_socket(&args[1..]),
        _ => {
            eprintln!("usage: pam_host auth ... | pam_host fake-daemon BUS_ADDRESS");
            2
        }
    };
    std::process::exit(code);
}
