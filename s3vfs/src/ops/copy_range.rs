//! `copy_file_range`: which copies are server-side.
//!
//! A copy of a whole file (from offset 0, at least its size) into an empty file open for
//! writing — what `cp` does — is one server-side copy of the source's object: CopyObject,
//! or UploadPartCopy parts above the single-request limit (`open_files::copy`). It needs
//! a source whose content is exactly an object version (no local changes, a known ETag).
//! One call reports at most [`MAX_COPY_REPLY`] bytes; the caller's next calls, at the
//! offset reached in both files, find the destination holding the copy of that same
//! version and are answered at once, without a request, until the end.
//!
//! Every other copy (other offsets, a destination already written to, a source with local
//! changes, the same file on both sides) goes through the handles, a bounded chunk a call
//! (`None` from here: the caller does it).

use super::Ops;
use crate::error::{VfsError, VfsResult};
use crate::vfs::{Handle, MAX_COPY_REPLY};
use std::sync::Arc;

impl Ops<'_> {
    /// The bytes copied from `fh_in` at `offset_in` to `fh_out` at `offset_out` (at most
    /// `len`) when the copy is server-side, or already made by an earlier call; `None`
    /// when it must go through the handles.
    pub(crate) async fn copy_file_range(
        &self,
        fh_in: Handle,
        offset_in: u64,
        fh_out: Handle,
        offset_out: u64,
        len: u64,
    ) -> VfsResult<Option<u64>> {
        let (source, source_flags) = self.handles.file(fh_in)?;
        let (dest, dest_flags) = self.handles.file(fh_out)?;
        // As copy_file_range(2): a source open for reading, a destination open for
        // writing and not appending.
        if !source_flags.read || !dest_flags.write || dest_flags.append {
            return Err(VfsError::BadHandle);
        }
        self.core.check_not_closing("copy")?;
        if len == 0 {
            return Ok(Some(0));
        }
        if offset_in != offset_out || Arc::ptr_eq(&source, &dest) {
            return Ok(None);
        }
        let Some(version) = self.open_files.clean_version(&source).await else {
            return Ok(None);
        };
        if offset_in >= version.size {
            return Ok(Some(0));
        }
        if self.open_files.holds_copy_of(&dest, &version).await {
            return Ok(Some(reply_len(offset_in, len, version.size)));
        }
        if offset_in != 0 || len < version.size {
            return Ok(None);
        }
        let copied = self.open_files.copy_object_into(&dest, &version).await?;
        Ok(copied.then(|| reply_len(0, len, version.size)))
    }
}

/// The bytes one call reports of a copy that holds the whole source of `size` bytes: what
/// is left from `offset`, at most `len`, at most [`MAX_COPY_REPLY`].
fn reply_len(offset: u64, len: u64, size: u64) -> u64 {
    size.saturating_sub(offset).min(len).min(MAX_COPY_REPLY)
}

#[cfg(test)]
mod tests {
    use super::*;

    const GIB: u64 = 1 << 30;

    #[test]
    fn replies_stay_below_what_fuse_can_report_and_page_aligned() {
        assert!(MAX_COPY_REPLY <= u64::from(u32::MAX));
        assert_eq!(MAX_COPY_REPLY % 4096, 0);
        assert_eq!(MAX_COPY_REPLY, 4 * GIB - 4096);
        // A small file: all of it at once.
        assert_eq!(reply_len(0, u64::MAX, 1234), 1234);
        // A 10 GiB file, as `cp` asks for it (a huge len, then from where it stands).
        let size = 10 * GIB;
        let mut offset = 0;
        let mut calls = 0;
        loop {
            let n = reply_len(offset, i64::MAX as u64 - offset, size);
            if n == 0 {
                break;
            }
            assert!(n <= MAX_COPY_REPLY);
            assert!(u32::try_from(n).is_ok());
            assert_eq!(offset % 4096, 0, "each call starts page-aligned");
            offset += n;
            calls += 1;
        }
        assert_eq!((offset, calls), (size, 3));
        // Exactly the limit, and one byte over.
        assert_eq!(reply_len(0, u64::MAX, MAX_COPY_REPLY), MAX_COPY_REPLY);
        assert_eq!(reply_len(0, u64::MAX, MAX_COPY_REPLY + 1), MAX_COPY_REPLY);
        assert_eq!(reply_len(MAX_COPY_REPLY, u64::MAX, MAX_COPY_REPLY + 1), 1);
        // A shorter len, and offsets at or past the end.
        assert_eq!(reply_len(4096, 10, size), 10);
        assert_eq!(reply_len(size, u64::MAX, size), 0);
        assert_eq!(reply_len(u64::MAX, u64::MAX, size), 0);
    }
}
