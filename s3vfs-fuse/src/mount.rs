//! Mounting: [`MountOptions`] → fuser's options, checks of the mountpoint, and the
//! [`MountGuard`] that keeps the session alive and unmounts on drop.
//!
//! The checks run before anything is mounted so that the common mistakes get a message that
//! says what to do: a dead previous mount ("Transport endpoint is not connected"), a path
//! that is missing, a file, a non-empty directory, or already a mount point.

use crate::adapter::{AdapterConfig, FuseAdapter};
use fuser::{BackgroundSession, MountOption, SessionACL};
use s3vfs::vfs::{ShutdownReport, Vfs};
use std::ffi::OsString;
use std::io;
use std::os::unix::ffi::{OsStrExt, OsStringExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;
use tokio::runtime::Handle as RuntimeHandle;
use tokio::sync::watch;

/// How to mount: kernel and `fusermount3` options, and the adapter's settings.
///
/// ```
/// use s3vfs_fuse::MountOptions;
/// let options = MountOptions::default().with_read_only(true).with_fs_name("s3vfs:photos");
/// assert!(options.read_only && !options.allow_other);
/// ```
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct MountOptions {
    /// Mount read-only (`ro`): the kernel refuses every change with `EROFS` itself.
    pub read_only: bool,
    /// Let every user use the mount (`allow_other`; needs `user_allow_other` in
    /// `/etc/fuse.conf` unless mounted by root).
    pub allow_other: bool,
    /// Let root use the mount besides its owner (`allow_root`).
    pub allow_root: bool,
    /// Have `fusermount3` unmount the file system when this process exits, even if it is
    /// killed (`auto_unmount`). fusermount3 needs `allow_root` for it, which is implied.
    pub auto_unmount: bool,
    /// Source shown in `mount` and `/proc/mounts` (`fsname`), e.g. `s3vfs:bucket/prefix`.
    pub fs_name: String,
    /// File system subtype (`subtype`): shown as `fuse.<subtype>`.
    pub subtype: String,
    /// Let the kernel check permissions against the owner and modes the file system shows
    /// (`default_permissions`). Without it every user that may use the mount may do
    /// everything the file system allows.
    pub default_permissions: bool,
    /// Mount over a directory that has entries (hiding them while mounted). Off by default:
    /// a non-empty mountpoint is usually a mistake.
    pub allow_non_empty: bool,
    /// Threads reading requests from the kernel. Requests are handed to the tokio runtime at
    /// once; a second thread keeps requests flowing while the first one replies.
    pub threads: usize,
    /// Settings of the adapter (read-ahead, write size, listing).
    pub adapter: AdapterConfig,
}

impl Default for MountOptions {
    fn default() -> Self {
        Self {
            read_only: false,
            allow_other: false,
            allow_root: false,
            auto_unmount: false,
            fs_name: "s3vfs".to_owned(),
            subtype: "s3vfs".to_owned(),
            default_permissions: true,
            allow_non_empty: false,
            threads: 2,
            adapter: AdapterConfig::default(),
        }
    }
}

impl MountOptions {
    /// Sets [`read_only`](Self::read_only).
    pub fn with_read_only(mut self, read_only: bool) -> Self {
        self.read_only = read_only;
        self
    }

    /// Sets [`allow_other`](Self::allow_other) and [`allow_root`](Self::allow_root).
    pub fn with_access(mut self, allow_other: bool, allow_root: bool) -> Self {
        self.allow_other = allow_other;
        self.allow_root = allow_root;
        self
    }

    /// Sets [`auto_unmount`](Self::auto_unmount).
    pub fn with_auto_unmount(mut self, auto_unmount: bool) -> Self {
        self.auto_unmount = auto_unmount;
        self
    }

    /// Sets [`fs_name`](Self::fs_name).
    pub fn with_fs_name(mut self, fs_name: impl Into<String>) -> Self {
        self.fs_name = fs_name.into();
        self
    }

    /// Sets [`adapter`](Self::adapter).
    pub fn with_adapter(mut self, adapter: AdapterConfig) -> Self {
        self.adapter = adapter;
        self
    }

    /// fuser's session configuration for these options.
    pub fn fuser_config(&self) -> fuser::Config {
        let mut options = vec![
            MountOption::FSName(self.fs_name.clone()),
            // As a kernel option (fuser passes `Subtype` only to fusermount3), so that the
            // type shows as `fuse.<subtype>` when mounting directly as root too.
            MountOption::CUSTOM(format!("subtype={}", self.subtype)),
            MountOption::NoDev,
            MountOption::NoSuid,
            MountOption::NoAtime,
        ];
        options.push(if self.read_only {
            MountOption::RO
        } else {
            MountOption::RW
        });
        if self.default_permissions {
            options.push(MountOption::DefaultPermissions);
        }
        if self.auto_unmount {
            options.push(MountOption::AutoUnmount);
        }
        let mut config = fuser::Config::default();
        config.mount_options = options;
        config.acl = if self.allow_other {
            SessionACL::All
        } else if self.allow_root || self.auto_unmount {
            // fusermount3 handles auto_unmount only with allow_root or allow_other; root
            // besides the owner is the smaller grant.
            SessionACL::RootAndOwner
        } else {
            SessionACL::Owner
        };
        config.n_threads = Some(self.threads.max(1));
        config
    }
}

/// Why a mount failed.
#[derive(Debug, thiserror::Error)]
pub enum MountError {
    /// The mountpoint does not exist.
    #[error("mountpoint {} does not exist; create it first (mkdir -p)", .0.display())]
    NotFound(PathBuf),
    /// A previous FUSE mount there died without being unmounted.
    #[error(
        "mountpoint {path} is a stale FUSE mount (Transport endpoint is not connected): a \
         previous file system there died without unmounting. Run `fusermount3 -u {path}` \
         (or `umount -l {path}` as root) and mount again",
        path = .0.display()
    )]
    Stale(PathBuf),
    /// The mountpoint is not a directory.
    #[error("mountpoint {} is not a directory", .0.display())]
    NotADirectory(PathBuf),
    /// The mountpoint has entries.
    #[error("mountpoint {} is not empty; mount on an empty directory", .0.display())]
    NotEmpty(PathBuf),
    /// Something is mounted there already.
    #[error(
        "{path} is already a mount point ({fs_type}); unmount it first \
         (`fusermount3 -u {path}` for a FUSE mount)",
        path = .path.display()
    )]
    AlreadyMounted {
        /// The mountpoint.
        path: PathBuf,
        /// Type of what is mounted there, as `/proc/self/mountinfo` names it.
        fs_type: String,
    },
    /// The mountpoint could not be examined.
    #[error("cannot access mountpoint {}: {source}", .path.display())]
    Access {
        /// The mountpoint.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
    /// The kernel or `fusermount3` refused the mount.
    #[error("mounting {} failed: {source}{hint}", .path.display())]
    Mount {
        /// The mountpoint.
        path: PathBuf,
        /// What fuser reported.
        #[source]
        source: io::Error,
        /// What to do about it, when known (starts with a separator, or is empty).
        hint: &'static str,
    },
    /// Unmounting failed.
    #[error("unmounting {} failed: {source}", .path.display())]
    Unmount {
        /// The mountpoint.
        path: PathBuf,
        /// The error.
        #[source]
        source: io::Error,
    },
}

