//! One object's copy: one request or parts, server-side or streamed, resumed from its
//! journal, verified at the end (see the [module docs](super)).

use super::journal::{self, Header, Journal};
use super::verify::{self, md5_of};
use super::{Event, Job, Method, ObjectReport, Transfer, TransferError};
use crate::store::multipart::{self, MultipartUpload};
use crate::store::{
    Backend, ByteRange, CompletedPart, CopyRequest, CopySource, ETag, GetRequest,
    MetadataDirective, ObjectKey, ObjectMeta, PutOptions, ServerSideEncryption, StoreError,
    StoreErrorKind, UploadId, WriteCondition,
};
use futures::{StreamExt, TryStreamExt};
use md5::{Digest, Md5};
use std::collections::BTreeMap;
use std::sync::Arc;

/// The two ends of one copy.
struct Ends<'a> {
    job: &'a Job,
    source: Arc<dyn Backend>,
    dest: Arc<dyn Backend>,
    source_key: ObjectKey,
    dest_key: ObjectKey,
    head: ObjectMeta,
}

impl Ends<'_> {
    /// The source as a copy names it, pinned to the version seen at the start.
    fn copy_source(&self) -> CopySource {
        let key = self.source_key.clone();
        let source = if self.job.source.bucket == self.job.dest.bucket {
            CopySource::new(key)
        } else {
            CopySource::in_bucket(self.job.source.bucket.clone(), key)
        };
        source.pinned(self.head.etag.clone())
    }
}

/// A multipart upload being filled, with what a resume found done.
struct Upload {
    upload: MultipartUpload,
    id: UploadId,
    done: BTreeMap<u32, ETag>,
    journal: Option<Journal>,
}

impl Transfer {
    pub(super) async fn copy_inner(
        &self,
        job: &Job,
        report: &mut ObjectReport,
    ) -> Result<(), TransferError> {
        if self.config.server_side && job.source == job.dest {
            return Err(TransferError::SameObject(job.source.to_string()));
        }
        let source_key = ObjectKey::new(job.source.key.clone());
        let source = self.source_store(&job.source.bucket)?;
        let head = self
            .limit
            .run("HeadObject", source_key.as_str(), || {
                source.head(&source_key)
            })
            .await?;
        let ends = Ends {
            job,
            source,
            dest: self.dest_store(&job.dest.bucket)?,
            dest_key: ObjectKey::new(job.dest.key.clone()),
            source_key,
            head,
        };
        report.bytes = ends.head.size;
        self.emit(&Event::Started {
            job: job.clone(),
            size: ends.head.size,
        });
        let caps = ends.dest.capabilities();
        let one_request = if self.config.server_side {
            self.config.multipart_threshold.min(caps.max_single_put)
        } else {
            self.config
                .multipart_threshold
                .min(self.config.part_size)
                .min(caps.max_single_put)
        };
        if ends.head.size <= one_request {
            self.copy_whole(&ends, report).await
        } else {
            self.copy_parts(&ends, report).await
        }
    }

    /// The destination's metadata: the source's content type, user metadata and storage
    /// class (or the one asked for), with the encryption asked for, and `tags`.
    fn options(&self, head: &ObjectMeta, tags: BTreeMap<String, String>) -> PutOptions {
        PutOptions {
            tags,
            user_metadata: head.user_metadata.clone(),
            content_type: head.content_type.clone(),
            storage_class: self
                .config
                .storage_class
                .clone()
                .or_else(|| head.storage_class.clone()),
            sse: self.config.sse.clone(),
            condition: WriteCondition::None,
        }
    }

    /// The source's tags, for a copy that does not carry them over by itself (anything
    /// but a CopyObject). A server without tags (or that refuses to show them) gives
    /// none: logged once per transfer.
    async fn source_tags(&self, ends: &Ends<'_>) -> BTreeMap<String, String> {
        let key = &ends.source_key;
        match self
            .limit
            .run("GetObjectTagging", key.as_str(), || {
                ends.source.get_tags(key)
            })
            .await
        {
            Ok(tags) => tags,
            Err(err) => {
                if !self
                    .tags_unavailable
                    .swap(true, std::sync::atomic::Ordering::SeqCst)
                {
                    tracing::warn!(source = %ends.job.source, error = %err,
                        "cannot read the source's tags; copies are made without tags");
                }
                BTreeMap::new()
            }
        }
    }

