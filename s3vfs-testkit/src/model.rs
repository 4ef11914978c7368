//! A reference model of the file system a set of keys should appear as.
//!
//! [`expected_tree`] is the specification, written as plainly as possible and
//! independently of the core's streaming listing code: every prefix of a key whose
//! components are all valid names is a directory; a key whose components are all valid is
//! a file unless a directory has the same path (a directory shadows a file); keys outside
//! the mount prefix and invalid components are invisible. [`walk`] reads the tree back
//! through the library API, so tests compare the two.

use bytes::Bytes;
use s3vfs::namespace::FileName;
use s3vfs::vfs::Vfs;
use s3vfs::{S3Vfs, VfsResult};
use std::collections::BTreeMap;

/// One node of the expected tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A file with this content.
    File(Bytes),
    /// A symbolic link with this target.
    Symlink(Bytes),
}

/// The tree (path → node, paths without a leading `/`, root not included) that the objects
/// `objects` (key → content) should appear as when mounted at `prefix` (`""` or ending
/// with `/`).
pub fn expected_tree<'a>(
    objects: impl IntoIterator<Item = (&'a str, &'a Bytes)>,
    prefix: &str,
) -> BTreeMap<String, Node> {
    let mut dirs = std::collections::BTreeSet::new();
    let mut files = BTreeMap::new();
    for (key, content) in objects {
        let Some(rest) = key.strip_prefix(prefix) else {
            continue;
        };
        if rest.is_empty() {
            continue;
        }
        let parts: Vec<&str> = rest.split('/').collect();
        let (dir_parts, leaf) = parts.split_at(parts.len() - 1);
        let mut path = String::new();
        let mut all_valid = true;
        for part in dir_parts {
            if FileName::check(part).is_err() {
                all_valid = false;
                break;
            }
            if !path.is_empty() {
                path.push('/');
            }
            path.push_str(part);
            dirs.insert(path.clone());
        }
        let leaf = leaf[0];
        if all_valid && !leaf.is_empty() && FileName::check(leaf).is_ok() {
            let file = if path.is_empty() {
                leaf.to_owned()
            } else {
                format!("{path}/{leaf}")
            };
            files.insert(file, content.clone());
        }
    }
    let mut tree: BTreeMap<String, Node> = files
        .into_iter()
        .map(|(path, content)| (path, Node::File(content)))
        .collect();
    for dir in dirs {
        tree.insert(dir, Node::Dir);
    }
    tree
}

/// The names in directory `dir` as `vfs` lists them, sorted.
pub async fn names<F: Vfs>(vfs: &S3Vfs<F>, dir: &str) -> VfsResult<Vec<String>> {
    let entries = vfs.read_dir(dir).await?.collect().await?;
    let mut names: Vec<String> = entries.into_iter().map(|e| e.name).collect();
    names.sort();
    Ok(names)
}

/// Reads the whole tree below the root through `vfs`, file contents included.
pub async fn walk<F: Vfs>(vfs: &S3Vfs<F>) -> VfsResult<BTreeMap<String, Node>> {
    let mut tree = BTreeMap::new();
    let mut pending = vec![String::new()];
    while let Some(dir) = pending.pop() {
        let entries = vfs.read_dir(&dir).await?.collect().await?;
        for entry in entries {
            let path = if dir.is_empty() {
                entry.name.clone()
            } else {
                format!("{dir}/{}", entry.name)
            };
            let meta = vfs.metadata(&path).await?;
            if meta.is_dir() {
                pending.push(path.clone());
                tree.insert(path, Node::Dir);
            } else if meta.attr().kind == s3vfs::vfs::FileKind::Symlink {
                let target = vfs.read_link(&path).await?;
                tree.insert(path, Node::Symlink(Bytes::from(target)));
            } else {
                let content = vfs.read(&path).await?;
                tree.insert(path, Node::File(content));
            }
        }
    }
    Ok(tree)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_follows_the_rules() {
        let b = Bytes::from_static(b"x");
        let keys = [
            "p/a", "p/a/b", "p/c//d", "p/../e", "p/f/", "p/g/./h", "q/out", "p/", "p/ok",
        ];
        let tree = expected_tree(keys.iter().map(|k| (*k, &b)), "p/");
        let paths: Vec<(&str, bool)> = tree
            .iter()
            .map(|(p, n)| (p.as_str(), matches!(n, Node::Dir)))
            .collect();
        assert_eq!(
            paths,
            vec![
                ("a", true),
                ("a/b", false),
                ("c", true),
                ("f", true),
                ("g", true),
                ("ok", false)
            ]
        );
    }
}

