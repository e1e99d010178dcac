//! The results: the table, memory and the module's own cost, and whether
//! each of the benchmark's targets held (what bench/RESULTS.md quotes).

use otpgate_bench::stats::{self, pct};

use crate::cli::{Mode, Module, RunArgs};
use crate::measure::{Direct, Extra, Row};

pub fn find(rows: &[Row], m: Module, n: usize, w: usize, mode: Option<Mode>) -> Option<&Row> {
    rows.iter()
        .find(|r| r.module == m && r.users == n && r.workers == w && r.mode == mode)
}

/// Total CPU per attempt: the PAM client (libpam and the module, in the
/// worker process), plus otpgated and the bus for otpgate's rows, plus the
/// database server for the fleet's.
pub fn total_cpu(r: &Row) -> f64 {
    r.client_cpu_us + r.cpu_us.map_or(0.0, |(d, b)| d + b) + r.db_cpu_us.unwrap_or(0.0)
}

pub fn print_table(rows: &[Row]) {
    println!(
        "| module | users | workers | mode | attempts | ok % | attempts/s | p50 µs | p99 µs | otpgate (socket) ÷ this | CPU µs/attempt: client + otpgated + bus (+ postgres) |"
    );
    println!("|---|---:|---:|---|---:|---:|---:|---:|---:|---:|---:|");
    for r in rows {
        let ratio = match r.module {
            Module::Otpgate => "—".to_string(),
            Module::PamPermit => find(rows, Module::Otpgate, r.users, r.workers, Some(Mode::Valid))
                .map_or("—".into(), |o| {
                    format!("{:.2}× (valid)", o.ok_rate() / r.ok_rate())
                }),
            _ => {
                find(rows, Module::Otpgate, r.users, r.workers, r.mode).map_or("—".into(), |o| {
                    if r.ok == 0 {
                        "∞".into()
                    } else {
                        format!("{:.2}×", o.ok_rate() / r.ok_rate())
                    }
                })
            }
        };
        println!(
            "| {} | {} | {} | {} | {}{} | {:.1} | {:.0} | {} | {} | {} | {} |",
            r.module.name(),
            r.users,
            r.workers,
            r.mode.map_or("-", |m| m.name()),
            r.attempts,
            if r.exhausted { "*" } else { "" },
            pct(r.ok, r.attempts),
            r.rate,
            r.p50,
            r.p99,
            ratio,
            match (r.cpu_us, r.db_cpu_us) {
                (Some((d, b)), Some(p)) => format!(
                    "{:.0} + {d:.0} + {b:.0} + {p:.0} = {:.0}",
                    r.client_cpu_us,
                    total_cpu(r)
                ),
                (Some((d, b)), None) => format!(
                    "{:.0} + {d:.0} + {b:.0} = {:.0}",
                    r.client_cpu_us,
                    total_cpu(r)
                ),
                (None, _) => format!("{:.0}", r.client_cpu_us),
            }
        );
    }
    println!(
        "\n`*`: the row ended early: in valid mode every user had used the current step's code (one valid login per user per 30 s step); in wrong mode every otpgate user had had 90 wrong codes.\notpgate (socket) ÷ this: otpgate's attempts per second with the expected answer (valid logins/s, or refusals/s), over its direct socket, divided by this row's, same users, workers and mode.\notpgate fleet (socket): two otpgated on one PostgreSQL database, the logins split between them; its otpgated CPU is both daemons', its bus both dbus-daemons', and the fourth term the whole PostgreSQL server's (postmaster, backends, WAL writer, checkpointer, and children that ended)."
    );
    let odd: Vec<String> = rows
        .iter()
        .filter(|r| r.ok < r.attempts)
        .map(|r| {
            format!(
                "  {} N={} W={} {}: {:?}",
                r.module.name(),
                r.users,
                r.workers,
                r.mode.map_or("-", |m| m.name()),
                r.results
            )
        })
        .collect();
    // The module falls back to the bus when the direct socket is not
    // there: then the socket rows would be bus rows under another name.
    for r in rows
        .iter()
        .filter(|r| matches!(r.module, Module::Otpgate | Module::OtpgateFleet))
    {
        if let Some((_, b)) = r.cpu_us {
            if b > 20.0 {
                println!(
                    "WARNING: {} N={} W={} {}: the bus spent {b:.0} µs per attempt: the module went over the bus, not the direct socket",
                    r.module.name(),
                    r.users,
                    r.workers,
                    r.mode.map_or("-", |m| m.name())
                );
            }
        }
    }
    if !odd.is_empty() {
        println!("Rows with unexpected PAM results (valid codes refused, or wrong codes not answered PAM_AUTH_ERR):");
        for o in odd {
            println!("{o}");
        }
    }
}

