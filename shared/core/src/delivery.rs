//! An [`EventSink`] over any `PutRecordBatch`-shaped port: packs events, splits
//! calls at the service limits, and re-sends only the entries that failed.

use std::future::Future;
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};

use thiserror::Error;

use crate::model::OutputEvent;
use crate::packing::{PackConfig, chunk_calls, pack};
use crate::ports::{Delivery, EventSink, PortError};
use crate::retry::{CallError, Classify, ErrorClass, OutOfTime, Retrier, classify_aws};

/// Why one entry of a batch call was not accepted.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct EntryFailure {
    pub code: String,
    pub message: String,
}

/// One `PutRecordBatch`-like call: per entry, `None` when accepted.
pub trait RecordBatchPort: Send + Sync {
    type Error: PortError;

    fn put_record_batch<'a>(
        &'a self,
        records: &'a [&'a [u8]],
    ) -> impl Future<Output = Result<Vec<Option<EntryFailure>>, Self::Error>> + Send + 'a;
}

impl<T: RecordBatchPort> RecordBatchPort for std::sync::Arc<T> {
    type Error = T::Error;

    fn put_record_batch<'a>(
        &'a self,
        records: &'a [&'a [u8]],
    ) -> impl Future<Output = Result<Vec<Option<EntryFailure>>, Self::Error>> + Send + 'a {
        (**self).put_record_batch(records)
    }
}

#[derive(Debug, Error)]
pub enum BatchCallError<E: std::error::Error + 'static> {
    #[error("delivery call failed")]
    Call(#[source] E),
    #[error("{failed} record(s) rejected by the delivery stream: {code}: {message}")]
    Rejected {
        failed: usize,
        code: String,
        message: String,
    },
    #[error("delivery stream answered {got} results for {sent} records")]
    ResultCount { sent: usize, got: usize },
    #[error("could not encode events")]
    Encode(#[source] serde_json::Error),
    #[error("delivery call not answered in time")]
    Time(#[source] OutOfTime),
}

impl<E: std::error::Error + 'static> From<CallError<BatchCallError<E>>> for BatchCallError<E> {
    fn from(e: CallError<BatchCallError<E>>) -> Self {
        match e {
            CallError::Port(b) => b,
            CallError::Time(t) => BatchCallError::Time(t),
        }
    }
}

impl<E: std::error::Error + Classify + 'static> Classify for BatchCallError<E> {
    fn class(&self) -> ErrorClass {
        match self {
            BatchCallError::Call(e) => e.class(),
            // Entry-level failures are capacity or internal faults: retry them.
            BatchCallError::Rejected { code, .. } => match classify_aws(Some(code), None) {
                ErrorClass::Permanent => ErrorClass::Transient,
                c => c,
            },
            BatchCallError::ResultCount { .. } => ErrorClass::Transient,
            BatchCallError::Encode(_) => ErrorClass::Permanent,
            BatchCallError::Time(t) => CallError::<Self>::Time(*t).class(),
        }
    }

    fn is_deadline(&self) -> bool {
        matches!(self, BatchCallError::Time(_))
    }
}

/// Packs and delivers events through a [`RecordBatchPort`].
pub struct PackedSink<P> {
    pub port: P,
    pub pack: PackConfig,
}

impl<P: RecordBatchPort> PackedSink<P> {
    pub fn new(port: P, pack: PackConfig) -> Self {
        PackedSink { port, pack }
    }

    async fn deliver_packed(
        &self,
        events: &[OutputEvent<'_>],
        retrier: &Retrier<'_>,
    ) -> Delivery<BatchCallError<P::Error>> {
        let records = match pack(events, self.pack) {
            Ok(r) => r,
            Err(e) => {
                return Delivery {
                    accepted: vec![false; events.len()],
                    error: Some(BatchCallError::Encode(e)),
                };
            }
        };
        let mut done = vec![false; records.len()];
        let mut error = None;
        for call in chunk_calls(&records) {
            let (accepted, err) = send_resending_failures(retrier, call.len(), |idx| {
                let data: Vec<&[u8]> = idx
                    .iter()
                    .map(|i| records[call.start + i].data.as_slice())
                    .collect();
                async move { self.port.put_record_batch(&data).await }
            })
            .await;
            done[call.clone()].copy_from_slice(&accepted);
            if let Some(e) = err {
                // Nothing after a failed call may be delivered in this invocation.
                error = Some(e);
                break;
            }
        }
        let mut accepted = vec![false; events.len()];
        for (r, ok) in records.iter().zip(&done) {
            if *ok {
                accepted[r.events.clone()].fill(true);
            }
        }
        Delivery { accepted, error }
    }
}

/// Sends `count` entries through `call` (which gets the indices still to send
/// and answers per entry), re-sending only failed entries as `retrier` allows.
/// Returns which entries were accepted, and the last error if any was not.
pub async fn send_resending_failures<E, F, Fut>(
    retrier: &Retrier<'_>,
    count: usize,
    call: F,
) -> (Vec<bool>, Option<BatchCallError<E>>)
where
    E: std::error::Error + Classify + 'static,
    F: Fn(Vec<usize>) -> Fut,
    Fut: Future<Output = Result<Vec<Option<EntryFailure>>, E>>,
{
    let done: Vec<AtomicBool> = (0..count).map(|_| AtomicBool::new(false)).collect();
    let pending = Mutex::new((0..count).collect::<Vec<usize>>());
    let attempt = || async {
        let idx = lock(&pending).clone();
        let results = call(idx.clone()).await.map_err(BatchCallError::Call)?;
        if results.len() != idx.len() {
            return Err(BatchCallError::ResultCount {
                sent: idx.len(),
                got: results.len(),
            });
        }
        let mut still = Vec::new();
        let mut first = None;
        for (i, r) in idx.into_iter().zip(results) {
            match r {
                None => done[i].store(true, Ordering::Relaxed),
                Some(f) => {
                    still.push(i);
                    first.get_or_insert(f);
                }
            }
        }
        let failed = still.len();
        *lock(&pending) = still;
        match first {
            None => Ok(()),
            Some(f) => Err(BatchCallError::Rejected {
                failed,
                code: f.code,
                message: f.message,
            }),
        }
    };
    let error = retrier.run(attempt).await.err().map(BatchCallError::from);
    (
        done.iter().map(|d| d.load(Ordering::Relaxed)).collect(),
        error,
    )
}

fn lock<T>(m: &Mutex<T>) -> std::sync::MutexGuard<'_, T> {
    // A poisoned lock only means another attempt panicked mid-update; the data is a plain Vec.
    m.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl<P: RecordBatchPort> EventSink for PackedSink<P> {
    type Error = BatchCallError<P::Error>;

    fn deliver<'a>(
        &'a self,
        events: &'a [OutputEvent<'a>],
        retrier: &'a Retrier<'a>,
    ) -> impl Future<Output = Delivery<Self::Error>> + Send + 'a {
        self.deliver_packed(events, retrier)
    }
}
