//! Request limits around an object store: a bound on concurrent requests per host, and a
//! request budget per scene.
//!
//! [`Limited`] wraps any [`ObjectStore`]. Its semaphore is shared by every store of one host
//! (see [`crate::store::Stores`]), so however many scenes read from a host at once, at most that
//! many requests are in flight there; a `GET`'s permit is held until its body has been read.
//! Its [`RequestBudget`] is shared by every asset of one scene, and a request over budget fails
//! with [`BudgetExceeded`], which names the scene and the budget.
//!
//! A request is one store operation: a range read and its retries inside the store count once;
//! `get_ranges` counts each coalesced range read.

use std::fmt;
use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::task::{Context, Poll};

use async_trait::async_trait;
use futures::stream::{BoxStream, Stream, StreamExt};
use object_store::path::Path;
use object_store::{
    CopyOptions, GetOptions, GetResult, GetResultPayload, ListResult, MultipartUpload, ObjectMeta, ObjectStore,
    PutMultipartOptions, PutOptions, PutPayload, PutResult, RenameOptions, Result,
};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

/// How many requests one scene may issue, and how many it has issued.
#[derive(Debug)]
pub struct RequestBudget {
    scene: String,
    max: u64,
    used: AtomicU64,
}

/// A scene asked for more requests than its budget allows.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("scene {scene} exceeded its request budget of {max} requests")]
pub struct BudgetExceeded {
    /// The scene (item id).
    pub scene: String,
    /// The budget, in requests.
    pub max: u64,
}

impl RequestBudget {
    /// A budget of `max` requests for the scene `scene` (its item id, used in the error).
    pub fn new(scene: impl Into<String>, max: u64) -> Arc<Self> {
        Arc::new(Self { scene: scene.into(), max, used: AtomicU64::new(0) })
    }

    /// Requests issued (or refused) so far.
    pub fn used(&self) -> u64 {
        self.used.load(Ordering::Relaxed)
    }

    /// The budget, in requests.
    pub fn max(&self) -> u64 {
        self.max
    }

    /// Counts one request; refuses it when the budget is spent.
    fn take(&self) -> Result<()> {
        if self.used.fetch_add(1, Ordering::Relaxed) < self.max {
            return Ok(());
        }
        Err(object_store::Error::Generic {
            store: "request budget",
            source: Box::new(BudgetExceeded { scene: self.scene.clone(), max: self.max }),
        })
    }
}

/// An object store whose requests pass a per-host semaphore and a per-scene budget, each
/// optional.
#[derive(Debug)]
pub struct Limited {
    inner: Arc<dyn ObjectStore>,
    permits: Option<Arc<Semaphore>>,
    budget: Option<Arc<RequestBudget>>,
}

impl Limited {
    /// Wraps `inner`: at most `permits`' requests at a time, each counted against `budget`.
    pub fn new(
        inner: Arc<dyn ObjectStore>,
        permits: Option<Arc<Semaphore>>,
        budget: Option<Arc<RequestBudget>>,
    ) -> Self {
        Self { inner, permits, budget }
    }

    async fn admit(&self) -> Result<Option<OwnedSemaphorePermit>> {
        if let Some(b) = &self.budget {
            b.take()?;
        }
        match &self.permits {
            Some(s) => Arc::clone(s)
                .acquire_owned()
                .await
                .map(Some)
                .map_err(|e| object_store::Error::Generic { store: "host concurrency limit", source: Box::new(e) }),
            None => Ok(None),
        }
    }
}

impl fmt::Display for Limited {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Limited({})", self.inner)
    }
}

#[async_trait]
impl ObjectStore for Limited {
    async fn put_opts(&self, location: &Path, payload: PutPayload, opts: PutOptions) -> Result<PutResult> {
        let _permit = self.admit().await?;
        self.inner.put_opts(location, payload, opts).await
    }

    async fn put_multipart_opts(&self, location: &Path, opts: PutMultipartOptions) -> Result<Box<dyn MultipartUpload>> {
        let _permit = self.admit().await?;
        self.inner.put_multipart_opts(location, opts).await
    }

    async fn get_opts(&self, location: &Path, options: GetOptions) -> Result<GetResult> {
        let permit = self.admit().await?;
        let r = self.inner.get_opts(location, options).await?;
        let payload = match (r.payload, permit) {
            // The body is read after this returns: the permit goes with it.
            (GetResultPayload::Stream(s), Some(permit)) => {
                GetResultPayload::Stream(WithPermit { inner: s, _permit: permit }.boxed())
            }
            (payload, _) => payload,
        };
        Ok(GetResult { payload, ..r })
    }

    // `get_ranges` is the trait's default: it coalesces the ranges and reads each through
    // `get_opts` above, so every range read is limited and counted.

    fn delete_stream(&self, locations: BoxStream<'static, Result<Path>>) -> BoxStream<'static, Result<Path>> {
        self.inner.delete_stream(locations)
    }

    fn list(&self, prefix: Option<&Path>) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list(prefix)
    }

    fn list_with_offset(&self, prefix: Option<&Path>, offset: &Path) -> BoxStream<'static, Result<ObjectMeta>> {
        self.inner.list_with_offset(prefix, offset)
    }

    async fn list_with_delimiter(&self, prefix: Option<&Path>) -> Result<ListResult> {
        let _permit = self.admit().await?;
        self.inner.list_with_delimiter(prefix).await
    }

    async fn copy_opts(&self, from: &Path, to: &Path, options: CopyOptions) -> Result<()> {
        let _permit = self.admit().await?;
        self.inner.copy_opts(from, to, options).await
    }

    async fn rename_opts(&self, from: &Path, to: &Path, options: RenameOptions) -> Result<()> {
        let _permit = self.admit().await?;
        self.inner.rename_opts(from, to, options).await
    }
}

/// A body stream that holds its request's permit until it is dropped.
struct WithPermit<S> {
    inner: S,
    _permit: OwnedSemaphorePermit,
}

impl<S: Stream + Unpin> Stream for WithPermit<S> {
    type Item = S::Item;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

#[cfg(test)]
mod tests {
    use object_store::ObjectStoreExt;
    use object_store::memory::InMemory;

    use super::*;

    #[tokio::test]
    async fn the_request_over_budget_names_the_scene() {
        let mem: Arc<dyn ObjectStore> = Arc::new(InMemory::new());
        let path = Path::from("a/b.tif");
        mem.put(&path, PutPayload::from_static(b"0123456789")).await.expect("put");
        let budget = RequestBudget::new("S2A_X", 2);
        let store = Limited::new(mem, None, Some(Arc::clone(&budget)));
        assert_eq!(store.get_range(&path, 0..4).await.expect("1st").as_ref(), b"0123");
        assert_eq!(store.get_range(&path, 4..8).await.expect("2nd").as_ref(), b"4567");
        let err = store.get_range(&path, 8..10).await.expect_err("3rd is over budget");
        assert!(err.to_string().contains("scene S2A_X exceeded its request budget of 2 requests"), "{err}");
        assert_eq!(budget.used(), 3);
    }
}
