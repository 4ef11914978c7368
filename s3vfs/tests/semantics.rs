//! SEMANTICS.md, checked row by row.
//!
//! The tables of the document (namespace, durability, operations, store errors) are parsed
//! from the file itself. Every row has exactly one check here, keyed by the row's first
//! cell: a row without a check, or a check without a row, fails, so the document and the
//! tests cannot drift apart. A check runs the operation against the in-memory S3 behind a
//! request counter (and a fault injector) and asserts what the row says: the requests it
//! documents, and the errnos named in the row's last cell — exactly those, so an errno the
//! row promises but the check never provokes fails as well.

use bytes::Bytes;
use s3vfs::namespace::FsPath;
use s3vfs::store::{Capabilities, PutOptions, StoreError, StoreErrorKind};
use s3vfs::vfs::{DirEntry, Entry, FileKind, Handle, Ino, OpenFlags, SetAttr, Vfs};
use s3vfs::{BucketsFs, FsConfig, S3Fs, VfsError, VfsResult};
use s3vfs_testkit::fault::{throttled, CountingStore, FaultStore, ListFault, Op};
use s3vfs_testkit::{MemBuckets, MemStore};
use std::collections::{BTreeMap, BTreeSet};
use std::ffi::OsStr;
use std::future::Future;
use std::os::unix::ffi::OsStrExt;
use std::sync::{Arc, Mutex, PoisonError};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

const SEMANTICS: &str = include_str!("../../SEMANTICS.md");

/// Part size of uploads in these tests, in bytes; the store's minimum is lowered to match,
/// so that multipart uploads stay small.
const PART: u64 = 1024;

/// A metadata TTL no check outlives: cached answers stay cached.
const LONG_TTL: Duration = Duration::from_secs(3600);

/// A metadata TTL for checks of what happens once it has passed ([`expire`]).
const SHORT_TTL: Duration = Duration::from_millis(5);

/// The errnos the document names, by name.
const ERRNOS: &[(&str, i32)] = &[
    ("E2BIG", libc::E2BIG),
    ("EACCES", libc::EACCES),
    ("EAGAIN", libc::EAGAIN),
    ("EBADF", libc::EBADF),
    ("EEXIST", libc::EEXIST),
    ("EFBIG", libc::EFBIG),
    ("ESHUTDOWN", libc::ESHUTDOWN),
    ("EINVAL", libc::EINVAL),
    ("EIO", libc::EIO),
    ("EISDIR", libc::EISDIR),
    ("ENAMETOOLONG", libc::ENAMETOOLONG),
    ("ENODATA", libc::ENODATA),
    ("ENOENT", libc::ENOENT),
    ("ENOSPC", libc::ENOSPC),
    ("ENOTDIR", libc::ENOTDIR),
    ("ENOTEMPTY", libc::ENOTEMPTY),
    ("ENOTSUP", libc::ENOTSUP),
    ("EPERM", libc::EPERM),
    ("EROFS", libc::EROFS),
    ("ESTALE", libc::ESTALE),
    ("EXDEV", libc::EXDEV),
];

// ---------------------------------------------------------------------------------------
// The document

/// The cells of one table row, split at `|` but not at `\|`.
fn cells(line: &str) -> Vec<String> {
    let mut cells = vec![String::new()];
    let mut escaped = false;
    for c in line.trim().chars() {
        match c {
            '|' if !escaped => cells.push(String::new()),
            _ => cells.last_mut().expect("one cell at least").push(c),
        }
        escaped = c == '\\';
    }
    // The text before the leading `|` and after the trailing one.
    cells.remove(0);
    cells.pop();
    cells.into_iter().map(|c| c.trim().to_owned()).collect()
}

/// The rows of the table of SEMANTICS.md whose header line starts with `header`.
fn table(header: &str) -> Vec<Vec<String>> {
    let mut lines = SEMANTICS.lines().skip_while(|l| !l.starts_with(header));
    assert!(
        lines.next().is_some(),
        "SEMANTICS.md has no table starting with {header:?}"
    );
    let separator = lines.next().unwrap_or_default();
    assert!(
        separator.starts_with("|--"),
        "{header:?}: no separator line"
    );
    lines
        .take_while(|l| l.starts_with('|'))
        .map(cells)
        .collect()
}

/// The errnos named (as `` `E…` ``) in the last cell of row `row` of table `header`.
fn documented_errnos(header: &str, row: &str) -> BTreeSet<&'static str> {
    let rows = table(header);
    let cells = rows
        .iter()
        .find(|cells| cells[0] == row)
        .unwrap_or_else(|| panic!("SEMANTICS.md: no row {row:?} in the table {header:?}"));
    let last = cells.last().map(String::as_str).unwrap_or_default();
    last.split('`')
        .skip(1)
        .step_by(2)
        .filter(|code| code.starts_with('E') && code.chars().all(|c| c.is_ascii_alphanumeric()))
        .map(|code| {
            ERRNOS
                .iter()
                .find(|(name, _)| *name == code)
                .unwrap_or_else(|| panic!("row {row:?} names {code}, unknown to this test"))
                .0
        })
        .collect()
}

fn assert_rows_match(header: &str, checked: &[&str]) {
    let documented: BTreeSet<String> = table(header).into_iter().map(|c| c[0].clone()).collect();
    let checked: BTreeSet<String> = checked.iter().map(|s| (*s).to_owned()).collect();
    let unchecked: Vec<_> = documented.difference(&checked).collect();
    let undocumented: Vec<_> = checked.difference(&documented).collect();
    assert!(
        unchecked.is_empty() && undocumented.is_empty(),
        "table {header:?}: rows without a check: {unchecked:?}; checks without a row: {undocumented:?}"
    );
}

/// Runs the check of one row and compares the errnos it provoked with the row's.
async fn run_check<F, Fut>(header: &str, row: &str, check: F)
where
    F: FnOnce(Errnos) -> Fut,
    Fut: Future<Output = ()>,
{
    let documented = documented_errnos(header, row);
    let seen = Errnos::default();
    check(seen.clone()).await;
    assert_eq!(
        seen.names(),
        documented,
        "row {row:?}: the errnos the check provoked differ from the ones the row names"
    );
}

/// One test per row of a table, plus the test that rows and checks match.
macro_rules! checked_table {
    ($module:ident, $header:literal, { $($row:literal => $check:ident,)+ }) => {
        mod $module {
            const HEADER: &str = $header;

            #[test]
            fn every_row_has_a_check_and_every_check_a_row() {
                super::assert_rows_match(HEADER, &[$($row),+]);
            }

            $(
                #[tokio::test]
                async fn $check() {
                    super::run_check(HEADER, $row, super::$check).await;
                }
            )+
        }
    };
}

checked_table!(namespace, "| rule |", {
    "file" => file_objects,
    "symbolic link" => symlink_objects,
    "special file" => special_files,
    "directory" => directory_prefixes,
    "markers" => markers,
    "file and directory of the same name" => directory_shadows_file,
    "key with an invalid component" => hidden_keys,
    "name given by a caller" => caller_names,
    "mount prefix" => mount_prefix,
    "inode numbers" => inode_numbers,
    "mount without a bucket" => bucket_list_root,
});

checked_table!(durability, "| promise |", {
    "success means complete" => success_means_complete,
    "no half object" => no_half_object,
    "failures are returned and logged" => failures_are_returned_and_logged,
    "no leftover multipart uploads" => no_leftover_uploads,
    "no lost update" => no_lost_update,
    "nothing discarded" => nothing_discarded,
    "a failed part poisons the file" => a_failed_part_poisons_the_file,
    "stop signals" => stop_signals,
    "renames and open files" => renames_and_open_files,
});

checked_table!(operations, "| operation |", {
    "lookup / stat (uncached)" => lookup_uncached,
    "stat of a listed entry" => stat_of_listed_entry,
    "readdir" => readdir,
    "open for reading" => open_for_reading,
    "open for writing" => open_for_writing,
    "read" => read,
    "create" => create,
    "write" => write,
    "flush / fsync / close" => flush_fsync_close,
    "copy_file_range" => copy_file_range,
    "truncate" => truncate,
    "mkdir" => mkdir,
    "unlink" => unlink,
    "rmdir" => rmdir,
    "rename of a file or symlink" => rename_file,
    "rename of a directory" => rename_directory,
    "symlink" => symlink,
    "mknod" => mknod,
    "readlink" => readlink,
    "chmod / chown / utimens" => chmod_chown_utimens,
    "getxattr / listxattr" => getxattr_listxattr,
    "setxattr / removexattr" => setxattr_removexattr,
    "statfs" => statfs,
    "link" => link,
    "any change on a read-only mount" => read_only_mount,
    "guard rails --no-delete / --no-overwrite" => guard_rails,
    "archived objects" => archived_objects,
});

checked_table!(store_errors, "| store error |", {
    "NoSuchKey, NoSuchBucket, NoSuchUpload, 404" => not_found_errors,
    "PreconditionFailed (412) or ConditionalRequestConflict (409) of a pinned read" => precondition_of_a_read,
    "the same, of an upload, copy or metadata change" => precondition_of_a_change,
    "the same, of mkdir, symlink or mknod" => precondition_of_a_creation,
    "AccessDenied, InvalidAccessKeyId, SignatureDoesNotMatch, ExpiredToken, 403" => access_denied_errors,
    "InvalidObjectState (archived, not restored)" => archived_errors,
    "SlowDown, Throttling, TooManyRequests, or 429 or 503 without a known code" => throttling_errors,
    "InternalError, ServiceUnavailable, RequestTimeout, other 5xx, timeouts, dropped connections" => transient_errors,
    "a malformed LIST page: truncated without a continuation token, or repeating an earlier page's token" => malformed_list_pages,
    "anything else (InvalidRange, 400, …)" => other_errors,
});

// ---------------------------------------------------------------------------------------
// Helpers

