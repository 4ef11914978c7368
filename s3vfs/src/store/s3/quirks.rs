//! Where [`S3Store`] makes up for answers that are not what S3 would send: the quirks of
//! S3-compatible servers, and replies lost on the way. Everything of the kind lives here, so
//! that the request code in `s3.rs` stays S3 as documented.
//!
//! **Ambiguous upload outcomes.** A PutObject or CompleteMultipartUpload may have taken
//! effect although the client got a failure:
//! - the server answered 2xx with a body the SDK cannot parse (some moto releases answer
//!   CompleteMultipartUpload with the root `CompleteMultipartUploadResponse` instead of
//!   `CompleteMultipartUploadResult`);
//! - the request was sent more than once (the reply to an attempt was lost or timed out)
//!   and the last attempt failed the way the first one's success makes it fail: 412
//!   PreconditionFailed (or 409 ConditionalRequestConflict) for a conditional request,
//!   NoSuchUpload for an upload completed meanwhile.
//!
//! Before reporting such a failure, the store HEADs the key. It reports success, with the
//! HEAD's ETag, when the key now holds exactly this upload:
//! - a single PUT: the ETag is the hex MD5 of the body (computed here, only on this path)
//!   and every user metadata entry sent is there with the value sent;
//! - a multipart upload: the ETag is `hex(md5(md5(part 1) ‖ … ‖ md5(part N)))-N`, each
//!   part's MD5 taken from the ETag UploadPart (or UploadPartCopy) returned.
//!
//! Otherwise the original error stands: the HEAD fails or shows another object, or the
//! expected ETag cannot be known (a store whose part ETags are not plain MD5s, as with
//! SSE-KMS). A failure answered by a single attempt with a parsable error is never
//! ambiguous and costs no HEAD. An identical object stored by another writer at the same
//! time cannot be told from ours; it holds what we meant to store either way.
//!
//! **Misnamed XML roots of CreateMultipartUpload.** `rclone serve s3` answers with the root
//! `InitiateMultipartUpload` instead of `InitiateMultipartUploadResult`, which the SDK
//! rejects. A 2xx answer the SDK rejects but whose root element holds an `UploadId` is
//! taken as the new upload's id: the upload exists on the server either way, and nothing
//! else of the answer is used.
//!
//! **Unparsable answers.** Any other answer the SDK cannot read becomes an error whose
//! message starts with "unparsable response" and gives the HTTP status, the XML root
//! element, the SDK's reason, and the server's own `Code` and `Message` when the body has
//! them (the code also goes into [`StoreError::code`]).

use super::{map_sdk_error, S3Store};
use crate::store::{
    Backend, CompletedPart, ETag, ListRequest, ObjectKey, ObjectMeta, PutResult, StoreError,
    StoreErrorKind, StoreResult,
};
use aws_sdk_s3::config::interceptors::BeforeTransmitInterceptorContextRef;
use aws_sdk_s3::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_s3::error::{ProvideErrorMetadata, SdkError};
use aws_smithy_xml::decode::{try_data, Document};
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::error::Error;
use std::sync::atomic::{AtomicU32, Ordering};
use std::sync::Arc;
use tracing::{debug, warn};

/// Most characters of a server's text quoted in an error message.
const QUOTE_LIMIT: usize = 200;

/// Counts the attempts (transmissions) of one request, retries included: attached to a
/// single operation with `customize().interceptor(..)`, read after `send` returns.
#[derive(Clone, Debug, Default)]
pub(super) struct Attempts(Arc<AtomicU32>);

impl Attempts {
    /// How many times the request was sent.
    pub(super) fn count(&self) -> u32 {
        self.0.load(Ordering::Relaxed)
    }
}

impl Intercept for Attempts {
    fn name(&self) -> &'static str {
        "s3vfs::Attempts"
    }

    fn read_before_transmit(
        &self,
        _context: &BeforeTransmitInterceptorContextRef<'_>,
        _runtime_components: &RuntimeComponents,
        _cfg: &mut ConfigBag,
    ) -> Result<(), Box<dyn Error + Send + Sync>> {
        self.0.fetch_add(1, Ordering::Relaxed);
        Ok(())
    }
}

/// What an upload leaves in the bucket when it succeeded, as a HEAD shows it.
#[derive(Clone, Debug, PartialEq, Eq)]
pub(super) enum Expected {
    /// A single PUT: the body's MD5 and the user metadata sent.
    Put {
        md5: [u8; 16],
        user_metadata: BTreeMap<String, String>,
    },
    /// A multipart upload: its ETag, without quotes, lower case.
    Multipart { etag: String },
}

