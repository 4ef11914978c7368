//! Differential test: the same random sequence of system calls on a local directory and on
//! the mount must give the same results — success or the same errno, the same bytes read,
//! the same listings — and leave the same tree, both as the mount shows it and as it
//! reached the store (seen through a second, fresh mount).
//!
//! The calls: open (O_CREAT, O_TRUNC, O_APPEND, any access mode), pwrite, pread, ftruncate,
//! fsync, fchmod and close on up to four open descriptors; rename, unlink, mkdir, rmdir,
//! mkfifo, chmod, readdir and stat by name; and a whole rewrite of a name nobody has open
//! (create, stream, ftruncate mid-stream, write on, close) read back from the store; and
//! writes through a shared mapping by another process (`mmap`, `close`, stores, `munmap`). Every open is `O_NONBLOCK`, which regular files
//! ignore, so that opening a fifo never waits (the kernel opens those on both sides; the
//! calls on a fifo's descriptor fail alike: `ESPIPE`, `EINVAL`, `ENXIO`). Each case is a seed; the names are drawn from a small
//! set so that calls collide (create over existing names, rename onto files and
//! directories, remove non-empty directories). The test runs once per data cache setting
//! (none, memory, disk, both; small blocks and caps, so blocks are evicted), and once on
//! the vault layout (issue 13; chunks of 16 KiB on average, so files span many). Knobs, for
//! longer runs:
//! - `S3VFS_DIFF_CASES`: number of seeds (default 16);
//! - `S3VFS_DIFF_OPS`: operations per seed (default 400);
//! - `S3VFS_DIFF_SEED`: the first seed (default 1), to replay a failure.
//!
//! Two things POSIX leaves open or S3 cannot do are not generated: `O_RDONLY|O_TRUNC`
//! (unspecified by POSIX), and unlinking or renaming over a file that is still open (an
//! object has no life apart from its name).

mod common;

use common::{assert_same_tree, read_at, snapshot, test_with_every_cache, CacheSetting, TestMount};
use s3vfs::store::Capabilities;
use s3vfs::vault::ChunkParams;
use s3vfs_testkit::MemStore;
use std::ffi::CString;
use std::fmt;
use std::fs::{self, File};
use std::io;
use std::os::fd::{AsRawFd, FromRawFd};
use std::os::unix::ffi::OsStrExt;
use std::os::unix::fs::{FileExt, FileTypeExt, OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};
use std::sync::{PoisonError, RwLock};

/// Names the operations pick from: files and directories at three depths.
const NAMES: &[&str] = &[
    "a", "b", "c", "d", "d/a", "d/b", "d/e", "d/e/a", "d/e/b", "e", "e/a", "e/d",
];

/// Directories a listing is asked of.
const DIRS: &[&str] = &["", "d", "d/e", "e", "a"];

/// Part size of the mount's uploads, in bytes.
const DIFF_PART: u64 = 64 * 1024;

/// Held for reading by every operation, for writing while a child process is made.
static FORKS: RwLock<()> = RwLock::new(());

/// Most handles open at once.
const MAX_OPEN: usize = 4;

/// Permission bits a chmod sets (the owner keeps read and write: the tests run as root,
/// which ignores them anyway).
fn pick_mode(rng: &mut Rng) -> u32 {
    [0o600, 0o640, 0o644, 0o700, 0o755][rng.below(5) as usize]
}

/// A small deterministic generator (splitmix64).
struct Rng(u64);

impl Rng {
    fn next(&mut self) -> u64 {
        self.0 = self.0.wrapping_add(0x9e37_79b9_7f4a_7c15);
        let mut z = self.0;
        z = (z ^ (z >> 30)).wrapping_mul(0xbf58_476d_1ce4_e5b9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94d0_49bb_1331_11eb);
        z ^ (z >> 31)
    }

    fn below(&mut self, n: u64) -> u64 {
        self.next() % n
    }

    fn chance(&mut self, percent: u64) -> bool {
        self.below(100) < percent
    }

    fn pick<'a>(&mut self, items: &[&'a str]) -> &'a str {
        items[self.below(items.len() as u64) as usize]
    }
}