pub fn print_overhead(extra: &[(usize, Extra)], on_tmpfs: Option<&Direct>) {
    println!("\nMemory, and the module's own cost (wrong codes, one at a time, the four measured in turn):");
    println!("| users | otpgated RSS after enrolment KiB | RSS idle after load KiB | peak RSS KiB | daemon: Challenge+Verify on a kept connection p50 µs | pam_otpgate client p50 µs | PAM with pam_otpgate.so p50 µs | PAM with pam_permit.so p50 µs | pam_otpgate.so adds µs (p50) |");
    println!("|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    let o = |v: &Option<stats::Summary>| v.map_or("—".to_string(), |v| v.p50_us.to_string());
    for (n, e) in extra {
        println!(
            "| {n} | {} | {} | {} | {} | {} | {} | {} | {} |",
            e.rss_after_enrol_kib,
            e.rss_idle_after_load_kib,
            e.rss_peak_kib,
            o(&e.direct.kept),
            o(&e.direct.client),
            o(&e.direct.pam),
            o(&e.direct.permit),
            module_adds(&e.direct).map_or("—".to_string(), |v| v.to_string())
        );
    }
    if let Some(d) = on_tmpfs {
        println!(
            "| state on tmpfs | — | — | — | {} | {} | {} | {} | {} |",
            o(&d.kept),
            o(&d.client),
            o(&d.pam),
            o(&d.permit),
            module_adds(d).map_or("—".to_string(), |v| v.to_string())
        );
    }
}

/// PAM transaction with pam_otpgate.so minus the daemon's own exchange.
pub fn module_adds(d: &Direct) -> Option<i64> {
    Some(d.pam?.p50_us as i64 - d.kept?.p50_us as i64)
}

pub fn verdict(held: bool) -> &'static str {
    if held {
        "held  "
    } else {
        "MISSED"
    }
}