    /// Whether ETags at the destination are MD5s of the content (not with SSE-KMS).
    fn etags_are_md5(&self) -> bool {
        !matches!(self.config.sse, Some(ServerSideEncryption::Kms { .. }))
    }

    /// One CopyObject, or one GET and one PUT.
    async fn copy_whole(
        &self,
        ends: &Ends<'_>,
        report: &mut ObjectReport,
    ) -> Result<(), TransferError> {
        let dest_key = ends.dest_key.as_str();
        let expected = if self.config.server_side {
            // No tags given: CopyObject keeps the source's.
            let options = self.options(&ends.head, BTreeMap::new());
            report.method = Method::CopyObject;
            let request = CopyRequest {
                source: ends.copy_source(),
                dest: ends.dest_key.clone(),
                metadata: MetadataDirective::Replace(options),
                condition: WriteCondition::None,
            };
            self.limit
                .run("CopyObject", dest_key, || ends.dest.copy(request.clone()))
                .await?;
            // A one-part source keeps its MD5; a multipart one gets a new ETag.
            ends.head.etag.clone().filter(|t| md5_of(t).is_some())
        } else {
            report.method = Method::StreamedPut;
            let options = self.options(&ends.head, self.source_tags(ends).await);
            let md5 = {
                let _buffer = self.limit.buffer().await?;
                let body = self
                    .limit
                    .run("GetObject", ends.source_key.as_str(), || async {
                        ends.source
                            .get(GetRequest {
                                key: ends.source_key.clone(),
                                range: None,
                                if_match: ends.head.etag.clone(),
                            })
                            .await?
                            .collect()
                            .await
                    })
                    .await?;
                let md5 = ETag::new(hex::encode(Md5::digest(&body)));
                self.limit
                    .run("PutObject", dest_key, || {
                        ends.dest.put(&ends.dest_key, body.clone(), options.clone())
                    })
                    .await?;
                report.bytes_through_client = body.len() as u64;
                md5
            };
            Some(md5)
        };
        self.emit(&Event::Copied(ends.head.size));
        self.verify(ends, report, expected.filter(|_| self.etags_are_md5()))
            .await
    }

    /// A multipart copy: resumed from its journal if there is one, parts copied in
    /// parallel, completed, verified.
    async fn copy_parts(
        &self,
        ends: &Ends<'_>,
        report: &mut ObjectReport,
    ) -> Result<(), TransferError> {
        let server_side = self.config.server_side;
        let caps = ends.dest.capabilities();
        if server_side && !caps.upload_part_copy {
            return Err(StoreError::new(
                StoreErrorKind::InvalidRequest,
                format!(
                    "{} bytes is more than one CopyObject takes and the destination cannot copy parts",
                    ends.head.size
                ),
            )
            .with_key(ends.dest_key.as_str())
            .into());
        }
        let preferred = if server_side {
            self.config.copy_part_size
        } else {
            self.config.part_size
        };
        let part_size = multipart::part_size(&caps, preferred, ends.head.size)?;
        let size = ends.head.size;
        let ranges: Vec<(u32, ByteRange)> = multipart::part_ranges(size, part_size).collect();
        report.method = if server_side {
            Method::PartCopy
        } else {
            Method::StreamedParts
        };
        report.parts = ranges.len() as u32;
        let wanted = Header::new(
            ends.job,
            ends.head.etag.as_ref(),
            size,
            part_size,
            server_side,
        );
        let upload = self.begin_upload(ends, &wanted).await?;
        report.resumed_parts = upload.done.len() as u32;
        let resumed: u64 = ranges
            .iter()
            .filter(|(n, _)| upload.done.contains_key(n))
            .map(|(_, r)| r.len())
            .sum();
        if resumed > 0 {
            self.emit(&Event::Copied(resumed));
        }
        let todo: Vec<(u32, ByteRange)> = ranges
            .iter()
            .filter(|(n, _)| !upload.done.contains_key(n))
            .copied()
            .collect();
        let copied: Result<Vec<CompletedPart>, StoreError> = futures::stream::iter(todo)
            .map(|(number, range)| self.copy_part(ends, &upload, number, range))
            .buffer_unordered(self.config.max_concurrent_requests.max(1))
            .try_collect()
            .await;
        let mut parts = match copied {
            Ok(parts) => parts,
            Err(err) => return Err(self.give_up(upload, err).await),
        };
        if !server_side {
            report.bytes_through_client = parts
                .iter()
                .filter_map(|p| ranges.get(p.part_number as usize - 1))
                .map(|(_, r)| r.len())
                .sum();
        }
        if server_side {
            // Servers that ignore the pin on UploadPartCopy: the source must still be the
            // version the parts were copied from.
            let now = self
                .limit
                .run("HeadObject", ends.source_key.as_str(), || {
                    ends.source.head(&ends.source_key)
                })
                .await;
            match now {
                Ok(now) if now.etag == ends.head.etag => {}
                Ok(_) => {
                    let changed = StoreError::new(
                        StoreErrorKind::PreconditionFailed,
                        "the source changed while it was being copied",
                    )
                    .with_key(ends.source_key.as_str());
                    return Err(self.give_up(upload, changed).await);
                }
                Err(err) => return Err(self.give_up(upload, err).await),
            }
        }
        parts.extend(
            upload
                .done
                .iter()
                .map(|(&part_number, etag)| CompletedPart {
                    part_number,
                    etag: etag.clone(),
                }),
        );
        parts.sort_by_key(|p| p.part_number);
        let id = upload.id.clone();
        let completed = self
            .limit
            .run("CompleteMultipartUpload", ends.dest_key.as_str(), || {
                ends.dest.complete_multipart(
                    &ends.dest_key,
                    &id,
                    parts.clone(),
                    WriteCondition::None,
                )
            })
            .await;
        if let Err(err) = completed {
            return Err(self.give_up(upload, err).await);
        }
        let Upload {
            upload, journal, ..
        } = upload;
        upload.completed();
        if let Some(journal) = journal {
            journal.remove();
        }
        let expected = verify::multipart_etag(&parts).filter(|_| self.etags_are_md5());
        self.verify(ends, report, expected).await
    }

