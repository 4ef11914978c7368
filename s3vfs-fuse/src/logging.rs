//! Where the `s3vfs` binary's log lines go, decided in one place: [`choose_target`].
//!
//! In the foreground they go to stderr, or to `--log-file`. A mount in the background has
//! no terminal, so without `--log-file` its lines (upload failures among them) go to the
//! systemd journal when it answers, else to syslog (`/dev/log`), else to a file
//! ([`fallback_log_file`]); where they go is said on stderr before the process detaches.
//! `S3VFS_SYSLOG_SOCKET` names another syslog socket, for a syslog daemon listening
//! elsewhere (and for tests): with it set the journal is not tried.

use std::ffi::OsString;
use std::fs::{DirBuilder, File, OpenOptions};
use std::io::{self, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::os::unix::net::UnixDatagram;
use std::path::{Path, PathBuf};
use std::sync::Mutex;
use tracing::{Level, Metadata};
use tracing_appender::rolling::{RollingFileAppender, Rotation};
use tracing_subscriber::fmt::MakeWriter;
use tracing_subscriber::layer::SubscriberExt;
use tracing_subscriber::util::SubscriberInitExt;
use tracing_subscriber::EnvFilter;

/// Log filter when neither `--log-level` nor `RUST_LOG` is given.
const DEFAULT_LOG_FILTER: &str = "warn,s3vfs=info,s3vfs_fuse=info,s3vfs_testkit=info";

/// The environment variable naming a syslog socket to use instead of the journal and
/// [`SYSLOG_SOCKET`].
const SYSLOG_SOCKET_VAR: &str = "S3VFS_SYSLOG_SOCKET";

/// The system's syslog socket.
const SYSLOG_SOCKET: &str = "/dev/log";

/// The name log lines carry in the journal and in syslog.
const IDENTIFIER: &str = "s3vfs";

/// Syslog facility `user` (1), shifted into place for the priority value.
const FACILITY_USER: u8 = 1 << 3;

/// Longest syslog message sent, in bytes; longer lines are cut (a datagram has a limit,
/// and 8 KiB is what common syslog daemons accept).
const MAX_SYSLOG_MESSAGE: usize = 8 * 1024;

/// Where log lines go.
pub(crate) enum LogTarget {
    /// The terminal.
    Stderr,
    /// A file opened for appending.
    File(File),
    /// Daily files in a directory (`--log-directory`), the oldest removed past
    /// [`KEPT_LOG_FILES`].
    Rolling(RollingFileAppender),
    /// The systemd journal.
    Journal(tracing_journald::Layer),
    /// A syslog socket.
    Syslog(SyslogWriter),
    /// Nowhere: a background process for which nothing could be opened.
    Discard,
}

/// What [`choose_target`] may use for a background process without `--log-file`.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(crate) struct LogPlaces {
    /// Whether to try the systemd journal first.
    pub(crate) journal: bool,
    /// The syslog socket to try next.
    pub(crate) syslog_socket: PathBuf,
    /// The file to append to when neither answers; `None` when there is no place for one.
    pub(crate) file: Option<PathBuf>,
}

impl LogPlaces {
    /// The places of this process's environment: the journal and `/dev/log`, unless
    /// [`SYSLOG_SOCKET_VAR`] names a socket (then only that); the file of
    /// [`fallback_log_file`].
    pub(crate) fn from_env() -> Self {
        let custom = std::env::var_os(SYSLOG_SOCKET_VAR).filter(|s| !s.is_empty());
        // SAFETY: geteuid has no preconditions and cannot fail.
        let is_root = unsafe { libc::geteuid() } == 0;
        Self {
            journal: custom.is_none(),
            syslog_socket: custom.map_or_else(|| PathBuf::from(SYSLOG_SOCKET), PathBuf::from),
            file: fallback_log_file(
                std::env::var_os("XDG_STATE_HOME"),
                std::env::var_os("HOME"),
                is_root,
            ),
        }
    }
}

/// The log file of a background mount that has neither journal nor syslog:
/// `$XDG_STATE_HOME/s3vfs/s3vfs.log` when that is set (to an absolute path), else
/// `/var/log/s3vfs.log` for root and `$HOME/.local/state/s3vfs/s3vfs.log` for anyone else.
pub(crate) fn fallback_log_file(
    state_home: Option<OsString>,
    home: Option<OsString>,
    is_root: bool,
) -> Option<PathBuf> {
    let absolute = |dir: Option<OsString>| dir.map(PathBuf::from).filter(|d| d.is_absolute());
    if let Some(state) = absolute(state_home) {
        return Some(state.join("s3vfs").join("s3vfs.log"));
    }
    if is_root {
        return Some(PathBuf::from("/var/log/s3vfs.log"));
    }
    absolute(home).map(|home| home.join(".local/state/s3vfs/s3vfs.log"))
}