/// One object of the model bucket.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct ModelObject {
    /// Body.
    pub body: Bytes,
    /// Whether it is a symbolic link (s3fs mode header).
    pub symlink: bool,
}

/// An operation on the file system, or on the bucket by another client.
// Each variant's doc names its fields; a line per field would repeat it.
#[allow(missing_docs)]
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum FsOp {
    /// Create or truncate `path` and write `data` (parents are implied, as in the
    /// library's `create`).
    Write { path: String, data: Bytes },
    /// Append `data` to existing `path`.
    Append { path: String, data: Bytes },
    /// Write `data` at `offset` of existing `path`.
    WriteAt {
        path: String,
        offset: u64,
        data: Bytes,
    },
    /// Set the size of `path`.
    Truncate { path: String, size: u64 },
    /// Remove file `path`.
    Unlink(String),
    /// Create directory `path`.
    Mkdir(String),
    /// Remove empty directory `path`.
    Rmdir(String),
    /// Rename `from` to `to`.
    Rename { from: String, to: String },
    /// Create symlink `path` → `target`.
    Symlink { path: String, target: String },
    /// chmod `path`.
    Chmod { path: String, mode: u32 },
    /// Another client PUTs `key` (any string, valid file name or not).
    RemotePut { key: String, data: Bytes },
    /// Another client deletes `key`.
    RemoteDelete(String),
    /// One handle's whole life: create or truncate `path` (parents implied), write
    /// `first` from 0 (a streamed upload), set the size to `cut` through the handle,
    /// write `second` at `at`, close.
    Rewrite {
        path: String,
        first: Bytes,
        cut: u64,
        at: u64,
        second: Bytes,
    },
    /// An open file renamed under its handle: open existing `path` for appending, append
    /// `before`, rename `path` to `to`, append `after` through the same handle, close.
    /// The handle follows the file; a refused rename leaves it where it was. The result
    /// is the rename's, else the first failed write's or the close's.
    RenameOpen {
        path: String,
        to: String,
        before: Bytes,
        after: Bytes,
    },
    /// `op` while every request that would change the bucket fails (aborts of multipart
    /// uploads excepted): an operation that would change something fails with `EIO` and
    /// changes nothing; the operations after it must work as if it had not been tried.
    Failing(Box<FsOp>),
}

/// What a path is in the model.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kind {
    Dir,
    File,
    Symlink,
}

/// The reference model: the bucket's objects, and the rules by which each operation
/// changes them. Results are errnos.
#[derive(Clone, Debug, Default)]
pub struct ModelFs {
    /// The objects, by key (no mount prefix: the model mounts the whole bucket).
    pub objects: BTreeMap<String, ModelObject>,
}

/// `data` written into `body` at `offset` (`pwrite`): grown with zeros as needed.
pub(crate) fn write_into(body: &mut Vec<u8>, offset: u64, data: &[u8]) {
    if data.is_empty() {
        return;
    }
    let start = offset as usize;
    if body.len() < start + data.len() {
        body.resize(start + data.len(), 0);
    }
    body[start..start + data.len()].copy_from_slice(data);
}

/// The parent directory of `path` (`""` for the root).
pub(crate) fn parent_of(path: &str) -> &str {
    path.rsplit_once('/').map_or("", |(parent, _)| parent)
}

fn is_within(path: &str, dir: &str) -> bool {
    dir.is_empty() || path.starts_with(&format!("{dir}/"))
}

impl ModelFs {
    /// The tree the objects should appear as.
    pub fn tree(&self) -> BTreeMap<String, Node> {
        let mut tree = expected_tree(self.objects.iter().map(|(k, o)| (k.as_str(), &o.body)), "");
        for (path, node) in tree.iter_mut() {
            if let (Node::File(body), Some(object)) = (&*node, self.objects.get(path)) {
                if object.symlink {
                    *node = Node::Symlink(body.clone());
                }
            }
        }
        tree
    }

    fn kind(&self, tree: &BTreeMap<String, Node>, path: &str) -> Option<Kind> {
        if path.is_empty() {
            return Some(Kind::Dir);
        }
        tree.get(path).map(|node| match node {
            Node::Dir => Kind::Dir,
            Node::File(_) => Kind::File,
            Node::Symlink(_) => Kind::Symlink,
        })
    }

