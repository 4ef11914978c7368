//! The vault's requests to its bucket: objects named relative to the vault's prefix,
//! whole-object GETs bounded in size before the body is read, and PUTs whose write
//! condition failing is an answer, not an error.

use super::error::VaultError;
use crate::store::{
    Backend, ETag, GetRequest, ListPage, ListRequest, ObjectKey, ObjectMeta, PageCursor,
    PutOptions, StoreErrorKind, WriteCondition,
};
use bytes::{Bytes, BytesMut};
use futures::StreamExt;
use std::sync::Arc;

/// A vault's place: a bucket and a prefix (`""` or ending with `/`).
#[derive(Clone, Debug)]
pub(crate) struct Location {
    store: Arc<dyn Backend>,
    prefix: String,
}

/// What a conditional PUT did.
#[derive(Debug)]
pub(crate) enum Put {
    /// Written; the object's new ETag.
    Done(ETag),
    /// Not written: the condition failed (the object changed, or exists already).
    ConditionFailed,
}

impl Location {
    /// `prefix` of `store`; a `/` is added to a non-empty prefix that lacks one.
    pub(crate) fn new(store: Arc<dyn Backend>, prefix: &str) -> Self {
        let mut prefix = prefix.trim_start_matches('/').to_owned();
        if !prefix.is_empty() && !prefix.ends_with('/') {
            prefix.push('/');
        }
        Self { store, prefix }
    }

    /// [`Location::new`], for a store that can hold a vault: one with conditional writes.
    pub(crate) fn checked(store: Arc<dyn Backend>, prefix: &str) -> Result<Self, VaultError> {
        if !store.capabilities().conditional_writes {
            return Err(VaultError::Config(
                "the store has no conditional writes (If-Match): a vault needs them".into(),
            ));
        }
        Ok(Self::new(store, prefix))
    }

    /// The prefix.
    pub(crate) fn prefix(&self) -> &str {
        &self.prefix
    }

    /// The bucket, where the store knows it.
    pub(crate) fn bucket(&self) -> Option<String> {
        self.store.bucket()
    }

    /// The name (relative to the prefix) of a key a listing gave; `None` for a key outside
    /// the prefix, which a store should not list.
    pub(crate) fn name_of<'k>(&self, key: &'k ObjectKey) -> Option<&'k str> {
        key.as_str().strip_prefix(self.prefix.as_str())
    }

    /// The full key of `name`.
    pub(crate) fn key(&self, name: &str) -> ObjectKey {
        ObjectKey::new(format!("{}{name}", self.prefix))
    }

    /// The whole object `name` and its ETag, or `None` when there is none. An object over
    /// `limit` bytes is not read.
    pub(crate) async fn get(
        &self,
        name: &str,
        limit: u64,
    ) -> Result<Option<(Bytes, Option<ETag>)>, VaultError> {
        let key = self.key(name);
        let response = match self.store.get(GetRequest::whole(key.clone())).await {
            Ok(response) => response,
            Err(err) if err.kind == StoreErrorKind::NotFound => return Ok(None),
            Err(err) => return Err(VaultError::store(key.as_str(), err)),
        };
        let size = response.meta.size;
        if size > limit {
            return Err(VaultError::TooLarge {
                key: key.into_string(),
                size,
                limit,
            });
        }
        let etag = response.meta.etag.clone();
        // The size was checked: the buffer never grows past the limit, whatever the body
        // stream goes on sending.
        let mut body = response.body;
        let mut buf = BytesMut::with_capacity(size as usize);
        while let Some(piece) = body.next().await {
            let piece = piece.map_err(|e| VaultError::store(key.as_str(), e))?;
            if (buf.len() + piece.len()) as u64 > size {
                return Err(VaultError::corrupt(
                    key.as_str(),
                    "body longer than its size",
                ));
            }
            buf.extend_from_slice(&piece);
        }
        if buf.len() as u64 != size {
            return Err(VaultError::corrupt(
                key.as_str(),
                "body shorter than its size",
            ));
        }
        Ok(Some((buf.freeze(), etag)))
    }

    /// PUT of `body` at `name` under `condition`.
    pub(crate) async fn put(
        &self,
        name: &str,
        body: Bytes,
        condition: WriteCondition,
    ) -> Result<Put, VaultError> {
        let key = self.key(name);
        let options = PutOptions {
            condition,
            ..PutOptions::default()
        };
        match self.store.put(&key, body, options).await {
            Ok(result) => result.etag.map(Put::Done).ok_or_else(|| {
                VaultError::Config(format!(
                    "the store gave no ETag for {key}: the vault needs them for If-Match"
                ))
            }),
            Err(err) if err.kind == StoreErrorKind::PreconditionFailed => Ok(Put::ConditionFailed),
            Err(err) => Err(VaultError::store(key.as_str(), err)),
        }
    }

    /// HEAD of `name`: its metadata, or `None` when there is none.
    pub(crate) async fn head(&self, name: &str) -> Result<Option<ObjectMeta>, VaultError> {
        let key = self.key(name);
        match self.store.head(&key).await {
            Ok(meta) => Ok(Some(meta)),
            Err(err) if err.kind == StoreErrorKind::NotFound => Ok(None),
            Err(err) => Err(VaultError::store(key.as_str(), err)),
        }
    }

    /// Starts a listing of the objects whose names start with `name_prefix`.
    pub(crate) fn list(&self, name_prefix: &str) -> Listing {
        let prefix = format!("{}{name_prefix}", self.prefix);
        Listing {
            store: Arc::clone(&self.store),
            cursor: PageCursor::objects(prefix.clone()),
            prefix,
            token: None,
            done: false,
        }
    }

    /// DELETE of `name` (a missing object is no error).
    pub(crate) async fn delete(&self, name: &str) -> Result<(), VaultError> {
        let key = self.key(name);
        self.store
            .delete(&key)
            .await
            .map_err(|e| VaultError::store(key.as_str(), e))
    }
}

/// A listing walked one page at a time, so that a caller holds one page of keys at most.
#[derive(Debug)]
pub(crate) struct Listing {
    store: Arc<dyn Backend>,
    cursor: PageCursor,
    prefix: String,
    token: Option<String>,
    done: bool,
}

impl Listing {
    /// The next page, or `None` after the last one.
    pub(crate) async fn next_page(&mut self) -> Result<Option<ListPage>, VaultError> {
        if self.done {
            return Ok(None);
        }
        let request = ListRequest {
            prefix: self.prefix.clone(),
            continuation_token: self.token.take(),
            ..ListRequest::default()
        };
        let page = self
            .store
            .list(request)
            .await
            .map_err(|e| VaultError::store(self.prefix.as_str(), e))?;
        self.token = self
            .cursor
            .next_page(&page)
            .map_err(|e| VaultError::store(self.prefix.as_str(), e))?;
        self.done = self.token.is_none();
        Ok(Some(page))
    }
}