/// Daily log files kept in a `--log-directory`: two weeks of a mount that runs around
/// the clock, then the oldest goes.
pub(crate) const KEPT_LOG_FILES: usize = 14;

/// Logs to `dir` (created `0700` if needed: log lines name keys and paths of the bucket),
/// one file a day, `s3vfs.YYYY-MM-DD.log`, at most [`KEPT_LOG_FILES`] kept. Opens today's
/// file at once, so that an unusable directory is reported before the mount starts.
pub(crate) fn rolling_directory(dir: &Path) -> io::Result<RollingFileAppender> {
    DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    RollingFileAppender::builder()
        .rotation(Rotation::DAILY)
        .filename_prefix(IDENTIFIER)
        .filename_suffix("log")
        .max_log_files(KEPT_LOG_FILES)
        .build(dir)
        .map_err(io::Error::other)
}

/// Decides where log lines go: the place given (`--log-file`, `--log-directory`) if any,
/// else stderr in the foreground, else the first of `places` that can be opened. Returns
/// the target and, for a background process without a given place, a sentence for
/// stderr saying where the lines go.
pub(crate) fn choose_target(
    given: Option<LogTarget>,
    background: bool,
    places: &LogPlaces,
) -> (LogTarget, Option<String>) {
    if let Some(target) = given {
        return (target, None);
    }
    if !background {
        return (LogTarget::Stderr, None);
    }
    if places.journal {
        // Sends an empty entry, which fails if nothing listens.
        if let Ok(journal) = tracing_journald::layer() {
            let journal = journal.with_syslog_identifier(IDENTIFIER.to_owned());
            let notice = format!("logging to the system journal (journalctl -t {IDENTIFIER})");
            return (LogTarget::Journal(journal), Some(notice));
        }
    }
    let syslog = SyslogWriter::connect(&places.syslog_socket);
    if let Ok(writer) = syslog {
        let notice = format!(
            "logging to syslog ({}, as {IDENTIFIER})",
            places.syslog_socket.display()
        );
        return (LogTarget::Syslog(writer), Some(notice));
    }
    let Some(path) = &places.file else {
        let notice = "no journal, syslog or log file to write to (no HOME): logs are \
            discarded; give --log-file"
            .to_owned();
        return (LogTarget::Discard, Some(notice));
    };
    match open_private_log(path) {
        Ok(file) => {
            let notice = format!("logging to {}", path.display());
            (LogTarget::File(file), Some(notice))
        }
        Err(err) => {
            let notice = format!(
                "no journal or syslog, and cannot open {}: {err}; logs are discarded, \
                give --log-file",
                path.display()
            );
            (LogTarget::Discard, Some(notice))
        }
    }
}

/// Opens `path` for appending, creating it (0600) and its directory (0700) if needed: log
/// lines name keys and paths of the bucket.
fn open_private_log(path: &Path) -> io::Result<File> {
    if let Some(dir) = path.parent() {
        DirBuilder::new().recursive(true).mode(0o700).create(dir)?;
    }
    OpenOptions::new()
        .create(true)
        .append(true)
        .mode(0o600)
        .open(path)
}

/// Starts logging to `target`; `--log-level` (`level`) wins over `RUST_LOG`.
pub(crate) fn init(level: Option<&str>, target: LogTarget) {
    let filter = match level {
        Some(level) => EnvFilter::new(level),
        None => {
            EnvFilter::try_from_default_env().unwrap_or_else(|_| EnvFilter::new(DEFAULT_LOG_FILTER))
        }
    };
    let fmt = || tracing_subscriber::fmt().with_ansi(false);
    match target {
        LogTarget::Stderr => tracing_subscriber::fmt()
            .with_env_filter(filter)
            .with_writer(io::stderr)
            .init(),
        LogTarget::File(file) => fmt()
            .with_env_filter(filter)
            .with_writer(Mutex::new(file))
            .init(),
        LogTarget::Rolling(files) => fmt().with_env_filter(filter).with_writer(files).init(),
        LogTarget::Journal(journal) => tracing_subscriber::registry()
            .with(filter)
            .with(journal)
            .init(),
        // Syslog stamps the time itself.
        LogTarget::Syslog(writer) => fmt()
            .with_env_filter(filter)
            .without_time()
            .with_writer(writer)
            .init(),
        LogTarget::Discard => {}
    }
}

