//! The recovery directory: what a file system could not upload, kept instead of thrown
//! away.
//!
//! When the last handle of a file with unsaved changes goes and its upload fails (the
//! store is down, the object changed under it, a part failed), the bytes written are moved
//! here with a manifest: `ID.data` holds the written ranges at their offsets (a sparse
//! file), `ID.json` says which ranges those are, the object version they build on, the
//! file's size and metadata, when and why. [`RecoveryDir::reupload`] rebuilds the file
//! (unwritten ranges from the version it built on, zeros past it) and uploads it
//! conditionally — never over a newer object; [`RecoveryDir::discard`] drops an entry.
//! `s3vfs recover` is the command-line face of both.
//!
//! The directory is the owner's alone (0700, files 0600): it holds bucket data. The data
//! file is complete before its manifest appears (written under a temporary name and
//! renamed), so a listed entry is always whole.

use crate::store::multipart::{self, part_size, MultipartUpload, PartSource};
use crate::store::{
    Backend, ByteRange, ETag, GetRequest, ObjectKey, PutOptions, PutResult, StoreError,
    StoreErrorKind, WriteCondition,
};
use bytes::Bytes;
use serde::{Deserialize, Serialize};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io;
use std::os::unix::fs::{DirBuilderExt, FileExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::{SystemTime, UNIX_EPOCH};

/// Format version of the manifests this code writes.
const MANIFEST_VERSION: u32 = 1;

/// Bytes copied at once between files.
const COPY_CHUNK: u64 = 8 * 1024 * 1024;

/// Name of the default recovery directory under the staging directory.
pub const DEFAULT_DIR_NAME: &str = "s3vfs-recovery";

/// Errors of the recovery directory.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum RecoveryError {
    /// A local file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What went wrong.
        source: io::Error,
    },
    /// A manifest could not be read or written.
    #[error("manifest {path}: {source}")]
    Manifest {
        /// The manifest file.
        path: PathBuf,
        /// What went wrong.
        source: serde_json::Error,
    },
    /// The object changed since the kept file was opened: re-uploading would replace a
    /// newer version. The entry stays.
    #[error("{key} changed since it was opened (now {current:?}, kept data builds on {base:?}): not replaced")]
    Changed {
        /// The object's key.
        key: String,
        /// The version the kept data builds on.
        base: Option<String>,
        /// The version in the store now (`None`: no object).
        current: Option<String>,
    },
    /// The store refused a request.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The entry was kept by a file system of another layout: only that layout can store
    /// it again (a vault's entry, written as a plain object, would overwrite an encrypted
    /// inode with plaintext).
    #[error("{id} was kept by a {layout} file system: re-upload it through that layout")]
    Layout {
        /// The entry.
        id: String,
        /// The layout that kept it.
        layout: Layout,
    },
    /// The entry was kept for another object than the one this file system would store
    /// it as (another vault, or another prefix).
    #[error("{id} was kept for {key}, which is not this file system's")]
    Elsewhere {
        /// The entry.
        id: String,
        /// The object it was kept for.
        key: String,
    },
    /// Storing the kept changes failed; the entry stays.
    #[error("storing the kept changes: {0}")]
    Vfs(#[from] crate::error::VfsError),
    /// The data file does not hold the ranges the manifest names.
    #[error("{path}: shorter than the ranges its manifest names")]
    ShortData {
        /// The data file.
        path: PathBuf,
    },
}

/// The layout of the file system that kept an entry.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
#[non_exhaustive]
pub enum Layout {
    /// One object per file: the entry's key is the file's object.
    #[default]
    Plain,
    /// The vault layout (FORMAT.md): the key is the file's inode object, and the data
    /// is re-stored as chunks by an open vault.
    Vault,
}

impl std::fmt::Display for Layout {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(match self {
            Layout::Plain => "plain",
            Layout::Vault => "vault",
        })
    }
}