/// Checks that `path` can be mounted on and returns it canonicalised.
///
/// # Errors
///
/// [`MountError::Stale`], [`MountError::NotFound`], [`MountError::NotADirectory`],
/// [`MountError::AlreadyMounted`], [`MountError::NotEmpty`] (unless `allow_non_empty`) or
/// [`MountError::Access`].
pub fn check_mountpoint(path: &Path, allow_non_empty: bool) -> Result<PathBuf, MountError> {
    let classify = |source: io::Error| match source.raw_os_error() {
        Some(libc::ENOTCONN) => MountError::Stale(path.to_owned()),
        Some(libc::ENOENT) => MountError::NotFound(path.to_owned()),
        Some(libc::ENOTDIR) => MountError::NotADirectory(path.to_owned()),
        _ => MountError::Access {
            path: path.to_owned(),
            source,
        },
    };
    let metadata = std::fs::metadata(path).map_err(classify)?;
    if !metadata.is_dir() {
        return Err(MountError::NotADirectory(path.to_owned()));
    }
    let canonical = path.canonicalize().map_err(classify)?;
    // Listing asks the file system itself: a dead FUSE session whose attributes the kernel
    // still caches passes the `metadata` above but fails here with ENOTCONN.
    let mut entries = std::fs::read_dir(&canonical).map_err(classify)?;
    if let Some(fs_type) = mounted_type(&canonical) {
        return Err(MountError::AlreadyMounted {
            path: canonical,
            fs_type,
        });
    }
    if !allow_non_empty && entries.next().is_some() {
        return Err(MountError::NotEmpty(canonical));
    }
    Ok(canonical)
}

