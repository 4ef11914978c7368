//! Error classification: SDK errors to [`StoreError`]s with the key and the S3 error
//! code, never with credentials or signed URLs.

use crate::store::{ObjectKey, StoreError, StoreErrorKind};
use aws_sdk_s3::error::{DisplayErrorContext, ProvideErrorMetadata, SdkError};
use aws_smithy_types::retry::ErrorKind as RetryErrorKind;
use tracing::debug;

/// Maps an SDK error to a [`StoreError`] for `key` (or bucket/prefix).
pub(super) fn map_sdk_error<E>(op: &'static str, key: &str, err: SdkError<E>) -> StoreError
where
    E: ProvideErrorMetadata + std::error::Error + Send + Sync + 'static,
{
    let status = err.raw_response().map(|r| r.status().as_u16());
    // An answer the SDK read an error code from is an ordinary error; one it could not
    // read says so (with what the body holds), whatever its status.
    let unparsable = if err.code().is_none_or(str::is_empty) {
        super::quirks::unparsable_answer(&err)
    } else {
        None
    };
    let error = match (unparsable, &err) {
        (Some(unparsable), _) => unparsable,
        (None, SdkError::ServiceError(_)) => {
            let code = err.code().filter(|c| !c.is_empty());
            let kind = StoreError::kind_for_code(code.unwrap_or(""), status);
            let message = err.message().unwrap_or_default().to_owned();
            let mut e = StoreError::new(kind, message);
            if let Some(code) = code {
                e = e.with_code(code);
            }
            e
        }
        (None, SdkError::TimeoutError(_)) => {
            StoreError::new(StoreErrorKind::Transient, "timed out")
        }
        (None, SdkError::DispatchFailure(failure)) => {
            // I/O errors and timeouts (connection refused, reset, closed before the answer)
            // are worth retrying, and so is what the connector classifies as transient.
            // Anything else (a malformed request, no credentials) is not.
            let kind = match failure.as_other() {
                _ if failure.is_io() || failure.is_timeout() => StoreErrorKind::Transient,
                Some(RetryErrorKind::ThrottlingError) => StoreErrorKind::Throttled,
                Some(RetryErrorKind::TransientError | RetryErrorKind::ServerError) => {
                    StoreErrorKind::Transient
                }
                _ => StoreErrorKind::Other,
            };
            StoreError::new(kind, DisplayErrorContext(&err).to_string())
        }
        (None, SdkError::ResponseError(_)) => StoreError::new(
            StoreErrorKind::Transient,
            DisplayErrorContext(&err).to_string(),
        ),
        (None, _) => StoreError::new(StoreErrorKind::Other, DisplayErrorContext(&err).to_string()),
    };
    let mut error = error.with_operation(op);
    if let Some(status) = status {
        error = error.with_status(status);
    }
    if !key.is_empty() {
        error = error.with_key(key);
    }
    debug!(op, key, kind = %error.kind, code = ?error.code, "failed");
    error
}

pub(super) fn missing_field(op: &str, key: &ObjectKey, field: &str) -> StoreError {
    StoreError::new(
        StoreErrorKind::Other,
        format!("{op} response has no {field}"),
    )
    .with_key(key.as_str())
}

pub(super) fn build_error(
    op: &str,
    key: &ObjectKey,
    err: aws_sdk_s3::error::BuildError,
) -> StoreError {
    StoreError::new(StoreErrorKind::InvalidRequest, format!("{op}: {err}")).with_key(key.as_str())
}

pub(super) fn is_missing_key(e: &StoreError) -> bool {
    e.kind == StoreErrorKind::NotFound
        && !matches!(
            e.code.as_deref(),
            Some("NoSuchBucket") | Some("NoSuchUpload")
        )
}