/// What became of unsaved changes that could not be stored.
pub(crate) enum Kept {
    /// There were none (or they were stored).
    Nothing,
    /// Kept in the recovery directory, under this manifest.
    At(PathBuf),
    /// Lost: no local copy, or the recovery directory could not take them.
    Lost,
}

fn io_error(path: &Path) -> impl FnOnce(io::Error) -> RecoveryError + '_ {
    move |source| RecoveryError::Io {
        path: path.to_owned(),
        source,
    }
}

/// What a recovery entry records about the file it keeps.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct Manifest {
    /// Format version.
    pub version: u32,
    /// The layout of the file system that kept it (entries written before layouts
    /// existed are plain).
    #[serde(default)]
    pub layout: Layout,
    /// The bucket, where the store knew it.
    pub bucket: Option<String>,
    /// The object's full key.
    pub key: String,
    /// The file's path in the mount.
    pub path: String,
    /// The object version the data builds on (`None`: a new file).
    pub base_etag: Option<String>,
    /// Bytes `[0, base_len)` not written come from that version.
    pub base_len: u64,
    /// The file's size.
    pub size: u64,
    /// The ranges `[start, end)` written, held in the data file at their offsets.
    pub written: Vec<(u64, u64)>,
    /// The user metadata (mode, owner, mtime headers) the upload would have stored.
    pub metadata: BTreeMap<String, String>,
    /// When it was kept, in seconds since the Unix epoch.
    pub kept_at: u64,
    /// When it was kept, RFC 3339.
    pub kept_at_text: String,
    /// Why it could not be uploaded.
    pub error: String,
}

impl Manifest {
    /// A manifest of a file kept now.
    #[allow(clippy::too_many_arguments)]
    pub(crate) fn new(
        bucket: Option<String>,
        key: &ObjectKey,
        path: String,
        base_etag: Option<&ETag>,
        base_len: u64,
        size: u64,
        written: Vec<(u64, u64)>,
        metadata: BTreeMap<String, String>,
        error: String,
    ) -> Self {
        let now = SystemTime::now();
        let kept_at = now.duration_since(UNIX_EPOCH).map_or(0, |d| d.as_secs());
        let kept_at_text = time::OffsetDateTime::from(now)
            .format(&time::format_description::well_known::Rfc3339)
            .unwrap_or_default();
        Self {
            version: MANIFEST_VERSION,
            layout: Layout::Plain,
            bucket,
            key: key.as_str().to_owned(),
            path,
            base_etag: base_etag.map(|e| e.as_str().to_owned()),
            base_len,
            size,
            written,
            metadata,
            kept_at,
            kept_at_text,
            error,
        }
    }
}

impl Manifest {
    /// The same manifest, of an entry kept by a file system of `layout`.
    #[cfg(feature = "vault")]
    pub(crate) fn of_layout(mut self, layout: Layout) -> Self {
        self.layout = layout;
        self
    }
}

/// One kept file.
#[derive(Clone, Debug)]
pub struct RecoveredFile {
    /// The entry's name in the directory.
    pub id: String,
    /// What it keeps.
    pub manifest: Manifest,
    data: PathBuf,
    manifest_path: PathBuf,
}

impl RecoveredFile {
    /// The data file (written ranges at their offsets).
    pub fn data_path(&self) -> &Path {
        &self.data
    }

    /// The written ranges with their bytes, read from the data file whole: for entries
    /// whose ranges are bounded by what a file system held in memory (a vault's), never
    /// for a plain entry's (up to a whole file). Each range is checked against the data
    /// file's length before anything is allocated for it.
    #[cfg(feature = "vault")]
    pub(crate) fn written_bytes(&self) -> Result<Vec<(u64, Bytes)>, RecoveryError> {
        let data = File::open(&self.data).map_err(io_error(&self.data))?;
        let len = data.metadata().map_err(io_error(&self.data))?.len();
        let mut found = Vec::with_capacity(self.manifest.written.len().min(1024));
        for &(start, end) in &self.manifest.written {
            if start > end || end > len {
                return Err(RecoveryError::ShortData {
                    path: self.data.clone(),
                });
            }
            found.push((start, read_range(&data, &self.data, start, end)?));
        }
        Ok(found)
    }
}

