//! [`PageCursor`]: the one place that decides how a paged listing goes on.
//!
//! A listing (ListObjectsV2, ListBuckets) is a chain of pages linked by continuation
//! tokens. Two kinds of broken page would otherwise end or never end the chain quietly: a
//! page that says it is truncated but gives no token (a loop reading it as the last page
//! would act on part of a directory, e.g. move half a tree and report success), and a token
//! already handed out before (a loop following it would never end). The cursor turns both
//! into a [`StoreError`] naming the listing's prefix, so every loop that walks pages through
//! it either sees the whole listing or fails.

use super::{
    Backend, ListPage, ListRequest, ListedObject, StoreError, StoreErrorKind, StoreResult,
};
use std::collections::HashSet;

/// Every object under `prefix` of `store`, in key order, all pages followed: a malformed
/// page is an error, never a short listing. The whole listing is held in memory: for tools,
/// tests and prefixes of a modest size.
///
/// # Cancellation
///
/// Dropping the future drops what was listed so far; nothing else.
pub async fn list_all(store: &dyn Backend, prefix: &str) -> StoreResult<Vec<ListedObject>> {
    let mut cursor = PageCursor::objects(prefix);
    let mut found = Vec::new();
    let mut token = None;
    loop {
        let page = store
            .list(ListRequest {
                prefix: prefix.to_owned(),
                continuation_token: token.take(),
                ..ListRequest::default()
            })
            .await?;
        token = cursor.next_page(&page)?;
        found.extend(page.objects);
        if token.is_none() {
            return Ok(found);
        }
    }
}

/// Follows the continuation tokens of one listing and refuses a malformed page.
#[derive(Debug)]
pub(crate) struct PageCursor {
    /// What is being listed, for errors: the API and its prefix.
    operation: &'static str,
    prefix: String,
    /// Every token handed out so far.
    seen: HashSet<String>,
    /// Pages accepted so far.
    pages: u64,
}

impl PageCursor {
    /// A cursor for a ListObjectsV2 of `prefix`, before its first page.
    pub(crate) fn objects(prefix: impl Into<String>) -> Self {
        Self::new("LIST", prefix.into())
    }

    /// A cursor for ListBuckets, before its first page.
    pub(crate) fn buckets() -> Self {
        Self::new("ListBuckets", String::new())
    }

    fn new(operation: &'static str, prefix: String) -> Self {
        Self {
            operation,
            prefix,
            seen: HashSet::new(),
            pages: 0,
        }
    }

    /// The token to ask for the page after `page`; `None` after the last page.
    pub(crate) fn next_page(&mut self, page: &ListPage) -> StoreResult<Option<String>> {
        self.next(page.is_truncated, page.next_continuation_token.as_deref())
    }

    /// The token to ask for the next page, given what the page just read said: whether it
    /// is truncated, and its token (an empty token counts as none). `None` after the last
    /// page; an error for a truncated page without a token, or a token seen before.
    pub(crate) fn next(
        &mut self,
        truncated: bool,
        token: Option<&str>,
    ) -> StoreResult<Option<String>> {
        self.pages += 1;
        if !truncated {
            return Ok(None);
        }
        let Some(token) = token.filter(|t| !t.is_empty()) else {
            return Err(self.malformed("is truncated but has no continuation token"));
        };
        if !self.seen.insert(token.to_owned()) {
            return Err(self.malformed("repeats the continuation token of an earlier page"));
        }
        Ok(Some(token.to_owned()))
    }

    fn malformed(&self, problem: &str) -> StoreError {
        StoreError::new(
            StoreErrorKind::Other,
            format!(
                "{} page {} {problem}: the listing cannot go on and is not used",
                self.operation, self.pages
            ),
        )
        .with_key(self.prefix.clone())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn page(truncated: bool, token: Option<&str>) -> ListPage {
        ListPage {
            is_truncated: truncated,
            next_continuation_token: token.map(str::to_owned),
            ..ListPage::default()
        }
    }

    #[test]
    fn follows_tokens_to_the_last_page() {
        let mut cursor = PageCursor::objects("dir/");
        assert_eq!(
            cursor.next_page(&page(true, Some("a"))),
            Ok(Some("a".into()))
        );
        assert_eq!(
            cursor.next_page(&page(true, Some("b"))),
            Ok(Some("b".into()))
        );
        assert_eq!(cursor.next_page(&page(false, None)), Ok(None));
        // A page that is not truncated ends the listing whatever token it carries.
        assert_eq!(
            PageCursor::objects("").next_page(&page(false, Some("a"))),
            Ok(None)
        );
    }

    #[test]
    fn a_truncated_page_without_a_token_is_an_error_naming_the_prefix() {
        for token in [None, Some("")] {
            let mut cursor = PageCursor::objects("photos/2024/");
            assert_eq!(
                cursor.next_page(&page(true, Some("a"))),
                Ok(Some("a".into()))
            );
            let err = cursor.next_page(&page(true, token)).unwrap_err();
            assert_eq!(err.kind, StoreErrorKind::Other);
            assert_eq!(err.key.as_deref(), Some("photos/2024/"));
            let text = err.to_string();
            assert!(
                text.contains("page 2 is truncated but has no continuation token"),
                "{text}"
            );
        }
    }

    #[test]
    fn a_repeated_token_is_an_error() {
        let mut cursor = PageCursor::objects("d/");
        assert_eq!(cursor.next(true, Some("a")), Ok(Some("a".into())));
        assert_eq!(cursor.next(true, Some("b")), Ok(Some("b".into())));
        let err = cursor.next(true, Some("a")).unwrap_err();
        assert!(err.to_string().contains("page 3 repeats"), "{err}");
        let err = PageCursor::buckets().next(true, None).unwrap_err();
        assert!(
            err.to_string()
                .starts_with("store error for \"\": ListBuckets page 1"),
            "{err}"
        );
    }
}
