//! Going to the background the classic way: fork before any thread exists (so before the
//! tokio runtime starts), let the child set up the mount, and keep the parent waiting on a
//! pipe until the child says the mount is up (exit 0) or why it failed (exit 1, the
//! child's message on stderr). The user's shell thus gets its prompt back only when the
//! file system is usable, and sees mount errors as if nothing had forked.

use std::fs::File;
use std::io::{self, Read, Write};
use std::os::fd::{FromRawFd, OwnedFd};
use std::process::ExitCode;

/// Marks a successful start on the pipe; anything else is an error message.
const READY: &[u8] = b"ready\n";

/// The error of a background process whose parent already printed the reason.
#[derive(Debug, thiserror::Error)]
#[error("reported to the parent process")]
pub struct Reported;

/// The child's end of the pipe to the waiting parent.
#[derive(Debug)]
pub struct Readiness {
    pipe: File,
}

impl Readiness {
    /// Tells the parent the mount is up and detaches from the terminal: stdio goes to
    /// `/dev/null` and the working directory to `/`, so the daemon holds neither busy.
    pub fn ready(mut self) {
        // A parent that died cannot be told; the daemon keeps serving anyway.
        let _ = self.pipe.write_all(READY);
        drop(self.pipe);
        if let Err(err) = detach_stdio() {
            tracing::warn!(%err, "could not redirect stdio to /dev/null");
        }
        if let Err(err) = std::env::set_current_dir("/") {
            tracing::warn!(%err, "could not change directory to /");
        }
    }

    /// Tells the parent why the start failed; it prints `message` and exits with 1.
    /// Tells the parent a line to print on the terminal before it exits (the mount goes on).
    pub fn notice(&mut self, message: &str) {
        let line = format!("s3vfs: {}\n", message.replace('\n', " "));
        let _ = self.pipe.write_all(line.as_bytes());
    }

    pub fn failed(mut self, message: &str) {
        let _ = self.pipe.write_all(message.as_bytes());
    }
}

/// Forks. In the parent this waits for the child's word and returns the exit code the
/// parent should end with (`Ok(Err(code))`); in the child it starts a new session and
/// returns the [`Readiness`] to report through (`Ok(Ok(readiness))`).
///
/// Must be called while the process has a single thread.
pub fn fork() -> io::Result<Result<Readiness, ExitCode>> {
    let mut fds = [0; 2];
    // SAFETY: `fds` has room for the two descriptors pipe2 writes.
    if unsafe { libc::pipe2(fds.as_mut_ptr(), libc::O_CLOEXEC) } != 0 {
        return Err(io::Error::last_os_error());
    }
    // SAFETY: pipe2 succeeded, so both are open descriptors owned by nobody else.
    let (read_end, write_end) =
        unsafe { (OwnedFd::from_raw_fd(fds[0]), OwnedFd::from_raw_fd(fds[1])) };
    // SAFETY: the caller guarantees a single-threaded process, so the child may run any code.
    match unsafe { libc::fork() } {
        -1 => Err(io::Error::last_os_error()),
        0 => {
            drop(read_end);
            // SAFETY: setsid has no preconditions; a fresh child is never a group leader.
            unsafe { libc::setsid() };
            Ok(Ok(Readiness {
                pipe: File::from(write_end),
            }))
        }
        child => {
            drop(write_end);
            Ok(Err(wait_for_child(File::from(read_end), child)))
        }
    }
}

/// The parent's side: reads the child's report until the pipe closes.
fn wait_for_child(mut pipe: File, child: libc::pid_t) -> ExitCode {
    let mut report = Vec::new();
    if let Err(err) = pipe.read_to_end(&mut report) {
        eprintln!("s3vfs: lost contact with the background process {child}: {err}");
        return ExitCode::FAILURE;
    }
    if let Some(notices) = report.strip_suffix(READY) {
        if !notices.is_empty() {
            eprint!("{}", String::from_utf8_lossy(notices));
        }
        return ExitCode::SUCCESS;
    }
    if report.is_empty() {
        // The child died without a word (a crash): say how it ended.
        let mut status = 0;
        // SAFETY: `child` is our child process and `status` a valid out pointer.
        unsafe { libc::waitpid(child, &mut status, 0) };
        eprintln!("s3vfs: the background process {child} ended before the mount was ready (wait status {status})");
    } else {
        eprintln!("{}", String::from_utf8_lossy(&report).trim_end());
    }
    ExitCode::FAILURE
}

/// Points stdin, stdout and stderr at `/dev/null`.
fn detach_stdio() -> io::Result<()> {
    use std::os::fd::AsRawFd;
    let null = File::options().read(true).write(true).open("/dev/null")?;
    for fd in [libc::STDIN_FILENO, libc::STDOUT_FILENO, libc::STDERR_FILENO] {
        // SAFETY: both descriptors are open; dup2 replaces `fd` atomically.
        if unsafe { libc::dup2(null.as_raw_fd(), fd) } < 0 {
            return Err(io::Error::last_os_error());
        }
    }
    Ok(())
}
