//! DiskSpace: how full the file systems holding some directories are, as wubot's
//! DiskSpace reported it, measured with `statvfs(2)` instead of parsing `df -k`.
//!
//! For each of `paths` (default `/`) it computes the percentage used as `df` does
//! (used blocks over used plus those available to unprivileged users, rounded up)
//! and, as wubot did, sends a message only when that percentage differs from the last
//! one reported (remembered in the instance's cache), so a steady disk stays quiet.
//!
//! Message fields: `filesystem` (the path as configured), `percent`, `status` (`OK`,
//! or `WARNING` / `CRITICAL` above `warning_percent` / `critical_percent`), for those
//! two a `subject` (`warning: disk use on /home is 93%`), and `size_bytes`,
//! `used_bytes`, `available_bytes`. A path that cannot be measured gives a CRITICAL
//! message naming the error (on every check until it can be measured again).

use std::ffi::CString;
use std::os::unix::ffi::OsStrExt;
use std::path::{Path, PathBuf};
use std::time::{Duration, SystemTime};

use flotilla_config::Diagnostic;
use flotilla_connector::{Connector, ConnectorSection, ConnectorType, decode_section, diagnostic_at};
use flotilla_core::Message;
use serde_json::{Map, Value};

use crate::monitor::{CheckOutcome, Monitor, MonitorConnector, MonitorSettings};

pub(crate) const CONNECTOR_TYPE: ConnectorType = ConnectorType {
    name: "diskspace",
    description: "percent used of file systems, with warning and critical thresholds (wubot's DiskSpace)",
    build,
};

const DEFAULT_WARNING: f64 = 90.0;
const DEFAULT_CRITICAL: f64 = 95.0;
/// The cache key holding the last percentage reported per path.
const REPORTED: &str = "percent";

#[derive(serde::Deserialize)]
#[serde(deny_unknown_fields)]
struct DiskSpaceConfig {
    paths: Option<Vec<String>>,
    warning_percent: Option<f64>,
    critical_percent: Option<f64>,
}

fn build(section: &ConnectorSection<'_>) -> Result<Box<dyn Connector>, Vec<Diagnostic>> {
    let (settings, monitor) = MonitorSettings::from_section(section, Duration::from_secs(15 * 60), |rest| {
        let config: DiskSpaceConfig = decode_section(rest)?;
        let mut errors = Vec::new();
        let warning = config.warning_percent.unwrap_or(DEFAULT_WARNING);
        let critical = config.critical_percent.unwrap_or(DEFAULT_CRITICAL);
        for (key, value) in [("warning_percent", warning), ("critical_percent", critical)] {
            if !(0.0..=100.0).contains(&value) {
                errors.push(diagnostic_at(rest, key, "must be a percentage from 0 to 100"));
            }
        }
        if warning > critical {
            errors.push(diagnostic_at(
                rest,
                "warning_percent",
                format!("{warning} is above critical_percent ({critical}), so WARNING could never show"),
            ));
        }
        let paths = config.paths.unwrap_or_else(|| vec!["/".to_string()]);
        if paths.is_empty() {
            errors.push(diagnostic_at(rest, "paths", "name at least one directory"));
        }
        for (i, path) in paths.iter().enumerate() {
            if path.is_empty() || path.contains('\0') {
                errors.push(diagnostic_at(rest, &format!("paths[{i}]"), "must be a path"));
            }
        }
        if !errors.is_empty() {
            return Err(errors);
        }
        Ok(DiskSpace { paths: paths.into_iter().map(PathBuf::from).collect(), warning, critical })
    })?;
    Ok(Box::new(MonitorConnector { monitor, settings }))
}

/// The DiskSpace monitor.
#[derive(Debug, Clone)]
pub struct DiskSpace {
    pub paths: Vec<PathBuf>,
    pub warning: f64,
    pub critical: f64,
}

/// Sizes of one file system, in bytes.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Usage {
    pub size: u64,
    pub used: u64,
    /// Available to unprivileged users (less than `size - used` by the reserved blocks).
    pub available: u64,
}