/// Sends each log line as one datagram to a syslog socket, in the BSD format local
/// daemons read: `<priority>s3vfs[pid]: line` (the daemon adds the time).
#[derive(Debug)]
pub(crate) struct SyslogWriter {
    /// Unconnected, so that a restarted daemon's new socket is found by name.
    socket: UnixDatagram,
    path: PathBuf,
    pid: u32,
}

impl SyslogWriter {
    /// A writer to the socket at `path`, if a syslog daemon listens there.
    pub(crate) fn connect(path: &Path) -> io::Result<Self> {
        // A datagram connect fails when the socket is missing or nobody has it open.
        UnixDatagram::unbound()?.connect(path)?;
        Ok(Self {
            socket: UnixDatagram::unbound()?,
            path: path.to_owned(),
            pid: std::process::id(),
        })
    }

    /// The datagram of one line at `level`.
    fn datagram(&self, level: Level, line: &[u8]) -> Vec<u8> {
        let severity: u8 = match level {
            Level::ERROR => 3,
            Level::WARN => 4,
            Level::INFO => 6,
            Level::DEBUG | Level::TRACE => 7,
        };
        let text = String::from_utf8_lossy(line);
        let text = text.trim_end();
        let text = &text[..text.floor_char_boundary(MAX_SYSLOG_MESSAGE)];
        format!(
            "<{}>{IDENTIFIER}[{}]: {text}",
            FACILITY_USER | severity,
            self.pid
        )
        .into_bytes()
    }
}

impl<'a> MakeWriter<'a> for SyslogWriter {
    type Writer = SyslogLine<'a>;

    fn make_writer(&'a self) -> Self::Writer {
        self.line(Level::INFO)
    }

    fn make_writer_for(&'a self, meta: &Metadata<'_>) -> Self::Writer {
        self.line(*meta.level())
    }
}

impl SyslogWriter {
    fn line(&self, level: Level) -> SyslogLine<'_> {
        SyslogLine {
            writer: self,
            level,
            buf: Vec::new(),
        }
    }
}

/// One log line being written; sent when dropped (the `fmt` layer writes each event
/// whole, then drops its writer).
pub(crate) struct SyslogLine<'a> {
    writer: &'a SyslogWriter,
    level: Level,
    buf: Vec<u8>,
}

impl Write for SyslogLine<'_> {
    fn write(&mut self, data: &[u8]) -> io::Result<usize> {
        self.buf.extend_from_slice(data);
        Ok(data.len())
    }

    fn flush(&mut self) -> io::Result<()> {
        Ok(())
    }
}