    /// Every ancestor of `path` must be a directory: `ENOENT` / `ENOTDIR` otherwise, or
    /// with `implied`, missing ones are fine (created with the file).
    fn check_parents(
        &self,
        tree: &BTreeMap<String, Node>,
        path: &str,
        implied: bool,
    ) -> Result<(), i32> {
        let mut at = String::new();
        let parts: Vec<&str> = path.split('/').collect();
        for part in &parts[..parts.len() - 1] {
            if !at.is_empty() {
                at.push('/');
            }
            at.push_str(part);
            match self.kind(tree, &at) {
                Some(Kind::Dir) => {}
                Some(_) => return Err(libc::ENOTDIR),
                None if implied => {}
                None => return Err(libc::ENOENT),
            }
        }
        Ok(())
    }

    fn keep_directory(&mut self, dir: &str) {
        if !dir.is_empty() {
            self.objects
                .entry(format!("{dir}/"))
                .or_insert(ModelObject {
                    body: Bytes::new(),
                    symlink: false,
                });
        }
    }

    fn keys_below(&self, dir: &str) -> Vec<String> {
        let prefix = format!("{dir}/");
        self.objects
            .range(prefix.clone()..)
            .take_while(|(k, _)| k.starts_with(&prefix))
            .map(|(k, _)| k.clone())
            .collect()
    }

    fn file_body(&self, path: &str) -> Bytes {
        self.objects
            .get(path)
            .map(|o| o.body.clone())
            .unwrap_or_default()
    }

    /// What creating (or truncating) file `path` answers: the parents' errnos, `EISDIR`
    /// for a directory, `EINVAL` for a symlink.
    fn check_creatable(&self, tree: &BTreeMap<String, Node>, path: &str) -> Result<(), i32> {
        self.check_parents(tree, path, true)?;
        match self.kind(tree, path) {
            Some(Kind::Dir) => Err(libc::EISDIR),
            Some(Kind::Symlink) => Err(libc::EINVAL),
            _ => Ok(()),
        }
    }

    fn put_file(&mut self, path: &str, body: Vec<u8>) {
        self.objects.insert(
            path.to_owned(),
            ModelObject {
                body: body.into(),
                symlink: false,
            },
        );
    }

    /// Changes the content of existing file `path` with `edit`: `ENOENT` when missing,
    /// `EISDIR` for a directory, `EINVAL` for a symlink (and the parents' errnos).
    fn edit_file(
        &mut self,
        tree: &BTreeMap<String, Node>,
        path: &str,
        edit: impl FnOnce(&mut Vec<u8>),
    ) -> Result<(), i32> {
        self.check_parents(tree, path, false)?;
        match self.kind(tree, path) {
            None => Err(libc::ENOENT),
            Some(Kind::Dir) => Err(libc::EISDIR),
            Some(Kind::Symlink) => Err(libc::EINVAL),
            Some(Kind::File) => {
                let mut body = self.file_body(path).to_vec();
                edit(&mut body);
                self.put_file(path, body);
                Ok(())
            }
        }
    }

    /// `op` with every change to the bucket failing: its errno if it fails anyway, `EIO`
    /// if it would change the bucket (a chmod always rewrites the object), success if
    /// it would not (an empty append, a truncate to the same size); the bucket is left
    /// as it was either way.
    fn apply_failing(&mut self, op: &FsOp) -> Result<(), i32> {
        let before = self.objects.clone();
        // Nothing reaches the bucket, also of an operation refused after some of its
        // steps (a rename of an open file refused after a write to it).
        let result = self.apply(op);
        let changed = self.objects != before;
        self.objects = before;
        result?;
        let always_writes = matches!(
            op,
            FsOp::Chmod { .. }
                | FsOp::Write { .. }
                | FsOp::Rewrite { .. }
                | FsOp::RenameOpen { .. }
                | FsOp::Symlink { .. }
                | FsOp::Mkdir(_)
        ) || matches!(op, FsOp::Rename { from, to } if from != to);
        if changed || always_writes {
            Err(libc::EIO)
        } else {
            Ok(())
        }
    }

