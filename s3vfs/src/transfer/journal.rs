//! The journal of a resumable multipart copy: which upload it is, and which parts are done.
//!
//! One file per copy, named by a hash of its source, destination and method, in the
//! transfer's journal directory (created `0700`; files `0600`). JSON lines: a header (the
//! upload id, the source's ETag and size, the part size), then one line per finished part,
//! appended and synced to disk as each part finishes, so a kill loses at most the parts in
//! flight. A torn last line (a kill during the append) is ignored: that part is copied
//! again. The file is removed when the copy completes or is given up (its upload aborted).

use super::Job;
use crate::store::{CompletedPart, ETag};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};
use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::{self, BufRead, BufReader, Write};
use std::os::unix::fs::{DirBuilderExt, OpenOptionsExt};
use std::path::{Path, PathBuf};
use std::sync::Mutex;

/// Format version of the header.
const VERSION: u32 = 1;

/// What a journal is about; a copy resumes only an upload whose header equals its own.
#[derive(Clone, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct Header {
    /// Format version.
    pub version: u32,
    /// `s3://bucket/key` of the source.
    pub source: String,
    /// `s3://bucket/key` of the destination.
    pub dest: String,
    /// The source's ETag when the copy began (every part is pinned to it).
    pub source_etag: Option<String>,
    /// The source's size.
    pub size: u64,
    /// Bytes per part (the last one shorter).
    pub part_size: u64,
    /// Server-side (UploadPartCopy) or streamed (UploadPart).
    pub server_side: bool,
    /// The multipart upload's id.
    pub upload_id: String,
}

impl Header {
    /// The header of a copy of `job`, as yet without an upload id.
    pub fn new(
        job: &Job,
        source_etag: Option<&ETag>,
        size: u64,
        part_size: u64,
        server_side: bool,
    ) -> Self {
        Self {
            version: VERSION,
            source: job.source.to_string(),
            dest: job.dest.to_string(),
            source_etag: source_etag.map(|t| t.as_str().to_owned()),
            size,
            part_size,
            server_side,
            upload_id: String::new(),
        }
    }

    /// Whether an upload recorded under `self` can be resumed by the copy `wanted` describes
    /// (everything but the upload id equal).
    pub fn resumable_as(&self, wanted: &Header) -> bool {
        Header {
            upload_id: String::new(),
            ..self.clone()
        } == *wanted
    }
}

#[derive(Serialize, Deserialize)]
struct PartLine {
    part: u32,
    etag: String,
}

/// An open journal (see the [module docs](self)).
#[derive(Debug)]
pub struct Journal {
    path: PathBuf,
    file: Mutex<File>,
}

/// The file of the journal of `job` in `dir`.
pub fn path_for(dir: &Path, job: &Job, server_side: bool) -> PathBuf {
    let mut hash = Sha256::new();
    hash.update(job.source.to_string().as_bytes());
    hash.update(b"\n");
    hash.update(job.dest.to_string().as_bytes());
    hash.update(if server_side {
        &b"\nserver-side"[..]
    } else {
        &b"\nstreamed"[..]
    });
    let name = hex::encode(&hash.finalize()[..16]);
    dir.join(format!("{name}.journal"))
}

