//! Which CPUs the bench and its built-in server run on.
//!
//! On a small machine a loopback server and the client measured against it share the same
//! cores, and a server that hashes every body (Garage) takes much of them: the slower side
//! is then the CPU, not the client. Users meet S3 on other machines. `--cpus` and
//! `--server-cpus` keep the two apart so a run can show what the client does when the
//! server has CPUs of its own (an external server is pinned where it starts:
//! `S3VFS_SERVER_CPUS` of `scripts/local-s3.sh`).

use anyhow::{bail, Context, Result};
use std::fmt;
use std::str::FromStr;

/// A Linux CPU list such as `1`, `0-3` or `0,2-3`: the CPUs, sorted, each once.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct CpuList(Vec<usize>);

/// Highest CPU number a list may name (the size of the kernel's `cpu_set_t`).
const MAX_CPU: usize = libc::CPU_SETSIZE as usize - 1;

impl FromStr for CpuList {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut cpus = Vec::new();
        for item in text.split(',') {
            let item = item.trim();
            let (first, last) = match item.split_once('-') {
                Some((first, last)) => (first, last),
                None => (item, item),
            };
            let number = |s: &str| {
                s.trim()
                    .parse::<usize>()
                    .ok()
                    .filter(|&n| n <= MAX_CPU)
                    .ok_or_else(|| {
                        format!("`{item}` is not a CPU number or range (0 to {MAX_CPU})")
                    })
            };
            let (first, last) = (number(first)?, number(last)?);
            if first > last {
                return Err(format!("`{item}`: the range ends before it starts"));
            }
            cpus.extend(first..=last);
        }
        cpus.sort_unstable();
        cpus.dedup();
        Ok(Self(cpus))
    }
}

impl fmt::Display for CpuList {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut ranges: Vec<(usize, usize)> = Vec::new();
        for &cpu in &self.0 {
            match ranges.last_mut() {
                Some((_, last)) if *last + 1 == cpu => *last = cpu,
                _ => ranges.push((cpu, cpu)),
            }
        }
        let parts: Vec<String> = ranges
            .iter()
            .map(|&(first, last)| {
                if first == last {
                    first.to_string()
                } else {
                    format!("{first}-{last}")
                }
            })
            .collect();
        f.write_str(&parts.join(","))
    }
}

impl CpuList {
    /// Runs the calling thread on these CPUs only; threads and processes it starts later
    /// inherit that.
    pub fn pin_current_thread(&self) -> Result<()> {
        // SAFETY: `cpu_set_t` is plain data; all zeros is the empty set.
        let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
        for &cpu in &self.0 {
            // SAFETY: `cpu` is at most MAX_CPU (checked when parsed), within the set.
            unsafe { libc::CPU_SET(cpu, &mut set) };
        }
        // SAFETY: pid 0 is the calling thread; `set` lives across the call.
        let rc = unsafe { libc::sched_setaffinity(0, std::mem::size_of_val(&set), &set) };
        if rc != 0 {
            return Err(std::io::Error::last_os_error())
                .with_context(|| format!("cannot run on CPUs {self}"));
        }
        Ok(())
    }
}

/// The bench's CPU options.
#[derive(Debug, clap::Args)]
pub struct CpuArgs {
    /// Run the bench, its clients and every mount it starts on these CPUs only (a Linux
    /// CPU list: `1`, `1-3`, `0,2`). With --server-cpus (or an external server started
    /// with S3VFS_SERVER_CPUS) on other CPUs, the server does not take the client's CPU
    /// time, as S3 on other machines does not. Default: not pinned.
    #[arg(long, value_name = "LIST")]
    cpus: Option<CpuList>,
    /// Run the built-in server's threads on these CPUs only (see --cpus). An external
    /// server is pinned where it starts: `S3VFS_SERVER_CPUS=0 scripts/local-s3.sh start ...`.
    #[arg(long, value_name = "LIST")]
    server_cpus: Option<CpuList>,
}

impl CpuArgs {
    /// Pins this thread (before any other starts) to `--cpus`.
    pub fn pin_bench(&self) -> Result<()> {
        match &self.cpus {
            Some(cpus) => cpus.pin_current_thread(),
            None => Ok(()),
        }
    }

    /// The CPUs of the built-in server's threads, if pinned; an error for an external
    /// server, which the bench cannot pin.
    pub fn server_cpus(&self, external: bool) -> Result<Option<CpuList>> {
        match (&self.server_cpus, external) {
            (Some(cpus), true) => bail!(
                "--server-cpus {cpus} pins the built-in server; pin an external one where it \
                 starts (S3VFS_SERVER_CPUS={cpus} scripts/local-s3.sh start ...)"
            ),
            (cpus, _) => Ok(cpus.clone()),
        }
    }

    /// The header line saying where everything ran.
    pub fn describe(&self, external: bool) -> String {
        let bench = match &self.cpus {
            Some(cpus) => format!("bench, its clients and mounts on CPUs {cpus}"),
            None => "bench, its clients and mounts not pinned".to_owned(),
        };
        let server = match (&self.server_cpus, external) {
            (Some(cpus), _) => format!("built-in server on CPUs {cpus}"),
            (None, false) => "built-in server not pinned".to_owned(),
            (None, true) => {
                "external server: as it was started (S3VFS_SERVER_CPUS of scripts/local-s3.sh)"
                    .to_owned()
            }
        };
        format!("cpus: {bench}; {server}")
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn cpu_lists_parse_and_print_in_the_kernel_format() {
        let list: CpuList = "3,0-1,1".parse().unwrap();
        assert_eq!(list, CpuList(vec![0, 1, 3]));
        assert_eq!(list.to_string(), "0-1,3");
        assert_eq!("1".parse::<CpuList>().unwrap().to_string(), "1");
        assert_eq!("2-4".parse::<CpuList>().unwrap().to_string(), "2-4");
    }

    #[test]
    fn bad_cpu_lists_are_refused() {
        for bad in ["", "a", "3-1", "1,", "-1", "99999"] {
            assert!(bad.parse::<CpuList>().is_err(), "{bad:?} parsed");
        }
    }

    #[test]
    fn pinning_to_the_cpu_this_thread_may_use_works() {
        // The first CPU this thread is allowed on: pinning there always succeeds.
        std::thread::spawn(|| {
            // SAFETY: plain data, filled by the kernel.
            let mut set: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            // SAFETY: pid 0 is this thread.
            let rc = unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&set), &mut set) };
            assert_eq!(rc, 0);
            let first = (0..=MAX_CPU)
                .find(|&cpu| unsafe { libc::CPU_ISSET(cpu, &set) })
                .unwrap();
            CpuList(vec![first]).pin_current_thread().unwrap();
            let mut after: libc::cpu_set_t = unsafe { std::mem::zeroed() };
            let rc =
                unsafe { libc::sched_getaffinity(0, std::mem::size_of_val(&after), &mut after) };
            assert_eq!(rc, 0);
            assert_eq!(unsafe { libc::CPU_COUNT(&after) }, 1);
        })
        .join()
        .unwrap();
    }
}