impl Drop for SyslogLine<'_> {
    fn drop(&mut self) {
        if self.buf.is_empty() {
            return;
        }
        let datagram = self.writer.datagram(self.level, &self.buf);
        // A line the daemon does not take (it is restarting, its queue is full) is lost:
        // there is nowhere left to report that.
        let _ = self.writer.socket.send_to(&datagram, &self.writer.path);
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::os::unix::fs::PermissionsExt;
    use std::time::Duration;

    fn places(dir: &Path) -> LogPlaces {
        LogPlaces {
            journal: false,
            syslog_socket: dir.join("log"),
            file: Some(dir.join("state/s3vfs/s3vfs.log")),
        }
    }

    fn mode(path: &Path) -> u32 {
        std::fs::metadata(path).unwrap().permissions().mode() & 0o7777
    }

    #[test]
    fn the_fallback_file_follows_xdg_then_root_then_home() {
        let os = |s: &str| Some(OsString::from(s));
        let file = fallback_log_file;
        assert_eq!(
            file(os("/st"), os("/home/u"), true),
            Some("/st/s3vfs/s3vfs.log".into())
        );
        assert_eq!(
            file(None, os("/home/u"), true),
            Some("/var/log/s3vfs.log".into())
        );
        assert_eq!(
            file(os("relative"), os("/home/u"), false),
            Some("/home/u/.local/state/s3vfs/s3vfs.log".into())
        );
        assert_eq!(file(None, None, false), None);
        assert_eq!(file(None, os("relative"), false), None);
    }

    #[test]
    fn a_log_file_or_the_foreground_needs_no_choice() {
        let dir = tempfile::tempdir().unwrap();
        let file = File::create(dir.path().join("given.log")).unwrap();
        let (target, notice) =
            choose_target(Some(LogTarget::File(file)), true, &places(dir.path()));
        assert!(matches!(target, LogTarget::File(_)) && notice.is_none());
        let (target, notice) = choose_target(None, false, &places(dir.path()));
        assert!(matches!(target, LogTarget::Stderr) && notice.is_none());
    }

    #[test]
    fn a_log_directory_gets_dated_files_only_its_owner_can_reach() {
        let dir = tempfile::tempdir().unwrap();
        let logs = dir.path().join("logs");
        let mut files = rolling_directory(&logs).unwrap();
        files.write_all(b"a line\n").unwrap();
        assert_eq!(mode(&logs) & 0o777, 0o700);
        let names: Vec<String> = std::fs::read_dir(&logs)
            .unwrap()
            .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
            .collect();
        assert_eq!(names.len(), 1);
        let date = names[0]
            .strip_prefix("s3vfs.")
            .and_then(|n| n.strip_suffix(".log"))
            .unwrap_or_else(|| panic!("{names:?}"));
        let digits: String = date.chars().filter(|c| *c != '-').collect();
        assert!(date.len() == 10 && digits.len() == 8, "{date}");
        assert!(digits.chars().all(|c| c.is_ascii_digit()), "{date}");
        let text = std::fs::read_to_string(logs.join(&names[0])).unwrap();
        assert_eq!(text, "a line\n");
        // Not a directory: said before anything starts.
        let file = dir.path().join("file");
        std::fs::write(&file, "").unwrap();
        assert!(rolling_directory(&file).is_err());
    }

    #[test]
    fn the_background_logs_to_a_listening_syslog_socket() {
        let dir = tempfile::tempdir().unwrap();
        let places = places(dir.path());
        let daemon = UnixDatagram::bind(&places.syslog_socket).unwrap();
        daemon
            .set_read_timeout(Some(Duration::from_secs(10)))
            .unwrap();
        let (target, notice) = choose_target(None, true, &places);
        let notice = notice.unwrap();
        assert!(
            notice.contains(&places.syslog_socket.display().to_string()),
            "{notice}"
        );
        let LogTarget::Syslog(writer) = target else {
            panic!("not syslog: {notice}");
        };
        let mut line = writer.line(Level::ERROR);
        line.write_all(b"ERROR s3vfs: upload failed key=\"a/b\"\n")
            .unwrap();
        drop(line);
        writer
            .line(Level::INFO)
            .write_all(&[b'x'; 3 * MAX_SYSLOG_MESSAGE])
            .unwrap();
        let mut buf = vec![0; 4 * MAX_SYSLOG_MESSAGE];
        let n = daemon.recv(&mut buf).unwrap();
        let expected = format!(
            "<11>s3vfs[{}]: ERROR s3vfs: upload failed key=\"a/b\"",
            std::process::id()
        );
        assert_eq!(String::from_utf8_lossy(&buf[..n]), expected);
        let n = daemon.recv(&mut buf).unwrap();
        let long = String::from_utf8_lossy(&buf[..n]);
        let (header, text) = long.split_once("]: ").unwrap();
        assert!(header.starts_with("<14>s3vfs["), "{header}");
        assert_eq!(text, "x".repeat(MAX_SYSLOG_MESSAGE), "cut to the maximum");
        assert!(!places.file.unwrap().exists(), "no file made");
    }

    #[test]
    fn without_syslog_the_background_logs_to_a_private_file() {
        let dir = tempfile::tempdir().unwrap();
        let places = places(dir.path());
        // A socket nobody reads any more refuses a connection, like a missing one.
        drop(UnixDatagram::bind(&places.syslog_socket).unwrap());
        let (target, notice) = choose_target(None, true, &places);
        let path = places.file.clone().unwrap();
        assert_eq!(notice.unwrap(), format!("logging to {}", path.display()));
        let LogTarget::File(mut file) = target else {
            panic!("not a file");
        };
        file.write_all(b"a line\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a line\n");
        assert_eq!(mode(&path), 0o600);
        assert_eq!(mode(path.parent().unwrap()), 0o700);
        // Appended to, not replaced, by the next mount.
        let (target, _) = choose_target(None, true, &places);
        let LogTarget::File(mut file) = target else {
            panic!("not a file");
        };
        file.write_all(b"more\n").unwrap();
        assert_eq!(std::fs::read_to_string(&path).unwrap(), "a line\nmore\n");
    }

    #[test]
    fn with_nowhere_to_write_the_logs_are_discarded_and_that_is_said() {
        let dir = tempfile::tempdir().unwrap();
        let mut places = places(dir.path());
        std::fs::write(dir.path().join("state"), b"a file, not a directory").unwrap();
        let (target, notice) = choose_target(None, true, &places);
        assert!(matches!(target, LogTarget::Discard));
        assert!(notice.unwrap().contains("--log-file"));
        places.file = None;
        let (target, notice) = choose_target(None, true, &places);
        assert!(matches!(target, LogTarget::Discard));
        assert!(notice.unwrap().contains("--log-file"));
    }
}