/// A multipart upload a mount started and did not finish: its process is gone (killed),
/// so nobody will complete or abort it, and its parts cost storage until aborted.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[non_exhaustive]
pub struct StaleUpload {
    /// The bucket, where the store knew it.
    pub bucket: Option<String>,
    /// The object's full key.
    pub key: String,
    /// The multipart upload's id.
    pub upload_id: String,
    /// The process that started it.
    pub pid: u32,
    /// When it started, in seconds since the Unix epoch.
    pub started: u64,
    #[serde(skip)]
    record: PathBuf,
}

/// The record of a multipart upload under way; removed when dropped (the upload was
/// completed or aborted). A killed process leaves it behind.
#[derive(Debug)]
pub(crate) struct UploadRecord(PathBuf);

impl Drop for UploadRecord {
    fn drop(&mut self) {
        if let Err(err) = fs::remove_file(&self.0) {
            tracing::warn!(record = %self.0.display(), %err, "cannot remove a multipart upload's record");
        }
    }
}

/// Whether process `pid` exists (a process of another user counts).
fn process_alive(pid: u32) -> bool {
    let Ok(pid) = i32::try_from(pid) else {
        return false;
    };
    // SAFETY: kill with signal 0 only checks; no memory is involved.
    let rc = unsafe { libc::kill(pid, 0) };
    rc == 0 || io::Error::last_os_error().raw_os_error() == Some(libc::EPERM)
}

/// A recovery directory.
#[derive(Clone, Debug)]
pub struct RecoveryDir {
    dir: PathBuf,
}