impl Usage {
    /// Percentage used, as `df` shows it: used / (used + available), rounded up.
    pub fn percent(&self) -> u64 {
        let total = self.used as u128 + self.available as u128;
        if total == 0 {
            return 0;
        }
        (self.used as u128 * 100).div_ceil(total) as u64
    }
}

/// `statvfs(2)` of the file system holding `path`.
// The field types differ between platforms (u32 or u64), so the casts are needed
// somewhere even where they are not here.
#[allow(clippy::unnecessary_cast)]
pub fn usage(path: &Path) -> std::io::Result<Usage> {
    let c_path = CString::new(path.as_os_str().as_bytes())
        .map_err(|_| std::io::Error::new(std::io::ErrorKind::InvalidInput, "the path contains a NUL byte"))?;
    let mut stats = std::mem::MaybeUninit::<libc::statvfs>::uninit();
    // SAFETY: `c_path` is a valid NUL-terminated string and `stats` points to writable
    // memory of the right type; statvfs fills it completely when it returns 0.
    let rc = unsafe { libc::statvfs(c_path.as_ptr(), stats.as_mut_ptr()) };
    if rc != 0 {
        return Err(std::io::Error::last_os_error());
    }
    // SAFETY: statvfs returned 0, so the structure is initialised.
    let stats = unsafe { stats.assume_init() };
    let fragment = stats.f_frsize as u64;
    let blocks = stats.f_blocks as u64;
    let free = stats.f_bfree as u64;
    let available = stats.f_bavail as u64;
    Ok(Usage {
        size: blocks.saturating_mul(fragment),
        used: blocks.saturating_sub(free).saturating_mul(fragment),
        available: available.saturating_mul(fragment),
    })
}

impl DiskSpace {
    /// The message for one measured path.
    pub fn message(&self, path: &Path, usage: Usage) -> Message {
        let percent = usage.percent();
        let shown = path.display().to_string();
        let mut message = Message::new();
        message.set("filesystem", shown.as_str());
        message.set("percent", percent);
        message.set("size_bytes", usage.size);
        message.set("used_bytes", usage.used);
        message.set("available_bytes", usage.available);
        let level = percent as f64;
        let (status, subject) = if level > self.critical {
            ("CRITICAL", Some(format!("critical: disk use on {shown} is {percent}%")))
        } else if level > self.warning {
            ("WARNING", Some(format!("warning: disk use on {shown} is {percent}%")))
        } else {
            ("OK", None)
        };
        message.set("status", status);
        if let Some(subject) = subject {
            message.set("subject", subject);
        }
        message
    }

    /// The messages for these measurements: for each path whose percentage changed
    /// since the last report, and for each that could not be measured.
    pub fn report(
        &self,
        measured: Vec<(PathBuf, std::io::Result<Usage>)>,
        cache: &mut Map<String, Value>,
    ) -> Vec<Message> {
        let entry = cache.entry(REPORTED).or_insert_with(|| Value::Object(Map::new()));
        if !entry.is_object() {
            *entry = Value::Object(Map::new());
        }
        let Value::Object(reported) = entry else { unreachable!("made an object just above") };
        let mut messages = Vec::new();
        for (path, result) in measured {
            let key = path.display().to_string();
            match result {
                Ok(usage) => {
                    let percent = usage.percent();
                    if reported.get(&key).and_then(Value::as_u64) == Some(percent) {
                        continue;
                    }
                    reported.insert(key, Value::from(percent));
                    messages.push(self.message(&path, usage));
                }
                Err(error) => {
                    // Forget the last figure, so the first good measurement is reported.
                    reported.remove(&key);
                    let mut message =
                        crate::monitor::critical(format!("critical: cannot measure disk use on {key}: {error}"));
                    message.set("filesystem", key);
                    messages.push(message);
                }
            }
        }
        messages
    }
}