impl Expected {
    /// The object a PUT of `body` with `user_metadata` makes.
    pub(super) fn put(body: &[u8], user_metadata: &BTreeMap<String, String>) -> Expected {
        Expected::Put {
            md5: Md5::digest(body).into(),
            user_metadata: user_metadata
                .iter()
                .map(|(k, v)| (k.to_ascii_lowercase(), v.clone()))
                .collect(),
        }
    }

    /// The object completing an upload of `parts` (in part order) makes; `None` when a
    /// part's ETag is not a plain hex MD5, so that the upload's ETag cannot be known.
    pub(super) fn multipart(parts: &[CompletedPart]) -> Option<Expected> {
        if parts.is_empty() {
            return None;
        }
        let mut md5s = Md5::new();
        for part in parts {
            md5s.update(plain_md5(&part.etag)?);
        }
        Some(Expected::Multipart {
            etag: format!("{}-{}", hex::encode(md5s.finalize()), parts.len()),
        })
    }

    /// Whether `meta` (a HEAD's answer) is this upload's object.
    fn matches(&self, meta: &ObjectMeta) -> bool {
        let Some(etag) = meta.etag.as_ref().map(bare_etag) else {
            return false;
        };
        match self {
            Expected::Put { md5, user_metadata } => {
                etag == hex::encode(md5)
                    && user_metadata
                        .iter()
                        .all(|(k, v)| meta.user_metadata.get(k) == Some(v))
            }
            Expected::Multipart { etag: expected } => &etag == expected,
        }
    }
}

/// An ETag without its quotes, lower case.
fn bare_etag(tag: &ETag) -> String {
    tag.as_str().trim_matches('"').to_ascii_lowercase()
}

/// The MD5 an ETag stands for, when it is a plain hex MD5.
fn plain_md5(tag: &ETag) -> Option<[u8; 16]> {
    let bare = bare_etag(tag);
    let mut md5 = [0u8; 16];
    hex::decode_to_slice(bare.as_bytes(), &mut md5).ok()?;
    Some(md5)
}

/// Whether an upload that failed with `error` after `attempts` attempts may have taken
/// effect nonetheless (see the module documentation); `unparsable_success` tells that the
/// last answer was a 2xx the SDK could not read.
fn is_ambiguous(unparsable_success: bool, error: &StoreError, attempts: u32) -> bool {
    if unparsable_success {
        return true;
    }
    attempts > 1
        && (error.kind == StoreErrorKind::PreconditionFailed
            || error.code.as_deref() == Some("NoSuchUpload"))
}

/// Whether `err` is a 2xx answer the SDK could not read.
pub fn is_unparsable_success<E>(err: &SdkError<E>) -> bool {
    matches!(err, SdkError::ServiceError(_))
        && err.raw_response().is_some_and(|r| r.status().is_success())
}

/// The outcome of upload `op` of `key` that failed with `err` after `attempts`: the
/// failure as a [`StoreError`], unless it is ambiguous (see the module documentation) and a
/// HEAD shows the key holds `expected()`, when it is a success.
pub(super) async fn upload_failed<E>(
    store: &S3Store,
    op: &'static str,
    key: &ObjectKey,
    err: SdkError<E>,
    attempts: &Attempts,
    expected: impl FnOnce() -> Option<Expected>,
) -> StoreResult<PutResult>
where
    E: ProvideErrorMetadata + Error + Send + Sync + 'static,
{
    let unparsable = is_unparsable_success(&err);
    let error = map_sdk_error(op, key.as_str(), err);
    if !is_ambiguous(unparsable, &error, attempts.count()) {
        return Err(error);
    }
    settle(store, op, key, expected(), error).await
}

/// Decides an ambiguous failure of `op` on `key`: success when a HEAD shows `expected`,
/// `error` otherwise.
async fn settle(
    store: &S3Store,
    op: &'static str,
    key: &ObjectKey,
    expected: Option<Expected>,
    error: StoreError,
) -> StoreResult<PutResult> {
    let Some(expected) = expected else {
        warn!(op, key = %key, "outcome unknown (part ETags are not MD5s): {error}");
        return Err(error);
    };
    match store.head(key).await {
        Ok(meta) if expected.matches(&meta) => {
            warn!(op, key = %key, etag = ?meta.etag,
                "the answer was a failure, but the key holds exactly this upload: success ({error})");
            Ok(PutResult { etag: meta.etag })
        }
        Ok(meta) => {
            debug!(op, key = %key, etag = ?meta.etag, "the key holds another object");
            Err(error)
        }
        Err(head_error) => {
            debug!(op, key = %key, "HEAD to check the outcome failed: {head_error}");
            Err(error)
        }
    }
}

