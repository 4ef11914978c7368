//! Conversions between the store's types and the SDK's: options on requests, times,
//! metadata, ranges, part numbers, copy sources.

use crate::store::{ByteRange, ObjectKey, StoreError, StoreErrorKind, StoreResult};
use aws_sdk_s3::primitives::DateTime;
use std::collections::{BTreeMap, HashMap};
use std::time::SystemTime;

pub(super) fn part_number_i32(key: &ObjectKey, part_number: u32) -> StoreResult<i32> {
    i32::try_from(part_number).map_err(|_| {
        StoreError::new(
            StoreErrorKind::InvalidRequest,
            format!("part number {part_number} out of range"),
        )
        .with_key(key.as_str())
    })
}

pub(super) fn non_negative(n: Option<i64>) -> u64 {
    n.and_then(|n| u64::try_from(n).ok()).unwrap_or(0)
}

pub(super) fn system_time(t: Option<&DateTime>) -> SystemTime {
    t.and_then(|t| SystemTime::try_from(*t).ok())
        .unwrap_or(SystemTime::UNIX_EPOCH)
}

/// `None` for STANDARD, so that stores that omit the header and stores that send it agree.
pub(super) fn storage_class_name(class: Option<&str>) -> Option<String> {
    class
        .filter(|c| !c.is_empty() && *c != "STANDARD")
        .map(str::to_owned)
}

pub(super) fn user_metadata(
    metadata: Option<&HashMap<String, String>>,
) -> BTreeMap<String, String> {
    metadata
        .into_iter()
        .flatten()
        .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
        .collect()
}

/// Whether `x-amz-restore` (e.g. `ongoing-request="false", expiry-date="…"`) says that a
/// restored copy is available.
pub(super) fn restore_completed(header: &str) -> bool {
    header
        .split(',')
        .filter_map(|part| part.split_once('='))
        .any(|(name, value)| {
            name.trim().eq_ignore_ascii_case("ongoing-request")
                && value.trim().trim_matches('"').eq_ignore_ascii_case("false")
        })
}

/// Parses `bytes first-last/size` into the covered range and the object's size.
pub(super) fn parse_content_range(header: &str) -> Option<(ByteRange, u64)> {
    let rest = header.trim().strip_prefix("bytes")?.trim_start();
    let (span, size) = rest.split_once('/')?;
    let size: u64 = size.trim().parse().ok()?;
    let (first, last) = span.trim().split_once('-')?;
    let first: u64 = first.trim().parse().ok()?;
    let last: u64 = last.trim().parse().ok()?;
    if first > last || last >= size {
        return None;
    }
    Some((ByteRange::new(first, last + 1), size))
}

/// `x-amz-copy-source`: `bucket/key`, the key percent-encoded except for `/`.
pub(super) fn copy_source(bucket: &str, key: &ObjectKey) -> String {
    let mut out = String::with_capacity(bucket.len() + 1 + key.as_str().len() * 3);
    out.push_str(bucket);
    out.push('/');
    percent_encode(&mut out, key.as_str(), b"/");
    out
}

/// `text` appended to `out` with every byte but unreserved ones and `keep` as `%XX`.
fn percent_encode(out: &mut String, text: &str, keep: &[u8]) {
    for &b in text.as_bytes() {
        if b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~') || keep.contains(&b)
        {
            out.push(char::from(b));
        } else {
            out.push_str(&format!("%{b:02X}"));
        }
    }
}

/// The `x-amz-tagging` header of `tags`: `key=value` pairs joined by `&`, URL-encoded.
pub(super) fn tagging_header(tags: &std::collections::BTreeMap<String, String>) -> String {
    let mut out = String::new();
    for (i, (key, value)) in tags.iter().enumerate() {
        if i > 0 {
            out.push('&');
        }
        percent_encode(&mut out, key, b"");
        out.push('=');
        percent_encode(&mut out, value, b"");
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn content_range_parses() {
        assert_eq!(
            parse_content_range("bytes 0-99/1234"),
            Some((ByteRange::new(0, 100), 1234))
        );
        assert_eq!(
            parse_content_range("bytes 5-5/6"),
            Some((ByteRange::new(5, 6), 6))
        );
        assert_eq!(parse_content_range("bytes */1234"), None);
        assert_eq!(parse_content_range("bytes 7-3/10"), None);
        assert_eq!(parse_content_range("bytes 0-10/10"), None);
    }

    #[test]
    fn restore_header_parses() {
        assert!(restore_completed(
            r#"ongoing-request="false", expiry-date="Fri, 21 Dec 2012 00:00:00 GMT""#
        ));
        assert!(!restore_completed(r#"ongoing-request="true""#));
        assert!(!restore_completed(""));
    }

    #[test]
    fn tags_are_url_encoded_pairs() {
        let tags = std::collections::BTreeMap::from([
            ("project".to_owned(), "a b&c".to_owned()),
            ("kind".to_owned(), "vidéo".to_owned()),
        ]);
        assert_eq!(tagging_header(&tags), "kind=vid%C3%A9o&project=a%20b%26c");
    }

    #[test]
    fn copy_source_is_encoded() {
        assert_eq!(
            copy_source("b", &ObjectKey::new("dir/a b+c%d/é")),
            "b/dir/a%20b%2Bc%25d/%C3%A9"
        );
    }
}