/// The errnos a check provoked (and asserted).
#[derive(Clone, Default)]
struct Errnos(Arc<Mutex<BTreeSet<&'static str>>>);

impl Errnos {
    /// Asserts that `result` failed with `errno`, and records it.
    #[track_caller]
    fn refuses<T: std::fmt::Debug>(&self, result: VfsResult<T>, errno: i32) {
        let err = result.expect_err("expected an error");
        assert_eq!(err.errno(), errno, "unexpected errno for {err}");
        let name = ERRNOS
            .iter()
            .find(|(_, e)| *e == errno)
            .expect("an errno named in ERRNOS")
            .0;
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .insert(name);
    }

    fn names(&self) -> BTreeSet<&'static str> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }
}

/// Log events of the current thread while capturing (each `#[tokio::test]` runs its tasks
/// on its own thread), one line each: level and fields.
///
/// One global subscriber routes each event to its thread's capture: per-thread default
/// subscribers (`set_default`) race with other threads over tracing's cached callsite
/// interest, and then a capture misses events that were in fact logged.
#[derive(Clone, Default)]
struct Logs(Arc<Mutex<Vec<String>>>);

thread_local! {
    static CAPTURE: std::cell::RefCell<Option<Logs>> = const { std::cell::RefCell::new(None) };
}

/// Ends a thread's capture when dropped.
struct CaptureGuard;

impl Drop for CaptureGuard {
    fn drop(&mut self) {
        CAPTURE.with(|c| c.borrow_mut().take());
    }
}

impl Logs {
    fn capture() -> (Self, CaptureGuard) {
        static ROUTER: std::sync::Once = std::sync::Once::new();
        ROUTER.call_once(|| {
            tracing::subscriber::set_global_default(Router)
                .expect("no other global subscriber in this test binary");
        });
        let logs = Self::default();
        CAPTURE.with(|c| *c.borrow_mut() = Some(logs.clone()));
        (logs, CaptureGuard)
    }

    fn lines(&self) -> Vec<String> {
        self.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .clone()
    }

    /// Asserts that a line at `level` mentions every one of `words`.
    #[track_caller]
    fn assert_logged(&self, level: tracing::Level, words: &[&str]) {
        let level = level.to_string();
        let lines = self.lines();
        assert!(
            lines
                .iter()
                .any(|l| l.starts_with(&level) && words.iter().all(|w| l.contains(w))),
            "no {level} line with {words:?} in {lines:#?}"
        );
    }

    fn count(&self, word: &str) -> usize {
        self.lines().iter().filter(|l| l.contains(word)).count()
    }
}

/// The global subscriber: every event to the capture of the thread it happens on.
struct Router;

impl tracing::Subscriber for Router {
    fn enabled(&self, _: &tracing::Metadata<'_>) -> bool {
        true
    }
    fn new_span(&self, _: &tracing::span::Attributes<'_>) -> tracing::span::Id {
        tracing::span::Id::from_u64(1)
    }
    fn record(&self, _: &tracing::span::Id, _: &tracing::span::Record<'_>) {}
    fn record_follows_from(&self, _: &tracing::span::Id, _: &tracing::span::Id) {}
    fn event(&self, event: &tracing::Event<'_>) {
        let Some(logs) = CAPTURE.with(|c| c.borrow().clone()) else {
            return;
        };
        let mut line = event.metadata().level().to_string();
        event.record(
            &mut |field: &tracing::field::Field, value: &dyn std::fmt::Debug| {
                line.push_str(&format!(" {}={value:?}", field.name()));
            },
        );
        logs.0
            .lock()
            .unwrap_or_else(PoisonError::into_inner)
            .push(line);
    }
    fn enter(&self, _: &tracing::span::Id) {}
    fn exit(&self, _: &tracing::span::Id) {}
}

fn os(s: &str) -> &OsStr {
    OsStr::new(s)
}

/// A bucket with S3's rules and limits, except parts of [`PART`] bytes.
fn bucket() -> MemStore {
    MemStore::with_capabilities(Capabilities {
        min_part_size: PART,
        ..Capabilities::default()
    })
}

/// The mount's settings in these checks: cached answers stay cached, parts of [`PART`].
fn config() -> FsConfig {
    FsConfig::default()
        .with_metadata_ttl(LONG_TTL)
        .with_write_part_size(PART)
        .with_recovery_dir(Some(recovery_dir()))
}

/// Where these checks' file systems keep what they could not upload: under the target
/// directory, one per test process.
fn recovery_dir() -> std::path::PathBuf {
    std::path::Path::new(env!("CARGO_TARGET_TMPDIR"))
        .join(format!("semantics-recovery-{}", std::process::id()))
}

fn uncached() -> FsConfig {
    config().with_metadata_ttl(Duration::ZERO)
}

fn short_ttl() -> FsConfig {
    config().with_metadata_ttl(SHORT_TTL)
}

/// Waits until every answer cached under [`SHORT_TTL`] has expired.
async fn expire() {
    tokio::time::sleep(2 * SHORT_TTL).await;
}

fn read_only() -> FsConfig {
    config().with_read_only(true)
}

fn no_delete() -> FsConfig {
    config().with_allow_delete(false)
}

fn no_overwrite() -> FsConfig {
    config().with_allow_overwrite(false)
}

/// Object options carrying the s3fs headers `meta` (name, value).
fn headers(meta: &[(&str, String)]) -> PutOptions {
    PutOptions {
        user_metadata: meta
            .iter()
            .map(|(k, v)| ((*k).to_owned(), v.clone()))
            .collect(),
        ..PutOptions::default()
    }
}

fn mode(bits: u32) -> PutOptions {
    headers(&[("mode", bits.to_string())])
}

fn error(kind: StoreErrorKind, code: &str) -> StoreError {
    StoreError::new(kind, "injected").with_code(code)
}

fn injected() -> StoreError {
    error(StoreErrorKind::Transient, "InternalError")
}

fn precondition() -> StoreError {
    error(StoreErrorKind::PreconditionFailed, "PreconditionFailed")
}

fn writing() -> OpenFlags {
    OpenFlags {
        write: true,
        ..OpenFlags::default()
    }
}

fn truncating() -> OpenFlags {
    OpenFlags {
        truncate: true,
        ..writing()
    }
}

fn appending() -> OpenFlags {
    OpenFlags {
        append: true,
        ..writing()
    }
}

fn set_mode(perm: u32) -> SetAttr {
    SetAttr {
        mode: Some(perm),
        ..SetAttr::default()
    }
}

fn set_size(size: u64) -> SetAttr {
    SetAttr {
        size: Some(size),
        ..SetAttr::default()
    }
}

fn pattern(len: usize, seed: u8) -> Bytes {
    (0..len)
        .map(|i| (i as u8).wrapping_mul(31).wrapping_add(seed))
        .collect::<Vec<_>>()
        .into()
}

/// Lets spawned tasks (read-ahead parts, background aborts) run.
async fn settle() {
    for _ in 0..50 {
        tokio::task::yield_now().await;
    }
}

/// A [`bucket`] holding `keys`: markers (`…/`) empty, other objects of one byte.
fn filled(keys: &[&str]) -> MemStore {
    let store = bucket();
    for key in keys {
        store.insert(*key, if key.ends_with('/') { "" } else { "1" });
    }
    store
}

fn user_meta(store: &MemStore, key: &str, name: &str) -> Option<String> {
    store.meta(key)?.user_metadata.get(name).cloned()
}

/// The directory part and the name of a path.
fn split(path: &str) -> (&str, &str) {
    path.rsplit_once('/').unwrap_or(("", path))
}

/// A file system over a bucket, whose requests pass a fault injector and a counter.
struct Mount {
    store: MemStore,
    faults: FaultStore,
    counter: CountingStore,
    fs: Arc<S3Fs>,
}

impl Mount {
    fn new(store: &MemStore, config: FsConfig) -> Self {
        let faults = FaultStore::new(Arc::new(store.clone()));
        let counter = CountingStore::new(Arc::new(faults.clone()));
        let fs = S3Fs::new(Arc::new(counter.clone()), config);
        Self {
            store: store.clone(),
            faults,
            counter,
            fs,
        }
    }

    /// Looks `path` up component by component, as the kernel does.
    async fn lookup(&self, path: &str) -> VfsResult<Entry> {
        let mut entry = self.fs.getattr(Ino::ROOT).await?;
        for part in path.split('/').filter(|p| !p.is_empty()) {
            entry = self.fs.lookup(entry.attr.ino, os(part)).await?;
        }
        Ok(entry)
    }

    async fn ino(&self, path: &str) -> Ino {
        match self.lookup(path).await {
            Ok(entry) => entry.attr.ino,
            Err(e) => panic!("{path}: {e}"),
        }
    }

    /// Asserts that exactly `expected` requests were made since the last call, and starts
    /// counting afresh.
    #[track_caller]
    fn assert_requests(&self, expected: &[(Op, u64)]) {
        let expected: BTreeMap<Op, u64> = expected.iter().copied().collect();
        let counts = self.counter.counts();
        self.counter.reset();
        assert_eq!(counts, expected, "requests made");
    }

    /// Looks `paths` up as the kernel does before an operation on them, so that they are
    /// cached (a missing one as missing); then starts counting afresh.
    async fn cache(&self, paths: &[&str]) {
        for path in paths {
            let _ = self.lookup(path).await;
        }
        self.counter.reset();
    }

    /// [`cache`](Self::cache) of one path; returns its directory's inode and its name.
    async fn looked_up<'p>(&self, path: &'p str) -> (Ino, &'p str) {
        let (dir, name) = split(path);
        let parent = self.ino(dir).await;
        self.cache(&[path]).await;
        (parent, name)
    }

    async fn create(&self, path: &str) -> (Ino, Handle) {
        let (dir, name) = split(path);
        let parent = self.ino(dir).await;
        let (entry, handle) = self
            .fs
            .create(parent, os(name), 0o644, writing())
            .await
            .unwrap_or_else(|e| panic!("create {path}: {e}"));
        (entry.attr.ino, handle)
    }

    async fn open(&self, path: &str, flags: OpenFlags) -> (Ino, Handle) {
        let ino = self.ino(path).await;
        let handle = self
            .fs
            .open(ino, flags)
            .await
            .unwrap_or_else(|e| panic!("open {path}: {e}"));
        (ino, handle)
    }

    async fn write(&self, ino: Ino, handle: Handle, offset: u64, data: &Bytes) {
        let written = self.fs.write(ino, handle, offset, data.clone()).await;
        assert_eq!(
            written.unwrap_or_else(|e| panic!("write: {e}")) as usize,
            data.len()
        );
    }

    /// Creates `path` with `data` and closes it.
    async fn save(&self, path: &str, data: &Bytes) {
        let (ino, handle) = self.create(path).await;
        self.write(ino, handle, 0, data).await;
        self.close(ino, handle)
            .await
            .unwrap_or_else(|e| panic!("close {path}: {e}"));
    }

    /// What `close(2)` does: flush, then release.
    async fn close(&self, ino: Ino, handle: Handle) -> VfsResult<()> {
        let flushed = self.fs.flush(ino, handle).await;
        self.fs.release(ino, handle).await?;
        flushed
    }

    /// Every entry of directory `path` after `.` and `..`.
    async fn list(&self, path: &str) -> VfsResult<Vec<DirEntry>> {
        let ino = self.ino(path).await;
        let handle = self.fs.opendir(ino).await?;
        let mut entries = Vec::new();
        let mut offset = 0;
        loop {
            let batch = self.fs.readdir(ino, handle, offset, 500).await?;
            let Some(last) = batch.last() else { break };
            offset = last.next_offset;
            entries.extend(batch);
        }
        self.fs.releasedir(ino, handle).await?;
        Ok(entries.into_iter().skip(2).collect())
    }

    async fn names(&self, path: &str) -> Vec<String> {
        let entries = self
            .list(path)
            .await
            .unwrap_or_else(|e| panic!("{path}: {e}"));
        entries.into_iter().map(|e| e.name).collect()
    }

    async fn rename(&self, from: &str, to: &str, no_replace: bool) -> VfsResult<()> {
        let (from_dir, from_name) = split(from);
        let (to_dir, to_name) = split(to);
        let parent = self.lookup(from_dir).await?.attr.ino;
        let new_parent = self.lookup(to_dir).await?.attr.ino;
        self.fs
            .rename(parent, os(from_name), new_parent, os(to_name), no_replace)
            .await
    }

    /// Waits (a few scheduler turns) until no multipart upload is open.
    async fn assert_no_open_upload(&self) {
        settle().await;
        assert_eq!(self.store.open_upload_keys(), Vec::<String>::new());
    }
}

// ---------------------------------------------------------------------------------------
// Namespace

async fn file_objects(_: Errnos) {
    let store = bucket();
    let mtime = 1_600_000_000u64;
    store.insert_with(
        "f",
        "abc",
        headers(&[
            ("mode", (libc::S_IFREG | 0o600).to_string()),
            ("uid", "7".to_owned()),
            ("gid", "8".to_owned()),
            ("mtime", mtime.to_string()),
        ]),
    );
    store.insert("plain", "abcd");
    let modified = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    store.set_last_modified("plain", modified);
    let config = config().with_owner(1000, 100);
    let m = Mount::new(&store, config);
    let f = m.lookup("f").await.unwrap().attr;
    assert_eq!(
        (f.kind, f.size, f.perm, f.uid, f.gid),
        (FileKind::File, 3, 0o600, 7, 8)
    );
    assert_eq!(f.mtime, UNIX_EPOCH + Duration::from_secs(mtime));
    let plain = m.lookup("plain").await.unwrap().attr;
    assert_eq!((plain.perm, plain.uid, plain.gid), (0o644, 1000, 100));
    assert_eq!(plain.mtime, modified);
}

async fn symlink_objects(_: Errnos) {
    let store = bucket();
    store.insert_with("l", "some/target", mode(libc::S_IFLNK | 0o777));
    let m = Mount::new(&store, config());
    let l = m.lookup("l").await.unwrap().attr;
    assert_eq!(l.kind, FileKind::Symlink);
    assert_eq!(&m.fs.readlink(l.ino).await.unwrap()[..], b"some/target");
}

async fn special_files(_: Errnos) {
    let store = bucket();
    // As s3fs's mknod writes them: empty, the type in the mode, no device number.
    store.insert_with("pipe", "", mode(libc::S_IFIFO | 0o640));
    store.insert_with("sock", "", mode(libc::S_IFSOCK | 0o755));
    store.insert_with("s3fs-disk", "", mode(libc::S_IFBLK | 0o660));
    store.insert_with(
        "null",
        "",
        headers(&[
            ("mode", (libc::S_IFCHR | 0o666).to_string()),
            ("rdev", libc::makedev(1, 3).to_string()),
            ("uid", "7".to_owned()),
        ]),
    );
    store.insert("empty", "");
    let m = Mount::new(&store, config());
    let kinds = [
        ("empty", FileKind::File, 0o644, 0),
        ("null", FileKind::CharDevice, 0o666, libc::makedev(1, 3)),
        ("pipe", FileKind::Fifo, 0o640, 0),
        ("s3fs-disk", FileKind::BlockDevice, 0o660, 0),
        ("sock", FileKind::Socket, 0o755, 0),
    ];
    for (name, kind, perm, rdev) in kinds {
        let attr = m.lookup(name).await.unwrap().attr;
        assert_eq!(
            (attr.kind, attr.perm, u64::from(attr.rdev), attr.size),
            (kind, perm, rdev, 0),
            "{name}"
        );
    }
    // A fresh mount's listing finds the types with its HEADs of small objects.
    let fresh = Mount::new(&store, config());
    let listed: Vec<(String, FileKind, u64)> = fresh
        .list("")
        .await
        .unwrap()
        .into_iter()
        .map(|e| (e.name, e.kind, u64::from(e.attr.unwrap().rdev)))
        .collect();
    let expected: Vec<(String, FileKind, u64)> = kinds
        .iter()
        .map(|(name, kind, _, rdev)| ((*name).to_owned(), *kind, *rdev))
        .collect();
    assert_eq!(listed, expected);
    fresh.assert_requests(&[(Op::List, 1), (Op::Head, 5)]);
    // Attribute changes, rename and unlink cost what they cost for a file; the device
    // keeps its number and the other headers.
    m.cache(&["null", "zero"]).await;
    let null = m.ino("null").await;
    m.fs.setattr(null, None, set_mode(0o600)).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::Copy, 1)]);
    m.rename("null", "zero", false).await.unwrap();
    m.assert_requests(&[(Op::Copy, 1), (Op::Delete, 1)]);
    let zero = store.meta("zero").unwrap().user_metadata;
    assert_eq!(
        (
            zero["mode"].clone(),
            zero["rdev"].clone(),
            zero["uid"].clone()
        ),
        (
            (libc::S_IFCHR | 0o600).to_string(),
            libc::makedev(1, 3).to_string(),
            "7".to_owned()
        )
    );
    let attr = m.lookup("zero").await.unwrap().attr;
    assert_eq!(
        (attr.kind, attr.perm, u64::from(attr.rdev)),
        (FileKind::CharDevice, 0o600, libc::makedev(1, 3))
    );
    m.counter.reset();
    m.fs.unlink(Ino::ROOT, os("zero")).await.unwrap();
    m.assert_requests(&[(Op::Delete, 1)]);
    assert_eq!(store.keys(), vec!["empty", "pipe", "s3fs-disk", "sock"]);
}

async fn directory_prefixes(_: Errnos) {
    let store = bucket();
    store.insert_with(
        "marked/",
        "",
        headers(&[
            ("mode", (libc::S_IFDIR | 0o700).to_string()),
            ("uid", "7".to_owned()),
        ]),
    );
    store.insert("implied/x", "1");
    let before = SystemTime::now();
    let m = Mount::new(&store, config());
    let marked = m.lookup("marked").await.unwrap().attr;
    assert_eq!(
        (marked.kind, marked.perm, marked.uid),
        (FileKind::Directory, 0o700, 7)
    );
    let implied = m.lookup("implied").await.unwrap().attr;
    assert_eq!((implied.kind, implied.perm), (FileKind::Directory, 0o755));
    assert!(implied.mtime >= before && implied.mtime <= SystemTime::now());
}

async fn markers(_: Errnos) {
    let store = bucket();
    store.insert("last/x", "1");
    let m = Mount::new(&store, config());
    m.fs.mkdir(Ino::ROOT, os("made"), 0o755).await.unwrap();
    assert_eq!(store.get_bytes("made/").unwrap().len(), 0);
    let last = m.ino("last").await;
    m.fs.unlink(last, os("x")).await.unwrap();
    assert!(
        store.get_bytes("last/").is_some(),
        "the emptied directory keeps a marker"
    );
    assert_eq!(
        m.lookup("last").await.unwrap().attr.kind,
        FileKind::Directory
    );
    assert!(m.names("last").await.is_empty(), "a marker is not an entry");
    assert!(m.names("made").await.is_empty());
}

async fn directory_shadows_file(_: Errnos) {
    let store = bucket();
    store.insert("a", "file");
    store.insert("a/x", "1");
    let m = Mount::new(&store, config());
    assert_eq!(m.lookup("a").await.unwrap().attr.kind, FileKind::Directory);
    let root = m.list("").await.unwrap();
    assert_eq!(root.len(), 1);
    assert_eq!(
        (root[0].name.as_str(), root[0].kind),
        ("a", FileKind::Directory)
    );
    assert!(
        store.get_bytes("a").is_some(),
        "the shadowed object stays in the bucket"
    );
}

async fn hidden_keys(seen: Errnos) {
    let (logs, _guard) = Logs::capture();
    let long = "n".repeat(256);
    let long_key = format!("h/{long}");
    let store = filled(&["h//x", "h/./y", "h/../z", &long_key]);
    let m = Mount::new(&store, config());
    assert_eq!(m.lookup("h").await.unwrap().attr.kind, FileKind::Directory);
    assert!(m.names("h").await.is_empty());
    assert!(m.names("h").await.is_empty());
    for hidden in ["h//", "h/./", "h/../", &long_key] {
        assert_eq!(
            logs.count(&format!("key=\"{hidden}\"")),
            1,
            "one warning for {hidden}"
        );
    }
    seen.refuses(m.fs.rmdir(Ino::ROOT, os("h")).await, libc::ENOTEMPTY);
    m.rename("h", "moved", false).await.unwrap();
    assert!(
        store.keys().iter().all(|k| k.starts_with("moved/")),
        "{:?}",
        store.keys()
    );
}

async fn caller_names(seen: Errnos) {
    let m = Mount::new(&bucket(), config());
    let not_utf8 = OsStr::from_bytes(&[0x66, 0xff]);
    for name in [os("."), os(".."), os(""), os("a/b"), os("a\0b"), not_utf8] {
        seen.refuses(m.fs.lookup(Ino::ROOT, name).await, libc::EINVAL);
        seen.refuses(m.fs.mkdir(Ino::ROOT, name, 0o755).await, libc::EINVAL);
    }
    let long = "n".repeat(256);
    seen.refuses(m.fs.lookup(Ino::ROOT, os(&long)).await, libc::ENAMETOOLONG);
    // Four components of 255 bytes: the key of one more name is over 1024 bytes.
    let deep = vec!["n".repeat(255); 4].join("/");
    let dir = m.fs.implicit_dir(&FsPath::parse(&deep).unwrap()).unwrap();
    seen.refuses(m.fs.lookup(dir, os("xy")).await, libc::ENAMETOOLONG);
    m.assert_requests(&[]);
}

async fn mount_prefix(_: Errnos) {
    let store = bucket();
    store.insert("pfx/inside", "1");
    store.insert("outside", "1");
    store.insert("pfx-sibling/x", "1");
    let m = Mount::new(&store, config().with_prefix("pfx"));
    assert_eq!(m.names("").await, vec!["inside"]);
    m.save("new", &Bytes::from_static(b"n")).await;
    m.fs.mkdir(Ino::ROOT, os("dir"), 0o755).await.unwrap();
    m.rename("inside", "dir/moved", false).await.unwrap();
    assert_eq!(m.lookup("..").await.unwrap_err().errno(), libc::EINVAL);
    let keys: Vec<String> = store.keys();
    assert_eq!(
        keys,
        vec![
            "outside",
            "pfx-sibling/x",
            "pfx/dir/",
            "pfx/dir/moved",
            "pfx/new"
        ]
    );
}