/// The outcome of a HeadObject of `key` that failed with `error`. A server error (5xx,
/// after the client's retries) is checked against a listing of `key`: when no object of
/// exactly that key is listed, the key is missing and the answer is [`StoreErrorKind::NotFound`]
/// (s3s-fs answers 500 for a key that is a folder on its disk, which is every directory
/// and every `dir/` marker); when it is listed, or the listing fails too, `error` stands.
pub(super) async fn head_failed(store: &S3Store, key: &ObjectKey, error: StoreError) -> StoreError {
    if !error.status.is_some_and(|s| (500..600).contains(&s)) {
        return error;
    }
    let request = ListRequest {
        prefix: key.as_str().to_owned(),
        max_keys: Some(1),
        ..ListRequest::default()
    };
    match store.list(request).await {
        Ok(page) if !page.objects.iter().any(|o| &o.key == key) => {
            if !store.head_5xx_seen.swap(true, Ordering::Relaxed) {
                warn!(key = %key, "the server answered a HEAD of a key it does not list with \
                    HTTP {}: such answers are taken as \"not found\" (s3s-fs does this for \
                    directories; logged once)", error.status.unwrap_or_default());
            }
            StoreError::not_found(key.as_str()).with_operation("HeadObject")
        }
        Ok(_) => error,
        Err(list_error) => {
            debug!(key = %key, "listing to check a failed HEAD failed too: {list_error}");
            error
        }
    }
}

/// The `UploadId` of a CreateMultipartUpload answer the SDK rejected, when it was a 2xx
/// whose root element (whatever its name) holds one.
pub fn upload_id_despite<E>(err: &SdkError<E>) -> Option<String> {
    if !is_unparsable_success(err) {
        return None;
    }
    let summary = XmlSummary::parse(err.raw_response()?.body().bytes()?)?;
    let id = summary.field("UploadId")?.to_owned();
    (!id.is_empty()).then(|| {
        debug!(root = %summary.root, "CreateMultipartUpload answer with a non-S3 root accepted");
        id
    })
}

/// What an answer the SDK could not read says, when it has a body: the store error to
/// report (kind, the server's code, a message starting with "unparsable response").
/// `None` for answers without a body (HEAD, some 404s), whose status is all there is.
pub(super) fn unparsable_answer<E: Error + 'static>(err: &SdkError<E>) -> Option<StoreError> {
    if !matches!(err, SdkError::ServiceError(_)) {
        return None;
    }
    let raw = err.raw_response()?;
    let body = raw.body().bytes().filter(|b| !b.is_empty())?;
    let status = raw.status().as_u16();
    let summary = XmlSummary::parse(body);
    let code = summary
        .as_ref()
        .and_then(|s| s.field("Code"))
        .filter(|c| !c.is_empty())
        .map(str::to_owned);
    // A 2xx without a code is `Other`: not retried, and no errno says more.
    let kind = StoreError::kind_for_code(code.as_deref().unwrap_or(""), Some(status));
    let mut message = match &summary {
        Some(s) => format!("unparsable response (HTTP {status}, XML root <{}>)", s.root),
        None => format!(
            "unparsable response (HTTP {status}, not XML: {:?})",
            quote(&String::from_utf8_lossy(body))
        ),
    };
    message.push_str(": ");
    message.push_str(&innermost_reason(err));
    if let Some(server_message) = summary.as_ref().and_then(|s| s.field("Message")) {
        message.push_str(&format!("; the server says: {}", quote(server_message)));
    }
    let mut error = StoreError::new(kind, message);
    if let Some(code) = code {
        error = error.with_code(code);
    }
    Some(error)
}