    /// Applies `op`; `Err(errno)` when the file system must refuse it (and then nothing
    /// changes).
    pub fn apply(&mut self, op: &FsOp) -> Result<(), i32> {
        if let FsOp::Failing(inner) = op {
            return self.apply_failing(inner);
        }
        let tree = self.tree();
        match op {
            FsOp::Write { path, data } => {
                self.check_creatable(&tree, path)?;
                self.put_file(path, data.to_vec());
            }
            FsOp::Append { path, data } => {
                self.edit_file(&tree, path, |body| body.extend_from_slice(data))?;
            }
            FsOp::RenameOpen {
                path,
                to,
                before,
                after,
            } => {
                self.edit_file(&tree, path, |body| body.extend_from_slice(before))?;
                let renamed = self.apply(&FsOp::Rename {
                    from: path.clone(),
                    to: to.clone(),
                });
                let now = if renamed.is_ok() { to } else { path };
                let tree = self.tree();
                self.edit_file(&tree, now, |body| body.extend_from_slice(after))?;
                return renamed;
            }
            FsOp::Rewrite {
                path,
                first,
                cut,
                at,
                second,
            } => {
                self.check_creatable(&tree, path)?;
                let mut body = first.to_vec();
                body.resize(*cut as usize, 0);
                write_into(&mut body, *at, second);
                self.put_file(path, body);
            }
            FsOp::WriteAt { path, offset, data } => {
                self.edit_file(&tree, path, |body| write_into(body, *offset, data))?;
            }
            FsOp::Truncate { path, size } => {
                self.edit_file(&tree, path, |body| body.resize(*size as usize, 0))?;
            }
            FsOp::Unlink(path) => {
                self.check_parents(&tree, path, false)?;
                match self.kind(&tree, path) {
                    None => return Err(libc::ENOENT),
                    Some(Kind::Dir) => return Err(libc::EISDIR),
                    Some(_) => {
                        self.keep_directory(parent_of(path));
                        self.objects.remove(path);
                    }
                }
            }
            FsOp::Mkdir(path) => {
                self.check_parents(&tree, path, false)?;
                if self.kind(&tree, path).is_some() {
                    return Err(libc::EEXIST);
                }
                self.keep_directory(path);
            }
            FsOp::Rmdir(path) => {
                self.check_parents(&tree, path, false)?;
                match self.kind(&tree, path) {
                    None => return Err(libc::ENOENT),
                    Some(Kind::Dir) => {
                        let marker = format!("{path}/");
                        if self.keys_below(path).iter().any(|k| *k != marker) {
                            return Err(libc::ENOTEMPTY);
                        }
                        self.keep_directory(parent_of(path));
                        self.objects.remove(&marker);
                    }
                    Some(_) => return Err(libc::ENOTDIR),
                }
            }
            FsOp::Rename { from, to } => {
                self.check_parents(&tree, from, false)?;
                self.check_parents(&tree, to, false)?;
                let Some(source) = self.kind(&tree, from) else {
                    return Err(libc::ENOENT);
                };
                if from == to {
                    return Ok(());
                }
                let dest = self.kind(&tree, to);
                if source == Kind::Dir {
                    if is_within(to, from) {
                        return Err(libc::EINVAL);
                    }
                    match dest {
                        Some(Kind::Dir) => {
                            let marker = format!("{to}/");
                            if self.keys_below(to).iter().any(|k| *k != marker) {
                                return Err(libc::ENOTEMPTY);
                            }
                            self.objects.remove(&marker);
                        }
                        Some(_) => return Err(libc::ENOTDIR),
                        None => {}
                    }
                    if !is_within(to, parent_of(from)) {
                        self.keep_directory(parent_of(from));
                    }
                    for key in self.keys_below(from) {
                        if let Some(object) = self.objects.remove(&key) {
                            let rest = &key[from.len()..];
                            self.objects.insert(format!("{to}{rest}"), object);
                        }
                    }
                    self.keep_directory(to);
                } else {
                    if dest == Some(Kind::Dir) {
                        return Err(libc::EISDIR);
                    }
                    if !is_within(to, parent_of(from)) {
                        self.keep_directory(parent_of(from));
                    }
                    if let Some(object) = self.objects.remove(from) {
                        self.objects.insert(to.clone(), object);
                    }
                }
            }
            FsOp::Symlink { path, target } => {
                self.check_parents(&tree, path, false)?;
                if self.kind(&tree, path).is_some() {
                    return Err(libc::EEXIST);
                }
                self.objects.insert(
                    path.clone(),
                    ModelObject {
                        body: Bytes::from(target.clone()),
                        symlink: true,
                    },
                );
            }
            FsOp::Chmod { path, .. } => {
                self.check_parents(&tree, path, false)?;
                match self.kind(&tree, path) {
                    None => return Err(libc::ENOENT),
                    Some(Kind::Dir) => self.keep_directory(path),
                    Some(_) => {}
                }
            }
            FsOp::Failing(inner) => return self.apply_failing(inner),
            FsOp::RemotePut { key, data } => {
                self.objects.insert(
                    key.clone(),
                    ModelObject {
                        body: data.clone(),
                        symlink: false,
                    },
                );
            }
            FsOp::RemoteDelete(key) => {
                self.objects.remove(key);
            }
        }
        Ok(())
    }
}

