//! Directories that exist only in this file system, for stores that cannot keep `dir/`
//! markers ([`FsConfig::directory_markers`](crate::config::FsConfig::directory_markers)
//! off): `rclone serve s3` stores a marker `d/` as a plain file `d`, after which nothing
//! can be written below `d/`; s3s-fs neither lists nor HEADs one.
//!
//! There, as in Mountpoint for S3, `mkdir` makes a directory in memory. It is seen by this
//! mount only, until the process ends; a file written in it makes it exist in the bucket
//! (a key lies below it). A directory whose last key is removed is kept here the same way,
//! so that `rm dir/last` does not make `dir` vanish from under the user.

use crate::meta::Stat;
use crate::namespace::FsPath;
use crate::sync::lock;
use std::collections::BTreeMap;
use std::sync::Mutex;

/// The directories of this mount that no key in the store implies, with their attributes.
#[derive(Debug, Default)]
pub(crate) struct LocalDirs {
    dirs: Mutex<BTreeMap<FsPath, Stat>>,
}

impl LocalDirs {
    /// Records directory `path` with `stat` (replacing what was recorded).
    pub(crate) fn insert(&self, path: &FsPath, stat: Stat) {
        if !path.is_root() {
            lock(&self.dirs).insert(path.clone(), stat);
        }
    }

    /// The attributes of `path`, if it is one of these directories.
    pub(crate) fn get(&self, path: &FsPath) -> Option<Stat> {
        lock(&self.dirs).get(path).cloned()
    }

    /// Forgets directory `path`; whether it was recorded.
    pub(crate) fn remove(&self, path: &FsPath) -> bool {
        lock(&self.dirs).remove(path).is_some()
    }

    /// The names and attributes of the recorded directories directly in `dir`.
    pub(crate) fn children(&self, dir: &FsPath) -> Vec<(String, Stat)> {
        lock(&self.dirs)
            .iter()
            .filter(|(path, _)| !path.is_root() && path.parent() == *dir)
            .filter_map(|(path, stat)| Some((path.file_name()?.to_owned(), stat.clone())))
            .collect()
    }

    /// Whether a recorded directory lies below `dir`.
    pub(crate) fn any_below(&self, dir: &FsPath) -> bool {
        lock(&self.dirs)
            .keys()
            .any(|path| path != dir && path.is_within(dir))
    }

    /// Moves `from` and every recorded directory below it to the same place below `to`.
    pub(crate) fn move_tree(&self, from: &FsPath, to: &FsPath) {
        let mut dirs = lock(&self.dirs);
        let moved: Vec<FsPath> = dirs
            .keys()
            .filter(|path| path.is_within(from))
            .cloned()
            .collect();
        for path in moved {
            if let Some(stat) = dirs.remove(&path) {
                let rest = &path.as_str()[from.as_str().len()..];
                let dest = FsPath::from_trusted(format!("{}{rest}", to.as_str()));
                dirs.insert(dest, stat);
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn path(p: &str) -> FsPath {
        FsPath::parse(p).unwrap()
    }

    #[test]
    fn children_moves_and_removal() {
        let dirs = LocalDirs::default();
        let stat = Stat::directory(SystemTime::UNIX_EPOCH);
        for p in ["a", "a/b", "a/b/c", "ab", "x/y"] {
            dirs.insert(&path(p), stat.clone());
        }
        dirs.insert(&FsPath::root(), stat.clone());
        let names = |d: &str| -> Vec<String> {
            let dir = if d.is_empty() {
                FsPath::root()
            } else {
                path(d)
            };
            dirs.children(&dir).into_iter().map(|(n, _)| n).collect()
        };
        assert_eq!(names(""), ["a", "ab"]);
        assert_eq!(names("a"), ["b"]);
        assert_eq!(names("x"), ["y"]);
        assert!(dirs.any_below(&path("a")) && !dirs.any_below(&path("ab")));

        dirs.move_tree(&path("a"), &path("m/n"));
        assert!(dirs.get(&path("a")).is_none() && dirs.get(&path("a/b/c")).is_none());
        assert!(dirs.get(&path("m/n")).is_some() && dirs.get(&path("m/n/b/c")).is_some());
        assert!(
            dirs.get(&path("ab")).is_some(),
            "a sibling with a longer name stays"
        );

        assert!(dirs.remove(&path("ab")) && !dirs.remove(&path("ab")));
        assert_eq!(names(""), Vec::<String>::new());
    }
}
