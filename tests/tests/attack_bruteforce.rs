//! Brute force in figures: how many guesses an attacker
//! gets against one account, from the defaults, for otpgate and for
//! google-authenticator-libpam's defaults; printed, so docs/security.md quotes
//! numbers a test computed. The first test computes them from the real
//! lock schedule (`otpgated::lockout::lock_duration` with the default
//! configuration); the second lets an attacker loose on the real engine
//! over D-Bus for a year of manual-clock time and counts the guesses it
//! actually judged.

mod attack_common;

use std::path::Path;

use attack_common::*;
use otpgate_proto::dict_u64;
use otpgate_tests::inproc::InProcess;
use otpgate_tests::*;
use otpgated::config::Config;
use otpgated::lockout::lock_duration;

const DAY: u64 = 86_400;
const YEAR: u64 = 365 * DAY;
const CODES: f64 = 1_000_000.0;

/// Guesses judged (answered `invalid`) from t = 0 until `horizon`, for an
/// attacker who guesses as soon as the lock allows: `max_failures` guesses,
/// then a lock of `lock_duration(streak)`.
fn otpgate_guesses(c: &Config, horizon: u64) -> u64 {
    let (mut t, mut streak, mut guesses) = (0u64, 0u32, 0u64);
    while t < horizon {
        guesses += u64::from(c.lockout.max_failures);
        streak += 1;
        t += lock_duration(&c.lockout, streak);
    }
    guesses
}

/// google-authenticator-libpam's `RATE_LIMIT n secs`: at most `n` attempts
/// in any `secs` seconds (it keeps the times of the last `n`); no lockout.
fn rate_limited_guesses(n: u64, secs: u64, horizon: u64) -> u64 {
    let mut times: Vec<u64> = Vec::new();
    let mut t = 0;
    let mut guesses = 0;
    while t < horizon {
        times.retain(|&x| x + secs > t);
        if (times.len() as u64) < n {
            times.push(t);
            guesses += 1;
        } else {
            t = times[0] + secs;
        }
    }
    guesses
}

fn p_success(accepted: f64, guesses: u64) -> f64 {
    1.0 - (1.0 - accepted / CODES).powf(guesses as f64)
}

#[test]
fn guesses_per_day_and_per_year_from_the_defaults() {
    let c = Config::parse("", Path::new("defaults.toml")).expect("defaults");
    let l = &c.lockout;
    let accepted = (2 * c.totp.window + 1) as f64;
    let schedule: Vec<u64> = (1..=9).map(|s| lock_duration(l, s)).collect();

    let first_day = otpgate_guesses(&c, DAY);
    // Steady state: once locks reach the cap, one round per cap.
    let steady = u64::from(l.max_failures) * DAY / l.max_duration_secs;
    let year = otpgate_guesses(&c, YEAR);
    let p_year = p_success(accepted, year);
    let expected_years = CODES / accepted / steady as f64 / 365.0;

    // google-authenticator-libpam: RATE_LIMIT 3 30, WINDOW_SIZE 3.
    let ga_day = rate_limited_guesses(3, 30, DAY);
    let ga_year = rate_limited_guesses(3, 30, YEAR);
    let ga_p_year = p_success(3.0, ga_year);
    let ga_expected_days = CODES / 3.0 / ga_day as f64;
    let ga_p_day = p_success(3.0, ga_day);

    eprintln!(
        "attack_bruteforce: otpgate defaults: max_failures {}, duration_secs {}, doubling to \
         max_duration_secs {}, window {} ({} of 10^6 codes accepted at a time)",
        l.max_failures, l.duration_secs, l.max_duration_secs, c.totp.window, accepted
    );
    eprintln!("attack_bruteforce: lock lengths in a row (s): {schedule:?}");
    eprintln!(
        "attack_bruteforce: otpgate: {first_day} guesses on the first day, {steady} per day once \
         locks reach the cap, {year} in a year; chance of a right guess in a year: {:.4} % \
         (1 - (1 - {accepted}/10^6)^{year}); expected time to a right guess: {expected_years:.0} years",
        p_year * 100.0
    );
    eprintln!(
        "attack_bruteforce: google-authenticator-libpam (RATE_LIMIT 3 30, WINDOW_SIZE 3): {ga_day} \
         guesses per day, {ga_year} in a year; chance in a day: {:.2} %, in a year: {:.4} %; \
         expected time to a right guess: {ga_expected_days:.1} days",
        ga_p_day * 100.0,
        ga_p_year * 100.0
    );
    eprintln!(
        "attack_bruteforce: otpgate allows {:.0}x fewer guesses per year",
        ga_year as f64 / year as f64
    );

    // docs/security.md quotes these; a change of defaults must update it.
    assert_eq!(
        schedule,
        [900, 1800, 3600, 7200, 14400, 28800, 57600, 86400, 86400]
    );
    assert_eq!((first_day, steady, year), (35, 5, 1855));
    assert_eq!((ga_day, ga_year), (8640, 3_153_600));
    assert!((p_year - 0.005550).abs() < 0.000005, "{p_year}");
    assert!(ga_p_year > 0.9999, "{ga_p_year}");
}

#[test]
fn the_real_engine_judges_exactly_that_many_guesses_in_a_year() {
    let bus = Bus::start();
    // The real engine, in-process, with a clock the test moves.
    let s = InProcess::start(&bus, "");
    let u = test_user("otpga-brute");
    let e = call(&bus, "Manager", "Enroll", &[&u.name]).ok();
    let secret = e["secret"].as_str().expect("secret").to_string();
    let now = || s.now();
    call(
        &bus,
        "Manager",
        "Confirm",
        &[&u.name, &oathtool_at(&secret, now())],
    )
    .ok();
    let c = Client::connect(&bus.address);
    let start = now();
    let mut rng = Rng::with_seed(7);
    let mut near = (0, Vec::new());
    let (mut judged, mut first_day, mut locked_answers, mut calls) = (0u64, 0u64, 0u64, 0u64);
    while now() < start + YEAR {
        // A guess that is wrong at this moment (the attacker's luck is not
        // what is measured here; the number of guesses judged is).
        let step = now() / PERIOD;
        if near.0 != step {
            near = (step, codes_for_steps(&secret, step - 1, 3));
        }
        let near = &near.1;
        let guess = loop {
            let g = format!("{:06}", rng.below(1_000_000));
            if !near.contains(&g) {
                break g;
            }
        };
        let (word, info) = c.verify(&u.name, &guess).answer();
        calls += 1;
        match word.as_str() {
            "invalid" => {
                judged += 1;
                if now() < start + DAY {
                    first_day += 1;
                }
                if let Some(until) = dict_u64(&info, "locked_until") {
                    s.clock.set(until);
                }
            }
            "locked" => {
                locked_answers += 1;
                s.clock
                    .set(dict_u64(&info, "locked_until").expect("locked_until"));
            }
            other => panic!("{other}: {info:?}"),
        }
    }
    eprintln!(
        "attack_bruteforce engine: an attacker guessing as fast as the lock allows for 365 days \
         of manual-clock time got {judged} guesses judged ({first_day} on the first day) in \
         {calls} calls ({locked_answers} answered locked)"
    );
    assert_eq!((first_day, judged), (35, 1855));
}
