//! `ChipStream`: the type every stage passes on. It is DataFusion's
//! [`SendableRecordBatchStream`], so DataFusion plans can feed and consume our operators.

use std::pin::Pin;
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
        std::sync::Arc::clone(&self.schema)
    }
}
