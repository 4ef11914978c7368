//! What the benchmark prints: a header naming the command, the machine, the server, the
//! tools and the settings; the detailed sequential-read table (every run of every reader,
//! GETs per run, time to first byte); then the summary table of every item measured
//! ([`Summary`]).
//!
//! Only measured samples are ever shown; a reader without samples shows why.

use crate::summary::Summary;
use s3vfs::FsConfig;
use std::fmt;
use std::time::Duration;

/// Bytes as MiB.
pub fn mib(bytes: u64) -> f64 {
    bytes as f64 / (1024.0 * 1024.0)
}

/// Median of `values` (the mean of the middle two for an even count).
pub fn median(values: &[f64]) -> Option<f64> {
    let mut sorted = values.to_vec();
    sorted.sort_by(f64::total_cmp);
    let n = sorted.len();
    match n {
        0 => None,
        _ if n % 2 == 1 => Some(sorted[n / 2]),
        _ => Some((sorted[n / 2 - 1] + sorted[n / 2]) / 2.0),
    }
}

/// Throughput samples of one reader, in MiB/s.
#[derive(Debug)]
pub struct Throughput {
    /// What was read, how.
    pub name: String,
    /// Whether this is the reference the other rows are divided by.
    pub reference: bool,
    /// One rate per run, in MiB/s.
    pub samples: Vec<f64>,
    /// GetObject requests of each run (where counted).
    pub gets: Vec<u64>,
    /// Cores the machine kept busy during each run (see `busy`), where known.
    pub busy: Vec<f64>,
    /// Why the reader stopped, if it failed.
    pub failed: Option<String>,
}

impl Throughput {
    /// A row without samples yet.
    pub fn new(name: String, reference: bool) -> Self {
        Self {
            name,
            reference,
            samples: Vec::new(),
            gets: Vec::new(),
            busy: Vec::new(),
            failed: None,
        }
    }
}

/// Latency samples of one probe.
#[derive(Debug)]
pub struct Latency {
    /// What was timed.
    pub name: String,
    /// One duration per sample.
    pub samples: Vec<Duration>,
}

impl Latency {
    /// A row without samples yet.
    pub fn new(name: String) -> Self {
        Self {
            name,
            samples: Vec::new(),
        }
    }

    fn millis(&self) -> Vec<f64> {
        self.samples
            .iter()
            .map(|d| d.as_secs_f64() * 1000.0)
            .collect()
    }
}

/// The whole output of a run.
#[derive(Debug)]
pub struct Report {
    command: String,
    machine: String,
    server: String,
    size: u64,
    runs: u32,
    ttfb_samples: u32,
    read_ahead: Option<String>,
    /// More header lines: the tools, the selected items, the sizes.
    pub notes: Vec<String>,
    /// The FUSE mount's kernel read-ahead, once mounted.
    pub fuse_read_ahead: Option<String>,
    /// Throughput rows; the first with `reference` set is the reference.
    pub throughput: Vec<Throughput>,
    /// Time-to-first-byte rows; the first is the one the others are divided by.
    pub latency: Vec<Latency>,
    /// One line per figure of the issue's list.
    pub summary: Summary,
}

impl Report {
    /// A report for a run of `size` bytes, `runs` repetitions, against `server`.
    pub fn new(server: &str, size: u64, runs: u32, ttfb_samples: u32) -> Self {
        Self {
            command: command_line(),
            machine: machine(),
            server: server.to_owned(),
            size,
            runs,
            ttfb_samples,
            read_ahead: None,
            notes: Vec::new(),
            fuse_read_ahead: None,
            throughput: Vec::new(),
            latency: Vec::new(),
            summary: Summary::default(),
        }
    }

    /// Records the library's read-ahead settings of the read rows.
    pub fn set_read_ahead(&mut self, config: &FsConfig) {
        self.read_ahead = Some(format!(
            "part {} KiB, first window {} KiB, largest window {} KiB",
            config.read_part_size >> 10,
            config.initial_read_window >> 10,
            config.max_read_window >> 10
        ));
    }

    /// The header lines (also printed at the start, before the measurements).
    pub fn header(&self) -> String {
        let profile = if cfg!(debug_assertions) {
            "DEBUG (numbers not meaningful; use --release)"
        } else {
            "release"
        };
        let mut header = format!(
            "# s3vfs-bench {}\n\
             # command: {}\n\
             # machine: {}\n\
             # build:   {profile}\n\
             # server:  {}\n\
             # object:  {} bytes ({:.0} MiB), random data; {} runs per reader, median shown",
            env!("CARGO_PKG_VERSION"),
            self.command,
            self.machine,
            self.server,
            self.size,
            mib(self.size),
            self.runs,
        );
        for note in &self.notes {
            header.push_str("\n# ");
            header.push_str(note);
        }
        if let Some(read_ahead) = &self.read_ahead {
            header.push_str("\n# s3vfs read-ahead (library, in-process mount): ");
            header.push_str(read_ahead);
        }
        if let Some(fuse) = &self.fuse_read_ahead {
            header.push_str("\n# in-process FUSE mount: ");
            header.push_str(fuse);
        }
        header
    }
}

impl fmt::Display for Report {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "{}", self.header())?;
        writeln!(f, "# load average at the end: {}", load_average())?;
        if !self.throughput.is_empty() {
            writeln!(f)?;
            self.fmt_throughput(f)?;
        }
        writeln!(f)?;
        writeln!(
            f,
            "SUMMARY (ratios are to the reference measured in this run)"
        )?;
        write!(f, "{}", self.summary)
    }
}

