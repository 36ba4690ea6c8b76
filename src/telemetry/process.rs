//! The standard `process_*` metrics (CPU seconds, resident and virtual memory, open and
//! maximum file descriptors, start time), read from `/proc/self` on each scrape. Linux only:
//! elsewhere the files are missing and the families are left out rather than shown as 0.
//! Reading procfs never waits on a disk; the admin listener still renders off the reactor.

use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, EncodeMetric};
use prometheus_client::metrics::counter::ConstCounter;
use prometheus_client::metrics::gauge::ConstGauge;

/// Clock ticks per second of `/proc/[pid]/stat` times: the kernel's USER_HZ, 100 on every
/// architecture Linux runs on today (reading it would need `sysconf`, i.e. `unsafe`).
const TICKS_PER_SECOND: f64 = 100.0;

/// Reads the process figures on each scrape.
#[derive(Debug)]
pub(super) struct ProcessCollector;

/// One scrape's figures; `None` where the file could not be read.
#[derive(Debug, Default, PartialEq)]
pub(super) struct ProcessFigures {
    cpu_seconds: Option<f64>,
    start_time_seconds: Option<f64>,
    resident_bytes: Option<f64>,
    virtual_bytes: Option<f64>,
    open_fds: Option<f64>,
    max_fds: Option<f64>,
}

impl ProcessFigures {
    /// The figures of this process now.
    pub(super) fn read() -> Self {
        let stat = std::fs::read_to_string("/proc/self/stat").ok();
        let fields = stat.as_deref().and_then(stat_fields);
        let boot_time = std::fs::read_to_string("/proc/stat")
            .ok()
            .and_then(|s| boot_time(&s));
        let status = std::fs::read_to_string("/proc/self/status").ok();
        let kib = |key: &str| status.as_deref().and_then(|s| status_kib(s, key));
        ProcessFigures {
            cpu_seconds: fields.map(|f| (f.utime + f.stime) as f64 / TICKS_PER_SECOND),
            start_time_seconds: fields
                .zip(boot_time)
                .map(|(f, boot)| boot as f64 + f.start_ticks as f64 / TICKS_PER_SECOND),
            resident_bytes: kib("VmRSS:").map(|k| k as f64 * 1024.0),
            virtual_bytes: kib("VmSize:").map(|k| k as f64 * 1024.0),
            open_fds: std::fs::read_dir("/proc/self/fd")
                .ok()
                .map(|d| d.count() as f64),
            max_fds: std::fs::read_to_string("/proc/self/limits")
                .ok()
                .and_then(|s| max_open_files(&s))
                .map(|n| n as f64),
        }
    }
}

impl Collector for ProcessCollector {
    fn encode(&self, mut encoder: DescriptorEncoder) -> Result<(), std::fmt::Error> {
        let f = ProcessFigures::read();
        if let Some(v) = f.cpu_seconds {
            let m = ConstCounter::new(v);
            let e = encoder.encode_descriptor(
                "process_cpu_seconds",
                "User and system CPU time spent, in seconds",
                None,
                m.metric_type(),
            )?;
            m.encode(e)?;
        }
        let gauges = [
            (
                "process_start_time_seconds",
                "Start time of the process since the Unix epoch, in seconds",
                f.start_time_seconds,
            ),
            (
                "process_resident_memory_bytes",
                "Resident memory size, in bytes",
                f.resident_bytes,
            ),
            (
                "process_virtual_memory_bytes",
                "Virtual memory size, in bytes",
                f.virtual_bytes,
            ),
            ("process_open_fds", "Open file descriptors", f.open_fds),
            (
                "process_max_fds",
                "Maximum number of open file descriptors (soft limit)",
                f.max_fds,
            ),
        ];
        for (name, help, value) in gauges {
            if let Some(v) = value {
                let m = ConstGauge::new(v);
                let e = encoder.encode_descriptor(name, help, None, m.metric_type())?;
                m.encode(e)?;
            }
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy)]
struct StatFields {
    utime: u64,
    stime: u64,
    start_ticks: u64,
}

/// utime (14), stime (15) and starttime (22) of `/proc/[pid]/stat`. The command name (2) may
/// hold spaces and parentheses, so fields are counted after its last `)`.
fn stat_fields(stat: &str) -> Option<StatFields> {
    let (_, rest) = stat.rsplit_once(')')?;
    // `rest` starts at field 3 (state).
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let field = |n: usize| fields.get(n - 3)?.parse::<u64>().ok();
    Some(StatFields {
        utime: field(14)?,
        stime: field(15)?,
        start_ticks: field(22)?,
    })
}

/// `btime` of `/proc/stat`: boot time, seconds since the epoch.
fn boot_time(stat: &str) -> Option<u64> {
    stat.lines()
        .find_map(|l| l.strip_prefix("btime "))
        .and_then(|v| v.trim().parse().ok())
}

/// A `Key:   N kB` line of `/proc/[pid]/status`.
fn status_kib(status: &str, key: &str) -> Option<u64> {
    let line = status.lines().find_map(|l| l.strip_prefix(key))?;
    line.split_whitespace().next()?.parse().ok()
}

/// The soft limit of `Max open files` in `/proc/[pid]/limits`.
fn max_open_files(limits: &str) -> Option<u64> {
    let line = limits
        .lines()
        .find_map(|l| l.strip_prefix("Max open files"))?;
    line.split_whitespace().next()?.parse().ok()
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn stat_fields_are_counted_after_a_command_name_with_spaces_and_parens() {
        let stat = "1234 (my (odd) cmd) S 1 2 3 4 5 6 7 8 9 10 250 50 0 0 20 0 1 0 777 0 0";
        let f = stat_fields(stat).unwrap();
        assert_eq!((f.utime, f.stime, f.start_ticks), (250, 50, 777));
    }

    #[test]
    fn limits_status_and_boot_time_lines_parse() {
        let limits = "Limit                     Soft Limit           Hard Limit           Units\n\
                      Max open files            1024                 524288               files\n";
        assert_eq!(max_open_files(limits), Some(1024));
        assert_eq!(
            status_kib("Name:\tx\nVmRSS:\t  5120 kB\n", "VmRSS:"),
            Some(5120)
        );
        assert_eq!(
            boot_time("cpu 1 2 3\nbtime 1700000000\n"),
            Some(1_700_000_000)
        );
    }

    #[test]
    fn this_process_has_figures() {
        let f = ProcessFigures::read();
        assert!(f.open_fds.unwrap() >= 1.0);
        assert!(f.resident_bytes.unwrap() > 0.0);
        assert!(f.start_time_seconds.unwrap() > 1.6e9);
    }
}