async fn inode_numbers(seen: Errnos) {
    let store = bucket();
    store.insert("f", "1");
    store.insert("k", "1");
    let m = Mount::new(&store, uncached());
    let f = m.ino("f").await;
    assert_eq!(m.ino("f").await, f, "stable for the path");
    m.rename("f", "g", false).await.unwrap();
    assert_eq!(m.ino("g").await, f, "carried over by a rename");
    // Three lookups so far: the inode stays until the kernel forgot all three.
    m.fs.forget(f, 2);
    assert_eq!(m.fs.getattr(f).await.unwrap().attr.ino, f);
    m.fs.forget(f, 1);
    seen.refuses(m.fs.getattr(f).await, libc::ENOENT);
    let g = m.ino("g").await;
    assert_ne!(g, f, "a new number after the forget, never the old one");
    let k = m.ino("k").await;
    store.remove("k");
    store.insert("k/x", "1");
    let now = m.lookup("k").await.unwrap().attr;
    assert_eq!(now.kind, FileKind::Directory);
    assert_ne!(now.ino, k, "another kind is another inode");
    seen.refuses(m.fs.getattr(k).await, libc::ESTALE);
}

async fn bucket_list_root(seen: Errnos) {
    let buckets = MemBuckets::new();
    buckets.create_bucket("one").insert("x", "1");
    buckets.create_bucket("two");
    let fs = BucketsFs::new(Arc::new(buckets.clone()), config());
    let handle = fs.opendir(Ino::ROOT).await.unwrap();
    let entries = fs.readdir(Ino::ROOT, handle, 0, 100).await.unwrap();
    let names: Vec<(&str, FileKind)> = entries[2..]
        .iter()
        .map(|e| (e.name.as_str(), e.kind))
        .collect();
    assert_eq!(
        names,
        vec![("one", FileKind::Directory), ("two", FileKind::Directory)]
    );
    let one = fs.lookup(Ino::ROOT, os("one")).await.unwrap().attr.ino;
    assert_eq!(fs.lookup(one, os("x")).await.unwrap().attr.size, 1);
    seen.refuses(fs.mkdir(Ino::ROOT, os("three"), 0o755).await, libc::EROFS);
    seen.refuses(
        fs.create(Ino::ROOT, os("f"), 0o644, writing()).await,
        libc::EROFS,
    );
    seen.refuses(fs.rmdir(Ino::ROOT, os("one")).await, libc::EROFS);
}

// ---------------------------------------------------------------------------------------
// Durability

async fn success_means_complete(_: Errnos) {
    let store = bucket();
    let m = Mount::new(&store, config());
    // A small file: nothing in the bucket until fsync, then all of it.
    let (ino, handle) = m.create("small").await;
    let data = pattern(100, 1);
    m.write(ino, handle, 0, &data).await;
    assert!(
        store.get_bytes("small").is_none(),
        "write returns before anything is stored"
    );
    m.fs.fsync(ino, handle).await.unwrap();
    assert_eq!(store.get_bytes("small").unwrap(), data);
    m.fs.release(ino, handle).await.unwrap();
    // A streamed file: parts are uploaded while writing, the object exists at close.
    let (ino, handle) = m.create("big").await;
    let data = pattern(5 * PART as usize + 10, 2);
    m.write(ino, handle, 0, &data).await;
    settle().await;
    assert!(m.counter.count(Op::UploadPart) >= 5);
    assert!(store.get_bytes("big").is_none());
    m.close(ino, handle).await.unwrap();
    assert_eq!(store.get_bytes("big").unwrap(), data);
}

async fn no_half_object(_: Errnos) {
    let store = bucket();
    store.insert("k", "previous");
    let m = Mount::new(&store, config());
    let (ino, handle) = m.open("k", truncating()).await;
    let data = pattern(3 * PART as usize + 7, 3);
    m.write(ino, handle, 0, &data).await;
    settle().await;
    assert_eq!(store.open_uploads(), 1, "parts are being uploaded");
    assert_eq!(&store.get_bytes("k").unwrap()[..], b"previous");
    m.faults.fail_next(Op::CompleteMultipart, 1, injected());
    assert!(m.fs.fsync(ino, handle).await.is_err());
    assert_eq!(
        &store.get_bytes("k").unwrap()[..],
        b"previous",
        "intact after a failure"
    );
    m.fs.fsync(ino, handle).await.unwrap();
    assert_eq!(store.get_bytes("k").unwrap(), data);
    m.fs.release(ino, handle).await.unwrap();
}

async fn failures_are_returned_and_logged(seen: Errnos) {
    let (logs, _guard) = Logs::capture();
    let store = bucket();
    let m = Mount::new(&store, config().with_prefix("pfx"));
    let (ino, handle) = m.create("f").await;
    m.write(ino, handle, 0, &Bytes::from_static(b"data")).await;
    m.faults.fail_next(Op::Put, 1, injected());
    seen.refuses(m.fs.fsync(ino, handle).await, libc::EIO);
    logs.assert_logged(tracing::Level::ERROR, &["pfx/f", "upload failed"]);
    let denied = error(StoreErrorKind::AccessDenied, "AccessDenied");
    m.faults.fail_next(Op::Put, 1, denied);
    seen.refuses(m.fs.fsync(ino, handle).await, libc::EACCES);
    m.faults.fail_next(Op::Put, 1, throttled());
    seen.refuses(m.fs.fsync(ino, handle).await, libc::EAGAIN);
    // The changes stayed: the next close uploads them.
    m.close(ino, handle).await.unwrap();
    assert_eq!(&store.get_bytes("pfx/f").unwrap()[..], b"data");
    // The last release keeps what its close could not upload in the recovery directory,
    // logged at error level with its place (the close reported the failure: the data is
    // not stored behind the writer's back later).
    let (ino, handle) = m.create("g").await;
    m.write(ino, handle, 0, &Bytes::from_static(b"kept")).await;
    m.faults.fail_next(Op::Put, 1, injected());
    seen.refuses(m.close(ino, handle).await, libc::EIO);
    logs.assert_logged(
        tracing::Level::ERROR,
        &["pfx/g", "kept in the recovery directory"],
    );
    assert!(store.get_bytes("pfx/g").is_none());
    let recovery = s3vfs::recovery::RecoveryDir::open(recovery_dir()).unwrap();
    let kept = recovery.list().unwrap();
    let entry = kept
        .iter()
        .find(|e| e.manifest.key == "pfx/g")
        .expect("kept");
    assert_eq!(std::fs::read(entry.data_path()).unwrap(), b"kept");
    recovery.discard(entry).unwrap();
    // Streamed past the staging cap: the failure is logged as a loss, and every later
    // fsync or close of the file reports it again.
    let capped = Mount::new(&store, config().with_staging_cap(0));
    let (ino, handle) = capped.create("s").await;
    capped
        .write(ino, handle, 0, &pattern(3 * PART as usize, 4))
        .await;
    capped
        .faults
        .fail_next(Op::CompleteMultipart, 1, injected());
    seen.refuses(capped.fs.fsync(ino, handle).await, libc::EIO);
    logs.assert_logged(tracing::Level::ERROR, &["it is lost", "key=s"]);
    seen.refuses(capped.fs.fsync(ino, handle).await, libc::EIO);
    seen.refuses(capped.close(ino, handle).await, libc::EIO);
    assert!(store.get_bytes("s").is_none());
}

async fn no_leftover_uploads(_: Errnos) {
    let (logs, _guard) = Logs::capture();
    let store = bucket();
    let m = Mount::new(&store, config());
    let stream = |seed| pattern(3 * PART as usize, seed);
    // A failed part: fsync fails, the upload is aborted; the next close uploads anew.
    let (ino, handle) = m.create("part").await;
    m.faults.fail_next(Op::UploadPart, 1, injected());
    m.write(ino, handle, 0, &stream(1)).await;
    assert!(m.fs.fsync(ino, handle).await.is_err());
    m.assert_no_open_upload().await;
    m.close(ino, handle).await.unwrap();
    // A failed completion.
    let (ino, handle) = m.create("complete").await;
    m.write(ino, handle, 0, &stream(2)).await;
    m.faults.fail_next(Op::CompleteMultipart, 1, injected());
    assert!(m.fs.fsync(ino, handle).await.is_err());
    m.assert_no_open_upload().await;
    m.close(ino, handle).await.unwrap();
    // Abandoned: rewritten out of order.
    let (ino, handle) = m.create("random").await;
    m.write(ino, handle, 0, &stream(3)).await;
    settle().await;
    assert_eq!(store.open_uploads(), 1);
    m.write(ino, handle, 0, &Bytes::from_static(b"again")).await;
    m.assert_no_open_upload().await;
    m.close(ino, handle).await.unwrap();
    // Abandoned: unlinked while open.
    let (ino, handle) = m.create("unlinked").await;
    m.write(ino, handle, 0, &stream(4)).await;
    m.fs.unlink(Ino::ROOT, os("unlinked")).await.unwrap();
    m.close(ino, handle).await.unwrap();
    m.assert_no_open_upload().await;
    // Released without a flush (pages of a shared mapping written back at munmap): the
    // release completes the upload.
    let (ino, handle) = m.create("released").await;
    m.write(ino, handle, 0, &stream(5)).await;
    settle().await;
    assert_eq!(store.open_uploads(), 1);
    m.fs.release(ino, handle).await.unwrap();
    m.assert_no_open_upload().await;
    assert_eq!(store.keys(), vec!["complete", "part", "random", "released"]);
    // A failed abort is logged.
    let (ino, handle) = m.create("stuck").await;
    m.write(ino, handle, 0, &stream(6)).await;
    // The release's upload fails at completion; the abort that follows fails too.
    m.faults.fail_next(Op::CompleteMultipart, 1, injected());
    m.faults.fail_next(Op::AbortMultipart, 1, injected());
    m.fs.release(ino, handle).await.unwrap();
    settle().await;
    assert_eq!(store.open_upload_keys(), vec!["stuck"]);
    logs.assert_logged(tracing::Level::WARN, &["stuck", "abort"]);
}

async fn nothing_discarded(_: Errnos) {
    let store = bucket();
    let dir = tempfile::tempdir().unwrap();
    let m = Mount::new(
        &store,
        config().with_recovery_dir(Some(dir.path().join("r"))),
    );
    // Written after the last flush (mmap write-back): uploaded by the release.
    let (ino, handle) = m.create("mapped").await;
    m.fs.flush(ino, handle).await.unwrap();
    m.write(ino, handle, 0, &Bytes::from_static(b"paged")).await;
    m.fs.release(ino, handle).await.unwrap();
    assert_eq!(&store.get_bytes("mapped").unwrap()[..], b"paged");
    // Not uploadable: kept, owner-only, and re-uploaded later.
    let (ino, handle) = m.create("kept").await;
    m.write(ino, handle, 0, &Bytes::from_static(b"bytes")).await;
    m.faults.fail_next(Op::Put, 1, injected());
    assert!(m.close(ino, handle).await.is_err());
    let recovery = s3vfs::recovery::RecoveryDir::open(dir.path().join("r")).unwrap();
    let kept = recovery.list().unwrap();
    assert_eq!(kept.len(), 1);
    let meta = std::fs::metadata(kept[0].data_path()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&meta.permissions()) & 0o777,
        0o600
    );
    let dir_meta = std::fs::metadata(recovery.path()).unwrap();
    assert_eq!(
        std::os::unix::fs::PermissionsExt::mode(&dir_meta.permissions()) & 0o777,
        0o700
    );
    assert_eq!(
        (
            kept[0].manifest.key.as_str(),
            kept[0].manifest.base_etag.as_deref()
        ),
        ("kept", None)
    );
    recovery
        .reupload(Arc::new(store.clone()), &kept[0], PART)
        .await
        .unwrap();
    assert_eq!(&store.get_bytes("kept").unwrap()[..], b"bytes");
    assert!(recovery.list().unwrap().is_empty());
}

async fn a_failed_part_poisons_the_file(seen: Errnos) {
    let store = bucket();
    let m = Mount::new(&store, config());
    let (ino, handle) = m.create("p").await;
    m.faults.fail_next(Op::UploadPart, 1, injected());
    m.write(ino, handle, 0, &pattern(2 * PART as usize, 2))
        .await;
    settle().await;
    let more = Bytes::from_static(b"more");
    seen.refuses(
        m.fs.write(ino, handle, 2 * PART, more.clone()).await,
        libc::EIO,
    );
    seen.refuses(m.fs.write(ino, handle, 2 * PART, more).await, libc::EIO);
    seen.refuses(m.fs.fsync(ino, handle).await, libc::EIO);
    seen.refuses(m.close(ino, handle).await, libc::EIO);
    m.assert_no_open_upload().await;
    assert!(store.get_bytes("p").is_none(), "no short object");
}

async fn stop_signals(seen: Errnos) {
    let store = bucket();
    let m = Mount::new(&store, config());
    let (ino, handle) = m.create("open").await;
    m.write(ino, handle, 0, &Bytes::from_static(b"unsaved"))
        .await;
    let report = m.fs.shutdown(Duration::from_secs(10)).await;
    assert_eq!(report.uploaded, vec!["/open".to_owned()]);
    assert_eq!(&store.get_bytes("open").unwrap()[..], b"unsaved");
    seen.refuses(
        m.fs.write(ino, handle, 7, Bytes::from_static(b"!")).await,
        libc::ESHUTDOWN,
    );
    seen.refuses(m.fs.setattr(ino, None, set_size(1)).await, libc::ESHUTDOWN);
    seen.refuses(m.fs.open(ino, writing()).await, libc::ESHUTDOWN);
    seen.refuses(
        m.fs.create(Ino::ROOT, os("new"), 0o644, writing())
            .await
            .map(|_| ()),
        libc::ESHUTDOWN,
    );
}

async fn renames_and_open_files(_: Errnos) {
    let store = bucket();
    store.insert("d/f", pattern(3 * PART as usize, 1));
    let m = Mount::new(&store, config());
    // A multipart object: its copy gets another ETag.
    let (ino, handle) = m.open("d/f", writing()).await;
    let (ino2, handle2) = m.open("d/f", writing()).await;
    assert_eq!(ino, ino2);
    m.fs.rename(m.ino("").await, os("d"), m.ino("").await, os("e"), false)
        .await
        .unwrap();
    m.write(ino, handle, 0, &Bytes::from_static(b"X")).await;
    m.close(ino, handle).await.unwrap();
    assert_eq!(store.get_bytes("e/f").unwrap()[0], b'X');
    assert!(store.get_bytes("d/f").is_none());
    let e = m.ino("e").await;
    m.fs.rename(e, os("f"), e, os("g"), false).await.unwrap();
    m.write(ino2, handle2, 1, &Bytes::from_static(b"Y")).await;
    m.close(ino2, handle2).await.unwrap();
    assert_eq!(&store.get_bytes("e/g").unwrap()[..2], b"XY");
    assert!(store.get_bytes("e/f").is_none());
}

async fn no_lost_update(seen: Errnos) {
    let store = bucket();
    store.insert("k", "original");
    let (one, two) = (Mount::new(&store, config()), Mount::new(&store, config()));
    let (ino1, h1) = one.open("k", truncating()).await;
    let (ino2, h2) = two.open("k", truncating()).await;
    one.write(ino1, h1, 0, &Bytes::from_static(b"one")).await;
    two.write(ino2, h2, 0, &Bytes::from_static(b"two")).await;
    one.close(ino1, h1).await.unwrap();
    seen.refuses(two.close(ino2, h2).await, libc::EIO);
    assert_eq!(&store.get_bytes("k").unwrap()[..], b"one");
    // Two creations of one name: the second fails.
    let (ino1, h1) = one.create("new").await;
    let (ino2, h2) = two.create("new").await;
    one.write(ino1, h1, 0, &Bytes::from_static(b"one")).await;
    two.write(ino2, h2, 0, &Bytes::from_static(b"two")).await;
    one.close(ino1, h1).await.unwrap();
    seen.refuses(two.close(ino2, h2).await, libc::EIO);
    assert_eq!(&store.get_bytes("new").unwrap()[..], b"one");
    // Unless the last writer wins.
    let last = Mount::new(&store, config().with_last_writer_wins(true));
    let (ino, handle) = last.open("k", truncating()).await;
    store.insert("k", "changed meanwhile");
    last.write(ino, handle, 0, &Bytes::from_static(b"last"))
        .await;
    last.close(ino, handle).await.unwrap();
    assert_eq!(&store.get_bytes("k").unwrap()[..], b"last");
}

