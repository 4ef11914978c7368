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
use s3vfs::{S3Vfs, VfsResult};
use std::collections::BTreeMap;

/// One node of the expected tree.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum Node {
    /// A directory.
    Dir,
    /// A file with this content.
    File(Bytes),
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

/// Reads the whole tree below the root through `vfs`, file contents included.
pub async fn walk(vfs: &S3Vfs) -> VfsResult<BTreeMap<String, Node>> {
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
