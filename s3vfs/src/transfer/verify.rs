//! The check at the end of a copy: the destination's size, and its ETag against the one
//! the copy must produce (the source's MD5 for a one-request copy, S3's `md5(part md5s)-N`
//! for a multipart one).

use crate::store::{CompletedPart, ETag, ObjectMeta};
use md5::{Digest, Md5};
use serde::Serialize;

/// How far the destination was checked.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize)]
#[serde(rename_all = "kebab-case")]
pub enum Verified {
    /// Not checked (no copy made).
    No,
    /// Its size (the server's ETags do not follow S3's form, or encryption changes them).
    Size,
    /// Its size and its ETag.
    SizeAndEtag,
}

/// The 16 bytes of an ETag that is a plain MD5 (32 hex digits), if it is one.
pub(super) fn md5_of(etag: &ETag) -> Option<[u8; 16]> {
    let hex = etag.as_str().trim_matches('"');
    let mut out = [0u8; 16];
    hex::decode_to_slice(hex, &mut out).ok()?;
    Some(out)
}

/// The ETag S3 gives the object completed from `parts` (in part order): the MD5 of their
/// MD5s, then `-` and their count. `None` when a part's ETag is not a plain MD5.
pub fn multipart_etag(parts: &[CompletedPart]) -> Option<ETag> {
    let mut sorted: Vec<&CompletedPart> = parts.iter().collect();
    sorted.sort_by_key(|p| p.part_number);
    let mut digest = Md5::new();
    for part in &sorted {
        digest.update(md5_of(&part.etag)?);
    }
    Some(ETag::new(format!(
        "{}-{}",
        hex::encode(digest.finalize()),
        sorted.len()
    )))
}

/// Whether an ETag has S3's form for its kind: 32 hex digits, or 32 hex digits, `-` and a
/// part count.
fn s3_form(etag: &ETag) -> bool {
    let tag = etag.as_str().trim_matches('"');
    match tag.split_once('-') {
        Some((md5, count)) => md5_of(&ETag::new(md5)).is_some() && count.parse::<u32>().is_ok(),
        None => md5_of(etag).is_some(),
    }
}

/// Checks `dest` (a HEAD after the copy) against the `size` copied and the ETag the copy
/// must have produced (`None`: it cannot be predicted). A different size, or an ETag of
/// S3's form that differs from the expected one, is an error saying what differs.
pub(super) fn check(
    dest: &ObjectMeta,
    size: u64,
    expected: Option<&ETag>,
) -> Result<Verified, String> {
    if dest.size != size {
        return Err(format!(
            "{} bytes at the destination, {size} copied",
            dest.size
        ));
    }
    match (expected, &dest.etag) {
        (Some(want), Some(got)) if want == got => Ok(Verified::SizeAndEtag),
        (Some(want), Some(got)) if s3_form(got) && s3_form(want) => Err(format!(
            "the destination's ETag is {got}, the copy's parts make {want}"
        )),
        _ => Ok(Verified::Size),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn part(n: u32, body: &[u8]) -> CompletedPart {
        CompletedPart {
            part_number: n,
            etag: ETag::new(hex::encode(Md5::digest(body))),
        }
    }

    fn meta(size: u64, etag: &str) -> ObjectMeta {
        ObjectMeta {
            key: crate::store::ObjectKey::new("k"),
            size,
            last_modified: SystemTime::UNIX_EPOCH,
            etag: Some(ETag::new(etag)),
            storage_class: None,
            content_type: None,
            user_metadata: Default::default(),
            restored: false,
        }
    }

    #[test]
    fn the_multipart_etag_is_the_md5_of_the_part_md5s() {
        // Worked by hand: md5(md5("ab") ‖ md5("c")), two parts, in part order whatever the
        // order given.
        let parts = [part(2, b"c"), part(1, b"ab")];
        let mut both = Vec::new();
        both.extend_from_slice(&Md5::digest(b"ab"));
        both.extend_from_slice(&Md5::digest(b"c"));
        let want = format!("{}-2", hex::encode(Md5::digest(&both)));
        assert_eq!(multipart_etag(&parts), Some(ETag::new(want)));
        let odd = CompletedPart {
            part_number: 1,
            etag: ETag::new("not-an-md5"),
        };
        assert_eq!(multipart_etag(&[odd]), None);
    }

    #[test]
    fn a_different_size_or_s3_form_etag_is_a_mismatch() {
        let md5 = hex::encode(Md5::digest(b"x"));
        let other = hex::encode(Md5::digest(b"y"));
        let want = ETag::new(format!("{md5}-3"));
        assert_eq!(
            check(&meta(10, &format!("{md5}-3")), 10, Some(&want)),
            Ok(Verified::SizeAndEtag)
        );
        assert!(check(&meta(9, &format!("{md5}-3")), 10, Some(&want)).is_err());
        assert!(check(&meta(10, &format!("{other}-3")), 10, Some(&want)).is_err());
        assert!(check(&meta(10, &other), 10, Some(&ETag::new(md5.clone()))).is_err());
        // A server whose ETags are not S3's (rclone's multipart ones): the size only.
        assert_eq!(
            check(&meta(10, "rclone-etag"), 10, Some(&want)),
            Ok(Verified::Size)
        );
        assert_eq!(check(&meta(10, &other), 10, None), Ok(Verified::Size));
    }
}