#[async_trait::async_trait]
impl Monitor for DiskSpace {
    async fn check(&self, cache: &mut Map<String, Value>, _now: SystemTime) -> anyhow::Result<CheckOutcome> {
        let paths = self.paths.clone();
        // statvfs can block for long on a hung network file system: keep it off the
        // async threads, so the check's timeout still fires.
        let measured = tokio::task::spawn_blocking(move || {
            paths
                .into_iter()
                .map(|path| {
                    let result = usage(&path);
                    (path, result)
                })
                .collect::<Vec<_>>()
        })
        .await?;
        Ok(CheckOutcome { messages: self.report(measured, cache), next_delay: None })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[track_caller]
    fn check_percent(used: u64, available: u64, expect: u64) {
        assert_eq!(Usage { size: used + available, used, available }.percent(), expect, "{used}/{available}");
    }

    #[test]
    fn percent_as_df_rounds_it() {
        check_percent(0, 100, 0);
        check_percent(50, 50, 50);
        check_percent(1, 199, 1); // 0.5% rounds up.
        check_percent(2, 1, 67);
        check_percent(100, 0, 100);
        check_percent(0, 0, 0); // A pseudo file system.
    }

    fn monitor() -> DiskSpace {
        DiskSpace { paths: vec![], warning: 90.0, critical: 95.0 }
    }

    fn at(percent: u64) -> std::io::Result<Usage> {
        Ok(Usage { size: 1000, used: percent * 10, available: 1000 - percent * 10 })
    }

    #[test]
    fn statuses_subjects_and_only_changes() {
        let mut cache = Map::new();
        let disk = monitor();
        let first = disk.report(vec![("/data".into(), at(50)), ("/home".into(), at(93))], &mut cache);
        assert_eq!(first.len(), 2);
        assert_eq!(first[0].get_str("status"), Some("OK"));
        assert_eq!(first[0].get("subject"), None);
        assert_eq!(first[0].get("percent"), Some(&Value::from(50)));
        assert_eq!(first[1].get_str("status"), Some("WARNING"));
        assert_eq!(first[1].get_str("subject"), Some("warning: disk use on /home is 93%"));
        assert_eq!(first[1].get_str("filesystem"), Some("/home"));

        let same = disk.report(vec![("/data".into(), at(50)), ("/home".into(), at(93))], &mut cache);
        assert!(same.is_empty(), "nothing changed: {same:?}");

        let worse = disk.report(vec![("/data".into(), at(50)), ("/home".into(), at(96))], &mut cache);
        assert_eq!(worse.len(), 1);
        assert_eq!(worse[0].get_str("status"), Some("CRITICAL"));
        assert_eq!(worse[0].get_str("subject"), Some("critical: disk use on /home is 96%"));

        let broken =
            disk.report(vec![("/data".into(), Err(std::io::Error::from_raw_os_error(libc::ENOENT)))], &mut cache);
        assert_eq!(broken[0].get_str("status"), Some("CRITICAL"));
        assert!(broken[0].get_str("subject").unwrap().starts_with("critical: cannot measure disk use on /data: "));
        let back = disk.report(vec![("/data".into(), at(50))], &mut cache);
        assert_eq!(back.len(), 1, "reported again after the error");
    }

    #[tokio::test]
    async fn measures_a_real_directory() {
        let dir = tempfile::tempdir().unwrap();
        let disk = DiskSpace {
            paths: vec![dir.path().to_path_buf(), dir.path().join("missing")],
            warning: 100.0,
            critical: 100.0,
        };
        let mut cache = Map::new();
        let outcome = disk.check(&mut cache, SystemTime::now()).await.unwrap();
        assert_eq!(outcome.messages.len(), 2);
        let real = &outcome.messages[0];
        assert_eq!(real.get_str("status"), Some("OK"));
        let size = real.get("size_bytes").and_then(Value::as_u64).unwrap();
        let used = real.get("used_bytes").and_then(Value::as_u64).unwrap();
        assert!(size > 0 && used <= size, "size {size}, used {used}");
        assert_eq!(outcome.messages[1].get_str("status"), Some("CRITICAL"));
        assert!(outcome.messages[1].get_str("subject").unwrap().contains("No such file"));
    }
}