impl Report {
    fn fmt_throughput(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let reference = self
            .throughput
            .iter()
            .find(|row| row.reference)
            .and_then(|row| median(&row.samples));
        writeln!(
            f,
            "{:<58} {:>12} {:>8} {:>9} {:>6}   runs (MiB/s)",
            "sequential read of the whole object", "median MiB/s", "vs ref", "GETs/run", "cores"
        )?;
        for row in &self.throughput {
            if let Some(why) = &row.failed {
                writeln!(f, "{:<58} failed: {why}", row.name)?;
                continue;
            }
            let Some(value) = median(&row.samples) else {
                continue;
            };
            let ratio = reference.map_or("-".to_owned(), |r| format!("{:.2}", value / r));
            let runs: Vec<String> = row.samples.iter().map(|s| format!("{s:.0}")).collect();
            let gets: Vec<f64> = row.gets.iter().map(|&g| g as f64).collect();
            let gets = median(&gets).map_or("-".to_owned(), |g| format!("{g:.0}"));
            let busy = crate::busy::show(median(&row.busy));
            writeln!(
                f,
                "{:<58} {value:>12.1} {ratio:>8} {gets:>9} {busy:>6}   {}",
                row.name,
                runs.join(" ")
            )?;
        }
        if !self.latency.is_empty() {
            writeln!(f)?;
            let base = self.latency.first().and_then(|row| median(&row.millis()));
            writeln!(
                f,
                "{:<58} {:>12} {:>8}   min..max ms",
                format!("time to first byte (median of {})", self.ttfb_samples),
                "median ms",
                "vs raw"
            )?;
            for row in &self.latency {
                let millis = row.millis();
                let Some(value) = median(&millis) else {
                    continue;
                };
                let ratio = base.map_or("-".to_owned(), |b| format!("{:.2}", value / b));
                let min = millis.iter().copied().fold(f64::INFINITY, f64::min);
                let max = millis.iter().copied().fold(0.0, f64::max);
                writeln!(
                    f,
                    "{:<58} {value:>12.2} {ratio:>8}   {min:.2}..{max:.2}",
                    row.name
                )?;
            }
        }
        Ok(())
    }
}

/// The command line as typed, quoted for a POSIX shell where needed.
fn command_line() -> String {
    std::env::args()
        .map(|arg| {
            let plain = !arg.is_empty()
                && arg
                    .chars()
                    .all(|c| c.is_ascii_alphanumeric() || "_-./=:,+@%".contains(c));
            if plain {
                arg
            } else {
                format!("'{}'", arg.replace('\'', r"'\''"))
            }
        })
        .collect::<Vec<_>>()
        .join(" ")
}

/// `nproc`, memory, CPU model, kernel and load average, from `/proc` (each "?" when unreadable).
fn machine() -> String {
    let nproc = std::thread::available_parallelism().map_or("?".to_owned(), |n| n.to_string());
    let meminfo = std::fs::read_to_string("/proc/meminfo").unwrap_or_default();
    let memory = meminfo
        .lines()
        .find_map(|l| l.strip_prefix("MemTotal:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
        .map_or("?".to_owned(), |kib| {
            format!("{:.1} GiB", kib as f64 / (1024.0 * 1024.0))
        });
    let cpuinfo = std::fs::read_to_string("/proc/cpuinfo").unwrap_or_default();
    let cpu = cpuinfo
        .lines()
        .find_map(|l| l.strip_prefix("model name"))
        .map_or("?", |v| v.trim_start_matches([' ', '\t', ':']));
    let kernel = std::fs::read_to_string("/proc/sys/kernel/osrelease").unwrap_or_default();
    let kernel = kernel.trim();
    // Other work on the machine skews every figure; the ratios suffer least.
    format!(
        "nproc {nproc}, memory {memory}, cpu {cpu}, linux {kernel}, load average at start {}",
        load_average()
    )
}

/// The 1, 5 and 15 minute load averages, from `/proc/loadavg`.
fn load_average() -> String {
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    let load: Vec<&str> = load.split_whitespace().take(3).collect();
    load.join(" ")
}

/// `1 GiB`, `64 MiB`, or bytes.
pub fn size_name(bytes: u64) -> String {
    if bytes >= 1 << 30 && bytes.is_multiple_of(1 << 30) {
        format!("{} GiB", bytes >> 30)
    } else if bytes >= 1 << 20 && bytes.is_multiple_of(1 << 20) {
        format!("{} MiB", bytes >> 20)
    } else {
        format!("{bytes} B")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn median_of_odd_and_even_counts() {
        assert_eq!(median(&[]), None);
        assert_eq!(median(&[3.0, 1.0, 2.0]), Some(2.0));
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), Some(2.5));
    }

    #[test]
    fn rows_without_samples_are_not_printed() {
        let mut report = Report::new("test", 1 << 20, 1, 1);
        let mut reference = Throughput::new("ref".to_owned(), true);
        reference.samples.push(100.0);
        let mut half = Throughput::new("half".to_owned(), false);
        half.samples.push(50.0);
        report.throughput = vec![reference, half, Throughput::new("never".to_owned(), false)];
        let text = report.to_string();
        assert!(text.contains("0.50"));
        assert!(!text.contains("never"));
    }
}