// ---------------------------------------------------------------------------------------
// Operations

async fn lookup_uncached(seen: Errnos) {
    let store = bucket();
    store.insert("f", "abc");
    store.insert("marked/", "");
    store.insert("marked/x", "1");
    store.insert("implied/x", "1");
    store.insert("both", "file");
    store.insert("both/x", "1");
    let m = Mount::new(&store, config());
    let f = m.lookup("f").await.unwrap().attr;
    assert_eq!((f.kind, f.size), (FileKind::File, 3));
    m.assert_requests(&[(Op::Head, 1), (Op::List, 1)]);
    assert_eq!(
        m.lookup("implied").await.unwrap().attr.kind,
        FileKind::Directory
    );
    m.assert_requests(&[(Op::Head, 1), (Op::List, 1)]);
    assert_eq!(
        m.lookup("both").await.unwrap().attr.kind,
        FileKind::Directory
    );
    m.assert_requests(&[(Op::Head, 1), (Op::List, 1)]);
    assert_eq!(
        m.lookup("marked").await.unwrap().attr.kind,
        FileKind::Directory
    );
    m.assert_requests(&[(Op::Head, 2), (Op::List, 1)]);
    for path in ["f", "implied", "both", "marked", ""] {
        m.lookup(path).await.unwrap();
    }
    m.assert_requests(&[]);
    seen.refuses(m.lookup("missing").await, libc::ENOENT);
    m.assert_requests(&[(Op::Head, 1), (Op::List, 1)]);
    seen.refuses(m.lookup("missing").await, libc::ENOENT);
    m.assert_requests(&[]);
    seen.refuses(m.fs.lookup(f.ino, os("x")).await, libc::ENOTDIR);
    seen.refuses(m.fs.lookup(Ino::ROOT, os("a/b")).await, libc::EINVAL);
    seen.refuses(
        m.fs.lookup(Ino::ROOT, os(&"n".repeat(256))).await,
        libc::ENAMETOOLONG,
    );
    m.assert_requests(&[]);
    // After the TTL the store is asked again; a marker version read before is not read
    // again.
    let short = Mount::new(&store, short_ttl());
    short.lookup("marked").await.unwrap();
    expire().await;
    short.counter.reset();
    short.lookup("marked").await.unwrap();
    short.assert_requests(&[(Op::Head, 1), (Op::List, 1)]);
    // getattr of a path that is now another kind.
    let k = short.ino("f").await;
    store.remove("f");
    store.insert("f/x", "1");
    expire().await;
    seen.refuses(short.fs.getattr(k).await, libc::ESTALE);
}

async fn stat_of_listed_entry(_: Errnos) {
    let store = bucket();
    let modified = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    store.insert("large", pattern(5000, 1));
    store.set_last_modified("large", modified);
    store.insert_with(
        "large-with-mode",
        pattern(5000, 2),
        mode(libc::S_IFREG | 0o600),
    );
    store.insert_with("small", "abc", mode(libc::S_IFREG | 0o600));
    let m = Mount::new(&store, config());
    m.list("").await.unwrap();
    m.counter.reset();
    let large = m.lookup("large").await.unwrap().attr;
    assert_eq!(
        (large.size, large.mtime, large.perm),
        (5000, modified, 0o644)
    );
    let with_mode = m.lookup("large-with-mode").await.unwrap().attr;
    assert_eq!(
        with_mode.perm, 0o644,
        "LIST does not return the mode header"
    );
    assert_eq!(m.lookup("small").await.unwrap().attr.perm, 0o600);
    m.assert_requests(&[]);
    // A chmod by another machine keeps the ETag: listings show it after a lookup.
    let short = Mount::new(&store, short_ttl());
    let perm_listed = |entries: Vec<DirEntry>| {
        let small = entries.into_iter().find(|e| e.name == "small").unwrap();
        small.attr.unwrap().perm
    };
    assert_eq!(perm_listed(short.list("").await.unwrap()), 0o600);
    let etag = store.meta("small").unwrap().etag;
    store.insert_with("small", "abc", mode(libc::S_IFREG | 0o640));
    assert_eq!(store.meta("small").unwrap().etag, etag);
    expire().await;
    assert_eq!(
        perm_listed(short.list("").await.unwrap()),
        0o600,
        "still the old mode"
    );
    expire().await;
    assert_eq!(short.lookup("small").await.unwrap().attr.perm, 0o640);
    assert_eq!(perm_listed(short.list("").await.unwrap()), 0o640);
}

async fn readdir(seen: Errnos) {
    let (logs, _guard) = Logs::capture();
    let store = bucket();
    store.insert("d/", "");
    // Objects too large to be symlinks or special files: LIST alone says what they are.
    let body = pattern(4096, 3);
    for i in 0..2100 {
        store.insert(format!("d/f{i:04}"), body.clone());
    }
    store.insert("d/g-empty", "");
    store.insert_with("d/g-pipe", "", mode(libc::S_IFIFO | 0o644));
    store.insert("d/s1", "ab");
    store.insert("d/s2", pattern(4095, 1));
    store.insert("d/big", pattern(4096, 2));
    store.insert("d/a", "shadowed");
    store.insert("d/a/x", "1");
    store.insert("d//hidden", "1");
    store.insert("d/sub/x", "1");
    let m = Mount::new(&store, config());
    let dir = m.ino("d").await;
    let (new, pending) = m.create("d/zz-new").await;
    m.counter.reset();
    let handle = m.fs.opendir(dir).await.unwrap();
    m.assert_requests(&[]);
    let first = m.fs.readdir(dir, handle, 0, 10).await.unwrap();
    let names: Vec<&str> = first.iter().map(|e| e.name.as_str()).collect();
    assert_eq!(names[..5], [".", "..", "a", "big", "f0000"]);
    assert_eq!(first[2].kind, FileKind::Directory);
    m.assert_requests(&[(Op::List, 1)]);
    let rest = m.fs.readdir(dir, handle, 10, 5000).await.unwrap();
    let tail: Vec<&str> = rest
        .iter()
        .rev()
        .take(4)
        .rev()
        .map(|e| e.name.as_str())
        .collect();
    assert_eq!(tail, ["s1", "s2", "sub", "zz-new"]);
    assert_eq!(first.len() + rest.len(), 2 + 2100 + 8);
    m.assert_requests(&[(Op::List, 2), (Op::Head, 4)]);
    let kind_of = |name: &str| rest.iter().find(|e| e.name == name).map(|e| e.kind);
    assert_eq!(
        (kind_of("g-empty"), kind_of("g-pipe"), kind_of("s1")),
        (
            Some(FileKind::File),
            Some(FileKind::Fifo),
            Some(FileKind::File)
        )
    );
    logs.assert_logged(tracing::Level::WARN, &["d//", "hidden"]);
    // Listed again: from the listing cache.
    assert_eq!(m.names("d").await.len(), 2108);
    m.assert_requests(&[]);
    // A change by this mount drops it; the small objects were looked at already.
    m.fs.unlink(dir, os("f0000")).await.unwrap();
    m.counter.reset();
    assert_eq!(m.names("d").await.len(), 2107);
    m.assert_requests(&[(Op::List, 3)]);
    let file = m.ino("d/big").await;
    seen.refuses(m.fs.opendir(file).await, libc::ENOTDIR);
    seen.refuses(
        m.fs.readdir(dir, Handle(u64::MAX), 0, 10).await,
        libc::EBADF,
    );
    m.fs.release(new, pending).await.unwrap();
}

async fn open_for_reading(seen: Errnos) {
    let store = bucket();
    store.insert("f", "hello");
    store.insert("d/x", "1");
    store.insert_with("l", "f", mode(libc::S_IFLNK | 0o777));
    store.insert_with("p", "", mode(libc::S_IFIFO | 0o644));
    store.insert("cold", "brr");
    store.set_storage_class("cold", "GLACIER");
    let m = Mount::new(&store, config());
    let [f, d, l, p, cold] = [
        m.ino("f").await,
        m.ino("d").await,
        m.ino("l").await,
        m.ino("p").await,
        m.ino("cold").await,
    ];
    m.counter.reset();
    let handle = m.fs.open(f, OpenFlags::read_only()).await.unwrap();
    m.assert_requests(&[]);
    store.insert("f", "HELLO");
    let pinned = m.fs.read(f, handle, 0, 5).await.unwrap_err();
    assert_eq!(
        pinned.errno(),
        libc::ESTALE,
        "reads are pinned to the version opened"
    );
    seen.refuses(m.fs.open(d, OpenFlags::read_only()).await, libc::EISDIR);
    seen.refuses(m.fs.open(l, OpenFlags::read_only()).await, libc::EINVAL);
    seen.refuses(m.fs.open(p, OpenFlags::read_only()).await, libc::EINVAL);
    seen.refuses(m.fs.open(p, writing()).await, libc::EINVAL);
    m.counter.reset();
    seen.refuses(m.fs.open(cold, OpenFlags::read_only()).await, libc::EACCES);
    m.assert_requests(&[(Op::Head, 1)]);
    let fresh = Mount::new(&store, uncached());
    let f = fresh.ino("f").await;
    store.remove("f");
    seen.refuses(fresh.fs.open(f, OpenFlags::read_only()).await, libc::ENOENT);
}

async fn open_for_writing(seen: Errnos) {
    let store = bucket();
    // Over 4095 bytes: a listing does not HEAD them.
    store.insert_with("d/f", pattern(8192, 1), mode(libc::S_IFREG | 0o600));
    store.insert_with("d/g", pattern(8192, 2), mode(libc::S_IFREG | 0o600));
    store.insert_with("l", "f", mode(libc::S_IFLNK | 0o777));
    store.insert_with("p", "", mode(libc::S_IFIFO | 0o644));
    let m = Mount::new(&store, config());
    m.list("d").await.unwrap();
    let [f, g] = [m.ino("d/f").await, m.ino("d/g").await];
    m.counter.reset();
    // Listed: the mode is unknown, one HEAD reads it.
    let handle = m.fs.open(f, writing()).await.unwrap();
    m.assert_requests(&[(Op::Head, 1)]);
    assert_eq!(m.fs.getattr(f).await.unwrap().attr.perm, 0o600);
    // Looked up (or open already): nothing.
    let second = m.fs.open(f, writing()).await.unwrap();
    m.assert_requests(&[]);
    for h in [handle, second] {
        m.fs.release(f, h).await.unwrap();
    }
    store.remove("d/g");
    seen.refuses(m.fs.open(g, writing()).await, libc::ENOENT);
    let [d, l, p] = [m.ino("d").await, m.ino("l").await, m.ino("p").await];
    seen.refuses(m.fs.open(d, writing()).await, libc::EISDIR);
    seen.refuses(m.fs.open(l, writing()).await, libc::EINVAL);
    seen.refuses(m.fs.open(p, writing()).await, libc::EINVAL);
    let guarded = Mount::new(&store, no_overwrite());
    let f = guarded.ino("d/f").await;
    seen.refuses(guarded.fs.open(f, writing()).await, libc::EPERM);
    let ro = Mount::new(&store, read_only());
    let f = ro.ino("d/f").await;
    seen.refuses(ro.fs.open(f, writing()).await, libc::EROFS);
}

async fn read(seen: Errnos) {
    const MIB: usize = 1024 * 1024;
    let store = bucket();
    let data = pattern(3 * MIB, 7);
    store.insert("r", data.clone());
    store.insert("q", data.clone());
    let m = Mount::new(&store, config());
    let (r, handle) = m.open("r", OpenFlags::read_only()).await;
    m.counter.reset();
    let chunk = 128 * 1024;
    let first = m.fs.read(r, handle, 0, chunk as u32).await.unwrap();
    assert_eq!(first, data.slice(..chunk));
    settle().await;
    m.assert_requests(&[(Op::Get, 1)]);
    // Sequential: the window doubles, one more part covers the rest of the object.
    let second =
        m.fs.read(r, handle, chunk as u64, chunk as u32)
            .await
            .unwrap();
    assert_eq!(second, data.slice(chunk..2 * chunk));
    settle().await;
    m.assert_requests(&[(Op::Get, 1)]);
    let end =
        m.fs.read(r, handle, (3 * MIB - 10) as u64, 100)
            .await
            .unwrap();
    assert_eq!(end, data.slice(3 * MIB - 10..));
    assert!(m
        .fs
        .read(r, handle, 3 * MIB as u64, 100)
        .await
        .unwrap()
        .is_empty());
    settle().await;
    m.assert_requests(&[]);
    // Random reads fetch what they ask for.
    let (q, handle) = m.open("q", OpenFlags::read_only()).await;
    m.counter.reset();
    for offset in [2 * MIB, MIB, 5] {
        let got = m.fs.read(q, handle, offset as u64, 1000).await.unwrap();
        assert_eq!(got, data.slice(offset..offset + 1000));
        settle().await;
        m.assert_requests(&[(Op::Get, 1)]);
    }
    store.insert("q", pattern(3 * MIB, 8));
    seen.refuses(m.fs.read(q, handle, 100_000, 10).await, libc::ESTALE);
    seen.refuses(m.fs.read(q, Handle(u64::MAX), 0, 10).await, libc::EBADF);
}

async fn create(seen: Errnos) {
    let store = bucket();
    store.insert("exists", "old");
    store.insert("d/x", "1");
    store.insert_with("l", "d", mode(libc::S_IFLNK | 0o777));
    store.insert_with("sock", "", mode(libc::S_IFSOCK | 0o755));
    let m = Mount::new(&store, config());
    let (entry, handle) =
        m.fs.create(Ino::ROOT, os("new"), 0o640, writing())
            .await
            .unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::List, 1)]);
    assert!(store.get_bytes("new").is_none());
    assert_eq!(m.lookup("new").await.unwrap().attr.perm, 0o640);
    assert!(m.names("").await.contains(&"new".to_owned()));
    m.counter.reset();
    m.close(entry.attr.ino, handle).await.unwrap();
    m.assert_requests(&[(Op::Put, 1)]);
    assert_eq!(store.get_bytes("new").unwrap().len(), 0);
    assert_eq!(
        user_meta(&store, "new", "mode").unwrap(),
        (libc::S_IFREG | 0o640).to_string()
    );
    // O_CREAT of an existing file opens it; O_TRUNC empties it.
    m.lookup("exists").await.unwrap();
    let (entry, handle) =
        m.fs.create(Ino::ROOT, os("exists"), 0o644, truncating())
            .await
            .unwrap();
    m.close(entry.attr.ino, handle).await.unwrap();
    assert_eq!(store.get_bytes("exists").unwrap().len(), 0);
    let exclusive = OpenFlags {
        exclusive: true,
        ..writing()
    };
    seen.refuses(
        m.fs.create(Ino::ROOT, os("exists"), 0o644, exclusive).await,
        libc::EEXIST,
    );
    seen.refuses(
        m.fs.create(Ino::ROOT, os("d"), 0o644, writing()).await,
        libc::EISDIR,
    );
    seen.refuses(
        m.fs.create(Ino::ROOT, os("l"), 0o644, writing()).await,
        libc::EINVAL,
    );
    seen.refuses(
        m.fs.create(Ino::ROOT, os("sock"), 0o644, truncating())
            .await,
        libc::EINVAL,
    );
    assert_eq!(
        user_meta(&store, "sock", "mode").unwrap(),
        (libc::S_IFSOCK | 0o755).to_string()
    );
    seen.refuses(
        m.fs.create(Ino::ROOT, os("a/b"), 0o644, writing()).await,
        libc::EINVAL,
    );
    let long = "n".repeat(256);
    seen.refuses(
        m.fs.create(Ino::ROOT, os(&long), 0o644, writing()).await,
        libc::ENAMETOOLONG,
    );
    let file = m.ino("exists").await;
    seen.refuses(
        m.fs.create(file, os("x"), 0o644, writing()).await,
        libc::ENOTDIR,
    );
    let guarded = Mount::new(&store, no_overwrite());
    seen.refuses(
        guarded
            .fs
            .create(Ino::ROOT, os("exists"), 0o644, writing())
            .await,
        libc::EPERM,
    );
    let ro = Mount::new(&store, read_only());
    seen.refuses(
        ro.fs.create(Ino::ROOT, os("other"), 0o644, writing()).await,
        libc::EROFS,
    );
}

