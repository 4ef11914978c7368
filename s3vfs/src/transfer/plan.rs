//! Where jobs come from: a prefix listed, two prefixes compared (sync), or lines of a job
//! list (an S3 Batch Operations CSV manifest, or JSON lines) read as they arrive.

use super::verify::md5_of;
use super::{Job, ObjectUrl, Transfer, TransferError};
use crate::store::PageCursor;
use crate::store::{Backend, ListRequest, ListedObject, StoreResult};
use futures::Stream;
use serde::Deserialize;
use std::collections::BTreeMap;
use std::sync::Arc;
use tokio::io::{AsyncBufRead, AsyncBufReadExt};

/// What a sync does with one object.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum SyncAction {
    /// Missing or different at the destination: copy it.
    Copy(Job),
    /// The same at both ends (`why` says by what).
    Skip(Job, &'static str),
    /// At the destination only (with `--delete`): delete it.
    Delete(ObjectUrl),
}

/// `url`'s key as a prefix: empty, or ending in `/`.
fn as_prefix(url: &ObjectUrl) -> String {
    let key = &url.key;
    if key.is_empty() || key.ends_with('/') {
        key.clone()
    } else {
        format!("{key}/")
    }
}

/// The destination of a one-object copy to `dest`: `dest` itself, or, when it names a
/// prefix (empty or ending in `/`), the source's file name under it — as `aws s3 cp` does.
pub fn single_dest(source: &ObjectUrl, dest: &ObjectUrl) -> ObjectUrl {
    if dest.key.is_empty() || dest.key.ends_with('/') {
        let name = source.key.rsplit('/').next().unwrap_or(&source.key);
        dest.with_key(format!("{}{name}", dest.key))
    } else {
        dest.clone()
    }
}

/// Every object of `store` under `prefix`, page by page.
async fn list_all(
    limit: &super::limit::RequestLimit,
    store: &Arc<dyn Backend>,
    prefix: &str,
    mut each: impl FnMut(ListedObject),
) -> StoreResult<()> {
    let mut cursor = PageCursor::objects(prefix);
    let mut token = None;
    loop {
        let request = ListRequest {
            prefix: prefix.to_owned(),
            continuation_token: token.take(),
            ..ListRequest::default()
        };
        let page = limit
            .run("ListObjectsV2", prefix, || store.list(request.clone()))
            .await?;
        token = cursor.next_page(&page)?;
        page.objects.into_iter().for_each(&mut each);
        if token.is_none() {
            return Ok(());
        }
    }
}

impl Transfer {
    /// The jobs of a recursive copy: every object under `source` (taken as a prefix, as
    /// `aws s3 cp --recursive` does) to the same relative key under `dest`.
    pub async fn list_jobs(
        &self,
        source: &ObjectUrl,
        dest: &ObjectUrl,
    ) -> Result<Vec<Job>, TransferError> {
        let (from, to) = (as_prefix(source), as_prefix(dest));
        let store = self.source_store(&source.bucket)?;
        let mut jobs = Vec::new();
        list_all(&self.limit, &store, &from, |object| {
            let relative = &object.key.as_str()[from.len().min(object.key.as_str().len())..];
            jobs.push(Job {
                source: source.with_key(object.key.as_str()),
                dest: dest.with_key(format!("{to}{relative}")),
            });
        })
        .await?;
        Ok(jobs)
    }

    /// What a sync of prefix `source` to prefix `dest` does with each object: copy what is
    /// missing or differs, skip what is the same, and (with `delete`) delete what is at the
    /// destination only.
    ///
    /// "The same" is the same size and the same ETag; when the ETags cannot be compared
    /// (multipart copies made with another part size, servers whose ETags are not MD5s),
    /// the same size and a destination at least as new as the source, as `aws s3 sync`
    /// decides.
    pub async fn plan_sync(
        &self,
        source: &ObjectUrl,
        dest: &ObjectUrl,
        delete: bool,
    ) -> Result<Vec<SyncAction>, TransferError> {
        let (from, to) = (as_prefix(source), as_prefix(dest));
        let dest_store = self.dest_store(&dest.bucket)?;
        let mut there: BTreeMap<String, ListedObject> = BTreeMap::new();
        list_all(&self.limit, &dest_store, &to, |object| {
            let relative = object.key.as_str()[to.len()..].to_owned();
            there.insert(relative, object);
        })
        .await?;
        let source_store = self.source_store(&source.bucket)?;
        let mut actions = Vec::new();
        list_all(&self.limit, &source_store, &from, |object| {
            let relative = object.key.as_str()[from.len()..].to_owned();
            let job = Job {
                source: source.with_key(object.key.as_str()),
                dest: dest.with_key(format!("{to}{relative}")),
            };
            actions.push(match there.remove(&relative) {
                None => SyncAction::Copy(job),
                Some(existing) => match same(&object, &existing) {
                    Some(why) => SyncAction::Skip(job, why),
                    None => SyncAction::Copy(job),
                },
            });
        })
        .await?;
        if delete {
            actions.extend(
                there
                    .into_values()
                    .map(|object| SyncAction::Delete(dest.with_key(object.key.into_string()))),
            );
        }
        Ok(actions)
    }