/// Applies `op` to the file system under test (`vfs`) or, for the other client's
/// operations, to its bucket `store` (any backend: the other client's PUT and DELETE are
/// plain requests to it); the errno on failure.
pub async fn apply_to_vfs<F: Vfs>(
    vfs: &S3Vfs<F>,
    store: &dyn s3vfs::store::Backend,
    faults: &crate::fault::FaultStore,
    op: &FsOp,
) -> Result<(), i32> {
    use crate::fault::Op;
    use s3vfs::OpenOptions;
    let errno = |e: s3vfs::VfsError| e.errno();
    match op {
        FsOp::Failing(inner) => {
            faults.fail_matching(
                |op, _| {
                    matches!(
                        op,
                        Op::Put
                            | Op::CreateMultipart
                            | Op::UploadPart
                            | Op::UploadPartCopy
                            | Op::CompleteMultipart
                            | Op::Copy
                            | Op::Delete
                            | Op::DeleteMany
                    )
                },
                s3vfs::store::StoreError::new(
                    s3vfs::store::StoreErrorKind::Other,
                    "injected: the bucket refuses every change",
                ),
            );
            let result = Box::pin(apply_to_vfs(vfs, store, faults, inner)).await;
            faults.clear();
            result
        }
        FsOp::Write { path, data } => vfs.write(path, data.clone()).await.map_err(errno),
        FsOp::Append { path, data } => {
            let mut options = OpenOptions::new();
            options.append(true);
            let file = vfs.open_with(path, &options).await.map_err(errno)?;
            let written = if data.is_empty() {
                Ok(0)
            } else {
                file.write_at(0, data.clone()).await
            };
            // Closed and waited for after a failed write too, as a program would.
            let closed = file.close().await;
            written.and(closed).map_err(errno)
        }
        FsOp::WriteAt { path, offset, data } => {
            let mut options = OpenOptions::new();
            options.write(true);
            let file = vfs.open_with(path, &options).await.map_err(errno)?;
            let written = if data.is_empty() {
                Ok(0)
            } else {
                file.write_at(*offset, data.clone()).await
            };
            // Closed and waited for after a failed write too, as a program would.
            let closed = file.close().await;
            written.and(closed).map_err(errno)
        }
        FsOp::Rewrite {
            path,
            first,
            cut,
            at,
            second,
        } => {
            let file = vfs.create(path).await.map_err(errno)?;
            let written = async {
                if !first.is_empty() {
                    file.write_at(0, first.clone()).await?;
                }
                file.set_len(*cut).await?;
                if !second.is_empty() {
                    file.write_at(*at, second.clone()).await?;
                }
                Ok(())
            }
            .await;
            let closed = file.close().await;
            written.and(closed).map_err(errno)
        }
        FsOp::RenameOpen {
            path,
            to,
            before,
            after,
        } => {
            let mut options = OpenOptions::new();
            options.append(true);
            let file = vfs.open_with(path, &options).await.map_err(errno)?;
            let wrote_before = if before.is_empty() {
                Ok(0)
            } else {
                file.write_at(0, before.clone()).await
            };
            let renamed = vfs.rename(path, to).await;
            let wrote_after = if after.is_empty() {
                Ok(0)
            } else {
                file.write_at(0, after.clone()).await
            };
            let closed = file.close().await;
            // The rename's answer first (what the op is about), then the writes' and the
            // close's.
            renamed
                .and(wrote_before.map(|_| ()))
                .and(wrote_after.map(|_| ()))
                .and(closed)
                .map_err(errno)
        }
        FsOp::Truncate { path, size } => vfs.set_len(path, *size).await.map_err(errno),
        FsOp::Unlink(path) => vfs.remove_file(path).await.map_err(errno),
        FsOp::Mkdir(path) => vfs.create_dir(path).await.map_err(errno),
        FsOp::Rmdir(path) => vfs.remove_dir(path).await.map_err(errno),
        FsOp::Rename { from, to } => vfs.rename(from, to).await.map_err(errno),
        FsOp::Symlink { path, target } => vfs.symlink(target, path).await.map_err(errno),
        FsOp::Chmod { path, mode } => vfs.set_permissions(path, *mode).await.map_err(errno),
        // The other client's requests must go through: a failure is the test's, not an errno.
        FsOp::RemotePut { key, data } => {
            let key = s3vfs::store::ObjectKey::new(key.as_str());
            let options = s3vfs::store::PutOptions::default();
            if let Err(e) = store.put(&key, data.clone(), options).await {
                panic!("the other client's PUT of {key} failed: {e}");
            }
            Ok(())
        }
        FsOp::RemoteDelete(key) => {
            if let Err(e) = store
                .delete(&s3vfs::store::ObjectKey::new(key.as_str()))
                .await
            {
                panic!("the other client's DELETE of {key} failed: {e}");
            }
            Ok(())
        }
    }
}