async fn write(seen: Errnos) {
    let store = bucket();
    store.insert("existing", "abc");
    let m = Mount::new(&store, config());
    let (ino, handle) = m.create("streamed").await;
    m.counter.reset();
    let data = pattern(3 * PART as usize + 28, 1);
    m.write(ino, handle, 0, &data.slice(..1000)).await;
    settle().await;
    m.assert_requests(&[]);
    m.write(ino, handle, 1000, &data.slice(1000..)).await;
    settle().await;
    m.assert_requests(&[(Op::CreateMultipart, 1), (Op::UploadPart, 3)]);
    m.close(ino, handle).await.unwrap();
    assert_eq!(store.get_bytes("streamed").unwrap(), data);
    // Appends and writes elsewhere are staged.
    let (ino, handle) = m.open("existing", appending()).await;
    m.counter.reset();
    m.write(ino, handle, 0, &Bytes::from_static(b"def")).await;
    m.assert_requests(&[]);
    m.close(ino, handle).await.unwrap();
    assert_eq!(&store.get_bytes("existing").unwrap()[..], b"abcdef");
    let (ino, handle) = m.open("existing", OpenFlags::read_only()).await;
    seen.refuses(
        m.fs.write(ino, handle, 0, Bytes::from_static(b"x")).await,
        libc::EBADF,
    );
    m.fs.release(ino, handle).await.unwrap();
    let capped = Mount::new(&store, config().with_staging_cap(0));
    let (ino, handle) = capped.open("existing", writing()).await;
    seen.refuses(
        capped
            .fs
            .write(ino, handle, 1, Bytes::from_static(b"x"))
            .await,
        libc::ENOSPC,
    );
    capped.fs.release(ino, handle).await.unwrap();
    // A part that failed fails a later write of the stream.
    let (ino, handle) = m.create("failing").await;
    m.faults.fail_next(Op::UploadPart, 1, injected());
    m.write(ino, handle, 0, &pattern(2 * PART as usize, 2))
        .await;
    settle().await;
    let more = Bytes::from_static(b"more");
    seen.refuses(m.fs.write(ino, handle, 2 * PART, more).await, libc::EIO);
    m.fs.release(ino, handle).await.unwrap();
    // Past the largest object (5 TiB, or `--max-file-size`): refused, nothing staged.
    let (ino, handle) = m.open("existing", writing()).await;
    seen.refuses(
        m.fs.write(ino, handle, 5 << 40, Bytes::from_static(b"x"))
            .await,
        libc::EFBIG,
    );
    m.close(ino, handle).await.unwrap();
}

async fn flush_fsync_close(seen: Errnos) {
    let store = bucket();
    let mut kept = headers(&[("color", "red".to_owned())]);
    kept.content_type = Some("text/plain".to_owned());
    kept.storage_class = Some("STANDARD_IA".to_owned());
    store.insert_with("old", "previous", kept);
    store.insert("large", pattern(5 * PART as usize, 1));
    let m = Mount::new(&store, config());
    // Unchanged: nothing.
    let (ino, handle) = m.open("old", OpenFlags::read_only()).await;
    m.counter.reset();
    m.close(ino, handle).await.unwrap();
    m.assert_requests(&[]);
    // A new small file: one PUT, once.
    let (ino, handle) = m.create("new").await;
    m.write(ino, handle, 0, &Bytes::from_static(b"hi")).await;
    m.counter.reset();
    // Closing a read-only descriptor publishes nothing; fsync through it does.
    let reader = m.fs.open(ino, OpenFlags::read_only()).await.unwrap();
    m.counter.reset();
    m.close(ino, reader).await.unwrap();
    m.assert_requests(&[]);
    assert!(store.get_bytes("new").is_none());
    let reader = m.fs.open(ino, OpenFlags::read_only()).await.unwrap();
    m.fs.fsync(ino, reader).await.unwrap();
    m.assert_requests(&[(Op::Put, 1)]);
    m.close(ino, reader).await.unwrap();
    m.close(ino, handle).await.unwrap();
    m.assert_requests(&[]);
    // A rewrite of a small object: HEAD, GET of the kept bytes, PUT; metadata kept.
    let (ino, handle) = m.open("old", writing()).await;
    m.write(ino, handle, 0, &Bytes::from_static(b"P")).await;
    m.counter.reset();
    m.close(ino, handle).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::Get, 1), (Op::Put, 1)]);
    assert_eq!(&store.get_bytes("old").unwrap()[..], b"Previous");
    let meta = store.meta("old").unwrap();
    assert_eq!(
        meta.user_metadata.get("color").map(String::as_str),
        Some("red")
    );
    assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
    assert_eq!(meta.storage_class.as_deref(), Some("STANDARD_IA"));
    // Above one part: unchanged parts are copied server-side.
    let (ino, handle) = m.open("large", writing()).await;
    m.write(ino, handle, 4 * PART - 10, &Bytes::from_static(b"changed"))
        .await;
    m.counter.reset();
    m.close(ino, handle).await.unwrap();
    m.assert_requests(&[
        (Op::Head, 1),
        (Op::Get, 2),
        (Op::CreateMultipart, 1),
        (Op::UploadPart, 1),
        (Op::UploadPartCopy, 4),
        (Op::CompleteMultipart, 1),
    ]);
    // Streamed: the last part and the completion.
    let (ino, handle) = m.create("streamed").await;
    m.write(ino, handle, 0, &pattern(2 * PART as usize + 5, 2))
        .await;
    settle().await;
    m.counter.reset();
    m.close(ino, handle).await.unwrap();
    m.assert_requests(&[(Op::UploadPart, 1), (Op::CompleteMultipart, 1)]);
    // Failures.
    let (ino, handle) = m.open("old", writing()).await;
    m.write(ino, handle, 0, &Bytes::from_static(b"p")).await;
    m.faults.fail_next(Op::Put, 1, injected());
    seen.refuses(m.fs.fsync(ino, handle).await, libc::EIO);
    store.insert("old", "changed by another machine");
    seen.refuses(m.close(ino, handle).await, libc::EIO);
    assert_eq!(
        &store.get_bytes("old").unwrap()[..],
        b"changed by another machine"
    );
}

async fn copy_file_range(seen: Errnos) {
    // As long as `cp` asks for.
    const ALL: u64 = i64::MAX as u64;
    let store = bucket();
    let mut theirs = headers(&[("uid", "4242".to_owned())]);
    theirs.content_type = Some("text/plain".to_owned());
    store.insert_with("src", pattern(3 * PART as usize, 3), theirs.clone());
    store.insert_with("old", "previous", theirs);
    let m = Mount::new(&store, config().with_owner(1000, 100));
    let (si, sh) = m.open("src", OpenFlags::read_only()).await;

    // A new file: one CopyObject, visible when it returns, with a new file's attributes;
    // the call at the end and the close ask nothing.
    let (di, dh) = m.create("copy").await;
    m.counter.reset();
    let copied = m.fs.copy_file_range(si, sh, 0, di, dh, 0, ALL).await;
    assert_eq!(copied.unwrap(), 3 * PART);
    m.assert_requests(&[(Op::Copy, 1)]);
    assert_eq!(store.get_bytes("copy"), store.get_bytes("src"));
    assert_eq!(user_meta(&store, "copy", "uid").as_deref(), Some("1000"));
    assert_eq!(
        user_meta(&store, "copy", "mode").as_deref(),
        Some("33188"),
        "S_IFREG | 0644, as created"
    );
    let at_end =
        m.fs.copy_file_range(si, sh, 3 * PART, di, dh, 3 * PART, ALL);
    assert_eq!(at_end.await.unwrap(), 0);
    m.close(di, dh).await.unwrap();
    m.assert_requests(&[]);

    // A replaced object (`O_TRUNC`): HEAD for its metadata, kept; the copy If-Match.
    let (di, dh) = m.open("old", truncating()).await;
    m.counter.reset();
    let copied = m.fs.copy_file_range(si, sh, 0, di, dh, 0, ALL).await;
    assert_eq!(copied.unwrap(), 3 * PART);
    m.assert_requests(&[(Op::Head, 1), (Op::Copy, 1)]);
    assert_eq!(store.get_bytes("old"), store.get_bytes("src"));
    assert_eq!(user_meta(&store, "old", "uid").as_deref(), Some("4242"));
    let content_type = store.meta("old").unwrap().content_type;
    assert_eq!(content_type.as_deref(), Some("text/plain"));
    m.close(di, dh).await.unwrap();
    m.assert_requests(&[]);

    // Another writer changed the destination since it was opened: nothing is copied.
    let (di, dh) = m.open("old", truncating()).await;
    store.insert("old", "another machine's");
    seen.refuses(
        m.fs.copy_file_range(si, sh, 0, di, dh, 0, ALL).await,
        libc::EIO,
    );
    assert_eq!(&store.get_bytes("old").unwrap()[..], b"another machine's");
    assert_eq!(m.fs.getattr(di).await.unwrap().attr.size, 0, "still empty");
    m.fs.release(di, dh).await.unwrap();

    // At another offset: through the handles, uploaded at close.
    let (di, dh) = m.create("tail").await;
    m.counter.reset();
    let copied = m.fs.copy_file_range(si, sh, PART, di, dh, 0, ALL).await;
    assert_eq!(copied.unwrap(), 2 * PART);
    assert_eq!(m.counter.count(Op::Copy), 0);
    m.close(di, dh).await.unwrap();
    assert_eq!(
        store.get_bytes("tail").unwrap(),
        store.get_bytes("src").unwrap().slice(PART as usize..)
    );

    // Handles that cannot copy.
    let (ri, rh) = m.open("src", OpenFlags::read_only()).await;
    let (wi, wh) = m.open("copy", writing()).await;
    m.counter.reset();
    seen.refuses(
        m.fs.copy_file_range(wi, wh, 0, ri, rh, 0, ALL).await,
        libc::EBADF,
    );
    let (ai, ah) = m.open("copy", appending()).await;
    seen.refuses(
        m.fs.copy_file_range(si, sh, 0, ai, ah, 0, ALL).await,
        libc::EBADF,
    );
    m.assert_requests(&[]);

    for (ino, handle) in [(ri, rh), (wi, wh), (ai, ah), (si, sh)] {
        m.close(ino, handle).await.unwrap();
    }

    // Above the single-request limit: a multipart copy, its parts copied server-side.
    let big = MemStore::with_capabilities(Capabilities {
        min_part_size: PART,
        max_single_put: 2 * PART,
        ..Capabilities::default()
    });
    big.insert("src", pattern(5 * PART as usize + 1, 4));
    let m = Mount::new(&big, config());
    let (si, sh) = m.open("src", OpenFlags::read_only()).await;
    let (di, dh) = m.create("copy").await;
    m.counter.reset();
    let copied = m.fs.copy_file_range(si, sh, 0, di, dh, 0, ALL).await;
    assert_eq!(copied.unwrap(), 5 * PART + 1);
    m.assert_requests(&[
        (Op::Head, 2),
        (Op::CreateMultipart, 1),
        (Op::UploadPartCopy, 6),
        (Op::CompleteMultipart, 1),
    ]);
    assert_eq!(big.get_bytes("copy"), big.get_bytes("src"));
    m.close(di, dh).await.unwrap();
    m.assert_requests(&[]);
    // The source replaced since it was opened: nothing is copied, never another version.
    let (di, dh) = m.create("second").await;
    big.insert("src", pattern(5 * PART as usize + 1, 5));
    seen.refuses(
        m.fs.copy_file_range(si, sh, 0, di, dh, 0, ALL).await,
        libc::EIO,
    );
    assert!(big.get_bytes("second").is_none());
    m.assert_no_open_upload().await;
}

async fn truncate(seen: Errnos) {
    let store = bucket();
    store.insert("t", "abcdef");
    store.insert("d/x", "1");
    store.insert_with("l", "t", mode(libc::S_IFLNK | 0o777));
    store.insert_with("p", "", mode(libc::S_IFIFO | 0o644));
    let m = Mount::new(&store, config());
    let t = m.ino("t").await;
    m.counter.reset();
    m.fs.setattr(t, None, set_size(3)).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::Get, 1), (Op::Put, 1)]);
    assert_eq!(&store.get_bytes("t").unwrap()[..], b"abc");
    m.fs.setattr(t, None, set_size(5)).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::Get, 1), (Op::Put, 1)]);
    assert_eq!(&store.get_bytes("t").unwrap()[..], b"abc\0\0");
    m.fs.setattr(t, None, set_size(0)).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::Put, 1)]);
    m.fs.setattr(t, None, set_size(2)).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::Put, 1)]);
    assert_eq!(&store.get_bytes("t").unwrap()[..], b"\0\0");
    let (_, handle) = m.open("t", writing()).await;
    m.counter.reset();
    let entry = m.fs.setattr(t, Some(handle), set_size(1)).await.unwrap();
    assert_eq!(entry.attr.size, 1);
    m.assert_requests(&[]);
    m.close(t, handle).await.unwrap();
    assert_eq!(store.get_bytes("t").unwrap().len(), 1);
    let d = m.ino("d").await;
    seen.refuses(m.fs.setattr(d, None, set_size(0)).await, libc::EISDIR);
    let l = m.ino("l").await;
    seen.refuses(m.fs.setattr(l, None, set_size(0)).await, libc::EINVAL);
    let p = m.ino("p").await;
    seen.refuses(m.fs.setattr(p, None, set_size(1)).await, libc::EINVAL);
    assert_eq!(store.get_bytes("p").unwrap().len(), 0);
    store.insert("t", "changed by another machine");
    seen.refuses(m.fs.setattr(t, None, set_size(0)).await, libc::EIO);
    assert_eq!(
        &store.get_bytes("t").unwrap()[..],
        b"changed by another machine"
    );
    let guarded = Mount::new(&store, no_overwrite());
    let t = guarded.ino("t").await;
    seen.refuses(guarded.fs.setattr(t, None, set_size(0)).await, libc::EPERM);
    let ro = Mount::new(&store, read_only());
    let t = ro.ino("t").await;
    seen.refuses(ro.fs.setattr(t, None, set_size(0)).await, libc::EROFS);
    let small = Mount::new(&store, config().with_max_file_size(100));
    let t = small.ino("t").await;
    small.counter.reset();
    seen.refuses(
        small.fs.setattr(t, None, set_size(1 << 62)).await,
        libc::EFBIG,
    );
    seen.refuses(small.fs.setattr(t, None, set_size(101)).await, libc::EFBIG);
    small.assert_requests(&[]);
}

