//! Mounts served by another process, all pointed at the benchmark's endpoint: the `s3vfs`
//! binary built next to this one (`target/release/s3vfs`), and, when installed, `s3fs` and
//! `rclone mount` for comparison.
//!
//! A [`ToolMount`] owns its process and a temporary directory (mountpoint, log, password
//! file, cache). It is unmounted and its process ended on every path: [`ToolMount::unmount`]
//! reports failures, and drop does the same silently. Only the process it started is ever
//! signalled, by its pid.

use crate::endpoint::ChildEndpoint;
use anyhow::{bail, Context, Result};
use std::fs::File;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// How long a mount may take to appear.
const MOUNT_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a process may take to exit after its mount is gone, before SIGTERM/SIGKILL.
const EXIT_TIMEOUT: Duration = Duration::from_secs(10);
/// Lines of a failed tool's log quoted in the error.
const LOG_TAIL_LINES: usize = 6;

/// A program that mounts a bucket.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Tool {
    /// `s3vfs mount`, the binary of `s3vfs-fuse`.
    S3vfs,
    /// `s3fs` (s3fs-fuse).
    S3fs,
    /// `rclone mount`.
    Rclone,
}

impl Tool {
    /// The tools compared with s3vfs, in column order.
    pub const OTHERS: [Tool; 2] = [Tool::S3fs, Tool::Rclone];

    /// Its name in the report.
    pub fn name(self) -> &'static str {
        match self {
            Tool::S3vfs => "s3vfs",
            Tool::S3fs => "s3fs",
            Tool::Rclone => "rclone",
        }
    }

    /// The program to run, or why there is none.
    pub fn program(self) -> std::result::Result<PathBuf, String> {
        match self {
            Tool::S3vfs => {
                let exe = std::env::current_exe().map_err(|e| format!("current_exe: {e}"))?;
                let path = exe.with_file_name("s3vfs");
                if path.is_file() {
                    Ok(path)
                } else {
                    Err(format!(
                        "{} not built (benches/run.sh builds it with the benchmark)",
                        path.display()
                    ))
                }
            }
            Tool::S3fs => which("s3fs").ok_or_else(|| "not installed".to_owned()),
            Tool::Rclone => which("rclone").ok_or_else(|| "not installed".to_owned()),
        }
    }

    /// The program's version line, for the report header.
    pub fn version(self) -> std::result::Result<String, String> {
        let program = self.program()?;
        let out = Command::new(&program)
            .arg("--version")
            .stdin(Stdio::null())
            .output()
            .map_err(|e| format!("{}: {e}", program.display()))?;
        let text = String::from_utf8_lossy(&out.stdout);
        Ok(text.lines().next().unwrap_or("?").trim().to_owned())
    }
}

/// Finds `name` on `PATH`.
pub fn which(name: &str) -> Option<PathBuf> {
    let path = std::env::var_os("PATH")?;
    std::env::split_paths(&path)
        .map(|dir| dir.join(name))
        .find(|candidate| candidate.is_file())
}

/// Whether `s3vfs mount` takes `--memory-budget` (checked in its `--help`).
pub fn s3vfs_has_memory_budget_flag() -> Result<bool> {
    let program = Tool::S3vfs.program().map_err(anyhow::Error::msg)?;
    let out = Command::new(&program)
        .args(["mount", "--help"])
        .stdin(Stdio::null())
        .output()
        .with_context(|| format!("{} mount --help", program.display()))?;
    Ok(String::from_utf8_lossy(&out.stdout).contains("--memory-budget"))
}

/// How a mount is set up, beyond the endpoint.
#[derive(Clone, Debug, Default)]
pub struct Settings {
    /// Mount read-only.
    pub read_only: bool,
    /// s3vfs `--metadata-ttl` (others keep their defaults).
    pub metadata_ttl: Option<Duration>,
    /// s3vfs `--memory-budget`, when the binary has the flag.
    pub memory_budget: Option<u64>,
    /// s3vfs `--max-threads` (FUSE worker threads; `None`: its default).
    pub max_threads: Option<u16>,
    /// More arguments of an s3vfs mount, after the others (`--mount-arg`).
    pub extra_args: Vec<String>,
}

/// A mount served by a process of ours.
pub struct ToolMount {
    tool: Tool,
    child: Option<Child>,
    mountpoint: PathBuf,
    log: PathBuf,
    mounted: bool,
    /// The command that serves it, without secrets.
    pub command: String,
    /// Keeps the mountpoint, log, password file and cache until the end.
    _dir: tempfile::TempDir,
}