    /// Creates the upload, or resumes the one the journal recorded for this very copy; an
    /// upload recorded for another version of the source is aborted.
    async fn begin_upload(
        &self,
        ends: &Ends<'_>,
        wanted: &Header,
    ) -> Result<Upload, TransferError> {
        let path = self
            .config
            .journal_dir
            .as_ref()
            .map(|dir| journal::path_for(dir, ends.job, self.config.server_side));
        if let Some(path) = &path {
            let found = journal::read(path).map_err(|e| journal_error(path, &e))?;
            match found {
                Some((header, done)) if header.resumable_as(wanted) => {
                    tracing::info!(dest = %ends.job.dest, parts_done = done.len(),
                        "resuming a copy from its journal");
                    let id = UploadId(header.upload_id);
                    let mut upload = MultipartUpload::resume(
                        Arc::clone(&ends.dest),
                        ends.dest_key.clone(),
                        id.clone(),
                    );
                    upload.keep_on_drop();
                    let journal = Journal::reopen(path).map_err(|e| journal_error(path, &e))?;
                    return Ok(Upload {
                        upload,
                        id,
                        done,
                        journal: Some(journal),
                    });
                }
                Some((header, _)) => {
                    tracing::info!(dest = %ends.job.dest,
                        "the source changed since an earlier copy: aborting that upload");
                    let old = MultipartUpload::resume(
                        Arc::clone(&ends.dest),
                        ends.dest_key.clone(),
                        UploadId(header.upload_id),
                    );
                    old.abort().await;
                    journal::remove(path);
                }
                None => {}
            }
        }
        let options = self.options(&ends.head, self.source_tags(ends).await);
        let id = self
            .limit
            .run("CreateMultipartUpload", ends.dest_key.as_str(), || {
                ends.dest.create_multipart(&ends.dest_key, options.clone())
            })
            .await?;
        let mut upload =
            MultipartUpload::resume(Arc::clone(&ends.dest), ends.dest_key.clone(), id.clone());
        let journal = match &path {
            Some(path) => {
                let header = Header {
                    upload_id: id.0.clone(),
                    ..wanted.clone()
                };
                match Journal::create(path, &header) {
                    Ok(journal) => {
                        upload.keep_on_drop();
                        Some(journal)
                    }
                    Err(e) => {
                        upload.abort().await;
                        return Err(journal_error(path, &e));
                    }
                }
            }
            None => None,
        };
        Ok(Upload {
            upload,
            id,
            done: BTreeMap::new(),
            journal,
        })
    }