/// One system call of the sequence.
#[derive(Clone, Debug)]
enum Op {
    Open {
        path: &'static str,
        flags: i32,
    },
    Write {
        handle: usize,
        offset: u64,
        len: usize,
        seed: u64,
    },
    Read {
        handle: usize,
        offset: u64,
        len: usize,
    },
    Truncate {
        handle: usize,
        len: u64,
    },
    Fsync {
        handle: usize,
    },
    Close {
        handle: usize,
    },
    Rename {
        from: &'static str,
        to: &'static str,
    },
    Unlink {
        path: &'static str,
    },
    Mkdir {
        path: &'static str,
    },
    Rmdir {
        path: &'static str,
    },
    Mkfifo {
        path: &'static str,
    },
    Readdir {
        dir: &'static str,
    },
    Stat {
        path: &'static str,
    },
    Chmod {
        path: &'static str,
        mode: u32,
    },
    Fchmod {
        handle: usize,
        mode: u32,
    },
    /// A shared mapping of `path` written by another process: `len` bytes at `offset`
    /// (as far as the file reaches) after `close`, then `munmap`.
    Mmap {
        path: &'static str,
        offset: u64,
        len: usize,
        seed: u64,
    },
    /// A whole write cycle on a name nobody has open, then a read back through a new
    /// descriptor (so from the store): `open(O_CREAT|O_TRUNC|O_WRONLY)`, `first` bytes
    /// written from 0 (a streamed upload), `ftruncate(cut)`, `second` bytes written at
    /// `at`, `close`.
    Rewrite {
        path: &'static str,
        first: usize,
        cut: u64,
        at: u64,
        second: usize,
        seed: u64,
    },
}

/// What a call returned, comparable across the two sides.
#[derive(Clone, PartialEq, Eq)]
enum Outcome {
    Done,
    Count(usize),
    Bytes(Vec<u8>),
    Names(Vec<String>),
    /// `kind` is the type letter of `ls -l`: `d`, `-`, `p`.
    Stat {
        kind: char,
        size: u64,
        perm: u32,
    },
    Errno(i32),
}

impl fmt::Debug for Outcome {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Outcome::Done => write!(f, "ok"),
            Outcome::Count(n) => write!(f, "{n} bytes"),
            Outcome::Bytes(b) => write!(f, "{} bytes read (hash {:x})", b.len(), hash(b)),
            Outcome::Names(n) => write!(f, "{n:?}"),
            Outcome::Stat {
                kind: 'd', perm, ..
            } => write!(f, "a directory ({perm:o})"),
            Outcome::Stat {
                kind: 'p', perm, ..
            } => write!(f, "a fifo ({perm:o})"),
            Outcome::Stat { size, perm, .. } => write!(f, "a file of {size} bytes ({perm:o})"),
            Outcome::Errno(e) => write!(f, "{}", io::Error::from_raw_os_error(*e)),
        }
    }
}

fn hash(bytes: &[u8]) -> u64 {
    bytes.iter().fold(0xcbf2_9ce4_8422_2325, |h, b| {
        (h ^ u64::from(*b)).wrapping_mul(0x100_0000_01b3)
    })
}

impl Outcome {
    fn of(result: io::Result<Outcome>) -> Outcome {
        match result {
            Ok(outcome) => outcome,
            Err(err) => Outcome::Errno(err.raw_os_error().unwrap_or(libc::EIO)),
        }
    }
}

/// One side of the comparison: a directory and the handles opened in it.
struct Side {
    root: PathBuf,
    handles: Vec<File>,
}

fn cstring(path: &Path) -> CString {
    CString::new(path.as_os_str().as_bytes()).expect("no NUL in test paths")
}

fn check(result: libc::c_int) -> io::Result<()> {
    if result < 0 {
        Err(io::Error::last_os_error())
    } else {
        Ok(())
    }
}

impl Side {
    fn path(&self, name: &str) -> PathBuf {
        self.root.join(name)
    }

    fn apply(&mut self, op: &Op) -> Outcome {
        // A child process holds copies of every descriptor of this process from fork to
        // exec, those of the other tests' threads too: a fifo closed by one of them would
        // keep a reader in the child, and an open for writing succeed on one side only.
        // Children are made only while no other operation runs.
        let _forking = matches!(op, Op::Mmap { .. })
            .then(|| FORKS.write().unwrap_or_else(PoisonError::into_inner));
        let _calling = (!matches!(op, Op::Mmap { .. }))
            .then(|| FORKS.read().unwrap_or_else(PoisonError::into_inner));
        match Outcome::of(self.call(op)) {
            // rename(2) may answer either for a non-empty destination directory.
            Outcome::Errno(libc::EEXIST) if matches!(op, Op::Rename { .. }) => {
                Outcome::Errno(libc::ENOTEMPTY)
            }
            outcome => outcome,
        }
    }