impl ToolMount {
    /// Starts `tool` on `endpoint` and waits until the mount is up. Blocking.
    pub fn start(tool: Tool, endpoint: &ChildEndpoint, settings: &Settings) -> Result<ToolMount> {
        let program = tool
            .program()
            .map_err(|why| anyhow::anyhow!("{}: {why}", tool.name()))?;
        let dir = tempfile::Builder::new()
            .prefix(&format!("s3vfs-bench-{}-", tool.name()))
            .tempdir()
            .context("cannot create a temporary directory")?;
        let mountpoint = dir.path().join("mnt");
        std::fs::create_dir(&mountpoint).context("cannot create the mountpoint")?;
        let log = dir.path().join("log");
        let mut command = Command::new(&program);
        // Only what the tool needs: no profile, no CA bundle (rclone refuses an
        // AWS_CA_BUNDLE on a plain-HTTP endpoint), no instance metadata.
        command
            .env_remove("AWS_PROFILE")
            .env_remove("AWS_SESSION_TOKEN")
            .env_remove("AWS_CA_BUNDLE")
            .env("AWS_EC2_METADATA_DISABLED", "true");
        let mnt = mountpoint.to_string_lossy().into_owned();
        let mut args: Vec<String> = Vec::new();
        let mut push = |list: &[&str]| args.extend(list.iter().map(|a| (*a).to_owned()));
        match tool {
            Tool::S3vfs => {
                command
                    .env("AWS_ACCESS_KEY_ID", &endpoint.access_key_id)
                    .env("AWS_SECRET_ACCESS_KEY", &endpoint.secret_access_key)
                    .env("AWS_REGION", &endpoint.region);
                push(&["mount", &endpoint.bucket, &mnt]);
                push(&["--endpoint-url", &endpoint.url, "--force-path-style"]);
                push(&["--region", &endpoint.region, "--foreground"]);
                if settings.read_only {
                    push(&["--read-only"]);
                }
                if let Some(ttl) = settings.metadata_ttl {
                    push(&["--metadata-ttl", &ttl.as_secs_f64().to_string()]);
                }
                if let Some(budget) = settings.memory_budget {
                    push(&["--memory-budget", &budget.to_string()]);
                }
                if let Some(threads) = settings.max_threads {
                    push(&["--max-threads", &threads.to_string()]);
                }
                for arg in &settings.extra_args {
                    push(&[arg]);
                }
            }
            Tool::S3fs => {
                let passwd = dir.path().join("passwd");
                write_private(
                    &passwd,
                    &format!(
                        "{}:{}\n",
                        endpoint.access_key_id, endpoint.secret_access_key
                    ),
                )?;
                push(&[&endpoint.bucket, &mnt, "-f"]);
                push(&["-o", &format!("url={}", endpoint.url)]);
                push(&["-o", "use_path_request_style"]);
                push(&["-o", &format!("endpoint={}", endpoint.region)]);
                // The testkit server answers ListObjects (v1) with NotImplemented.
                push(&["-o", "listobjectsv2"]);
                push(&["-o", &format!("passwd_file={}", passwd.display())]);
                if settings.read_only {
                    push(&["-o", "ro"]);
                }
            }
            Tool::Rclone => {
                // A remote named BENCH configured entirely by environment variables.
                for (name, value) in [
                    ("TYPE", "s3"),
                    ("PROVIDER", "Other"),
                    ("ENDPOINT", endpoint.url.as_str()),
                    ("REGION", endpoint.region.as_str()),
                    ("FORCE_PATH_STYLE", "true"),
                    // The testkit server answers ListObjects (v1) with NotImplemented.
                    ("LIST_VERSION", "2"),
                    ("ACCESS_KEY_ID", endpoint.access_key_id.as_str()),
                    ("SECRET_ACCESS_KEY", endpoint.secret_access_key.as_str()),
                ] {
                    command.env(format!("RCLONE_CONFIG_BENCH_{name}"), value);
                }
                command.env("RCLONE_CONFIG", dir.path().join("rclone.conf"));
                push(&["mount", &format!("BENCH:{}", endpoint.bucket), &mnt]);
                // Upload as soon as a file is closed (the default waits 5 s).
                push(&["--vfs-cache-mode", "writes", "--vfs-write-back", "0s"]);
                push(&["--cache-dir", &dir.path().join("cache").to_string_lossy()]);
                if settings.read_only {
                    push(&["--read-only"]);
                }
            }
        }
        command.args(&args);
        let shown = format!("{} {}", tool.name(), args.join(" "));
        let log_file = File::create(&log).context("cannot create the tool's log")?;
        let child = command
            .stdin(Stdio::null())
            .stdout(log_file.try_clone().context("log file")?)
            .stderr(log_file)
            .spawn()
            .with_context(|| format!("cannot start {}", program.display()))?;
        let mut mount = ToolMount {
            tool,
            child: Some(child),
            mountpoint,
            log,
            mounted: false,
            command: shown,
            _dir: dir,
        };
        mount.wait_until_mounted()?;
        Ok(mount)
    }

