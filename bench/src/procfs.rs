//! What /proc says of a process: its memory and its CPU time.

use std::fs;

/// (VmRSS, VmHWM) in KiB of a process.
pub fn rss_kib(pid: i32) -> (u64, u64) {
    let text = fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    let field = |name: &str| {
        text.lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.split_whitespace().next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    (field("VmRSS:"), field("VmHWM:"))
}

/// The fields of /proc/PID/stat after the parenthesised command name (the
/// name may hold spaces and parentheses: the fields after its last ')' are
/// fixed), the state being index 0; numbers only (the state reads 0).
fn stat_fields(pid: i32) -> Vec<i64> {
    let text = fs::read_to_string(format!("/proc/{pid}/stat")).unwrap_or_default();
    let rest = text.rsplit_once(')').map_or("", |(_, r)| r);
    rest.split_whitespace()
        .map(|x| x.parse().unwrap_or(0))
        .collect()
}

fn ticks_to_us(ticks: u64) -> u64 {
    let hz = nix::unistd::sysconf(nix::unistd::SysconfVar::CLK_TCK)
        .ok()
        .flatten()
        .unwrap_or(100) as u64;
    ticks * 1_000_000 / hz.max(1)
}

/// utime + stime of a process, in µs.
pub fn cpu_time_us(pid: i32) -> u64 {
    // utime and stime are the 14th and 15th fields of the whole line.
    let f = stat_fields(pid);
    let t = |i: usize| f.get(i).copied().unwrap_or(0).max(0) as u64;
    ticks_to_us(t(11) + t(12))
}

/// The CPU of a process and of every child it forked, in µs: its own
/// utime + stime, what its children that ended and were reaped had used
/// (cutime + cstime), and the utime + stime of its live children. For a
/// PostgreSQL postmaster that is the whole server: backends, WAL writer,
/// checkpointer, autovacuum workers that came and went. Between two
/// readings, a child that ends moves from the live sum to cutime/cstime,
/// so the difference counts it once.
pub fn cpu_tree_us(pid: i32) -> u64 {
    let f = stat_fields(pid);
    let t = |f: &[i64], i: usize| f.get(i).copied().unwrap_or(0).max(0) as u64;
    let mut ticks = t(&f, 11) + t(&f, 12) + t(&f, 13) + t(&f, 14);
    for c in children_of(pid) {
        let g = stat_fields(c);
        ticks += t(&g, 11) + t(&g, 12) + t(&g, 13) + t(&g, 14);
    }
    ticks_to_us(ticks)
}

/// The direct children of `pid` (the 4th field of their stat is it).
pub fn children_of(pid: i32) -> Vec<i32> {
    let Ok(entries) = fs::read_dir("/proc") else {
        return Vec::new();
    };
    entries
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse::<i32>().ok())
        .filter(|&p| stat_fields(p).get(1).copied() == Some(pid as i64))
        .collect()
}