impl RecoveryDir {
    /// Opens (creating it, mode 0700) the recovery directory `dir`.
    pub fn open(dir: impl Into<PathBuf>) -> Result<Self, RecoveryError> {
        let dir = dir.into();
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_error(&dir))?;
        // An existing directory keeps its mode with `create`: make it the owner's.
        fs::set_permissions(&dir, fs::Permissions::from_mode(0o700)).map_err(io_error(&dir))?;
        Ok(Self { dir })
    }

    /// The directory.
    pub fn path(&self) -> &Path {
        &self.dir
    }

    /// Keeps a file: `copy` fills the data file (given open for writing), then the
    /// manifest is written. Returns the manifest's path.
    pub(crate) fn keep(
        &self,
        manifest: &Manifest,
        copy: impl FnOnce(&File) -> io::Result<()>,
    ) -> Result<PathBuf, RecoveryError> {
        let id = format!(
            "{}-{}-{:08x}",
            manifest.kept_at,
            sanitize(&manifest.key),
            rand::random::<u32>()
        );
        let data = self.dir.join(format!("{id}.data"));
        let file = owner_only_file(&data)?;
        copy(&file).map_err(io_error(&data))?;
        file.sync_all().map_err(io_error(&data))?;
        let manifest_path = self.dir.join(format!("{id}.json"));
        let partial = self.dir.join(format!(".{id}.json.partial"));
        let text =
            serde_json::to_vec_pretty(manifest).map_err(|source| RecoveryError::Manifest {
                path: manifest_path.clone(),
                source,
            })?;
        let out = owner_only_file(&partial)?;
        out.write_all_at(&text, 0).map_err(io_error(&partial))?;
        out.sync_all().map_err(io_error(&partial))?;
        fs::rename(&partial, &manifest_path).map_err(io_error(&manifest_path))?;
        Ok(manifest_path)
    }

    /// Records a multipart upload this process starts, until the record is dropped.
    pub(crate) fn record_upload(
        &self,
        bucket: Option<String>,
        key: &ObjectKey,
        upload_id: &str,
    ) -> Result<UploadRecord, RecoveryError> {
        let dir = self.dir.join("uploads");
        fs::DirBuilder::new()
            .recursive(true)
            .mode(0o700)
            .create(&dir)
            .map_err(io_error(&dir))?;
        let record = StaleUpload {
            bucket,
            key: key.as_str().to_owned(),
            upload_id: upload_id.to_owned(),
            pid: std::process::id(),
            started: SystemTime::now()
                .duration_since(UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            record: PathBuf::new(),
        };
        let path = dir.join(format!(
            "{}-{:016x}.json",
            record.pid,
            rand::random::<u64>()
        ));
        let text = serde_json::to_vec(&record).map_err(|source| RecoveryError::Manifest {
            path: path.clone(),
            source,
        })?;
        let file = owner_only_file(&path)?;
        file.write_all_at(&text, 0).map_err(io_error(&path))?;
        Ok(UploadRecord(path))
    }

    /// The multipart uploads recorded by processes that are gone.
    pub fn stale_uploads(&self) -> Result<Vec<StaleUpload>, RecoveryError> {
        let dir = self.dir.join("uploads");
        let entries = match fs::read_dir(&dir) {
            Ok(entries) => entries,
            Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(Vec::new()),
            Err(e) => return Err(io_error(&dir)(e)),
        };
        let mut stale = Vec::new();
        for entry in entries {
            let path = entry.map_err(io_error(&dir))?.path();
            let text = fs::read(&path).map_err(io_error(&path))?;
            let mut upload: StaleUpload =
                serde_json::from_slice(&text).map_err(|source| RecoveryError::Manifest {
                    path: path.clone(),
                    source,
                })?;
            if process_alive(upload.pid) {
                continue;
            }
            upload.record = path;
            stale.push(upload);
        }
        stale.sort_by(|a, b| (a.started, &a.key).cmp(&(b.started, &b.key)));
        Ok(stale)
    }

    /// Aborts a stale multipart upload in `store` and forgets it (an upload the store no
    /// longer knows is forgotten too).
    pub async fn abort_stale(
        &self,
        store: &dyn Backend,
        upload: &StaleUpload,
    ) -> Result<(), RecoveryError> {
        let key = ObjectKey::new(upload.key.clone());
        let id = crate::store::UploadId(upload.upload_id.clone());
        match store.abort_multipart(&key, &id).await {
            Ok(()) => {}
            Err(e) if e.kind == StoreErrorKind::NotFound => {}
            Err(e) => return Err(e.into()),
        }
        fs::remove_file(&upload.record).map_err(io_error(&upload.record))?;
        Ok(())
    }

    /// Every complete entry, oldest first.
    pub fn list(&self) -> Result<Vec<RecoveredFile>, RecoveryError> {
        let mut found = Vec::new();
        for entry in fs::read_dir(&self.dir).map_err(io_error(&self.dir))? {
            let entry = entry.map_err(io_error(&self.dir))?;
            let name = entry.file_name();
            let Some(id) = name.to_str().and_then(|n| n.strip_suffix(".json")) else {
                continue;
            };
            if id.starts_with('.') {
                continue;
            }
            let manifest_path = entry.path();
            let text = fs::read(&manifest_path).map_err(io_error(&manifest_path))?;
            let manifest: Manifest =
                serde_json::from_slice(&text).map_err(|source| RecoveryError::Manifest {
                    path: manifest_path.clone(),
                    source,
                })?;
            found.push(RecoveredFile {
                id: id.to_owned(),
                data: self.dir.join(format!("{id}.data")),
                manifest,
                manifest_path,
            });
        }
        found.sort_by(|a, b| (a.manifest.kept_at, &a.id).cmp(&(b.manifest.kept_at, &b.id)));
        Ok(found)
    }

    /// Drops an entry (its data and manifest).
    pub fn discard(&self, file: &RecoveredFile) -> Result<(), RecoveryError> {
        fs::remove_file(&file.manifest_path).map_err(io_error(&file.manifest_path))?;
        match fs::remove_file(&file.data) {
            Err(e) if e.kind() != io::ErrorKind::NotFound => Err(io_error(&file.data)(e)),
            _ => Ok(()),
        }
    }

    /// Rebuilds `file` and uploads it to its key in `store`, only if the key still holds
    /// the version it builds on (or, for a new file, nothing): never over a newer object.
    /// Parts of `preferred_part_size` (grown to fit the part limit). On success the entry
    /// is discarded.
    pub async fn reupload(
        &self,
        store: Arc<dyn Backend>,
        file: &RecoveredFile,
        preferred_part_size: u64,
    ) -> Result<PutResult, RecoveryError> {
        let m = &file.manifest;
        if m.layout != Layout::Plain {
            return Err(RecoveryError::Layout {
                id: file.id.clone(),
                layout: m.layout,
            });
        }
        let key = ObjectKey::new(m.key.clone());
        let base = m.base_etag.clone().map(ETag::new);
        let current = match store.head(&key).await {
            Ok(head) => Some(head.etag.map(|e| e.as_str().to_owned()).unwrap_or_default()),
            Err(e) if e.kind == StoreErrorKind::NotFound => None,
            Err(e) => return Err(e.into()),
        };
        if current != m.base_etag {
            return Err(RecoveryError::Changed {
                key: m.key.clone(),
                base: m.base_etag.clone(),
                current,
            });
        }
        let rebuilt = self.rebuild(&*store, file, &key, base.as_ref()).await?;
        let condition = match (&base, store.capabilities().conditional_writes) {
            (_, false) => WriteCondition::None,
            (Some(etag), true) => WriteCondition::IfMatch(etag.clone()),
            (None, true) => WriteCondition::IfNoneMatch,
        };
        let options = PutOptions {
            user_metadata: m.metadata.clone(),
            ..PutOptions::default()
        };
        let caps = store.capabilities();
        let part = part_size(&caps, preferred_part_size, m.size)?;
        let done = if m.size <= part {
            let body = read_range(&rebuilt.0, &rebuilt.1, 0, m.size)?;
            store
                .put(
                    &key,
                    body,
                    PutOptions {
                        condition,
                        ..options
                    },
                )
                .await?
        } else {
            let upload = MultipartUpload::begin(Arc::clone(&store), key.clone(), options).await?;
            let mut parts = Vec::new();
            for (number, range) in multipart::part_ranges(m.size, part) {
                let body = read_range(&rebuilt.0, &rebuilt.1, range.start, range.end)?;
                // A failure drops (aborts) the upload.
                parts.push(upload.part(number, PartSource::Bytes(body)).await?);
            }
            upload.complete(parts, condition).await?
        };
        drop(rebuilt);
        self.discard(file)?;
        tracing::info!(key = %key, id = %file.id, "recovered file uploaded");
        Ok(done)
    }

    /// The whole file in a temporary file: the data file's written ranges, the base
    /// version's bytes (pinned to its ETag) below `base_len`, zeros after.
    async fn rebuild(
        &self,
        store: &dyn Backend,
        file: &RecoveredFile,
        key: &ObjectKey,
        base: Option<&ETag>,
    ) -> Result<(File, PathBuf), RecoveryError> {
        let m = &file.manifest;
        let path = self.dir.join(format!(
            ".{}.rebuild-{:08x}",
            file.id,
            rand::random::<u32>()
        ));
        let out = owner_only_file(&path)?;
        // Unlinked at once: the open descriptor is all that is needed.
        fs::remove_file(&path).map_err(io_error(&path))?;
        out.set_len(m.size).map_err(io_error(&path))?;
        let data = File::open(&file.data).map_err(io_error(&file.data))?;
        let mut covered = 0;
        let mut gaps = Vec::new();
        for &(start, end) in &m.written {
            let (start, end) = (start.min(m.size), end.min(m.size));
            if covered < start {
                gaps.push((covered, start));
            }
            copy_range(&data, &out, start, end, &file.data)?;
            covered = covered.max(end);
        }
        gaps.push((covered, m.size));
        for (start, end) in gaps {
            let end = end.min(m.base_len);
            let mut at = start;
            while at < end {
                let to = (at + COPY_CHUNK).min(end);
                let request = GetRequest {
                    key: key.clone(),
                    range: Some(ByteRange::new(at, to)),
                    if_match: base.cloned(),
                };
                let bytes = match store.get(request).await {
                    Ok(body) => body.collect().await?,
                    Err(e) if e.kind == StoreErrorKind::PreconditionFailed => {
                        return Err(RecoveryError::Changed {
                            key: m.key.clone(),
                            base: m.base_etag.clone(),
                            current: None,
                        })
                    }
                    Err(e) => return Err(e.into()),
                };
                if bytes.len() as u64 != to - at {
                    return Err(StoreError::new(
                        StoreErrorKind::Other,
                        format!("{}: short read of the base version", m.key),
                    )
                    .into());
                }
                out.write_all_at(&bytes, at).map_err(io_error(&path))?;
                at = to;
            }
        }
        Ok((out, path))
    }
}