    fn wait_until_mounted(&mut self) -> Result<()> {
        let started = Instant::now();
        loop {
            if is_mountpoint(&self.mountpoint)? {
                self.mounted = true;
                // The kernel may list the mount a moment before the daemon answers.
                std::fs::metadata(&self.mountpoint)
                    .with_context(|| format!("{} mounted but stat fails", self.tool.name()))?;
                return Ok(());
            }
            let child = self.child.as_mut().context("no process")?;
            if let Some(status) = child.try_wait().context("waitpid")? {
                self.child = None;
                bail!(
                    "{} exited ({status}) before mounting: {}",
                    self.tool.name(),
                    self.log_tail()
                );
            }
            if started.elapsed() > MOUNT_TIMEOUT {
                bail!(
                    "{} did not mount within {} s: {}",
                    self.tool.name(),
                    MOUNT_TIMEOUT.as_secs(),
                    self.log_tail()
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
    }

    /// Where the bucket is mounted.
    pub fn path(&self) -> &Path {
        &self.mountpoint
    }

    /// The process serving the mount.
    pub fn pid(&self) -> Option<u32> {
        self.child.as_ref().map(Child::id)
    }

    /// The last lines of the tool's log, on one line.
    pub fn log_tail(&self) -> String {
        let text = std::fs::read_to_string(&self.log).unwrap_or_default();
        let lines: Vec<&str> = text.lines().filter(|l| !l.trim().is_empty()).collect();
        let tail = &lines[lines.len().saturating_sub(LOG_TAIL_LINES)..];
        if tail.is_empty() {
            "(no log output)".to_owned()
        } else {
            tail.join(" | ")
        }
    }

    /// Unmounts and waits for the process to exit. Blocking.
    pub fn unmount(mut self) -> Result<()> {
        self.stop()
    }

    fn stop(&mut self) -> Result<()> {
        let mut problems = Vec::new();
        if self.mounted {
            match fusermount(&self.mountpoint) {
                Ok(()) => self.mounted = false,
                Err(err) => problems.push(format!("{err:#}")),
            }
        }
        if let Some(mut child) = self.child.take() {
            if !wait_timeout(&mut child, EXIT_TIMEOUT)? {
                // SAFETY: signalling our own child by its pid; it has not been reaped yet
                // (try_wait returned None), so the pid is still ours.
                unsafe { libc::kill(child.id() as libc::pid_t, libc::SIGTERM) };
                if !wait_timeout(&mut child, EXIT_TIMEOUT)? {
                    let _ = child.kill();
                    let _ = child.wait();
                    problems.push(format!("{} had to be killed", self.tool.name()));
                }
            }
        }
        if self.mounted && is_mountpoint(&self.mountpoint).unwrap_or(false) {
            // The process is gone; a lazy unmount detaches what is left.
            let _ = Command::new(fusermount_program())
                .args(["-u", "-z"])
                .arg(&self.mountpoint)
                .status();
        }
        self.mounted = false;
        if problems.is_empty() {
            Ok(())
        } else {
            bail!(
                "unmounting {}: {}",
                self.mountpoint.display(),
                problems.join("; ")
            )
        }
    }
}

impl Drop for ToolMount {
    fn drop(&mut self) {
        if let Err(err) = self.stop() {
            eprintln!("warning: {err:#}");
        }
    }
}

fn write_private(path: &Path, text: &str) -> Result<()> {
    use std::io::Write;
    use std::os::unix::fs::OpenOptionsExt;
    let mut file = std::fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .with_context(|| format!("cannot create {}", path.display()))?;
    file.write_all(text.as_bytes())
        .with_context(|| format!("cannot write {}", path.display()))
}

/// Whether `path` is a mountpoint now (listed in this process's mountinfo).
fn is_mountpoint(path: &Path) -> Result<bool> {
    let info = std::fs::read_to_string("/proc/self/mountinfo").context("cannot read mountinfo")?;
    let wanted = path.to_string_lossy();
    Ok(info
        .lines()
        .filter_map(|line| line.split(' ').nth(4))
        .any(|point| point == wanted))
}

fn fusermount_program() -> &'static str {
    if which("fusermount3").is_some() {
        "fusermount3"
    } else {
        "fusermount"
    }
}

/// `fusermount -u`, retried a few times while the mount is busy.
fn fusermount(path: &Path) -> Result<()> {
    let mut last = String::new();
    for _ in 0..20 {
        let out = Command::new(fusermount_program())
            .arg("-u")
            .arg(path)
            .stdin(Stdio::null())
            .output()
            .context("cannot run fusermount")?;
        if out.status.success() || !is_mountpoint(path)? {
            return Ok(());
        }
        last = String::from_utf8_lossy(&out.stderr).trim().to_owned();
        std::thread::sleep(Duration::from_millis(100));
    }
    bail!("fusermount -u {}: {last}", path.display())
}

/// Waits up to `timeout` for `child` to exit; whether it did.
fn wait_timeout(child: &mut Child, timeout: Duration) -> Result<bool> {
    let started = Instant::now();
    loop {
        if child.try_wait().context("waitpid")?.is_some() {
            return Ok(true);
        }
        if started.elapsed() > timeout {
            return Ok(false);
        }
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// Peak and current resident set size of process `pid` (VmHWM, VmRSS), in bytes.
pub fn memory_of(pid: u32) -> Result<(u64, u64)> {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status"))
        .with_context(|| format!("cannot read /proc/{pid}/status"))?;
    let field = |name: &str| -> Result<u64> {
        status
            .lines()
            .find_map(|l| l.strip_prefix(name))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .map(|kib| kib * 1024)
            .with_context(|| format!("no {name} in /proc/{pid}/status"))
    };
    Ok((field("VmHWM:")?, field("VmRSS:")?))
}