pub fn print_targets(
    rows: &[Row],
    extra: &[(usize, Extra)],
    on_tmpfs: Option<&Direct>,
    a: &RunArgs,
) {
    println!("\nTargets:");
    if let Some(d) = on_tmpfs {
        if let (Some(adds), Some(p), Some(k)) = (module_adds(d), d.pam, d.kept) {
            println!(
                "  [{}] pam_otpgate.so adds < 2 ms to a PAM transaction beyond the daemon's own time (state on tmpfs): {adds} µs (PAM transaction p50 {} µs − daemon exchange p50 {} µs)",
                verdict(adds < 2000),
                p.p50_us,
                k.p50_us
            );
        }
    }
    let ns: Vec<usize> = a.users.clone();
    let ga = Module::GoogleAuthenticator;
    let v = Some(Mode::Valid);
    let wr = Some(Mode::Wrong);
    let variants: Vec<Module> = Module::OTPGATES
        .into_iter()
        .filter(|m| rows.iter().any(|r| r.module == *m))
        .collect();
    for &n in &ns {
        // A peer that refused valid codes it should have accepted (broken
        // setup) would make any comparison with it a win.
        for w in [1, 4] {
            if let Some(g) = find(rows, ga, n, w, v) {
                if (g.ok as f64) < g.attempts as f64 * 0.99 {
                    println!(
                        "  [VOID  ] N={n}, {w} worker(s): google-authenticator accepted only {:.1} % of the valid codes: its setup is broken, the comparisons with it mean nothing",
                        pct(g.ok, g.attempts)
                    );
                }
            }
        }
        for &o in &variants {
            let name = o.name();
            if let (Some(x), Some(g)) = (find(rows, o, n, 1, v), find(rows, ga, n, 1, v)) {
                println!(
                    "  [{}] {name}, N={n}: valid-code throughput with 1 worker ≥ google-authenticator's: {:.0}/s vs {:.0}/s ({:.2}×)",
                    verdict(x.ok_rate() >= g.ok_rate()),
                    x.ok_rate(),
                    g.ok_rate(),
                    x.ok_rate() / g.ok_rate()
                );
            }
            if let (Some(x), Some(g)) = (find(rows, o, n, 4, v), find(rows, ga, n, 4, v)) {
                println!(
                    "  [{}] {name}, N={n}: valid-code throughput with 4 workers ≥ 1.5× google-authenticator's: {:.0}/s vs {:.0}/s ({:.2}×)",
                    verdict(x.ok_rate() >= 1.5 * g.ok_rate()),
                    x.ok_rate(),
                    g.ok_rate(),
                    x.ok_rate() / g.ok_rate()
                );
            }
            for mode in [v, wr] {
                if let Some(x) = find(rows, o, n, 4, mode) {
                    println!(
                        "  [{}] {name}, N={n}: p99 with 4 workers < 5 ms ({} codes): {} µs",
                        verdict(x.p99 < 5000),
                        mode.map_or("-", |m| m.name()),
                        x.p99
                    );
                }
            }
            for &w in &a.workers {
                if let Some(x) = find(rows, o, n, w, v) {
                    let (d, b) = x.cpu_us.unwrap_or((0.0, 0.0));
                    let db = x
                        .db_cpu_us
                        .map_or(String::new(), |p| format!(" + postgres {p:.0}"));
                    println!(
                        "  [{}] {name}, N={n}, {w} worker(s): CPU per valid login ≤ 0.8 ms (module and libpam + otpgated + bus{}): {:.0} µs ({:.0} + {d:.0} + {b:.0}{db})",
                        verdict(total_cpu(x) <= 800.0),
                        if x.db_cpu_us.is_some() { " + postgres" } else { "" },
                        total_cpu(x),
                        x.client_cpu_us,
                    );
                }
            }
            for &w in &a.workers {
                if let (Some(r), Some(x)) = (find(rows, o, n, w, v), find(rows, o, n, w, wr)) {
                    // Both answers are one durable save; 5 % is left for the
                    // noise of a shared disk.
                    println!(
                        "  [{}] {name}, N={n}, {w} worker(s): a wrong code costs no more than a right one (p50, 5 % noise allowance): {} µs vs {} µs; {:.0}/s vs {:.0}/s; CPU {:.0} vs {:.0} µs",
                        verdict(x.p50 as f64 <= r.p50 as f64 * 1.05),
                        x.p50,
                        r.p50,
                        x.rate,
                        r.rate,
                        total_cpu(x),
                        total_cpu(r),
                    );
                }
            }
        }
        for &w in &a.workers {
            let fl = Module::OtpgateFleet;
            for mode in [v, wr] {
                let (Some(f), Some(l)) = (
                    find(rows, fl, n, w, mode),
                    find(rows, Module::Otpgate, n, w, mode),
                ) else {
                    continue;
                };
                let ratio = f.p50 as f64 / l.p50.max(1) as f64;
                // The target is on logins (valid codes); the wrong-code
                // line is for the record.
                let label = if mode == v {
                    verdict(ratio <= 2.0)
                } else {
                    "info  "
                };
                println!(
                    "  [{label}] {}, N={n}, {w} worker(s): fleet login p50 ≤ 2 × local p50 (otpgate (socket), same workers, {} codes): {} µs vs {} µs ({ratio:.2}×); p99 {} vs {} µs; {:.0}/s vs {:.0}/s; CPU per attempt {:.0} µs (postgres {:.0}) vs {:.0} µs",
                    fl.name(),
                    mode.map_or("-", |m| m.name()),
                    f.p50,
                    l.p50,
                    f.p99,
                    l.p99,
                    f.ok_rate(),
                    l.ok_rate(),
                    total_cpu(f),
                    f.db_cpu_us.unwrap_or(0.0),
                    total_cpu(l),
                );
            }
        }
        if let Some((_, e)) = extra.iter().find(|(m, _)| *m == n) {
            if n >= 100_000 {
                println!(
                    "  [{}] N={n}: otpgated RSS < 64 MiB: {} KiB idle after the load (peak {} KiB)",
                    verdict(e.rss_idle_after_load_kib.max(e.rss_after_enrol_kib) < 64 * 1024),
                    e.rss_idle_after_load_kib,
                    e.rss_peak_kib
                );
            }
            if n <= 1_000 {
                println!(
                    "  [{}] N={n}: otpgated idle RSS < 16 MiB: {} KiB after the load, {} KiB after enrolment",
                    verdict(e.rss_idle_after_load_kib.max(e.rss_after_enrol_kib) < 16 * 1024),
                    e.rss_idle_after_load_kib,
                    e.rss_after_enrol_kib
                );
            }
            if let (Some(adds), Some(p), Some(d)) =
                (module_adds(&e.direct), e.direct.pam, e.direct.kept)
            {
                println!(
                    "  [{}] N={n}: pam_otpgate.so adds < 2 ms to a PAM transaction beyond the daemon's own time (state on disk): {adds} µs (PAM transaction p50 {} µs − daemon exchange p50 {} µs)",
                    verdict(adds < 2000),
                    p.p50_us,
                    d.p50_us
                );
            }
        }
    }
    let (lo, hi) = (ns.iter().min(), ns.iter().max());
    if hi.is_some_and(|&h| h < 100_000) {
        println!(
            "  [not run] cost per verification flat to 100,000 users: this run stops at {} users (bench/README.md, \"Running it\", says why and how to run it)",
            hi.copied().unwrap_or(0)
        );
    }
    if let (Some(&lo), Some(&hi)) = (lo, hi) {
        if lo != hi {
            for &o in &variants {
                let (Some(a1), Some(b1)) = (find(rows, o, lo, 1, v), find(rows, o, hi, 1, v))
                else {
                    continue;
                };
                // Cost per verification: the median time of one login and
                // the CPU per login (throughput with one worker is printed
                // too, but with 1,000 users a row has only 1,000 logins per
                // step, and a few slow flushes move it more than the number
                // of users does).
                let lat = b1.p50 as f64 / a1.p50.max(1) as f64 - 1.0;
                let cpu = total_cpu(b1) / total_cpu(a1).max(1.0) - 1.0;
                println!(
                    "  [{}] {}: cost per verification flat from {lo} to {hi} users (within 20 %): p50 {} → {} µs ({:+.1} %), CPU per login {:.0} → {:.0} µs ({:+.1} %); throughput {:.0}/s → {:.0}/s",
                    verdict(lat.abs() <= 0.20 && cpu.abs() <= 0.20),
                    o.name(),
                    a1.p50,
                    b1.p50,
                    lat * 100.0,
                    total_cpu(a1),
                    total_cpu(b1),
                    cpu * 100.0,
                    a1.rate,
                    b1.rate
                );
            }
            if let (Some(a1), Some(b1)) = (
                find(rows, Module::PamOath, lo, 1, v),
                find(rows, Module::PamOath, hi, 1, v),
            ) {
                println!(
                    "  [info  ] pam_oath from {lo} to {hi} users (rewrites its whole usersfile per success): {:.0}/s → {:.0}/s, p50 {} → {} µs, client CPU {:.0} → {:.0} µs per login",
                    a1.rate, b1.rate, a1.p50, b1.p50, a1.client_cpu_us, b1.client_cpu_us
                );
            }
        }
    }
}
