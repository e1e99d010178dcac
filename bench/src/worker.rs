//! One load-generating process (`otpgate-bench worker`, started by a
//! row): PAM transactions through the real libpam with codes it computes
//! itself, for as long as it is told, then its figures as JSON.

use std::collections::BTreeMap;
use std::ffi::CString;
use std::fs;
use std::io::Write;
use std::path::Path;
use std::time::{Duration, Instant};

use otpgate_bench::{code_at_step, now, pam, totp, wrong_code, State, PERIOD};

use crate::cli::{Mode, Module, WorkerArgs};

/// `user base32secret` per line, user i on line i.
pub fn load_secrets(path: &Path) -> Result<Vec<(String, String)>, String> {
    let text = fs::read_to_string(path).map_err(|e| format!("{}: {e}", path.display()))?;
    text.lines()
        .map(|l| {
            l.split_once(' ')
                .map(|(u, s)| (u.to_string(), s.to_string()))
                .ok_or_else(|| format!("{}: bad line", path.display()))
        })
        .collect()
}

pub fn worker(a: WorkerArgs) -> Result<(), String> {
    let secrets = load_secrets(&a.secrets)?;
    let n = secrets.len();
    let mut state = if a.module == Module::PamPermit {
        State::new(n)
    } else {
        State::load(&a.state)?
    };
    if state.last_step.len() != n {
        return Err("state and secrets disagree on the number of users".into());
    }
    let mine: Vec<usize> = (a.index..n).step_by(a.workers.max(1)).collect();
    if mine.is_empty() {
        return Err("no users for this worker".into());
    }
    let confdir = pam::cstring(&a.confdir.display().to_string());
    // The fleet: with an even number of workers each logs in through one
    // daemon, half of them through each; otherwise (one worker) every
    // worker alternates between the two, login by login.
    let fleet_fixed = a.workers.is_multiple_of(2);
    let services: Vec<CString> = if a.module == Module::OtpgateFleet {
        (0..2)
            .map(|d| pam::cstring(&Module::fleet_service(a.index + d)))
            .collect()
    } else {
        vec![pam::cstring(a.module.service())]
    };
    let users: Vec<CString> = secrets.iter().map(|(u, _)| pam::cstring(u)).collect();

    println!("ready");
    std::io::stdout().flush().map_err(|e| e.to_string())?;
    let mut go = String::new();
    std::io::stdin()
        .read_line(&mut go)
        .map_err(|e| e.to_string())?;
    if go.trim() != "go" {
        return Err("no go from the orchestrator".into());
    }

    let mut lat_us: Vec<u32> = Vec::with_capacity(1 << 16);
    let mut results: BTreeMap<String, u64> = BTreeMap::new();
    let mut ok = 0u64;
    let mut no_prompt = 0u64;
    let mut exhausted = false;
    let mut touched: Vec<usize> = Vec::new();
    let mut cursor = 0usize;
    let cpu0 = self_cpu_us();
    let start = Instant::now();
    let end = start + Duration::from_secs_f64(a.seconds);
    while Instant::now() < end {
        let step = now() / PERIOD;
        let mut picked = None;
        for k in 0..mine.len() {
            let i = mine[(cursor + k) % mine.len()];
            let free = match (a.module, a.mode) {
                (Module::PamPermit, _) => true,
                (_, Mode::Valid) => state.valid_available(i, step),
                // Only otpgate has a lockout to stay clear of.
                (m, Mode::Wrong) if m.is_otpgate() => state.wrong_available(i),
                (_, Mode::Wrong) => true,
            };
            if free {
                picked = Some(i);
                cursor = (cursor + k + 1) % mine.len();
                break;
            }
        }
        let Some(i) = picked else {
            exhausted = true;
            break;
        };
        let code = if a.module == Module::PamPermit {
            "000000".to_string()
        } else {
            let t = totp(&secrets[i].1)?;
            match a.mode {
                Mode::Valid => code_at_step(&t, step),
                Mode::Wrong => wrong_code(&t, step),
            }
        };
        let code = pam::cstring(&code);
        let t0 = Instant::now();
        let service = if fleet_fixed {
            &services[0]
        } else {
            &services[lat_us.len() % services.len()]
        };
        let o = pam::authenticate(&confdir, service, &users[i], &code)?;
        lat_us.push(t0.elapsed().as_micros().min(u32::MAX as u128) as u32);
        let expected = match (a.module, a.mode) {
            (Module::PamPermit, _) | (_, Mode::Valid) => pam::PAM_SUCCESS,
            (_, Mode::Wrong) => pam::PAM_AUTH_ERR,
        };
        if o.rc == expected {
            ok += 1;
        }
        if o.prompts == 0 && a.module != Module::PamPermit {
            no_prompt += 1;
        }
        *results.entry(pam::strerror(o.rc)).or_insert(0) += 1;
        match a.mode {
            Mode::Valid => {
                state.last_step[i] = step;
                if o.rc == pam::PAM_SUCCESS {
                    state.wrong[i] = 0;
                }
            }
            Mode::Wrong => state.wrong[i] += 1,
        }
        touched.push(i);
    }
    let active = start.elapsed();
    let cpu = self_cpu_us().saturating_sub(cpu0);
    touched.sort_unstable();
    touched.dedup();
    let updates: Vec<[u64; 3]> = touched
        .iter()
        .map(|&i| [i as u64, state.last_step[i], state.wrong[i] as u64])
        .collect();
    let out = serde_json::json!({
        "attempts": lat_us.len(),
        "ok": ok,
        "no_prompt": no_prompt,
        "exhausted": exhausted,
        "active_us": active.as_micros() as u64,
        "cpu_us": cpu,
        "results": results,
        "lat_us": lat_us,
        "updates": updates,
    });
    fs::write(&a.out, out.to_string()).map_err(|e| format!("{}: {e}", a.out.display()))
}

/// This process's user + system CPU time, µs (the PAM client side: libpam,
/// the module, and for the peers their whole work).
pub fn self_cpu_us() -> u64 {
    use nix::sys::resource::{getrusage, UsageWho};
    getrusage(UsageWho::RUSAGE_SELF).map_or(0, |u| {
        let t = |tv: nix::sys::time::TimeVal| tv.tv_sec() as u64 * 1_000_000 + tv.tv_usec() as u64;
        t(u.user_time()) + t(u.system_time())
    })
}