async fn mkdir(seen: Errnos) {
    let store = bucket();
    store.insert("file", "1");
    store.insert("gone/", "");
    let m = Mount::new(&store, config().with_owner(1000, 100));
    let entry = m.fs.mkdir(Ino::ROOT, os("d"), 0o750).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::List, 1), (Op::Put, 1)]);
    assert_eq!(
        (entry.attr.kind, entry.attr.perm),
        (FileKind::Directory, 0o750)
    );
    assert_eq!(store.get_bytes("d/").unwrap().len(), 0);
    let marker = store.meta("d/").unwrap().user_metadata;
    assert_eq!(marker["mode"], (libc::S_IFDIR | 0o750).to_string());
    assert_eq!(
        (marker["uid"].as_str(), marker["gid"].as_str()),
        ("1000", "100")
    );
    assert!(marker.contains_key("mtime"));
    seen.refuses(m.fs.mkdir(Ino::ROOT, os("d"), 0o750).await, libc::EEXIST);
    seen.refuses(m.fs.mkdir(Ino::ROOT, os("file"), 0o750).await, libc::EEXIST);
    // Created by another machine after our lookup: the conditional PUT fails.
    m.cache(&["race"]).await;
    store.insert("race/", "");
    seen.refuses(m.fs.mkdir(Ino::ROOT, os("race"), 0o750).await, libc::EEXIST);
    m.assert_requests(&[(Op::Put, 1)]);
    let file = m.ino("file").await;
    seen.refuses(m.fs.mkdir(file, os("x"), 0o750).await, libc::ENOTDIR);
    seen.refuses(m.fs.mkdir(Ino::ROOT, os(".."), 0o750).await, libc::EINVAL);
    seen.refuses(
        m.fs.mkdir(Ino::ROOT, os(&"n".repeat(256)), 0o750).await,
        libc::ENAMETOOLONG,
    );
    let fresh = Mount::new(&store, uncached());
    let gone = fresh.ino("gone").await;
    store.remove("gone/");
    seen.refuses(fresh.fs.mkdir(gone, os("x"), 0o750).await, libc::ENOENT);
    let ro = Mount::new(&store, read_only());
    seen.refuses(ro.fs.mkdir(Ino::ROOT, os("x"), 0o750).await, libc::EROFS);
}

async fn unlink(seen: Errnos) {
    let store = filled(&[
        "f",
        "implied/x",
        "implied/y",
        "marked/",
        "marked/x",
        "dir/x",
    ]);
    let m = Mount::new(&store, config());
    m.fs.unlink(Ino::ROOT, os("f")).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::List, 1), (Op::Delete, 1)]);
    assert!(store.get_bytes("f").is_none());
    // The parent has no marker: it gets one first.
    let (implied, x) = m.looked_up("implied/x").await;
    m.fs.unlink(implied, os(x)).await.unwrap();
    m.assert_requests(&[(Op::Put, 1), (Op::Delete, 1)]);
    assert!(store.get_bytes("implied/").is_some());
    // Its marker was seen: nothing more.
    let (marked, x) = m.looked_up("marked/x").await;
    m.fs.unlink(marked, os(x)).await.unwrap();
    m.assert_requests(&[(Op::Delete, 1)]);
    // Without conditional writes, the marker is HEADed first.
    let plain = MemStore::with_capabilities(Capabilities {
        conditional_writes: false,
        ..Capabilities::default()
    });
    plain.insert("p/x", "1");
    let p = Mount::new(&plain, config());
    let (dir, x) = p.looked_up("p/x").await;
    p.fs.unlink(dir, os(x)).await.unwrap();
    p.assert_requests(&[(Op::Head, 1), (Op::Put, 1), (Op::Delete, 1)]);
    assert_eq!(plain.keys(), vec!["p/"]);
    // Open handles stop uploading.
    let (ino, handle) = m.create("open").await;
    m.write(ino, handle, 0, &Bytes::from_static(b"x")).await;
    m.fs.unlink(Ino::ROOT, os("open")).await.unwrap();
    m.close(ino, handle).await.unwrap();
    assert!(store.get_bytes("open").is_none());
    seen.refuses(m.fs.unlink(Ino::ROOT, os("dir")).await, libc::EISDIR);
    seen.refuses(m.fs.unlink(Ino::ROOT, os("missing")).await, libc::ENOENT);
    let guarded = Mount::new(&store, no_delete());
    seen.refuses(guarded.fs.unlink(Ino::ROOT, os("dir")).await, libc::EPERM);
    guarded.assert_requests(&[]);
    let ro = Mount::new(&store, read_only());
    seen.refuses(ro.fs.unlink(Ino::ROOT, os("dir")).await, libc::EROFS);
}

async fn rmdir(seen: Errnos) {
    let (logs, _guard) = Logs::capture();
    let store = filled(&[
        "empty/",
        "full/x",
        "hidden/",
        "hidden//x",
        "p/e/",
        "file",
        "e2/",
    ]);
    let m = Mount::new(&store, config());
    m.fs.rmdir(Ino::ROOT, os("empty")).await.unwrap();
    m.assert_requests(&[(Op::Head, 2), (Op::List, 2), (Op::Delete, 1)]);
    assert!(store.get_bytes("empty/").is_none());
    let (p, e) = m.looked_up("p/e").await;
    m.fs.rmdir(p, os(e)).await.unwrap();
    m.assert_requests(&[(Op::List, 1), (Op::Put, 1), (Op::Delete, 1)]);
    assert_eq!(
        store.keys().iter().filter(|k| k.starts_with("p/")).count(),
        1
    );
    seen.refuses(m.fs.rmdir(Ino::ROOT, os("full")).await, libc::ENOTEMPTY);
    seen.refuses(m.fs.rmdir(Ino::ROOT, os("hidden")).await, libc::ENOTEMPTY);
    let (ino, handle) = m.create("e2/pending").await;
    seen.refuses(m.fs.rmdir(Ino::ROOT, os("e2")).await, libc::ENOTEMPTY);
    m.fs.release(ino, handle).await.unwrap();
    logs.assert_logged(tracing::Level::WARN, &["hidden//", "cannot be removed"]);
    seen.refuses(m.fs.rmdir(Ino::ROOT, os("file")).await, libc::ENOTDIR);
    seen.refuses(m.fs.rmdir(Ino::ROOT, os("missing")).await, libc::ENOENT);
    let guarded = Mount::new(&store, no_delete());
    seen.refuses(guarded.fs.rmdir(Ino::ROOT, os("full")).await, libc::EPERM);
    guarded.assert_requests(&[]);
    let ro = Mount::new(&store, read_only());
    seen.refuses(ro.fs.rmdir(Ino::ROOT, os("full")).await, libc::EROFS);
}

async fn rename_file(seen: Errnos) {
    let (logs, _guard) = Logs::capture();
    let store = bucket();
    store.insert_with("a", "A", headers(&[("color", "red".to_owned())]));
    store.insert("b", "B");
    store.insert("implied/x", "X");
    store.insert_with("l", "a", mode(libc::S_IFLNK | 0o777));
    store.insert("ia", "IA");
    store.set_storage_class("ia", "STANDARD_IA");
    store.insert("d/y", "1");
    let m = Mount::new(&store, config());
    let a = m.ino("a").await;
    m.counter.reset();
    m.rename("a", "c", false).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::List, 1), (Op::Copy, 1), (Op::Delete, 1)]);
    assert!(store.get_bytes("a").is_none());
    assert_eq!(user_meta(&store, "c", "color").as_deref(), Some("red"));
    assert_eq!(m.ino("c").await, a, "the inode follows");
    m.cache(&["b"]).await;
    m.rename("c", "b", false).await.unwrap();
    m.assert_requests(&[(Op::Copy, 1), (Op::Delete, 1)]);
    assert_eq!(&store.get_bytes("b").unwrap()[..], b"A");
    // Leaving a directory without a marker: it gets one.
    m.cache(&["implied/x"]).await;
    m.rename("implied/x", "x", false).await.unwrap();
    m.assert_requests(&[
        (Op::Head, 1),
        (Op::List, 1),
        (Op::Put, 1),
        (Op::Copy, 1),
        (Op::Delete, 1),
    ]);
    assert!(store.get_bytes("implied/").is_some());
    // Not STANDARD: HEADed, the class restated.
    m.cache(&["ia", "ia2"]).await;
    m.rename("ia", "ia2", false).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::Copy, 1), (Op::Delete, 1)]);
    assert_eq!(
        store.meta("ia2").unwrap().storage_class.as_deref(),
        Some("STANDARD_IA")
    );
    m.rename("l", "l2", false).await.unwrap();
    assert_eq!(m.lookup("l2").await.unwrap().attr.kind, FileKind::Symlink);
    // Unsaved writes go first.
    let (ino, handle) = m.create("w").await;
    m.write(ino, handle, 0, &Bytes::from_static(b"unsaved"))
        .await;
    m.rename("w", "w2", false).await.unwrap();
    assert_eq!(&store.get_bytes("w2").unwrap()[..], b"unsaved");
    m.close(ino, handle).await.unwrap();
    // A 412 is retried once, after fresh lookups.
    m.cache(&["b", "x"]).await;
    store.insert("b", "changed by another machine");
    m.rename("x", "b", false).await.unwrap();
    m.assert_requests(&[(Op::Head, 2), (Op::List, 2), (Op::Copy, 2), (Op::Delete, 1)]);
    assert_eq!(&store.get_bytes("b").unwrap()[..], b"X");
    m.faults.fail_next(Op::Copy, 2, precondition());
    seen.refuses(m.rename("b", "x", false).await, libc::EIO);
    m.faults.fail_next(Op::Copy, 1, injected());
    seen.refuses(m.rename("b", "x", false).await, libc::EIO);
    m.faults.fail_next(Op::Delete, 1, injected());
    seen.refuses(m.rename("b", "x", false).await, libc::EIO);
    assert!(store.get_bytes("b").is_some() && store.get_bytes("x").is_some());
    logs.assert_logged(tracing::Level::ERROR, &["src=/b", "dst=/x", "both names"]);
    seen.refuses(m.rename("missing", "y", false).await, libc::ENOENT);
    seen.refuses(m.rename("b", "x", true).await, libc::EEXIST);
    seen.refuses(m.rename("b", "d", false).await, libc::EISDIR);
    let file = m.ino("b").await;
    let moved = m.fs.rename(Ino::ROOT, os("x"), file, os("y"), false).await;
    seen.refuses(moved, libc::ENOTDIR);
    store.insert("cold", "brr");
    store.set_storage_class("cold", "GLACIER");
    // A mount that has not listed the root yet: `m` may know it without `cold` for a TTL.
    let fresh = Mount::new(&store, config());
    seen.refuses(fresh.rename("cold", "cold2", false).await, libc::EACCES);
    let guarded = Mount::new(&store, no_delete());
    seen.refuses(guarded.rename("b", "new", false).await, libc::EPERM);
    let guarded = Mount::new(&store, no_overwrite());
    seen.refuses(guarded.rename("b", "x", false).await, libc::EPERM);
    guarded.rename("b", "new", false).await.unwrap();
    let ro = Mount::new(&store, read_only());
    seen.refuses(ro.rename("x", "y", false).await, libc::EROFS);
    // Between two buckets: EXDEV, so that `mv` copies.
    let buckets = MemBuckets::new();
    buckets.create_bucket("one").insert("f", "1");
    buckets.create_bucket("two");
    let fs = BucketsFs::new(Arc::new(buckets), config());
    let one = fs.lookup(Ino::ROOT, os("one")).await.unwrap().attr.ino;
    let two = fs.lookup(Ino::ROOT, os("two")).await.unwrap().attr.ino;
    seen.refuses(
        fs.rename(one, os("f"), two, os("f"), false).await,
        libc::EXDEV,
    );
}

async fn rename_directory(seen: Errnos) {
    let (logs, _guard) = Logs::capture();
    let store = filled(&[
        "t/", "t/a", "t/s/b", "t//h", "u/a", "full/x", "empty/", "file", "p/q/x",
    ]);
    let m = Mount::new(&store, config());
    m.rename("t", "t2", false).await.unwrap();
    m.assert_requests(&[
        (Op::Head, 3),
        (Op::List, 3),
        (Op::Copy, 4),
        (Op::DeleteMany, 1),
    ]);
    let under = |prefix: &str| -> Vec<String> {
        store
            .keys()
            .into_iter()
            .filter(|k| k.starts_with(prefix))
            .collect()
    };
    assert_eq!(under("t/"), Vec::<String>::new());
    assert_eq!(under("t2/"), vec!["t2/", "t2//h", "t2/a", "t2/s/b"]);
    // No marker: a new one.
    m.rename("u", "u2", false).await.unwrap();
    m.assert_requests(&[
        (Op::Head, 2),
        (Op::List, 3),
        (Op::Copy, 1),
        (Op::Put, 1),
        (Op::DeleteMany, 1),
    ]);
    assert_eq!(under("u2"), vec!["u2/", "u2/a"]);
    // Leaving a parent without a marker: it gets one.
    m.cache(&["p/q"]).await;
    m.rename("p/q", "q2", false).await.unwrap();
    m.assert_requests(&[
        (Op::Head, 1),
        (Op::List, 2),
        (Op::Put, 2),
        (Op::Copy, 1),
        (Op::DeleteMany, 1),
    ]);
    assert_eq!(under("p"), vec!["p/"]);
    // Pages and batches of 1000 keys.
    store.insert("big/", "");
    for i in 0..1000 {
        store.insert(format!("big/f{i:04}"), "");
    }
    m.cache(&["big", "big2"]).await;
    m.rename("big", "big2", false).await.unwrap();
    m.assert_requests(&[(Op::List, 2), (Op::Copy, 1001), (Op::DeleteMany, 2)]);
    assert_eq!(under("big2/").len(), 1001);
    assert!(under("big/").is_empty());
    // A failed copy: the copies are removed, no source deleted.
    m.faults
        .fail_matching(|op, key| op == Op::Copy && key == "t2/s/b", injected());
    seen.refuses(m.rename("t2", "t3", false).await, libc::EIO);
    m.faults.clear();
    assert_eq!(under("t2/").len(), 4);
    assert!(under("t3").is_empty());
    // A failed delete: both trees complete, the keys left logged.
    m.faults.fail_next(Op::DeleteMany, 1, injected());
    seen.refuses(m.rename("t2", "t4", false).await, libc::EIO);
    assert_eq!((under("t2/").len(), under("t4/").len()), (4, 4));
    logs.assert_logged(tracing::Level::ERROR, &["t2/a", "could not delete"]);
    // An archived object inside: nothing deleted.
    store.insert("arch/cold", "brr");
    store.set_storage_class("arch/cold", "GLACIER");
    seen.refuses(m.rename("arch", "arch2", false).await, libc::EIO);
    assert_eq!((under("arch/").len(), under("arch2").len()), (1, 0));
    seen.refuses(m.rename("t4", "file", false).await, libc::ENOTDIR);
    seen.refuses(m.rename("t4", "full", false).await, libc::ENOTEMPTY);
    seen.refuses(m.rename("t4", "t4/s/inner", false).await, libc::EINVAL);
    seen.refuses(m.rename("t4", "empty", true).await, libc::EEXIST);
    let component = "n".repeat(255);
    store.insert(format!("long/{component}/{component}/{component}/x"), "1");
    seen.refuses(
        m.rename("long", &component, false).await,
        libc::ENAMETOOLONG,
    );
    let guarded = Mount::new(&store, no_delete());
    seen.refuses(guarded.rename("t4", "t5", false).await, libc::EPERM);
    let guarded = Mount::new(&store, no_overwrite());
    seen.refuses(guarded.rename("t4", "empty", false).await, libc::EPERM);
    m.rename("t4", "empty", false).await.unwrap();
    let ro = Mount::new(&store, read_only());
    seen.refuses(ro.rename("empty", "t5", false).await, libc::EROFS);
}

