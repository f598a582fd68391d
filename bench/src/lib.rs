//! Shared helpers for the benchmark binaries: timing, percentiles, and running a peer
//! (e.g. `redis-benchmark`) in the same run so every figure is printed beside the
//! peer's as a ratio.

use std::process::Command;

/// The same allocator as the `flotilla` binary, so figures are the product's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
use std::time::Duration;

/// Messages per second.
pub fn rate(count: u64, elapsed: Duration) -> f64 {
    count as f64 / elapsed.as_secs_f64()
}

/// The `p`-th percentile (0–100) of `samples`, which it sorts.
pub fn percentile(samples: &mut [Duration], p: f64) -> Duration {
    if samples.is_empty() {
        return Duration::ZERO;
    }
    samples.sort_unstable();
    let rank = ((p / 100.0) * (samples.len() - 1) as f64).round() as usize;
    samples[rank.min(samples.len() - 1)]
}

/// A human figure: 1234567.0 → "1.23 M".
pub fn human(value: f64) -> String {
    if value >= 1e6 {
        format!("{:.2} M", value / 1e6)
    } else if value >= 1e3 {
        format!("{:.1} k", value / 1e3)
    } else {
        format!("{value:.0}")
    }
}

/// Runs `redis-benchmark` with `args` against 127.0.0.1:`port` and returns the
/// requests per second it reports, or why it could not.
pub fn redis_benchmark(port: u16, args: &[&str]) -> Result<f64, String> {
    let output = Command::new("redis-benchmark")
        .args(["-h", "127.0.0.1", "-p", &port.to_string(), "--csv"])
        .args(args)
        .output()
        .map_err(|e| format!("redis-benchmark not runnable: {e}"))?;
    if !output.status.success() {
        return Err(format!("redis-benchmark failed: {}", String::from_utf8_lossy(&output.stderr)));
    }
    // CSV: "test","rps",... with one line per test.
    let text = String::from_utf8_lossy(&output.stdout);
    text.lines()
        .skip(1)
        .filter_map(|line| line.split(',').nth(1))
        .map(|rps| rps.trim_matches('"').parse::<f64>())
        .next()
        .and_then(Result::ok)
        .ok_or_else(|| format!("could not read redis-benchmark output: {text}"))
}

/// Deletes a key from the Redis at 127.0.0.1:`port` (cleanup after a benchmark).
pub fn redis_del(port: u16, key: &str) {
    let _ = Command::new("redis-cli").args(["-h", "127.0.0.1", "-p", &port.to_string(), "DEL", key]).output();
}

/// Resident set size of this process in KiB (Linux).
pub fn rss_kib(pid: u32) -> Option<u64> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).ok()?;
    status.lines().find(|l| l.starts_with("VmRSS:"))?.split_whitespace().nth(1)?.parse().ok()
}

/// CPU time (user + system) this process has used so far.
pub fn cpu_time() -> std::time::Duration {
    let mut usage = std::mem::MaybeUninit::<libc::rusage>::zeroed();
    // SAFETY: getrusage fills the struct we hand it.
    let usage = unsafe {
        libc::getrusage(libc::RUSAGE_SELF, usage.as_mut_ptr());
        usage.assume_init()
    };
    let micros = |t: libc::timeval| t.tv_sec as u64 * 1_000_000 + t.tv_usec as u64;
    std::time::Duration::from_micros(micros(usage.ru_utime) + micros(usage.ru_stime))
}