/// The type of the file system mounted exactly at `path` (canonical), if any.
fn mounted_type(path: &Path) -> Option<String> {
    let mountinfo = std::fs::read("/proc/self/mountinfo").ok()?;
    mountinfo.split(|&b| b == b'\n').find_map(|line| {
        // Fields: id parent major:minor root mountpoint options [optional…] - type source …
        let fields: Vec<&[u8]> = line.split(|&b| b == b' ').collect();
        let mountpoint = unescape_mountinfo(fields.get(4)?);
        if mountpoint.as_os_str().as_bytes() != path.as_os_str().as_bytes() {
            return None;
        }
        let separator = fields.iter().position(|f| *f == b"-")?;
        let fs_type = fields.get(separator + 1)?;
        Some(String::from_utf8_lossy(fs_type).into_owned())
    })
}

/// Undoes the octal escapes (`\040` for a space) of paths in `/proc/self/mountinfo`.
fn unescape_mountinfo(field: &[u8]) -> PathBuf {
    let mut out = Vec::with_capacity(field.len());
    let mut i = 0;
    while i < field.len() {
        let escaped = field
            .get(i + 1..i + 4)
            .filter(|d| field[i] == b'\\' && d.iter().all(|c| (b'0'..=b'7').contains(c)));
        match escaped {
            Some(digits) => {
                let value = digits
                    .iter()
                    .fold(0u32, |acc, d| acc * 8 + u32::from(d - b'0'));
                out.push(value as u8);
                i += 4;
            }
            None => {
                out.push(field[i]);
                i += 1;
            }
        }
    }
    PathBuf::from(OsString::from_vec(out))
}

/// Mounts `vfs` at `mountpoint` and serves it from a background thread, running the core's
/// calls on `runtime`. The file system stays mounted until the returned guard is dropped
/// (or [`MountGuard::unmount`]ed), or until someone runs `fusermount3 -u`.
///
/// Blocks while the kernel sets the session up (no network I/O).
///
/// # Errors
///
/// Every [`MountError`] of [`check_mountpoint`], or [`MountError::Mount`] when the kernel
/// or `fusermount3` refuse.
pub fn mount<V: Vfs + ?Sized>(
    vfs: Arc<V>,
    mountpoint: &Path,
    options: &MountOptions,
    runtime: RuntimeHandle,
) -> Result<MountGuard, MountError> {
    let mountpoint = check_mountpoint(mountpoint, options.allow_non_empty)?;
    let for_shutdown = Arc::clone(&vfs);
    let adapter = FuseAdapter::new(vfs, runtime, options.adapter.clone());
    let ended = adapter.session_end();
    let session =
        fuser::spawn_mount(adapter, &mountpoint, &options.fuser_config()).map_err(|source| {
            let hint = mount_hint(&source);
            MountError::Mount {
                path: mountpoint.clone(),
                source,
                hint,
            }
        })?;
    tracing::info!(mountpoint = %mountpoint.display(), fs_name = %options.fs_name, "mounted");
    raise_kernel_read_ahead(&mountpoint, options.adapter.max_readahead);
    let shutdown: ShutdownFn = Arc::new(move |timeout| {
        let vfs = Arc::clone(&for_shutdown);
        Box::pin(async move { vfs.shutdown(timeout).await })
    });
    Ok(MountGuard {
        session: Some(session),
        mountpoint,
        ended,
        shutdown,
    })
}