async fn symlink(seen: Errnos) {
    let store = bucket();
    store.insert("file", "1");
    store.insert("gone/", "");
    let m = Mount::new(&store, config().with_owner(1000, 100));
    let entry =
        m.fs.symlink(Ino::ROOT, os("l"), os("some/target"))
            .await
            .unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::List, 1), (Op::Put, 1)]);
    assert_eq!(entry.attr.kind, FileKind::Symlink);
    assert_eq!(&store.get_bytes("l").unwrap()[..], b"some/target");
    let meta = store.meta("l").unwrap().user_metadata;
    assert_eq!(meta["mode"], (libc::S_IFLNK | 0o777).to_string());
    assert_eq!(
        (meta["uid"].as_str(), meta["gid"].as_str()),
        ("1000", "100")
    );
    assert!(meta.contains_key("mtime"));
    seen.refuses(
        m.fs.symlink(Ino::ROOT, os("file"), os("t")).await,
        libc::EEXIST,
    );
    m.cache(&["race"]).await;
    store.insert("race", "");
    seen.refuses(
        m.fs.symlink(Ino::ROOT, os("race"), os("t")).await,
        libc::EEXIST,
    );
    m.assert_requests(&[(Op::Put, 1)]);
    seen.refuses(
        m.fs.symlink(Ino::ROOT, os("empty"), os("")).await,
        libc::ENOENT,
    );
    let file = m.ino("file").await;
    seen.refuses(m.fs.symlink(file, os("x"), os("t")).await, libc::ENOTDIR);
    let long = "t".repeat(4096);
    seen.refuses(
        m.fs.symlink(Ino::ROOT, os("long"), os(&long)).await,
        libc::ENAMETOOLONG,
    );
    let fresh = Mount::new(&store, uncached());
    let gone = fresh.ino("gone").await;
    store.remove("gone/");
    seen.refuses(fresh.fs.symlink(gone, os("x"), os("t")).await, libc::ENOENT);
    let ro = Mount::new(&store, read_only());
    seen.refuses(
        ro.fs.symlink(Ino::ROOT, os("x"), os("t")).await,
        libc::EROFS,
    );
}

async fn mknod(seen: Errnos) {
    let store = bucket();
    store.insert("file", "1");
    store.insert("gone/", "");
    let m = Mount::new(&store, config().with_owner(1000, 100));
    let root = Ino::ROOT;
    let fifo = m.fs.mknod(root, os("fifo"), libc::S_IFIFO | 0o640, 0).await;
    m.assert_requests(&[(Op::Head, 1), (Op::List, 1), (Op::Put, 1)]);
    let fifo = fifo.unwrap().attr;
    assert_eq!(
        (fifo.kind, fifo.perm, fifo.rdev),
        (FileKind::Fifo, 0o640, 0)
    );
    let meta = store.meta("fifo").unwrap();
    assert_eq!(meta.size, 0);
    let meta = meta.user_metadata;
    assert_eq!(meta["mode"], (libc::S_IFIFO | 0o640).to_string());
    assert_eq!(
        (meta["uid"].as_str(), meta["gid"].as_str()),
        ("1000", "100")
    );
    assert!(meta.contains_key("mtime") && !meta.contains_key("rdev"));
    // Each type, and its device number for devices only.
    let dev = libc::makedev(8, 1) as u32;
    for (name, type_bits, kind, rdev) in [
        ("chr", libc::S_IFCHR, FileKind::CharDevice, dev),
        ("blk", libc::S_IFBLK, FileKind::BlockDevice, dev),
        ("sock", libc::S_IFSOCK, FileKind::Socket, 0),
        ("reg", libc::S_IFREG, FileKind::File, 0),
        ("untyped", 0, FileKind::File, 0),
    ] {
        let attr = m.fs.mknod(root, os(name), type_bits | 0o600, dev).await;
        m.assert_requests(&[(Op::Head, 1), (Op::List, 1), (Op::Put, 1)]);
        let attr = attr.unwrap().attr;
        assert_eq!(
            (attr.kind, attr.rdev, attr.perm),
            (kind, rdev, 0o600),
            "{name}"
        );
        let stored = store.meta(name).unwrap().user_metadata;
        let expected_rdev = (rdev != 0).then(|| rdev.to_string());
        assert_eq!(stored.get("rdev"), expected_rdev.as_ref(), "{name}");
        assert_eq!(m.lookup(name).await.unwrap().attr, attr, "{name}");
        m.counter.reset();
    }
    assert_eq!(
        user_meta(&store, "untyped", "mode").unwrap(),
        (libc::S_IFREG | 0o600).to_string()
    );
    seen.refuses(
        m.fs.mknod(root, os("file"), libc::S_IFIFO | 0o644, 0).await,
        libc::EEXIST,
    );
    m.cache(&["race"]).await;
    store.insert("race", "");
    seen.refuses(
        m.fs.mknod(root, os("race"), libc::S_IFSOCK | 0o644, 0)
            .await,
        libc::EEXIST,
    );
    m.assert_requests(&[(Op::Put, 1)]);
    seen.refuses(
        m.fs.mknod(root, os("dir"), libc::S_IFDIR | 0o755, 0).await,
        libc::EPERM,
    );
    seen.refuses(
        m.fs.mknod(root, os("link"), libc::S_IFLNK | 0o777, 0).await,
        libc::EINVAL,
    );
    seen.refuses(
        m.fs.mknod(root, os("odd"), 0o170000 | 0o644, 0).await,
        libc::EINVAL,
    );
    seen.refuses(
        m.fs.mknod(root, os("a/b"), libc::S_IFIFO | 0o644, 0).await,
        libc::EINVAL,
    );
    m.assert_requests(&[]);
    let long = "n".repeat(256);
    seen.refuses(
        m.fs.mknod(root, os(&long), libc::S_IFIFO | 0o644, 0).await,
        libc::ENAMETOOLONG,
    );
    let file = m.ino("file").await;
    seen.refuses(
        m.fs.mknod(file, os("x"), libc::S_IFIFO | 0o644, 0).await,
        libc::ENOTDIR,
    );
    let fresh = Mount::new(&store, uncached());
    let gone = fresh.ino("gone").await;
    store.remove("gone/");
    seen.refuses(
        fresh
            .fs
            .mknod(gone, os("x"), libc::S_IFIFO | 0o644, 0)
            .await,
        libc::ENOENT,
    );
    let ro = Mount::new(&store, read_only());
    seen.refuses(
        ro.fs.mknod(root, os("x"), libc::S_IFIFO | 0o644, 0).await,
        libc::EROFS,
    );
    assert!(!store
        .keys()
        .iter()
        .any(|k| ["dir", "link", "odd", "x"].contains(&k.as_str())));
}

async fn readlink(seen: Errnos) {
    let store = bucket();
    store.insert_with("l", "x/y", mode(libc::S_IFLNK | 0o777));
    store.insert("f", "1");
    let m = Mount::new(&store, config());
    let l = m.ino("l").await;
    m.counter.reset();
    assert_eq!(&m.fs.readlink(l).await.unwrap()[..], b"x/y");
    m.assert_requests(&[(Op::Get, 1)]);
    let f = m.ino("f").await;
    seen.refuses(m.fs.readlink(f).await, libc::EINVAL);
    store.insert_with("l", "elsewhere", mode(libc::S_IFLNK | 0o777));
    seen.refuses(m.fs.readlink(l).await, libc::ESTALE);
}

async fn chmod_chown_utimens(seen: Errnos) {
    let store = bucket();
    let mut kept = headers(&[("color", "red".to_owned())]);
    kept.content_type = Some("text/plain".to_owned());
    kept.storage_class = Some("STANDARD_IA".to_owned());
    store.insert_with("f", "abc", kept);
    let modified = UNIX_EPOCH + Duration::from_secs(1_500_000_000);
    store.set_last_modified("f", modified);
    store.insert("marked/", "");
    store.insert("implied/x", "1");
    store.insert_with("full", "1", headers(&[("pad", "p".repeat(2020))]));
    let m = Mount::new(&store, config().with_owner(1000, 100));
    let f = m.ino("f").await;
    m.counter.reset();
    let entry = m.fs.setattr(f, None, set_mode(0o600)).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::Copy, 1)]);
    assert_eq!((entry.attr.perm, entry.attr.mtime), (0o600, modified));
    let meta = store.meta("f").unwrap();
    let stored = |name: &str| meta.user_metadata.get(name).cloned().unwrap_or_default();
    assert_eq!(stored("mode"), (libc::S_IFREG | 0o600).to_string());
    assert_eq!(
        (stored("uid"), stored("gid")),
        ("1000".to_owned(), "100".to_owned())
    );
    assert_eq!(stored("mtime"), "1500000000");
    assert_eq!(stored("color"), "red");
    assert_eq!(meta.content_type.as_deref(), Some("text/plain"));
    assert_eq!(meta.storage_class.as_deref(), Some("STANDARD_IA"));
    let owner = SetAttr {
        uid: Some(7),
        gid: Some(8),
        ..SetAttr::default()
    };
    let entry = m.fs.setattr(f, None, owner).await.unwrap();
    assert_eq!(
        (entry.attr.uid, entry.attr.gid, entry.attr.perm),
        (7, 8, 0o600)
    );
    m.assert_requests(&[(Op::Head, 1), (Op::Copy, 1)]);
    let touch = SetAttr {
        mtime: Some(UNIX_EPOCH + Duration::from_millis(1_700_000_000_700)),
        ..SetAttr::default()
    };
    let entry = m.fs.setattr(f, None, touch).await.unwrap();
    assert_eq!(
        entry.attr.mtime,
        UNIX_EPOCH + Duration::from_secs(1_700_000_000),
        "whole seconds"
    );
    m.assert_requests(&[(Op::Head, 1), (Op::Copy, 1)]);
    // Directories: their marker, created if missing.
    let marked = m.ino("marked").await;
    let implied = m.ino("implied").await;
    m.counter.reset();
    m.fs.setattr(marked, None, set_mode(0o700)).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::Put, 1)]);
    assert_eq!(
        user_meta(&store, "marked/", "mode").unwrap(),
        (libc::S_IFDIR | 0o700).to_string()
    );
    m.fs.setattr(implied, None, set_mode(0o700)).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::Put, 1)]);
    assert!(store.get_bytes("implied/").is_some());
    // The root: accepted, not stored.
    m.fs.setattr(Ino::ROOT, None, set_mode(0o700))
        .await
        .unwrap();
    m.assert_requests(&[]);
    m.faults.fail_next(Op::Copy, 1, precondition());
    seen.refuses(m.fs.setattr(f, None, set_mode(0o640)).await, libc::EIO);
    let full = m.ino("full").await;
    m.counter.reset();
    seen.refuses(m.fs.setattr(full, None, set_mode(0o640)).await, libc::E2BIG);
    m.assert_requests(&[(Op::Head, 1)]);
    store.remove("f");
    seen.refuses(m.fs.setattr(f, None, set_mode(0o640)).await, libc::ENOENT);
    let guarded = Mount::new(&store, no_overwrite());
    let full = guarded.ino("full").await;
    guarded.counter.reset();
    seen.refuses(
        guarded.fs.setattr(full, None, set_mode(0o640)).await,
        libc::EPERM,
    );
    guarded.assert_requests(&[]);
    let ro = Mount::new(&store, read_only());
    let full = ro.ino("full").await;
    seen.refuses(
        ro.fs.setattr(full, None, set_mode(0o640)).await,
        libc::EROFS,
    );
    // A file not uploaded yet keeps the change and stores it with its data ...
    let (ino, handle) = m.create("new").await;
    m.write(ino, handle, 0, &Bytes::from_static(b"x")).await;
    let changed =
        m.fs.setattr(ino, Some(handle), set_mode(0o600))
            .await
            .unwrap();
    assert_eq!(changed.attr.perm, 0o600);
    m.close(ino, handle).await.unwrap();
    let stored = store.meta("new").expect("uploaded");
    assert_eq!(
        stored.user_metadata.get("mode").map(String::as_str),
        Some("33152")
    );
    // ... and a handle open on an object rewritten in place follows its new version.
    let (ino, handle) = m.create("parts").await;
    m.write(ino, handle, 0, &pattern(3 * PART as usize, 1))
        .await;
    m.fs.fsync(ino, handle).await.unwrap();
    m.fs.setattr(ino, Some(handle), set_mode(0o600))
        .await
        .unwrap();
    m.write(ino, handle, 3 * PART, &Bytes::from_static(b"more"))
        .await;
    m.close(ino, handle).await.unwrap();
    let stored = store.meta("parts").expect("uploaded");
    assert_eq!(stored.size, 3 * PART + 4);
    assert_eq!(
        stored.user_metadata.get("mode").map(String::as_str),
        Some("33152")
    );
}

async fn getxattr_listxattr(seen: Errnos) {
    let store = bucket();
    // {"user.a":"aGk=","user.empty":""}, as s3fs writes it.
    let xattrs = "%7B%22user.a%22%3A%22aGk%3D%22%2C%22user.empty%22%3A%22%22%7D";
    store.insert_with("pfx/f", "abc", headers(&[("xattr", xattrs.to_owned())]));
    store.insert_with("pfx/d/", "", headers(&[("xattr", xattrs.to_owned())]));
    let m = Mount::new(&store, config().with_prefix("pfx"));
    let f = m.ino("f").await;
    let d = m.ino("d").await;
    m.counter.reset();
    assert_eq!(&m.fs.getxattr(f, os("user.a")).await.unwrap()[..], b"hi");
    m.assert_requests(&[(Op::Head, 1)]);
    let names = m.fs.listxattr(f).await.unwrap();
    m.assert_requests(&[(Op::Head, 1)]);
    let expected = [
        "user.a",
        "user.empty",
        "user.s3.key",
        "user.s3.etag",
        "user.s3.storage_class",
    ];
    assert_eq!(names, expected);
    assert_eq!(
        &m.fs.getxattr(f, os("user.s3.key")).await.unwrap()[..],
        b"pfx/f"
    );
    let etag = store.meta("pfx/f").unwrap().etag.unwrap();
    let shown = m.fs.getxattr(f, os("user.s3.etag")).await.unwrap();
    assert_eq!(
        format!("\"{}\"", String::from_utf8_lossy(&shown)),
        etag.as_str()
    );
    let class = m.fs.getxattr(f, os("user.s3.storage_class")).await.unwrap();
    assert_eq!(&class[..], b"STANDARD");
    assert_eq!(&m.fs.getxattr(d, os("user.a")).await.unwrap()[..], b"hi");
    m.counter.reset();
    seen.refuses(m.fs.getxattr(f, os("user.missing")).await, libc::ENODATA);
    m.assert_requests(&[(Op::Head, 1)]);
    seen.refuses(
        m.fs.getxattr(f, os("security.selinux")).await,
        libc::ENOTSUP,
    );
    seen.refuses(m.fs.getxattr(Ino::ROOT, os("user.a")).await, libc::ENODATA);
    assert!(m.fs.listxattr(Ino::ROOT).await.unwrap().is_empty());
    m.assert_requests(&[]);
}

async fn setxattr_removexattr(seen: Errnos) {
    let store = bucket();
    store.insert("f", "abc");
    store.insert("implied/x", "1");
    let m = Mount::new(&store, config());
    let f = m.ino("f").await;
    let implied = m.ino("implied").await;
    m.counter.reset();
    m.fs.setxattr(f, os("user.x"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::Copy, 1)]);
    assert!(user_meta(&store, "f", "xattr").is_some());
    assert_eq!(&m.fs.getxattr(f, os("user.x")).await.unwrap()[..], b"1");
    m.counter.reset();
    m.fs.removexattr(f, os("user.x")).await.unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::Copy, 1)]);
    assert!(user_meta(&store, "f", "xattr").is_none());
    seen.refuses(m.fs.removexattr(f, os("user.x")).await, libc::ENODATA);
    m.assert_requests(&[(Op::Head, 1)]);
    m.fs.setxattr(implied, os("user.x"), Bytes::from_static(b"1"))
        .await
        .unwrap();
    m.assert_requests(&[(Op::Head, 1), (Op::Put, 1)]);
    assert!(user_meta(&store, "implied/", "xattr").is_some());
    let value = || Bytes::from_static(b"v");
    let not_utf8 = OsStr::from_bytes(b"user.\xff");
    for name in [os("trusted.x"), os("user.a:b"), os("user.a,b"), not_utf8] {
        seen.refuses(m.fs.setxattr(f, name, value()).await, libc::ENOTSUP);
    }
    seen.refuses(
        m.fs.setxattr(f, os("user.s3.etag"), value()).await,
        libc::EPERM,
    );
    seen.refuses(m.fs.removexattr(f, os("user.s3.key")).await, libc::EPERM);
    seen.refuses(
        m.fs.setxattr(Ino::ROOT, os("user.x"), value()).await,
        libc::EPERM,
    );
    m.assert_requests(&[]);
    let big = Bytes::from(vec![b'v'; 2000]);
    seen.refuses(m.fs.setxattr(f, os("user.big"), big).await, libc::E2BIG);
    m.assert_requests(&[(Op::Head, 1)]);
    let guarded = Mount::new(&store, no_overwrite());
    let f = guarded.ino("f").await;
    seen.refuses(
        guarded.fs.setxattr(f, os("user.x"), value()).await,
        libc::EPERM,
    );
    let ro = Mount::new(&store, read_only());
    let f = ro.ino("f").await;
    seen.refuses(ro.fs.removexattr(f, os("user.x")).await, libc::EROFS);
}