/// What a journal file holds: its header and the parts it records as done. `None` if
/// there is no file (or its header cannot be read: it is removed, and logged).
pub fn read(path: &Path) -> io::Result<Option<(Header, BTreeMap<u32, ETag>)>> {
    let file = match File::open(path) {
        Ok(file) => file,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    let mut lines = BufReader::new(file).lines();
    let header = match lines
        .next()
        .transpose()?
        .map(|l| serde_json::from_str::<Header>(&l))
    {
        Some(Ok(header)) if header.version == VERSION => header,
        _ => {
            tracing::warn!(path = %path.display(), "unreadable transfer journal; starting over");
            fs::remove_file(path)?;
            return Ok(None);
        }
    };
    let mut done = BTreeMap::new();
    for line in lines {
        // A torn line (killed while appending) is skipped: that part is copied again.
        if let Ok(part) = serde_json::from_str::<PartLine>(&line?) {
            done.insert(part.part, ETag::new(part.etag));
        }
    }
    Ok(Some((header, done)))
}

impl Journal {
    /// Starts the journal `path` with `header` (replacing any file there), synced to disk.
    pub fn create(path: &Path, header: &Header) -> io::Result<Journal> {
        if let Some(dir) = path.parent() {
            fs::DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)?;
        }
        let mut file = OpenOptions::new()
            .write(true)
            .create(true)
            .truncate(true)
            .mode(0o600)
            .open(path)?;
        let mut line = serde_json::to_vec(header).map_err(io::Error::other)?;
        line.push(b'\n');
        file.write_all(&line)?;
        file.sync_all()?;
        Ok(Journal {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// Opens the existing journal `path` to record more parts.
    pub fn reopen(path: &Path) -> io::Result<Journal> {
        let file = OpenOptions::new().append(true).open(path)?;
        Ok(Journal {
            path: path.to_owned(),
            file: Mutex::new(file),
        })
    }

    /// The journal's file.
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Records `part` as done, synced to disk before it returns.
    pub fn record(&self, part: &CompletedPart) -> io::Result<()> {
        let mut line = serde_json::to_vec(&PartLine {
            part: part.part_number,
            etag: part.etag.as_str().to_owned(),
        })
        .map_err(io::Error::other)?;
        line.push(b'\n');
        let mut file = self
            .file
            .lock()
            .unwrap_or_else(std::sync::PoisonError::into_inner);
        file.write_all(&line)?;
        file.sync_data()
    }

    /// Removes the journal (the copy is complete, or given up).
    pub fn remove(self) {
        remove(&self.path);
    }
}

/// Removes the journal file `path`; a failure is logged (a stale journal only costs a
/// HEAD and an abort on the next run).
pub fn remove(path: &Path) {
    if let Err(e) = fs::remove_file(path) {
        if e.kind() != io::ErrorKind::NotFound {
            tracing::warn!(path = %path.display(), error = %e, "could not remove a transfer journal");
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::transfer::ObjectUrl;
    use std::os::unix::fs::PermissionsExt;

    fn job() -> Job {
        Job {
            source: ObjectUrl::new("a", "v.mp4"),
            dest: ObjectUrl::new("b", "v.mp4"),
        }
    }

    #[test]
    fn parts_survive_a_reopen_and_a_torn_line_is_skipped() {
        let dir = tempfile::tempdir().unwrap();
        let path = path_for(&dir.path().join("journals"), &job(), true);
        assert!(read(&path).unwrap().is_none());
        let mut header = Header::new(&job(), Some(&ETag::new("e")), 100, 10, true);
        header.upload_id = "u1".into();
        let journal = Journal::create(&path, &header).unwrap();
        let part = |n: u32| CompletedPart {
            part_number: n,
            etag: ETag::new(format!("p{n}")),
        };
        journal.record(&part(1)).unwrap();
        drop(journal);
        Journal::reopen(&path).unwrap().record(&part(3)).unwrap();
        fs::OpenOptions::new()
            .append(true)
            .open(&path)
            .unwrap()
            .write_all(b"{\"part\":4,\"eta")
            .unwrap();
        let (read_header, done) = read(&path).unwrap().unwrap();
        assert_eq!(read_header, header);
        assert_eq!(done.keys().copied().collect::<Vec<_>>(), [1, 3]);
        assert_eq!(done[&3], ETag::new("p3"));
        let mode = fs::metadata(&path).unwrap().permissions().mode() & 0o777;
        assert_eq!(mode, 0o600);
        let wanted = Header::new(&job(), Some(&ETag::new("e")), 100, 10, true);
        assert!(header.resumable_as(&wanted));
        let changed = Header::new(&job(), Some(&ETag::new("f")), 100, 10, true);
        assert!(!header.resumable_as(&changed));
        Journal::reopen(&path).unwrap().remove();
        assert!(read(&path).unwrap().is_none());
    }

    #[test]
    fn the_name_depends_on_source_destination_and_method() {
        let dir = Path::new("/j");
        let other = Job {
            dest: ObjectUrl::new("b", "w.mp4"),
            ..job()
        };
        assert_ne!(path_for(dir, &job(), true), path_for(dir, &other, true));
        assert_ne!(path_for(dir, &job(), true), path_for(dir, &job(), false));
        assert_eq!(path_for(dir, &job(), true), path_for(dir, &job(), true));
    }
}