/// Raises the kernel's read-ahead for the mount to what `init` negotiated: the kernel
/// starts FUSE mounts at its default (128 KiB) whatever the file system asks, which caps
/// sequential reads at a few requests in flight. Best effort: needs root, and only logs.
fn raise_kernel_read_ahead(mountpoint: &Path, bytes: u32) {
    use std::os::unix::fs::MetadataExt;
    let Ok(meta) = std::fs::metadata(mountpoint) else {
        return;
    };
    let dev = meta.dev();
    let (major, minor) = (libc::major(dev), libc::minor(dev));
    let knob = format!("/sys/class/bdi/{major}:{minor}/read_ahead_kb");
    match std::fs::write(&knob, format!("{}", bytes / 1024)) {
        Ok(()) => tracing::debug!(knob, kib = bytes / 1024, "kernel read-ahead raised"),
        Err(err) => tracing::debug!(knob, error = %err, "kernel read-ahead left at its default"),
    }
}

/// What to do about a failed mount, when the error says.
fn mount_hint(err: &io::Error) -> &'static str {
    let text = err.to_string();
    if text.contains("user_allow_other") {
        "; add `user_allow_other` to /etc/fuse.conf, or mount without --allow-other/--allow-root"
    } else if err.kind() == io::ErrorKind::NotFound {
        "; is FUSE available? (`modprobe fuse`, package fuse3 for fusermount3)"
    } else if err.raw_os_error() == Some(libc::ENOTCONN) {
        "; the mountpoint is a stale FUSE mount: run `fusermount3 -u` on it first"
    } else {
        ""
    }
}

/// A mounted file system. Dropping it unmounts (lazily, if the mount is busy).
pub struct MountGuard {
    session: Option<BackgroundSession>,
    mountpoint: PathBuf,
    ended: watch::Receiver<bool>,
    shutdown: ShutdownFn,
}

impl std::fmt::Debug for MountGuard {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("MountGuard")
            .field("mountpoint", &self.mountpoint)
            .field("mounted", &self.is_mounted())
            .finish_non_exhaustive()
    }
}

/// [`Vfs::shutdown`] of the mounted file system.
type ShutdownFn = Arc<
    dyn Fn(Duration) -> std::pin::Pin<Box<dyn std::future::Future<Output = ShutdownReport> + Send>>
        + Send
        + Sync,
>;

impl MountGuard {
    /// Where the file system is mounted (canonical path).
    pub fn mountpoint(&self) -> &Path {
        &self.mountpoint
    }

    /// Whether the session still runs (it ends when the file system is unmounted, by this
    /// guard or from outside with `fusermount3 -u`).
    pub fn is_mounted(&self) -> bool {
        !*self.ended.borrow()
    }

    /// Before an unmount on a stop signal: refuses new opens and writes, uploads every
    /// file with unsaved changes within `timeout`, keeps the rest in the recovery
    /// directory, and says so in the log (see [`Vfs::shutdown`]).
    pub async fn save_unsaved(&self, timeout: Duration) -> ShutdownReport {
        let report = (self.shutdown)(timeout).await;
        for (path, manifest) in &report.kept {
            tracing::error!(path, kept = %manifest.display(),
                "not uploaded before the unmount: kept in the recovery directory (`s3vfs recover`)");
        }
        for path in &report.lost {
            tracing::error!(
                path,
                "not uploaded before the unmount, and not kept: its changes are lost"
            );
        }
        tracing::info!(
            uploaded = report.uploaded.len(),
            kept = report.kept.len(),
            lost = report.lost.len(),
            "unsaved files handled before the unmount"
        );
        report
    }

    /// Waits until the session has ended: the file system was unmounted from outside.
    pub async fn unmounted(&self) {
        let mut ended = self.ended.clone();
        // An error means the adapter is gone, which ends the session too.
        let _ = ended.wait_for(|ended| *ended).await;
    }