async fn statfs(_: Errnos) {
    let m = Mount::new(&bucket(), config());
    let st = m.fs.statfs().await.unwrap();
    assert_eq!(
        (st.blocks, st.bfree, st.bavail),
        (1 << 40, 1 << 40, 1 << 40)
    );
    assert_eq!((st.files, st.ffree), (1 << 32, 1 << 32));
    assert_eq!((st.bsize, st.namelen), (1024 * 1024, 255));
    m.assert_requests(&[]);
}

async fn link(seen: Errnos) {
    // The plain layout has no hard links: the FUSE binding answers link(2) with EPERM
    // itself, and calls the core only for a layout that has them (the vault).
    const ADAPTER: &str = include_str!("../../s3vfs-fuse/src/adapter.rs");
    let start = ADAPTER
        .find("    fn link(")
        .expect("the FUSE adapter has a link callback");
    let rest = &ADAPTER[start + 1..];
    let body = &rest[..rest.find("\n    fn ").unwrap_or(rest.len())];
    let refusal = body
        .find("if !self.vfs.hard_links() {")
        .expect("link asks whether the layout has hard links first");
    let call = body.find("vfs.link(").expect("link calls the core's link");
    assert!(refusal < call, "{body}");
    assert!(
        body[refusal..call].contains("reply.error(Errno::EPERM)"),
        "{body}"
    );
    seen.refuses(
        Err::<(), _>(VfsError::NotPermitted("link".into())),
        libc::EPERM,
    );
    // The library asks nothing either.
    let store = filled(&["f"]);
    let m = Mount::new(&store, FsConfig::default());
    assert!(
        !s3vfs::vfs::Vfs::hard_links(&*m.fs),
        "the plain layout has none"
    );
    m.counter.reset();
    let vfs = s3vfs::S3Vfs::from_fs(Arc::clone(&m.fs));
    seen.refuses(vfs.hard_link("f", "g").await, libc::ENOTSUP);
    m.assert_requests(&[]);
}

async fn read_only_mount(seen: Errnos) {
    let store = filled(&["f", "d/x", "e/"]);
    let m = Mount::new(&store, read_only());
    let (f, d) = (m.ino("f").await, m.ino("d").await);
    m.counter.reset();
    let root = Ino::ROOT;
    let v = || Bytes::from_static(b"v");
    seen.refuses(
        m.fs.create(root, os("n"), 0o644, writing()).await,
        libc::EROFS,
    );
    seen.refuses(m.fs.open(f, writing()).await, libc::EROFS);
    seen.refuses(
        m.fs.open(
            f,
            OpenFlags {
                truncate: true,
                ..OpenFlags::read_only()
            },
        )
        .await,
        libc::EROFS,
    );
    seen.refuses(m.fs.setattr(f, None, set_size(0)).await, libc::EROFS);
    seen.refuses(m.fs.mkdir(root, os("n"), 0o755).await, libc::EROFS);
    seen.refuses(m.fs.unlink(root, os("f")).await, libc::EROFS);
    seen.refuses(m.fs.rmdir(root, os("e")).await, libc::EROFS);
    seen.refuses(
        m.fs.rename(root, os("f"), d, os("f"), false).await,
        libc::EROFS,
    );
    seen.refuses(m.fs.symlink(root, os("n"), os("f")).await, libc::EROFS);
    seen.refuses(
        m.fs.mknod(root, os("n"), libc::S_IFIFO | 0o644, 0).await,
        libc::EROFS,
    );
    seen.refuses(m.fs.setattr(f, None, set_mode(0o600)).await, libc::EROFS);
    seen.refuses(m.fs.setxattr(f, os("user.x"), v()).await, libc::EROFS);
    seen.refuses(m.fs.removexattr(f, os("user.x")).await, libc::EROFS);
    m.assert_requests(&[]);
    assert_eq!(store.keys(), vec!["d/x", "e/", "f"]);
}

async fn guard_rails(seen: Errnos) {
    let (logs, _guard) = Logs::capture();
    let store = filled(&["f", "g", "d/x", "e/"]);
    let nd = Mount::new(&store, no_delete());
    let root = Ino::ROOT;
    seen.refuses(nd.fs.unlink(root, os("f")).await, libc::EPERM);
    seen.refuses(nd.fs.rmdir(root, os("e")).await, libc::EPERM);
    seen.refuses(
        nd.fs.rename(root, os("f"), root, os("h"), false).await,
        libc::EPERM,
    );
    nd.assert_requests(&[]);
    logs.assert_logged(tracing::Level::WARN, &["deletes are disabled"]);
    let no = Mount::new(&store, no_overwrite());
    let f = no.ino("f").await;
    no.counter.reset();
    seen.refuses(no.fs.open(f, writing()).await, libc::EPERM);
    seen.refuses(
        no.fs
            .open(
                f,
                OpenFlags {
                    truncate: true,
                    ..appending()
                },
            )
            .await,
        libc::EPERM,
    );
    seen.refuses(no.fs.setattr(f, None, set_size(0)).await, libc::EPERM);
    seen.refuses(no.fs.setattr(f, None, set_mode(0o600)).await, libc::EPERM);
    seen.refuses(
        no.fs.setxattr(f, os("user.x"), Bytes::new()).await,
        libc::EPERM,
    );
    seen.refuses(no.fs.removexattr(f, os("user.x")).await, libc::EPERM);
    no.assert_requests(&[]);
    seen.refuses(no.rename("f", "g", false).await, libc::EPERM);
    no.assert_requests(&[(Op::Head, 1), (Op::List, 1)]);
    logs.assert_logged(tracing::Level::WARN, &["overwrites are disabled"]);
    // Allowed: new files, mkdir, symlink, and appending.
    no.save("new", &Bytes::from_static(b"n")).await;
    no.fs.mkdir(root, os("newdir"), 0o755).await.unwrap();
    no.fs.symlink(root, os("newlink"), os("f")).await.unwrap();
    no.fs
        .mknod(root, os("newfifo"), libc::S_IFIFO | 0o644, 0)
        .await
        .unwrap();
    let (ino, handle) = no.open("f", appending()).await;
    no.write(ino, handle, 0, &Bytes::from_static(b"+")).await;
    no.close(ino, handle).await.unwrap();
    assert_eq!(&store.get_bytes("f").unwrap()[..], b"1+");
}

async fn archived_objects(seen: Errnos) {
    let (logs, _guard) = Logs::capture();
    let store = bucket();
    for (key, class) in [
        ("cold", "GLACIER"),
        ("colder", "DEEP_ARCHIVE"),
        ("thawed", "GLACIER"),
        ("arch/x", "GLACIER"),
    ] {
        store.insert(key, "brr");
        store.set_storage_class(key, class);
    }
    store.set_restored("thawed", true);
    let m = Mount::new(&store, config());
    let listed = m.list("").await.unwrap();
    assert_eq!(
        listed
            .iter()
            .filter(|e| e.attr.is_some_and(|a| a.size == 3))
            .count(),
        3
    );
    let (cold, colder, thawed) = (
        m.ino("cold").await,
        m.ino("colder").await,
        m.ino("thawed").await,
    );
    m.counter.reset();
    seen.refuses(m.fs.open(cold, OpenFlags::read_only()).await, libc::EACCES);
    m.assert_requests(&[(Op::Head, 1)]);
    logs.assert_logged(tracing::Level::WARN, &["cold", "GLACIER", "archived"]);
    seen.refuses(
        m.fs.open(colder, OpenFlags::read_only()).await,
        libc::EACCES,
    );
    let handle = m.fs.open(thawed, OpenFlags::read_only()).await.unwrap();
    m.assert_requests(&[(Op::Head, 2)]);
    assert_eq!(&m.fs.read(thawed, handle, 0, 10).await.unwrap()[..], b"brr");
    seen.refuses(m.rename("colder", "moved", false).await, libc::EACCES);
    seen.refuses(
        m.fs.setattr(colder, None, set_mode(0o600)).await,
        libc::EACCES,
    );
    seen.refuses(
        m.fs.setxattr(colder, os("user.x"), Bytes::new()).await,
        libc::EACCES,
    );
    seen.refuses(m.rename("arch", "arch2", false).await, libc::EIO);
    assert!(store.get_bytes("arch/x").is_some());
    // O_TRUNC needs no restore; the new content is in the mount's class.
    m.counter.reset();
    let handle = m.fs.open(cold, truncating()).await.unwrap();
    m.assert_requests(&[]);
    m.write(cold, handle, 0, &Bytes::from_static(b"warm")).await;
    m.close(cold, handle).await.unwrap();
    assert_eq!(store.meta("cold").unwrap().storage_class, None);
}

// ---------------------------------------------------------------------------------------
// Store errors

/// The errno a store error with S3 `code` (or only HTTP `status`) becomes.
fn errno_of(code: Option<&str>, status: Option<u16>) -> VfsResult<()> {
    let kind = StoreError::kind_for_code(code.unwrap_or(""), status);
    Err(VfsError::from_store(
        "/f",
        StoreError::new(kind, "from the store"),
    ))
}

fn expect_codes(seen: &Errnos, codes: &[&str], statuses: &[u16], errno: i32) {
    for code in codes {
        seen.refuses(errno_of(Some(code), None), errno);
    }
    for status in statuses {
        seen.refuses(errno_of(None, Some(*status)), errno);
    }
}

/// A mount over a bucket holding `f`, whose next `op` fails with `code`.
async fn failing(op: Op, kind: StoreErrorKind, code: &str) -> Mount {
    let store = bucket();
    store.insert("f", "abc");
    let m = Mount::new(&store, config());
    m.lookup("f").await.unwrap();
    m.faults.fail_next(op, 1, error(kind, code));
    m
}

async fn not_found_errors(seen: Errnos) {
    expect_codes(
        &seen,
        &["NoSuchKey", "NoSuchBucket", "NoSuchUpload"],
        &[404],
        libc::ENOENT,
    );
}

async fn precondition_of_a_read(seen: Errnos) {
    for code in ["PreconditionFailed", "ConditionalRequestConflict"] {
        let m = failing(Op::Get, StoreErrorKind::PreconditionFailed, code).await;
        let (f, handle) = m.open("f", OpenFlags::read_only()).await;
        seen.refuses(m.fs.read(f, handle, 0, 3).await, libc::ESTALE);
    }
}

async fn precondition_of_a_change(seen: Errnos) {
    for code in ["PreconditionFailed", "ConditionalRequestConflict"] {
        let m = failing(Op::Copy, StoreErrorKind::PreconditionFailed, code).await;
        let f = m.ino("f").await;
        seen.refuses(m.fs.setattr(f, None, set_mode(0o600)).await, libc::EIO);
        m.faults
            .fail_next(Op::Put, 1, error(StoreErrorKind::PreconditionFailed, code));
        let (ino, handle) = m.open("f", truncating()).await;
        seen.refuses(m.close(ino, handle).await, libc::EIO);
        assert_eq!(&m.store.get_bytes("f").unwrap()[..], b"abc");
    }
}

async fn precondition_of_a_creation(seen: Errnos) {
    let m = failing(
        Op::Put,
        StoreErrorKind::PreconditionFailed,
        "PreconditionFailed",
    )
    .await;
    seen.refuses(m.fs.mkdir(Ino::ROOT, os("d"), 0o755).await, libc::EEXIST);
    m.faults.fail_next(
        Op::Put,
        1,
        error(
            StoreErrorKind::PreconditionFailed,
            "ConditionalRequestConflict",
        ),
    );
    seen.refuses(
        m.fs.symlink(Ino::ROOT, os("l"), os("f")).await,
        libc::EEXIST,
    );
    m.faults.fail_next(Op::Put, 1, precondition());
    seen.refuses(
        m.fs.mknod(Ino::ROOT, os("p"), libc::S_IFIFO | 0o644, 0)
            .await,
        libc::EEXIST,
    );
}

async fn access_denied_errors(seen: Errnos) {
    let codes = [
        "AccessDenied",
        "InvalidAccessKeyId",
        "SignatureDoesNotMatch",
        "ExpiredToken",
    ];
    expect_codes(&seen, &codes, &[403], libc::EACCES);
    let m = Mount::new(&bucket(), config());
    m.faults.fail_next(
        Op::List,
        1,
        error(StoreErrorKind::AccessDenied, "AccessDenied"),
    );
    seen.refuses(m.lookup("f").await, libc::EACCES);
}

async fn archived_errors(seen: Errnos) {
    expect_codes(&seen, &["InvalidObjectState"], &[], libc::EACCES);
    let m = failing(Op::Get, StoreErrorKind::Archived, "InvalidObjectState").await;
    let (f, handle) = m.open("f", OpenFlags::read_only()).await;
    seen.refuses(m.fs.read(f, handle, 0, 3).await, libc::EACCES);
}

async fn throttling_errors(seen: Errnos) {
    expect_codes(
        &seen,
        &["SlowDown", "Throttling", "TooManyRequests"],
        &[429, 503],
        libc::EAGAIN,
    );
    let m = failing(Op::Get, StoreErrorKind::Throttled, "SlowDown").await;
    let (f, handle) = m.open("f", OpenFlags::read_only()).await;
    seen.refuses(m.fs.read(f, handle, 0, 3).await, libc::EAGAIN);
}

async fn transient_errors(seen: Errnos) {
    let codes = ["InternalError", "ServiceUnavailable", "RequestTimeout"];
    expect_codes(&seen, &codes, &[500, 502, 504], libc::EIO);
    let m = failing(Op::Get, StoreErrorKind::Transient, "InternalError").await;
    let (f, handle) = m.open("f", OpenFlags::read_only()).await;
    seen.refuses(m.fs.read(f, handle, 0, 3).await, libc::EIO);
}

async fn malformed_list_pages(seen: Errnos) {
    let keys = ["d/a", "d/b", "d/c", "d/e/f"];
    // The listing's first page comes with the lookup of `d` (before the faults), so the
    // readdir's first LIST is for the second page; the first page's first small file is
    // looked at before the second page comes (the page's last name waits for the next
    // page, which may hold a directory of that name). The rename lists from the start.
    for (fault, readdir_requests, lists) in [
        (
            ListFault::TruncatedWithoutToken,
            vec![(Op::List, 1), (Op::Head, 1)],
            1,
        ),
        (
            ListFault::RepeatedToken,
            vec![(Op::List, 1), (Op::Head, 1)],
            2,
        ),
    ] {
        let store = filled(&keys);
        let m = Mount::new(&store, config().with_list_page_size(2));
        m.cache(&["d", "moved"]).await;
        // Enough broken pages that a loop following the tokens would go on for long.
        m.faults.break_next_list_pages(100, fault);
        seen.refuses(m.list("d").await, libc::EIO);
        m.assert_requests(&readdir_requests);
        seen.refuses(m.rename("d", "moved", false).await, libc::EIO);
        m.assert_requests(&[(Op::List, lists)]);
        assert_eq!(store.keys(), keys, "{fault:?}: nothing copied or deleted");
        // Nothing of the failed listings was kept as the directory's contents.
        m.faults.clear();
        assert_eq!(m.names("d").await, ["a", "b", "c", "e"], "{fault:?}");
    }
}

async fn other_errors(seen: Errnos) {
    expect_codes(
        &seen,
        &["InvalidRange", "MalformedXML", "Unknown"],
        &[400, 416],
        libc::EIO,
    );
    seen.refuses(errno_of(None, None), libc::EIO);
}