    /// One part: UploadPartCopy of its range, or its range fetched and uploaded; recorded
    /// in the journal once done.
    async fn copy_part(
        &self,
        ends: &Ends<'_>,
        upload: &Upload,
        number: u32,
        range: ByteRange,
    ) -> Result<CompletedPart, StoreError> {
        let dest_key = ends.dest_key.as_str();
        let part = if self.config.server_side {
            let source = ends.copy_source();
            self.limit
                .run("UploadPartCopy", dest_key, || {
                    upload.upload.part(
                        number,
                        multipart::PartSource::Copy {
                            source: source.clone(),
                            range,
                        },
                    )
                })
                .await?
        } else {
            let _buffer = self.limit.buffer().await?;
            let body = self
                .limit
                .run("GetObject", ends.source_key.as_str(), || async {
                    let body = ends
                        .source
                        .get(GetRequest {
                            key: ends.source_key.clone(),
                            range: Some(range),
                            if_match: ends.head.etag.clone(),
                        })
                        .await?
                        .collect()
                        .await?;
                    if body.len() as u64 == range.len() {
                        Ok(body)
                    } else {
                        Err(StoreError::new(
                            StoreErrorKind::Transient,
                            format!("{} bytes for a range of {}", body.len(), range.len()),
                        )
                        .with_key(ends.source_key.as_str()))
                    }
                })
                .await?;
            let md5: [u8; 16] = Md5::digest(&body).into();
            self.limit
                .run("UploadPart", dest_key, || async {
                    let part = upload
                        .upload
                        .part(number, multipart::PartSource::Bytes(body.clone()))
                        .await?;
                    // A part whose ETag is an MD5 other than the bytes' was damaged on
                    // the way: send it again.
                    match md5_of(&part.etag) {
                        Some(got) if got != md5 => Err(StoreError::new(
                            StoreErrorKind::Transient,
                            format!(
                                "part {number} arrived with MD5 {}, sent {}",
                                part.etag,
                                hex::encode(md5)
                            ),
                        )
                        .with_key(dest_key)),
                        _ => Ok(part),
                    }
                })
                .await?
        };
        if let Some(journal) = &upload.journal {
            if let Err(e) = journal.record(&part) {
                // The part is uploaded; only a resume would copy it again.
                tracing::warn!(path = %journal.path().display(), error = %e,
                    "could not record a finished part in the journal");
            }
        }
        self.emit(&Event::Copied(range.len()));
        Ok(part)
    }

    /// Ends a multipart copy that failed with `err`: an upload a run can resume (a failure
    /// retries could not get through, with a journal) is kept; any other is aborted and
    /// its journal removed.
    async fn give_up(&self, upload: Upload, err: StoreError) -> TransferError {
        let resumable = err.is_retryable() && upload.journal.is_some();
        if resumable {
            tracing::warn!(key = %upload.upload.key(), error = %err,
                "copy failed; its upload is kept: run the same copy again to resume it");
            return err.into();
        }
        let Upload {
            upload, journal, ..
        } = upload;
        upload.abort().await;
        if let Some(journal) = journal {
            journal.remove();
        }
        err.into()
    }

    /// HEADs the destination and checks it (see [`verify::check`]).
    async fn verify(
        &self,
        ends: &Ends<'_>,
        report: &mut ObjectReport,
        expected: Option<ETag>,
    ) -> Result<(), TransferError> {
        let dest = self
            .limit
            .run("HeadObject", ends.dest_key.as_str(), || {
                ends.dest.head(&ends.dest_key)
            })
            .await?;
        match verify::check(&dest, ends.head.size, expected.as_ref()) {
            Ok(verified) => {
                report.verified = verified;
                Ok(())
            }
            Err(message) => Err(TransferError::Verification {
                dest: ends.job.dest.to_string(),
                message,
            }),
        }
    }
}

fn journal_error(path: &std::path::Path, err: &std::io::Error) -> TransferError {
    TransferError::Journal {
        path: path.to_owned(),
        message: err.to_string(),
    }
}