    /// Deletes the destination object `url` (a sync's `--delete`).
    pub async fn delete(&self, url: &ObjectUrl) -> Result<(), TransferError> {
        let store = self.dest_store(&url.bucket)?;
        let key = crate::store::ObjectKey::new(url.key.clone());
        self.limit
            .run("DeleteObject", &url.key, || store.delete(&key))
            .await?;
        Ok(())
    }
}

/// Why `source` and `dest` hold the same bytes, or `None` if they may not.
fn same(source: &ListedObject, dest: &ListedObject) -> Option<&'static str> {
    if source.size != dest.size {
        return None;
    }
    match (&source.etag, &dest.etag) {
        (Some(a), Some(b)) if a == b => Some("same size and ETag"),
        // Two MD5s that differ: different bytes.
        (Some(a), Some(b)) if md5_of(a).is_some() && md5_of(b).is_some() => None,
        _ if dest.last_modified >= source.last_modified => Some("same size, destination newer"),
        _ => None,
    }
}

/// A job of a JSON-lines job list.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct JsonJob {
    source: Option<String>,
    destination: Option<String>,
    bucket: Option<String>,
    key: Option<String>,
}

/// The job on line `number` (1-based) of a job list: CSV `bucket,key[,version]` as S3
/// Batch Operations manifests have it (the key URL-encoded), or a JSON object
/// `{"source": "s3://…", "destination": "s3://…"}` or `{"bucket": …, "key": …}`. Jobs
/// without a destination copy to the same key under `dest`. Blank lines and `#` comments
/// are no job.
pub fn parse_job(
    line: &str,
    number: usize,
    dest: &ObjectUrl,
) -> Result<Option<Job>, TransferError> {
    let line = line.trim();
    if line.is_empty() || line.starts_with('#') {
        return Ok(None);
    }
    let bad = |message: String| TransferError::BadJob {
        line: number,
        message,
    };
    let under_dest = |source: ObjectUrl| {
        let to = if dest.key.is_empty() || dest.key.ends_with('/') {
            dest.key.clone()
        } else {
            format!("{}/", dest.key)
        };
        Job {
            dest: dest.with_key(format!("{to}{}", source.key)),
            source,
        }
    };
    if line.starts_with('{') {
        let job: JsonJob = serde_json::from_str(line).map_err(|e| bad(e.to_string()))?;
        let source = match (job.source, job.bucket, job.key) {
            (Some(url), None, None) => ObjectUrl::parse(&url)?,
            (None, Some(bucket), Some(key)) => ObjectUrl::new(bucket, key),
            _ => return Err(bad("give \"source\", or \"bucket\" and \"key\"".into())),
        };
        return Ok(Some(match job.destination {
            Some(url) => Job {
                source,
                dest: ObjectUrl::parse(&url)?,
            },
            None => under_dest(source),
        }));
    }
    let mut fields = line.split(',');
    let (Some(bucket), Some(key)) = (fields.next(), fields.next()) else {
        return Err(bad("expected bucket,key".into()));
    };
    let key = percent_decode(key).ok_or_else(|| bad(format!("{key:?} is not URL-encoded")))?;
    if bucket.is_empty() || key.is_empty() {
        return Err(bad("empty bucket or key".into()));
    }
    Ok(Some(under_dest(ObjectUrl::new(bucket, key))))
}

/// `%XX` escapes decoded (as UTF-8); `None` for a bad escape or bytes that are not UTF-8.
fn percent_decode(text: &str) -> Option<String> {
    let bytes = text.as_bytes();
    let mut out = Vec::with_capacity(bytes.len());
    let mut i = 0;
    while i < bytes.len() {
        if bytes[i] == b'%' {
            let hex = text.get(i + 1..i + 3)?;
            out.push(u8::from_str_radix(hex, 16).ok()?);
            i += 3;
        } else {
            out.push(bytes[i]);
            i += 1;
        }
    }
    String::from_utf8(out).ok()
}