    fn call(&mut self, op: &Op) -> io::Result<Outcome> {
        match *op {
            Op::Open { path, flags } => {
                let path = cstring(&self.path(path));
                let flags = flags | libc::O_CLOEXEC | libc::O_NONBLOCK;
                // SAFETY: a valid NUL-terminated path; the mode is an int as open(2) wants.
                let fd = unsafe { libc::open(path.as_ptr(), flags, 0o644) };
                check(fd)?;
                // SAFETY: `fd` was just opened and is owned by nothing else.
                self.handles.push(unsafe { File::from_raw_fd(fd) });
                Ok(Outcome::Done)
            }
            Op::Write {
                handle,
                offset,
                len,
                seed,
            } => {
                let data = s3vfs_fuse::local::pseudo_random(len, seed);
                Ok(Outcome::Count(
                    self.handles[handle].write_at(&data, offset)?,
                ))
            }
            Op::Read {
                handle,
                offset,
                len,
            } => Ok(Outcome::Bytes(read_at(&self.handles[handle], offset, len)?)),
            Op::Truncate { handle, len } => {
                self.handles[handle].set_len(len)?;
                Ok(Outcome::Done)
            }
            Op::Fsync { handle } => {
                self.handles[handle].sync_all()?;
                Ok(Outcome::Done)
            }
            Op::Close { handle } => {
                common::close(self.handles.remove(handle))?;
                Ok(Outcome::Done)
            }
            Op::Rename { from, to } => {
                fs::rename(self.path(from), self.path(to))?;
                Ok(Outcome::Done)
            }
            Op::Unlink { path } => {
                fs::remove_file(self.path(path))?;
                Ok(Outcome::Done)
            }
            Op::Mkdir { path } => {
                fs::create_dir(self.path(path))?;
                Ok(Outcome::Done)
            }
            Op::Rmdir { path } => {
                fs::remove_dir(self.path(path))?;
                Ok(Outcome::Done)
            }
            Op::Mkfifo { path } => {
                let path = cstring(&self.path(path));
                // SAFETY: a valid NUL-terminated path.
                check(unsafe { libc::mkfifo(path.as_ptr(), 0o640) })?;
                Ok(Outcome::Done)
            }
            Op::Readdir { dir } => {
                let mut names = Vec::new();
                for entry in fs::read_dir(self.path(dir))? {
                    let entry = entry?;
                    let kind = entry.file_type()?;
                    let kind = if kind.is_dir() {
                        "/"
                    } else if kind.is_fifo() {
                        "|"
                    } else {
                        ""
                    };
                    names.push(format!("{}{kind}", entry.file_name().to_string_lossy()));
                }
                names.sort();
                Ok(Outcome::Names(names))
            }
            Op::Stat { path } => {
                let meta = fs::symlink_metadata(self.path(path))?;
                let kind = match meta.file_type() {
                    kind if kind.is_dir() => 'd',
                    kind if kind.is_fifo() => 'p',
                    _ => '-',
                };
                Ok(Outcome::Stat {
                    kind,
                    size: if meta.is_dir() { 0 } else { meta.len() },
                    perm: meta.permissions().mode() & 0o7777,
                })
            }
            Op::Chmod { path, mode } => {
                fs::set_permissions(self.path(path), fs::Permissions::from_mode(mode))?;
                Ok(Outcome::Done)
            }
            Op::Fchmod { handle, mode } => {
                let permissions = fs::Permissions::from_mode(mode);
                self.handles[handle].set_permissions(permissions)?;
                Ok(Outcome::Done)
            }
            Op::Mmap {
                path,
                offset,
                len,
                seed,
            } => {
                // Another process: one cannot write back a mapping to a FUSE server it
                // runs itself (munmap holds its memory map, which the server needs).
                let status = std::process::Command::new(std::env::current_exe()?)
                    .args(["mmap_writer", "--exact", "--quiet", "--nocapture"])
                    .env(MMAP_WRITER, self.path(path))
                    .env(MMAP_WRITER_ARGS, format!("{offset} {len} {seed}"))
                    .stdout(std::process::Stdio::null())
                    .status()?;
                match status.code() {
                    Some(0) => Ok(Outcome::Done),
                    Some(code) if code > 100 => Err(io::Error::from_raw_os_error(code - 100)),
                    _ => Err(io::Error::other(format!(
                        "the mmap writer failed: {status}"
                    ))),
                }
            }
            Op::Rewrite {
                path,
                first,
                cut,
                at,
                second,
                seed,
            } => {
                let path = self.path(path);
                // Non-blocking, as every open here: a fifo must not wait for a reader.
                let file = fs::OpenOptions::new()
                    .write(true)
                    .create(true)
                    .truncate(true)
                    .custom_flags(libc::O_NONBLOCK)
                    .open(&path)?;
                file.write_all_at(&s3vfs_fuse::local::pseudo_random(first, seed), 0)?;
                file.set_len(cut)?;
                let more = s3vfs_fuse::local::pseudo_random(second, seed ^ 1);
                file.write_all_at(&more, at)?;
                common::close(file)?;
                Ok(Outcome::Bytes(fs::read(&path)?))
            }
        }
    }
}

