//! `ChipStream`: the type every stage passes on. It is DataFusion's
//! [`SendableRecordBatchStream`], so DataFusion plans can feed and consume our operators.

use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};

use arrow_array::RecordBatch;
use arrow_schema::SchemaRef;
use datafusion_common::Result;
use datafusion_execution::RecordBatchStream;
pub use datafusion_execution::SendableRecordBatchStream;
use futures::Stream;

/// A stream of chip batches with a known schema: one row per chip.
pub type ChipStream = SendableRecordBatchStream;

/// Lifts any stream of record batches into a [`ChipStream`] by attaching its schema.
pub struct ChipStreamAdapter<S> {
    schema: SchemaRef,
    inner: S,
}

impl<S> ChipStreamAdapter<S>
where
    S: Stream<Item = Result<RecordBatch>> + Send + Unpin + 'static,
{
    /// Wraps `inner`, whose batches all have `schema`.
    pub fn new(schema: SchemaRef, inner: S) -> Self {
        Self { schema, inner }
    }

    /// Boxes the adapter into a [`ChipStream`].
    pub fn boxed(self) -> ChipStream {
        Box::pin(self)
    }
}

impl<S> Stream for ChipStreamAdapter<S>
where
    S: Stream<Item = Result<RecordBatch>> + Unpin,
{
    type Item = Result<RecordBatch>;

    fn poll_next(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<Option<Self::Item>> {
        Pin::new(&mut self.inner).poll_next(cx)
    }

    fn size_hint(&self) -> (usize, Option<usize>) {
        self.inner.size_hint()
    }
}

impl<S> RecordBatchStream for ChipStreamAdapter<S>
where
    S: Stream<Item = Result<RecordBatch>> + Unpin,
{
    fn schema(&self) -> SchemaRef {
        Arc::clone(&self.schema)
    }
}

/// What a [`tee`] follower receives: a batch (or the upstream's error), or the end of the data.
enum TeeMessage {
    Item(Result<RecordBatch>),
    End,
}

/// Splits `input` so that `followers` more consumers see every batch: the first stream returned
/// yields what `input` yields, and each batch is also handed (cheaply: the columns are shared)
/// to every follower, at most `capacity` batches ahead of it. The first stream waits for a slow
/// follower, so memory stays bounded by `capacity`, not by the data; a dropped follower is
/// skipped. All of them must be consumed concurrently (e.g. `try_join`), or the first waits
/// forever.
///
/// A follower ends only when `input` ends: an error of `input` reaches it as an error, and so
/// does the first stream being dropped early, so a sink that follows never takes an upstream
/// failure for the end of the data and commits a partial file.
pub fn tee(input: ChipStream, followers: usize, capacity: usize) -> (ChipStream, Vec<ChipStream>) {
    use futures::StreamExt;
    let schema = input.schema();
    let (senders, receivers): (Vec<_>, Vec<_>) =
        (0..followers).map(|_| tokio::sync::mpsc::channel::<TeeMessage>(capacity.max(1))).unzip();
    let primary = futures::stream::unfold(Some((input, senders)), |state| async move {
        let (mut input, senders) = state?;
        match input.next().await {
            Some(item) => {
                for tx in &senders {
                    let copy = match &item {
                        Ok(batch) => Ok(batch.clone()),
                        Err(e) => Err(datafusion_common::DataFusionError::Execution(format!("upstream of this sink failed: {e}"))),
                    };
                    // A follower that is gone no longer needs the data.
                    let _ = tx.send(TeeMessage::Item(copy)).await;
                }
                Some((item, Some((input, senders))))
            }
            None => {
                for tx in &senders {
                    let _ = tx.send(TeeMessage::End).await;
                }
                None
            }
        }
    });
    let followers = receivers
        .into_iter()
        .map(|rx| {
            let follower = futures::stream::unfold(Some(rx), |rx| async move {
                let mut rx = rx?;
                match rx.recv().await {
                    Some(TeeMessage::Item(item)) => Some((item, Some(rx))),
                    Some(TeeMessage::End) => None,
                    None => Some((
                        Err(datafusion_common::DataFusionError::Execution(
                            "the stream this sink follows stopped before its end".into(),
                        )),
                        None,
                    )),
                }
            });
            Box::pin(ChipStreamAdapter::new(Arc::clone(&schema), Box::pin(follower))) as ChipStream
        })
        .collect();
    (Box::pin(ChipStreamAdapter::new(schema, Box::pin(primary))), followers)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::Int32Array;
    use arrow_schema::{DataType, Field, Schema};
    use futures::StreamExt;

    fn numbers(values: Vec<Result<i32>>) -> ChipStream {
        let schema = Arc::new(Schema::new(vec![Field::new("n", DataType::Int32, false)]));
        let s = Arc::clone(&schema);
        let items: Vec<Result<RecordBatch>> = values
            .into_iter()
            .map(|v| v.map(|v| RecordBatch::try_new(Arc::clone(&s), vec![Arc::new(Int32Array::from(vec![v]))]).expect("batch")))
            .collect();
        Box::pin(ChipStreamAdapter::new(schema, futures::stream::iter(items)))
    }

    fn value(b: &RecordBatch) -> i32 {
        b.column(0).as_any().downcast_ref::<Int32Array>().expect("i32").value(0)
    }

    #[tokio::test]
    async fn every_follower_sees_every_batch_and_the_end() {
        let (primary, followers) = tee(numbers((0..10).map(Ok).collect()), 2, 1);
        let collect = |s: ChipStream| async move { s.map(|b| value(&b.expect("batch"))).collect::<Vec<_>>().await };
        let mut followers = followers.into_iter();
        let (a, b, c) = tokio::join!(
            collect(primary),
            collect(followers.next().expect("f1")),
            collect(followers.next().expect("f2"))
        );
        let all: Vec<i32> = (0..10).collect();
        assert_eq!((a, b, c), (all.clone(), all.clone(), all));
    }

    #[tokio::test]
    async fn an_upstream_error_or_an_early_drop_is_an_error_for_followers() {
        let failing = numbers(vec![Ok(1), Err(datafusion_common::DataFusionError::Execution("B04.tif: bytes 0-9".into())), Ok(2)]);
        let (primary, mut followers) = tee(failing, 1, 4);
        let (p, f) = tokio::join!(primary.collect::<Vec<_>>(), followers.remove(0).collect::<Vec<_>>());
        assert_eq!((p.len(), f.len()), (3, 3));
        let err = f[1].as_ref().expect_err("error passed on").to_string();
        assert!(err.contains("B04.tif: bytes 0-9"), "{err}");

        // The first stream dropped after one batch: the follower must not see a clean end.
        let (mut primary, mut followers) = tee(numbers((0..5).map(Ok).collect()), 1, 4);
        assert!(primary.next().await.is_some());
        drop(primary);
        let f = followers.remove(0).collect::<Vec<_>>().await;
        assert_eq!(f.len(), 2, "one batch, then an error");
        assert!(f[1].as_ref().is_err_and(|e| e.to_string().contains("stopped before its end")));
    }
}
