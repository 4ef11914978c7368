//! Who pays for a bucket's requests and who must own it: S3's `x-amz-request-payer` and
//! `x-amz-expected-bucket-owner` headers (Mountpoint's `--requester-pays` and
//! `--expected-bucket-owner`).
//!
//! Invariant: every request of a store goes through [`WithBucketAccess::with_access`], so
//! that each one that takes these headers carries them; a request S3 defines without them
//! (ListBuckets) has no implementation here and cannot be given them by mistake.

use super::S3StoreConfig;
use aws_sdk_s3::operation::{
    abort_multipart_upload::builders::AbortMultipartUploadFluentBuilder,
    complete_multipart_upload::builders::CompleteMultipartUploadFluentBuilder,
    copy_object::builders::CopyObjectFluentBuilder,
    create_multipart_upload::builders::CreateMultipartUploadFluentBuilder,
    delete_object::builders::DeleteObjectFluentBuilder,
    delete_objects::builders::DeleteObjectsFluentBuilder,
    get_bucket_location::builders::GetBucketLocationFluentBuilder,
    get_object::builders::GetObjectFluentBuilder,
    get_object_tagging::builders::GetObjectTaggingFluentBuilder,
    head_bucket::builders::HeadBucketFluentBuilder, head_object::builders::HeadObjectFluentBuilder,
    list_objects_v2::builders::ListObjectsV2FluentBuilder,
    put_object::builders::PutObjectFluentBuilder, upload_part::builders::UploadPartFluentBuilder,
    upload_part_copy::builders::UploadPartCopyFluentBuilder,
};
use aws_sdk_s3::types::RequestPayer;

/// The bucket-access headers of one store's requests.
#[derive(Clone, Debug, Default, PartialEq, Eq)]
pub(super) struct BucketAccess {
    /// `x-amz-request-payer: requester`: this account pays for the requests and the data
    /// transfer of a requester-pays bucket.
    request_payer: Option<RequestPayer>,
    /// `x-amz-expected-bucket-owner`: S3 refuses the request (403) when another account
    /// owns the bucket.
    expected_bucket_owner: Option<String>,
}

impl BucketAccess {
    /// The headers `config` asks for.
    pub(super) fn new(config: &S3StoreConfig) -> Self {
        Self {
            request_payer: config.requester_pays.then_some(RequestPayer::Requester),
            expected_bucket_owner: config.expected_bucket_owner.clone(),
        }
    }

    /// The expected owner of a copy's source bucket: this store's expectation when the
    /// source is in the bucket the expectation is about, nothing for another bucket (whose
    /// owner the configuration does not name).
    pub(super) fn source_owner(&self, same_bucket: bool) -> Option<String> {
        self.expected_bucket_owner.clone().filter(|_| same_bucket)
    }
}

/// A request that takes some of the bucket-access headers.
pub(super) trait WithBucketAccess: Sized {
    /// The request with every bucket-access header it takes.
    fn with_access(self, access: &BucketAccess) -> Self;
}

/// Requests that take both headers.
macro_rules! payer_and_owner {
    ($($builder:ty),* $(,)?) => {$(
        impl WithBucketAccess for $builder {
            fn with_access(self, access: &BucketAccess) -> Self {
                self.set_request_payer(access.request_payer.clone())
                    .set_expected_bucket_owner(access.expected_bucket_owner.clone())
            }
        }
    )*};
}

payer_and_owner!(
    AbortMultipartUploadFluentBuilder,
    CompleteMultipartUploadFluentBuilder,
    CopyObjectFluentBuilder,
    CreateMultipartUploadFluentBuilder,
    DeleteObjectFluentBuilder,
    DeleteObjectsFluentBuilder,
    GetObjectFluentBuilder,
    GetObjectTaggingFluentBuilder,
    HeadObjectFluentBuilder,
    ListObjectsV2FluentBuilder,
    PutObjectFluentBuilder,
    UploadPartFluentBuilder,
    UploadPartCopyFluentBuilder,
);

/// Requests about the bucket itself, which S3 bills to its owner: only the owner header.
macro_rules! owner_only {
    ($($builder:ty),* $(,)?) => {$(
        impl WithBucketAccess for $builder {
            fn with_access(self, access: &BucketAccess) -> Self {
                self.set_expected_bucket_owner(access.expected_bucket_owner.clone())
            }
        }
    )*};
}

owner_only!(HeadBucketFluentBuilder, GetBucketLocationFluentBuilder);