/// What the generator knows besides the local side: the name each handle was opened by
/// (and still has: renames are followed).
#[derive(Default)]
struct Model {
    open_names: Vec<String>,
    /// The handle of the latest truncate below a file's end, and the size it had before:
    /// writes there hit a stream that must not continue past the truncate.
    cut_from: Option<(usize, u64)>,
}

impl Model {
    /// Whether `name` or anything below it is open.
    fn has_open(&self, name: &str) -> bool {
        let below = format!("{name}/");
        self.open_names
            .iter()
            .any(|open| open == name || open.starts_with(&below))
    }

    fn next_op(&self, local: &Side, rng: &mut Rng) -> Op {
        let handles = local.handles.len();
        let size_of = |handle: usize| local.handles[handle].metadata().map_or(0, |m| m.len());
        loop {
            let roll = rng.below(108);
            let op = match roll {
                0..=17 if handles < MAX_OPEN => {
                    let access = match rng.below(10) {
                        0..=1 => libc::O_RDONLY,
                        2..=4 => libc::O_WRONLY,
                        _ => libc::O_RDWR,
                    };
                    let mut flags = access;
                    if rng.chance(60) {
                        flags |= libc::O_CREAT;
                    }
                    if access != libc::O_RDONLY && rng.chance(20) {
                        flags |= libc::O_TRUNC;
                    }
                    if rng.chance(20) {
                        flags |= libc::O_APPEND;
                    }
                    Op::Open {
                        path: rng.pick(NAMES),
                        flags,
                    }
                }
                0..=17 => continue,
                18..=41 if handles > 0 => {
                    if let Some((handle, from)) = self.cut_from.filter(|_| rng.chance(50)) {
                        let len = (rng.below(9000) + 1) as usize;
                        return Op::Write {
                            handle,
                            offset: from,
                            len,
                            seed: rng.next(),
                        };
                    }
                    let handle = rng.below(handles as u64) as usize;
                    let size = size_of(handle);
                    let len = if rng.chance(10) {
                        (rng.below(300_000) + 1) as usize
                    } else {
                        (rng.below(9000) + 1) as usize
                    };
                    let offset = match rng.below(4) {
                        0 => size,
                        1 => 0,
                        _ => rng.below(size + 20_000),
                    };
                    Op::Write {
                        handle,
                        offset,
                        len,
                        seed: rng.next(),
                    }
                }
                42..=55 if handles > 0 => {
                    let handle = rng.below(handles as u64) as usize;
                    let size = size_of(handle);
                    Op::Read {
                        handle,
                        offset: rng.below(size + 100),
                        len: (rng.below(size.max(1) + 5000) + 1) as usize,
                    }
                }
                56..=60 if handles > 0 => {
                    let handle = rng.below(handles as u64) as usize;
                    let size = size_of(handle);
                    // Half of them below the end (to zero, often), a streamed file's case.
                    let len = match rng.below(4) {
                        0 => 0,
                        1 => rng.below(size + 1),
                        _ => rng.below(size + 10_000),
                    };
                    Op::Truncate { handle, len }
                }
                61..=62 if handles > 0 => Op::Fsync {
                    handle: rng.below(handles as u64) as usize,
                },
                63..=64 if handles > 0 => Op::Fchmod {
                    handle: rng.below(handles as u64) as usize,
                    mode: pick_mode(rng),
                },
                65..=71 if handles > 0 => Op::Close {
                    handle: rng.below(handles as u64) as usize,
                },
                18..=71 => continue,
                72..=77 => {
                    let (from, to) = (rng.pick(NAMES), rng.pick(NAMES));
                    if self.has_open(to) && from != to {
                        continue;
                    }
                    Op::Rename { from, to }
                }
                78..=81 => {
                    let path = rng.pick(NAMES);
                    if self.has_open(path) {
                        continue;
                    }
                    Op::Unlink { path }
                }
                82..=88 => Op::Mkdir {
                    path: rng.pick(NAMES),
                },
                89..=92 => Op::Rmdir {
                    path: rng.pick(NAMES),
                },
                93..=95 => Op::Readdir {
                    dir: rng.pick(DIRS),
                },
                96 => Op::Chmod {
                    path: rng.pick(NAMES),
                    mode: pick_mode(rng),
                },
                97 => Op::Mkfifo {
                    path: rng.pick(NAMES),
                },
                104..=107 => {
                    let path = rng.pick(NAMES);
                    // Mostly inside the file, where a mapping can write.
                    let size = fs::metadata(local.path(path)).map_or(0, |m| m.len());
                    Op::Mmap {
                        path,
                        offset: rng.below(size.max(1) + 100),
                        len: (rng.below(DIFF_PART) + 1) as usize,
                        seed: rng.next(),
                    }
                }
                100..=103 => {
                    let path = rng.pick(NAMES);
                    if self.has_open(path) {
                        continue;
                    }
                    // Around the part size: a stream with parts sent, or all in its buffer.
                    let first = match rng.below(2) {
                        0 => rng.below(DIFF_PART) + 1,
                        _ => rng.below(3 * DIFF_PART) + 1,
                    } as usize;
                    // To zero often: the one truncate after which the stream goes on.
                    let cut = match rng.below(2) {
                        0 => 0,
                        _ => rng.below(first as u64 + 1),
                    };
                    // Where the stream ended: a write there must not append to it.
                    let at = match rng.below(3) {
                        0 => first as u64,
                        1 => cut,
                        _ => rng.below(first as u64 + DIFF_PART),
                    };
                    Op::Rewrite {
                        path,
                        first,
                        cut,
                        at,
                        second: (rng.below(DIFF_PART) + 1) as usize,
                        seed: rng.next(),
                    }
                }
                _ => Op::Stat {
                    path: rng.pick(NAMES),
                },
            };
            return op;
        }
    }