/// proptest strategies for paths, keys and operations (feature `proptest`).
#[cfg(feature = "proptest")]
pub mod strategies {
    use super::FsOp;
    use bytes::Bytes;
    use proptest::prelude::*;

    /// A path of one to three components from a small alphabet, so operations collide.
    pub fn path() -> impl Strategy<Value = String> {
        proptest::collection::vec(prop_oneof![Just("a"), Just("b"), Just("c")], 1..4)
            .prop_map(|parts| parts.join("/"))
    }

    /// A key another client might write: mostly valid paths, some markers, some keys
    /// that cannot be file names.
    pub fn remote_key() -> impl Strategy<Value = String> {
        prop_oneof![
            4 => path(),
            1 => path().prop_map(|p| format!("{p}/")),
            1 => path().prop_map(|p| format!("{p}//x")),
            1 => path().prop_map(|p| format!("{p}/../y")),
            1 => path().prop_map(|p| format!("./{p}")),
        ]
    }

    /// Small contents.
    pub fn data() -> impl Strategy<Value = Bytes> {
        proptest::collection::vec(any::<u8>(), 0..24).prop_map(Bytes::from)
    }

    /// One operation, local or by another client.
    pub fn op() -> impl Strategy<Value = FsOp> {
        prop_oneof![
            4 => (path(), data()).prop_map(|(path, data)| FsOp::Write { path, data }),
            1 => (path(), data()).prop_map(|(path, data)| FsOp::Append { path, data }),
            1 => (path(), 0u64..40, data())
                .prop_map(|(path, offset, data)| FsOp::WriteAt { path, offset, data }),
            1 => (path(), 0u64..40).prop_map(|(path, size)| FsOp::Truncate { path, size }),
            1 => (path(), path(), data(), data()).prop_map(|(path, to, before, after)| {
                FsOp::RenameOpen { path, to, before, after }
            }),
            1 => (path(), data(), 0u64..30, 0u64..40, data()).prop_map(
                |(path, first, cut, at, second)| FsOp::Rewrite { path, first, cut, at, second }
            ),
            2 => path().prop_map(FsOp::Unlink),
            2 => path().prop_map(FsOp::Mkdir),
            2 => path().prop_map(FsOp::Rmdir),
            3 => (path(), path()).prop_map(|(from, to)| FsOp::Rename { from, to }),
            1 => (path(), "[a-z]{1,6}").prop_map(|(path, target)| FsOp::Symlink { path, target }),
            1 => (path(), 0u32..0o1000).prop_map(|(path, mode)| FsOp::Chmod { path, mode }),
            2 => (remote_key(), data()).prop_map(|(key, data)| FsOp::RemotePut { key, data }),
            1 => remote_key().prop_map(FsOp::RemoteDelete),
        ]
    }

    /// Only operations made through the file system (no other client).
    pub fn local_op() -> impl Strategy<Value = FsOp> {
        op().prop_filter("local only", |op| {
            !matches!(op, FsOp::RemotePut { .. } | FsOp::RemoteDelete(_))
        })
    }

    /// Local operations, some of them tried while the bucket refuses every change.
    pub fn op_or_failing() -> impl Strategy<Value = FsOp> {
        prop_oneof![
            4 => op(),
            1 => local_op().prop_map(|op| FsOp::Failing(Box::new(op))),
        ]
    }
}