/// A new file readable by its owner only.
fn owner_only_file(path: &Path) -> Result<File, RecoveryError> {
    OpenOptions::new()
        .read(true)
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(io_error(path))
}

/// Copies `[start, end)` of `from` to the same offsets of `to`.
pub(crate) fn copy_range(
    from: &File,
    to: &File,
    start: u64,
    end: u64,
    path: &Path,
) -> Result<(), RecoveryError> {
    let mut buf = vec![0u8; COPY_CHUNK.min(end.saturating_sub(start)) as usize];
    let mut at = start;
    while at < end {
        let n = (end - at).min(COPY_CHUNK) as usize;
        from.read_exact_at(&mut buf[..n], at)
            .map_err(io_error(path))?;
        to.write_all_at(&buf[..n], at).map_err(io_error(path))?;
        at += n as u64;
    }
    Ok(())
}

fn read_range(file: &File, path: &Path, start: u64, end: u64) -> Result<Bytes, RecoveryError> {
    let mut buf = vec![0u8; (end - start) as usize];
    file.read_exact_at(&mut buf, start)
        .map_err(io_error(path))?;
    Ok(Bytes::from(buf))
}

/// A key shortened to characters safe in a file name.
fn sanitize(key: &str) -> String {
    let tail: String = key
        .chars()
        .rev()
        .take(48)
        .collect::<Vec<_>>()
        .into_iter()
        .rev()
        .map(|c| {
            if c.is_ascii_alphanumeric() || c == '.' || c == '-' {
                c
            } else {
                '_'
            }
        })
        .collect();
    if tail.is_empty() {
        "file".to_owned()
    } else {
        tail
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn entries_are_owner_only_and_listed_whole() {
        let tmp = tempfile::tempdir().unwrap();
        let dir = RecoveryDir::open(tmp.path().join("r")).unwrap();
        let mode = fs::metadata(dir.path()).unwrap().permissions().mode();
        assert_eq!(mode & 0o777, 0o700);
        let manifest = Manifest::new(
            Some("b".into()),
            &ObjectKey::new("a/b c.txt"),
            "a/b c.txt".into(),
            None,
            0,
            5,
            vec![(0, 5)],
            BTreeMap::new(),
            "store down".into(),
        );
        let kept = dir
            .keep(&manifest, |f| f.write_all_at(b"hello", 0))
            .unwrap();
        assert_eq!(
            fs::metadata(&kept).unwrap().permissions().mode() & 0o777,
            0o600
        );
        let listed = dir.list().unwrap();
        assert_eq!(listed.len(), 1);
        assert_eq!(listed[0].manifest, manifest);
        assert_eq!(fs::read(listed[0].data_path()).unwrap(), b"hello");
        let data_mode = fs::metadata(listed[0].data_path())
            .unwrap()
            .permissions()
            .mode();
        assert_eq!(data_mode & 0o777, 0o600);
        dir.discard(&listed[0]).unwrap();
        assert!(dir.list().unwrap().is_empty());
    }
}
