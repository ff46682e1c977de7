//! What Linux says about a process: CPU time used (utime + stime from `/proc/<pid>/stat`, all
//! threads) and resident memory (`VmRSS`).

use std::fs;

use crate::error::{Error, Result};

/// User plus system CPU seconds the process has used so far.
pub fn cpu_seconds(pid: u32) -> Result<f64> {
    let stat = read(&format!("/proc/{pid}/stat"))?;
    // The command name is in parentheses and may hold spaces; fields count from after it.
    let after_name = stat
        .rsplit_once(')')
        .map(|(_, rest)| rest)
        .ok_or_else(|| Error::unexpected("parsing /proc stat", "no command name"))?;
    let fields: Vec<&str> = after_name.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the whole line, 12 and 13 after the name.
    let ticks = |index: usize| -> Result<u64> {
        fields
            .get(index)
            .and_then(|field| field.parse().ok())
            .ok_or_else(|| Error::unexpected("parsing /proc stat", "no utime/stime"))
    };
    let total = ticks(11)? + ticks(12)?;
    Ok(total as f64 / clock_ticks_per_second())
}

/// Resident memory in KiB.
pub fn rss_kib(pid: u32) -> Result<u64> {
    let status = read(&format!("/proc/{pid}/status"))?;
    status
        .lines()
        .find_map(|line| line.strip_prefix("VmRSS:"))
        .and_then(|rest| rest.trim().trim_end_matches("kB").trim().parse().ok())
        .ok_or_else(|| Error::unexpected("reading RSS", "no VmRSS line"))
}

/// Online CPUs of the machine, whatever this process's affinity.
pub fn online_cpus() -> u64 {
    // SAFETY: sysconf only reads a system constant.
    let cpus = unsafe { libc::sysconf(libc::_SC_NPROCESSORS_ONLN) };
    u64::try_from(cpus).unwrap_or(0)
}

/// The CPUs this process may run on, as a `taskset`-style list.
pub fn own_affinity() -> String {
    // SAFETY: the set is plain data, zeroed, and sized for the call.
    let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
    let size = std::mem::size_of::<libc::cpu_set_t>();
    // SAFETY: pid 0 is this thread; the set outlives the call.
    if unsafe { libc::sched_getaffinity(0, size, &mut set) } != 0 {
        return "unknown".to_string();
    }
    let cpus: Vec<String> = (0..libc::CPU_SETSIZE as usize)
        // SAFETY: the index is below CPU_SETSIZE.
        .filter(|cpu| unsafe { libc::CPU_ISSET(*cpu, &set) })
        .map(|cpu| cpu.to_string())
        .collect();
    cpus.join(",")
}

/// Timer slack of this thread (inherited by threads it starts), so that sleeping load threads
/// wake close to their schedule instead of up to 50 µs late.
pub fn tighten_timer_slack() {
    // SAFETY: prctl with PR_SET_TIMERSLACK only changes a scheduling parameter of this thread.
    unsafe {
        libc::prctl(libc::PR_SET_TIMERSLACK, 1_000 as libc::c_ulong);
    }
}

/// Lifts this process's open-file limit (inherited by the Envoys it starts) as far as allowed:
/// every identity is a connection, and each needs a descriptor on both ends.
pub fn raise_open_file_limit(wanted: u64) {
    let mut limit = libc::rlimit {
        rlim_cur: 0,
        rlim_max: 0,
    };
    // SAFETY: getrlimit and setrlimit only read and write the struct passed in.
    unsafe {
        if libc::getrlimit(libc::RLIMIT_NOFILE, &mut limit) != 0 {
            return;
        }
        let raised = libc::rlimit {
            rlim_cur: wanted.max(limit.rlim_cur),
            rlim_max: wanted.max(limit.rlim_max),
        };
        // Without privilege the hard limit cannot rise; then take what the hard limit allows.
        if libc::setrlimit(libc::RLIMIT_NOFILE, &raised) != 0 {
            limit.rlim_cur = limit.rlim_max;
            libc::setrlimit(libc::RLIMIT_NOFILE, &limit);
        }
    }
}

fn clock_ticks_per_second() -> f64 {
    // SAFETY: sysconf only reads a system constant.
    let ticks = unsafe { libc::sysconf(libc::_SC_CLK_TCK) };
    if ticks > 0 {
        ticks as f64
    } else {
        100.0
    }
}

fn read(path: &str) -> Result<String> {
    fs::read_to_string(path).map_err(|e| Error::io(format!("reading {path}"), e))
}
