//! Typed errors of the object-store layer.

use std::fmt;

/// What kind of failure a store reported; the file system acts on this, never on text.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub enum StoreErrorKind {
    /// No such key, bucket or upload (404, NoSuchKey, NoSuchBucket, NoSuchUpload).
    NotFound,
    /// A condition failed (412 PreconditionFailed, or 409 ConditionalRequestConflict).
    PreconditionFailed,
    /// The store asked us to slow down (503 SlowDown, 429).
    Throttled,
    /// A transient failure worth retrying: 5xx, timeout, dropped connection, short body.
    Transient,
    /// 403 AccessDenied or bad credentials.
    AccessDenied,
    /// The object is archived (InvalidObjectState) and must be restored first.
    Archived,
    /// A range outside the object (416 InvalidRange).
    InvalidRange,
    /// The request was malformed or broke a rule of the store (400, EntityTooSmall, …).
    InvalidRequest,
    /// Anything else.
    Other,
}

impl StoreErrorKind {
    /// Whether trying the same request again may succeed.
    pub fn is_retryable(self) -> bool {
        matches!(self, Self::Throttled | Self::Transient)
    }
}

impl fmt::Display for StoreErrorKind {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Self::NotFound => "not found",
            Self::PreconditionFailed => "precondition failed",
            Self::Throttled => "throttled",
            Self::Transient => "transient failure",
            Self::AccessDenied => "access denied",
            Self::Archived => "object is archived",
            Self::InvalidRange => "invalid range",
            Self::InvalidRequest => "invalid request",
            Self::Other => "store error",
        };
        f.write_str(s)
    }
}

/// An error from an [`Backend`](super::Backend): its kind, the key it concerns, the
/// S3 error code and a message. Never contains credentials or signed URLs.
#[derive(Clone, Debug, PartialEq, Eq, thiserror::Error)]
pub struct StoreError {
    /// What went wrong.
    pub kind: StoreErrorKind,
    /// The key (or bucket) the request was about.
    pub key: Option<String>,
    /// The S3 error code (e.g. `NoSuchKey`, `SlowDown`), when the store sent one.
    pub code: Option<String>,
    /// Human-readable detail: the server's own message, or the client's cause.
    pub message: String,
    /// The S3 operation that failed (e.g. `HeadObject`), when a request was made.
    pub operation: Option<&'static str>,
    /// The HTTP status of the server's answer, when there was one.
    pub status: Option<u16>,
}

impl fmt::Display for StoreError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}", self.kind)?;
        if let Some(operation) = self.operation {
            write!(f, " in {operation}")?;
        }
        if let Some(key) = &self.key {
            write!(f, " for {key:?}")?;
        }
        match (self.status, &self.code) {
            (Some(status), Some(code)) => write!(f, " (HTTP {status}, {code})")?,
            (Some(status), None) => write!(f, " (HTTP {status})")?,
            (None, Some(code)) => write!(f, " ({code})")?,
            (None, None) => {}
        }
        if !self.message.is_empty() {
            write!(f, ": {}", self.message)?;
        }
        Ok(())
    }
}

impl StoreError {
    /// S3's `InvalidRange` for a range starting at `start` of `key`, an object of `size`
    /// bytes (a range starting at or past the end of a non-empty object).
    pub fn range_past_end(key: &str, start: u64, size: u64) -> Self {
        Self::new(
            StoreErrorKind::InvalidRange,
            format!("range starts at {start} but the object has {size} bytes"),
        )
        .with_key(key)
        .with_code("InvalidRange")
    }

    /// An error of `kind` with a message.
    pub fn new(kind: StoreErrorKind, message: impl Into<String>) -> Self {
        Self {
            kind,
            key: None,
            code: None,
            message: message.into(),
            operation: None,
            status: None,
        }
    }

    /// Sets the S3 operation that failed.
    pub fn with_operation(mut self, operation: &'static str) -> Self {
        self.operation = Some(operation);
        self
    }

    /// Sets the HTTP status the server answered with.
    pub fn with_status(mut self, status: u16) -> Self {
        self.status = Some(status);
        self
    }

    /// Sets the key the error concerns.
    pub fn with_key(mut self, key: impl Into<String>) -> Self {
        self.key = Some(key.into());
        self
    }

    /// Sets the S3 error code.
    pub fn with_code(mut self, code: impl Into<String>) -> Self {
        self.code = Some(code.into());
        self
    }

    /// A [`StoreErrorKind::NotFound`] for `key`.
    pub fn not_found(key: impl Into<String>) -> Self {
        Self::new(StoreErrorKind::NotFound, "")
            .with_key(key)
            .with_code("NoSuchKey")
    }

    /// Whether trying the same request again may succeed.
    pub fn is_retryable(&self) -> bool {
        self.kind.is_retryable()
    }

    /// The kind that S3 error `code` (with HTTP `status`, if known) stands for.
    pub fn kind_for_code(code: &str, status: Option<u16>) -> StoreErrorKind {
        match code {
            "NoSuchKey" | "NoSuchBucket" | "NoSuchUpload" | "NotFound" => StoreErrorKind::NotFound,
            "PreconditionFailed" | "ConditionalRequestConflict" => {
                StoreErrorKind::PreconditionFailed
            }
            "SlowDown"
            | "Throttling"
            | "ThrottlingException"
            | "RequestLimitExceeded"
            | "TooManyRequests" => StoreErrorKind::Throttled,
            "InternalError" | "ServiceUnavailable" | "RequestTimeout" | "RequestTimeTooSkewed" => {
                StoreErrorKind::Transient
            }
            "AccessDenied"
            | "InvalidAccessKeyId"
            | "SignatureDoesNotMatch"
            | "ExpiredToken"
            | "InvalidToken"
            | "AllAccessDisabled" => StoreErrorKind::AccessDenied,
            "InvalidObjectState" => StoreErrorKind::Archived,
            "InvalidRange" => StoreErrorKind::InvalidRange,
            _ => match status {
                Some(404) => StoreErrorKind::NotFound,
                Some(412) => StoreErrorKind::PreconditionFailed,
                Some(429) | Some(503) => StoreErrorKind::Throttled,
                Some(403) => StoreErrorKind::AccessDenied,
                Some(416) => StoreErrorKind::InvalidRange,
                Some(s) if s >= 500 => StoreErrorKind::Transient,
                Some(s) if s >= 400 => StoreErrorKind::InvalidRequest,
                _ => StoreErrorKind::Other,
            },
        }
    }
}