/// The last error of `err`'s source chain: the SDK's own reason, without the wrappers.
fn innermost_reason(err: &(dyn Error + 'static)) -> String {
    let mut current = err;
    while let Some(source) = current.source() {
        current = source;
    }
    quote(&current.to_string())
}

/// `text`, cut to [`QUOTE_LIMIT`] characters.
fn quote(text: &str) -> String {
    let mut chars = text.chars();
    let mut out: String = chars.by_ref().take(QUOTE_LIMIT).collect();
    if chars.next().is_some() {
        out.push('…');
    }
    out
}

/// The root element of an XML answer and the text of its simple children.
#[derive(Debug)]
struct XmlSummary {
    root: String,
    fields: Vec<(String, String)>,
}

impl XmlSummary {
    fn parse(body: &[u8]) -> Option<XmlSummary> {
        let mut document = Document::try_from(body).ok()?;
        let mut root = document.root_element().ok()?;
        let name = root.start_el().local().to_owned();
        let mut fields = Vec::new();
        while let Some(mut child) = root.next_tag() {
            let field = child.start_el().local().to_owned();
            if let Ok(text) = try_data(&mut child) {
                fields.push((field, text.into_owned()));
            }
        }
        Some(XmlSummary { root: name, fields })
    }

    fn field(&self, name: &str) -> Option<&str> {
        self.fields
            .iter()
            .find(|(field, _)| field == name)
            .map(|(_, text)| text.as_str())
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::time::SystemTime;

    fn meta(etag: &str, user_metadata: &[(&str, &str)]) -> ObjectMeta {
        ObjectMeta {
            key: ObjectKey::new("k"),
            size: 0,
            last_modified: SystemTime::UNIX_EPOCH,
            etag: Some(ETag::new(etag)),
            storage_class: None,
            content_type: None,
            user_metadata: user_metadata
                .iter()
                .map(|(k, v)| ((*k).to_owned(), (*v).to_owned()))
                .collect(),
            restored: false,
        }
    }

    fn part(n: u32, body: &[u8]) -> CompletedPart {
        CompletedPart {
            part_number: n,
            etag: ETag::new(hex::encode(Md5::digest(body))),
        }
    }

    #[test]
    fn multipart_etag_is_the_md5_of_the_part_md5s() {
        // The ETag S3 gives an upload of the parts "hello" and "world".
        let mut concat = Vec::new();
        concat.extend_from_slice(&Md5::digest(b"hello"));
        concat.extend_from_slice(&Md5::digest(b"world"));
        let s3 = format!("\"{}-2\"", hex::encode(Md5::digest(&concat)));
        let expected = Expected::multipart(&[part(1, b"hello"), part(2, b"world")]).unwrap();
        assert!(expected.matches(&meta(&s3, &[])));
        assert!(!expected.matches(&meta(&s3.replace("-2", "-3"), &[])));
        // Parts in another order make another object.
        let swapped = Expected::multipart(&[part(1, b"world"), part(2, b"hello")]).unwrap();
        assert!(!swapped.matches(&meta(&s3, &[])));
    }

    #[test]
    fn multipart_etag_needs_plain_md5_parts() {
        let kms = CompletedPart {
            part_number: 1,
            etag: ETag::new("not-an-md5"),
        };
        assert_eq!(Expected::multipart(&[part(1, b"a"), kms]), None);
        assert_eq!(Expected::multipart(&[]), None);
    }

    #[test]
    fn put_matches_body_md5_and_metadata_sent() {
        let sent = BTreeMap::from([("Mode".to_owned(), "33188".to_owned())]);
        let expected = Expected::put(b"hello", &sent);
        let tag = "5d41402abc4b2a76b9719d911017c592";
        assert!(expected.matches(&meta(tag, &[("mode", "33188"), ("other", "x")])));
        assert!(!expected.matches(&meta(tag, &[("mode", "16877")])));
        assert!(!expected.matches(&meta(tag, &[])));
        assert!(!expected.matches(&meta("00000000000000000000000000000000", &[])));
    }

    #[test]
    fn only_retried_conflicts_and_unparsable_successes_are_ambiguous() {
        let conflict = StoreError::new(StoreErrorKind::PreconditionFailed, "");
        let gone = StoreError::new(StoreErrorKind::NotFound, "").with_code("NoSuchUpload");
        let missing = StoreError::not_found("k");
        let broken = StoreError::new(StoreErrorKind::Transient, "");
        assert!(!is_ambiguous(false, &conflict, 1));
        assert!(is_ambiguous(false, &conflict, 2));
        assert!(!is_ambiguous(false, &gone, 1));
        assert!(is_ambiguous(false, &gone, 3));
        assert!(!is_ambiguous(false, &missing, 3));
        assert!(!is_ambiguous(false, &broken, 5));
        assert!(is_ambiguous(true, &broken, 1));
    }

    #[test]
    fn xml_summary_reads_any_root() {
        let body = br#"<?xml version="1.0" encoding="UTF-8"?>
<InitiateMultipartUpload xmlns="http://s3.amazonaws.com/doc/2006-03-01/"><Bucket>b</Bucket><Key>k</Key><UploadId>abc</UploadId></InitiateMultipartUpload>"#;
        let summary = XmlSummary::parse(body).unwrap();
        assert_eq!(summary.root, "InitiateMultipartUpload");
        assert_eq!(summary.field("UploadId"), Some("abc"));
        assert_eq!(summary.field("Nope"), None);
        assert!(XmlSummary::parse(b"<html").is_none());
    }

    #[test]
    fn quotes_are_cut() {
        assert_eq!(quote("short"), "short");
        let long = "x".repeat(QUOTE_LIMIT + 10);
        assert_eq!(quote(&long).chars().count(), QUOTE_LIMIT + 1);
    }
}