    /// Keeps the names of open handles in step with a successful operation.
    fn applied(&mut self, op: &Op, outcome: &Outcome) {
        let ok = !matches!(outcome, Outcome::Errno(_));
        match *op {
            Op::Open { path, .. } if ok => self.open_names.push(path.to_owned()),
            Op::Close { handle } => {
                self.open_names.remove(handle);
            }
            Op::Rename { from, to } if ok && from != to => {
                let below = format!("{from}/");
                for name in &mut self.open_names {
                    if name == from {
                        *name = to.to_owned();
                    } else if let Some(rest) = name.strip_prefix(&below) {
                        *name = format!("{to}/{rest}");
                    }
                }
            }
            _ => {}
        }
    }
}

fn env_number(name: &str, default: u64) -> u64 {
    match std::env::var(name) {
        Ok(text) => text
            .parse()
            .unwrap_or_else(|_| panic!("{name}={text:?} is not a number")),
        Err(_) => default,
    }
}

/// What the mount serves.
#[derive(Clone, Copy, Debug)]
enum Layout {
    /// The plain layout with this data cache.
    Plain(CacheSetting),
    /// The vault layout.
    Vault,
}

impl Layout {
    /// A new mount of this layout over an empty bucket.
    fn mount(self) -> TestMount {
        // Parts of 64 KiB (the test bucket accepts them): writes of up to 300 KB make files
        // of many parts, so streamed and staged multipart uploads, part copies, truncates
        // below a stream's end and renames of multipart files all happen.
        let store = MemStore::with_capabilities(Capabilities {
            min_part_size: DIFF_PART,
            ..Capabilities::default()
        });
        match self {
            Layout::Plain(cache) => {
                let config = common::write_config().with_write_part_size(DIFF_PART);
                TestMount::cached(store, config, cache)
            }
            // Chunks of 16 KiB on average: the files of up to a few hundred KB span many,
            // and writes in the middle of a file re-chunk the regions they touch.
            Layout::Vault => TestMount::vault(
                store,
                common::vault_config().with_chunking(ChunkParams::with_avg(16 * 1024)),
            ),
        }
    }
}