    /// Unmounts and waits for the session thread. If the mount is busy (an open file, a
    /// shell inside it), it is detached lazily instead: gone from the namespace at once,
    /// served until the last user lets go.
    ///
    /// Blocks: call it from a blocking context (e.g. `tokio::task::spawn_blocking`).
    ///
    /// # Errors
    ///
    /// [`MountError::Unmount`] when even the lazy unmount failed.
    pub fn unmount(mut self) -> Result<(), MountError> {
        self.unmount_inner()
    }

    fn unmount_inner(&mut self) -> Result<(), MountError> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        match session.umount_and_join() {
            Ok(()) => {
                tracing::info!(mountpoint = %self.mountpoint.display(), "unmounted");
                Ok(())
            }
            Err(err) if !self.is_mounted() => {
                // The kernel session ended meanwhile (unmounted from outside).
                tracing::debug!(%err, "session ended while unmounting");
                Ok(())
            }
            Err(err) => {
                tracing::warn!(mountpoint = %self.mountpoint.display(), %err,
                    "unmount failed; detaching lazily");
                lazy_unmount(&self.mountpoint).map_err(|source| MountError::Unmount {
                    path: self.mountpoint.clone(),
                    source,
                })
            }
        }
    }
}

impl Drop for MountGuard {
    fn drop(&mut self) {
        if let Err(err) = self.unmount_inner() {
            tracing::error!(%err, "could not unmount");
        }
    }
}

/// Detaches the mount at `path` now (MNT_DETACH), through `fusermount3 -u -z` when not
/// allowed to call umount2 directly.
fn lazy_unmount(path: &Path) -> io::Result<()> {
    let c_path = std::ffi::CString::new(path.as_os_str().as_bytes())
        .map_err(|e| io::Error::new(io::ErrorKind::InvalidInput, e))?;
    // SAFETY: `c_path` is a valid NUL-terminated string that outlives the call.
    if unsafe { libc::umount2(c_path.as_ptr(), libc::MNT_DETACH) } == 0 {
        return Ok(());
    }
    let err = io::Error::last_os_error();
    if err.raw_os_error() != Some(libc::EPERM) {
        return Err(err);
    }
    let status = std::process::Command::new("fusermount3")
        .args(["-u", "-z", "--"])
        .arg(path)
        .status()?;
    if status.success() {
        Ok(())
    } else {
        Err(io::Error::other(format!(
            "fusermount3 -u -z failed: {status}"
        )))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn mountinfo_escapes_are_undone() {
        assert_eq!(
            unescape_mountinfo(br"/mnt/my\040bucket\134x"),
            PathBuf::from("/mnt/my bucket\\x")
        );
        assert_eq!(unescape_mountinfo(br"/a\0"), PathBuf::from(r"/a\0"));
    }

    #[test]
    fn bad_mountpoints_are_explained() {
        let dir = tempfile::tempdir().unwrap();
        let missing = dir.path().join("missing");
        assert!(matches!(
            check_mountpoint(&missing, false),
            Err(MountError::NotFound(_))
        ));
        let file = dir.path().join("file");
        std::fs::write(&file, "x").unwrap();
        assert!(matches!(
            check_mountpoint(&file, false),
            Err(MountError::NotADirectory(_))
        ));
        assert!(matches!(
            check_mountpoint(dir.path(), false),
            Err(MountError::NotEmpty(_))
        ));
        assert!(check_mountpoint(dir.path(), true).is_ok());
        let empty = dir.path().join("empty");
        std::fs::create_dir(&empty).unwrap();
        assert_eq!(
            check_mountpoint(&empty, false).unwrap(),
            empty.canonicalize().unwrap()
        );
        assert!(matches!(
            check_mountpoint(Path::new("/proc"), true),
            Err(MountError::AlreadyMounted { .. })
        ));
    }

    #[test]
    fn options_become_fuser_options() {
        let config = MountOptions::default()
            .with_read_only(true)
            .with_access(false, true)
            .with_auto_unmount(true)
            .fuser_config();
        assert!(config.mount_options.contains(&MountOption::RO));
        assert!(config.mount_options.contains(&MountOption::AutoUnmount));
        assert!(config
            .mount_options
            .contains(&MountOption::DefaultPermissions));
        assert_eq!(config.acl, SessionACL::RootAndOwner);
    }
}