/// The jobs of a job list read from `reader` line by line as they arrive (a file, or
/// standard input fed by another system); see [`parse_job`].
pub fn read_jobs<R>(reader: R, dest: ObjectUrl) -> impl Stream<Item = Result<Job, TransferError>>
where
    R: AsyncBufRead + Unpin + Send,
{
    futures::stream::unfold(
        (reader.lines(), 0usize, dest),
        |(mut lines, mut number, dest)| async move {
            loop {
                number += 1;
                match lines.next_line().await {
                    Ok(None) => return None,
                    Err(e) => return Some((Err(TransferError::Io(e)), (lines, number, dest))),
                    Ok(Some(line)) => match parse_job(&line, number, &dest) {
                        Ok(None) => continue,
                        Ok(Some(job)) => return Some((Ok(job), (lines, number, dest))),
                        Err(e) => return Some((Err(e), (lines, number, dest))),
                    },
                }
            }
        },
    )
}

#[cfg(test)]
mod tests {
    use super::*;
    use futures::StreamExt;
    use std::time::{Duration, SystemTime};

    fn url(s: &str) -> ObjectUrl {
        ObjectUrl::parse(s).unwrap()
    }

    #[test]
    fn job_lines_in_both_formats() {
        let dest = url("s3://archive/in");
        assert_eq!(
            parse_job("videos,2026/a%20b%2Bc.mp4", 1, &dest).unwrap(),
            Some(Job {
                source: url("s3://videos/2026/a b+c.mp4"),
                dest: url("s3://archive/in/2026/a b+c.mp4"),
            })
        );
        assert_eq!(
            parse_job("videos,k,version-id-ignored", 1, &dest)
                .unwrap()
                .unwrap()
                .source,
            url("s3://videos/k")
        );
        assert_eq!(
            parse_job(
                r#"{"source":"s3://v/x","destination":"s3://a/y"}"#,
                2,
                &dest
            )
            .unwrap(),
            Some(Job {
                source: url("s3://v/x"),
                dest: url("s3://a/y"),
            })
        );
        assert_eq!(
            parse_job(r#"{"bucket":"v","key":"x"}"#, 2, &dest)
                .unwrap()
                .unwrap()
                .dest,
            url("s3://archive/in/x")
        );
        assert_eq!(parse_job("  ", 3, &dest).unwrap(), None);
        assert_eq!(parse_job("# comment", 3, &dest).unwrap(), None);
        for bad in [
            "justone",
            "v,%zz",
            "v,%ff",
            ",k",
            r#"{"source":"x"}"#,
            r#"{"key":"x"}"#,
        ] {
            assert!(parse_job(bad, 4, &dest).is_err(), "{bad}");
        }
    }

    #[tokio::test]
    async fn jobs_are_read_as_lines_arrive_and_bad_lines_are_reported() {
        let text = "v,a\n\nnot a job\nv,b\n";
        let jobs: Vec<_> = read_jobs(text.as_bytes(), url("s3://d/")).collect().await;
        assert_eq!(jobs.len(), 3);
        assert_eq!(jobs[0].as_ref().unwrap().dest, url("s3://d/a"));
        assert!(matches!(
            jobs[1],
            Err(TransferError::BadJob { line: 3, .. })
        ));
        assert_eq!(jobs[2].as_ref().unwrap().dest, url("s3://d/b"));
    }

    #[test]
    fn a_single_copy_to_a_prefix_keeps_the_name() {
        let source = url("s3://a/dir/v.mp4");
        assert_eq!(single_dest(&source, &url("s3://b/")), url("s3://b/v.mp4"));
        assert_eq!(
            single_dest(&source, &url("s3://b/x/")),
            url("s3://b/x/v.mp4")
        );
        assert_eq!(
            single_dest(&source, &url("s3://b/w.mp4")),
            url("s3://b/w.mp4")
        );
    }

    #[test]
    fn sameness_by_etag_then_by_time() {
        let t0 = SystemTime::UNIX_EPOCH + Duration::from_secs(1000);
        let object = |size: u64, etag: &str, time: SystemTime| ListedObject {
            key: crate::store::ObjectKey::new("k"),
            size,
            last_modified: time,
            etag: Some(crate::store::ETag::new(etag)),
            storage_class: None,
        };
        let md5a = "0123456789abcdef0123456789abcdef";
        let md5b = "fedcba9876543210fedcba9876543210";
        let later = t0 + Duration::from_secs(5);
        assert!(same(&object(5, md5a, t0), &object(5, md5a, t0)).is_some());
        assert!(same(&object(5, md5a, t0), &object(6, md5a, t0)).is_none());
        assert!(same(&object(5, md5a, t0), &object(5, md5b, later)).is_none());
        let multi = format!("{md5b}-3");
        assert!(same(&object(5, md5a, t0), &object(5, &multi, later)).is_some());
        assert!(same(&object(5, md5a, later), &object(5, &multi, t0)).is_none());
    }
}