/// Runs `ops` random operations of `seed` on both sides, the mount of `layout`; panics at
/// the first difference with the seed and the operations that led to it.
fn run_case(seed: u64, ops: u64, layout: Layout) {
    let local_dir = tempfile::tempdir().expect("a temporary directory");
    let mount = layout.mount();
    let mut local = Side {
        root: local_dir.path().to_owned(),
        handles: Vec::new(),
    };
    let mut mounted = Side {
        root: mount.root().to_owned(),
        handles: Vec::new(),
    };
    // Start with a few directories, so that fewer calls fail for a missing parent.
    for dir in ["d", "d/e", "e"] {
        let op = Op::Mkdir { path: dir };
        assert_eq!(mounted.apply(&op), local.apply(&op), "{op:?}");
    }
    let mut rng = Rng(seed);
    let mut model = Model::default();
    let (mut succeeded, mut failed) = (0, 0);
    let mut mapped = false;
    let mut history: Vec<String> = Vec::new();
    let fail = |history: &[String], what: String| -> ! {
        let start = history
            .len()
            .saturating_sub(env_number("S3VFS_DIFF_SHOW", 40) as usize);
        panic!(
            "seed {seed}, {layout:?}: {what}\nlast operations (replay with \
             S3VFS_DIFF_SEED={seed} S3VFS_DIFF_CASES=1 S3VFS_DIFF_OPS={ops}):\n{}",
            history[start..].join("\n")
        );
    };
    for step in 0..ops {
        let op = model.next_op(&local, &mut rng);
        match op {
            Op::Truncate { handle, len } => {
                let before = local.handles[handle].metadata().map_or(0, |m| m.len());
                model.cut_from = (len < before).then_some((handle, before));
            }
            // Handle numbers shift.
            Op::Open { .. } | Op::Close { .. } => model.cut_from = None,
            _ => {}
        }
        let expected = local.apply(&op);
        let got = mounted.apply(&op);
        history.push(format!("#{step} {op:?} -> {expected:?}"));
        if got != expected {
            fail(
                &history,
                format!("the mount answered {got:?}, the local directory {expected:?}"),
            );
        }
        model.applied(&op, &expected);
        mapped |= matches!(op, Op::Mmap { .. }) && expected == Outcome::Done;
        match expected {
            Outcome::Errno(_) => failed += 1,
            _ => succeeded += 1,
        }
    }
    if mapped {
        // A mapping's pages reach the mount at munmap, and its last release (which
        // uploads them) comes with the kernel's asynchronous RELEASE. Under load a read
        // racing that upload has answered ESTALE (seed 30051, 1 case in 500; an open
        // question, see the issue notes): the final snapshots start once it is done.
        std::thread::sleep(std::time::Duration::from_millis(500));
    }
    while !local.handles.is_empty() {
        let op = Op::Close { handle: 0 };
        let (expected, got) = (local.apply(&op), mounted.apply(&op));
        if got != expected {
            fail(
                &history,
                format!("closing at the end: the mount answered {got:?}"),
            );
        }
    }
    let expected = snapshot(&local.root);
    eprintln!(
        "seed {seed}, {layout:?}: {succeeded} calls succeeded and {failed} failed alike; \
         {} entries at the end",
        expected.len()
    );
    assert_same_tree(&snapshot(&mounted.root), &expected);
    // The last release of a file mapped by another process uploads in the background.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(10);
    loop {
        let fresh = mount.fresh_mount();
        let stored = snapshot(fresh.root());
        if stored == expected || std::time::Instant::now() > deadline {
            assert_same_tree(&stored, &expected);
            break;
        }
        drop(fresh);
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
}

/// Runs the cases the knobs ask for on mounts of `layout`.
fn run_cases(layout: Layout) {
    let cases = env_number("S3VFS_DIFF_CASES", 16);
    let ops = env_number("S3VFS_DIFF_OPS", 400);
    let first = env_number("S3VFS_DIFF_SEED", 1);
    for seed in first..first + cases {
        run_case(seed, ops, layout);
    }
}

fn random_syscalls_match_a_local_directory(cache: CacheSetting) {
    run_cases(Layout::Plain(cache));
}

test_with_every_cache!(random_syscalls_match_a_local_directory);

/// The same on the vault layout (issue 13: the plain layout's differential tests run on
/// the vault too).
#[test]
fn random_syscalls_on_a_vault_match_a_local_directory() {
    run_cases(Layout::Vault);
}

/// Environment variables that make [`mmap_writer`] act: the path to map, and
/// `"offset len seed"`.
const MMAP_WRITER: &str = "S3VFS_DIFF_MMAP_PATH";
const MMAP_WRITER_ARGS: &str = "S3VFS_DIFF_MMAP_ARGS";

/// The `Mmap` operation, in a child process (this test binary again): maps the whole
/// file shared, closes it, writes the bytes that fall inside it and unmaps. Exits with 100
/// plus the errno of a failed call, so that both sides can be compared.
#[test]
fn mmap_writer() {
    let Some(path) = std::env::var_os(MMAP_WRITER) else {
        return;
    };
    let args = std::env::var(MMAP_WRITER_ARGS).unwrap_or_default();
    let numbers: Vec<u64> = args.split(' ').filter_map(|n| n.parse().ok()).collect();
    let [offset, len, seed] = numbers[..] else {
        panic!("{MMAP_WRITER_ARGS}={args:?}");
    };
    let exit_with = |err: io::Error| -> ! {
        std::process::exit(100 + err.raw_os_error().unwrap_or(libc::EIO));
    };
    let file = fs::OpenOptions::new()
        .read(true)
        .write(true)
        .custom_flags(libc::O_NONBLOCK)
        .open(path)
        .unwrap_or_else(|e| exit_with(e));
    let size = file.metadata().unwrap_or_else(|e| exit_with(e)).len();
    if size == 0 || offset >= size {
        // Nothing to map there: mmap of an empty range fails alike on both sides.
        exit_with(io::Error::from_raw_os_error(libc::EINVAL));
    }
    let data = s3vfs_fuse::local::pseudo_random(len as usize, seed);
    let n = data.len().min((size - offset) as usize);
    // SAFETY: a fresh shared mapping of the whole file; only its first `size` bytes are
    // touched, and it is unmapped below.
    let map = unsafe {
        libc::mmap(
            std::ptr::null_mut(),
            size as usize,
            libc::PROT_READ | libc::PROT_WRITE,
            libc::MAP_SHARED,
            file.as_raw_fd(),
            0,
        )
    };
    if map == libc::MAP_FAILED {
        exit_with(io::Error::last_os_error());
    }
    // Closed first, as programs do: the bytes reach the file system after the close's
    // flush (at munmap), and must still reach the store.
    if let Err(e) = common::close(file) {
        exit_with(e);
    }
    // No msync (which is an fsync for FUSE): the pages go back at munmap, and only the
    // last release can upload them.
    // SAFETY: the mapping is `size` bytes long and still mapped; `n` fits in it.
    unsafe {
        std::ptr::copy_nonoverlapping(data.as_ptr(), (map as *mut u8).add(offset as usize), n);
        if libc::munmap(map, size as usize) != 0 {
            exit_with(io::Error::last_os_error());
        }
    }
    std::process::exit(0);
}

#[test]
fn the_generator_is_deterministic() {
    let dir = tempfile::tempdir().unwrap();
    let side = Side {
        root: dir.path().to_owned(),
        handles: Vec::new(),
    };
    let ops = |seed| {
        let model = Model::default();
        let mut rng = Rng(seed);
        (0..50)
            .map(|_| format!("{:?}", model.next_op(&side, &mut rng)))
            .collect::<Vec<_>>()
    };
    assert_eq!(ops(7), ops(7));
    assert_ne!(ops(7), ops(8));
}
