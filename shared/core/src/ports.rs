//! The ports the batch logic talks through. Adapters: DynamoDB / Firehose / S3 in
//! `sightline-aws`, embedded ones for local runs, in-memory fakes for tests.

use std::error::Error as StdError;
use std::future::Future;

use crate::retry::Classify;

/// What a claim put found.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ClaimOutcome {
    /// No live claim existed: the claim is ours now.
    Claimed { took_over_expired: bool },
    /// A live claim exists and was left untouched.
    Held(ExistingClaim),
}

/// A live claim item, as returned by `ReturnValuesOnConditionCheckFailure=ALL_OLD`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ExistingClaim {
    /// `shardId/sequenceNumber` of the record that claimed the event.
    pub owner: String,
    /// Set once the claim's event is known to be in Firehose.
    pub delivered: bool,
    /// First sequence number of the batch that made the claim: where its checkpoint lives.
    pub batch_first_sequence: Option<String>,
}

/// A claim to write.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClaimRequest<'a> {
    pub event_id: i64,
    pub owner: &'a str,
    pub batch_first_sequence: &'a str,
    /// Epoch seconds: claims with `expires_at < now` count as absent.
    pub now_secs: i64,
    /// Epoch seconds: the TTL attribute.
    pub expires_at: i64,
}

/// "This batch was settled up to `last_sequence`": one item per batch.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Checkpoint {
    pub shard_id: String,
    pub first_sequence: String,
    pub last_sequence: String,
    pub expires_at: i64,
}

pub trait PortError: StdError + Classify + Send + Sync + 'static {}
impl<T: StdError + Classify + Send + Sync + 'static> PortError for T {}

/// The claim table (DynamoDB in production).
pub trait ClaimStore: Send + Sync {
    type Error: PortError;

    /// Conditional put: succeeds when the event is unclaimed or its claim expired
    /// (`attribute_not_exists(event_id) OR expires_at < :now`); otherwise returns
    /// the live claim untouched.
    fn claim(
        &self,
        req: &ClaimRequest<'_>,
    ) -> impl Future<Output = Result<ClaimOutcome, Self::Error>> + Send;

    /// Whether [`ClaimStore::claim_all`] claims a whole batch in one call. DynamoDB
    /// has no conditional batch write, so its adapter keeps one conditional put per
    /// event; the embedded store claims a batch in one locked pass and one commit.
    const CLAIMS_IN_ONE_CALL: bool = false;

    /// Claims every request as [`ClaimStore::claim`] would, in one call: the
    /// outcomes in request order, or the error that stopped all of them (nothing
    /// was claimed then). Used only when `CLAIMS_IN_ONE_CALL` is true; the default
    /// claims one event after the other.
    fn claim_all(
        &self,
        reqs: &[ClaimRequest<'_>],
    ) -> impl Future<Output = Result<Vec<ClaimOutcome>, Self::Error>> + Send {
        async move {
            let mut outcomes = Vec::with_capacity(reqs.len());
            for req in reqs {
                outcomes.push(self.claim(req).await?);
            }
            Ok(outcomes)
        }
    }

    /// Marks `owner`'s claim as delivered (only if `owner` still holds it).
    fn mark_delivered(
        &self,
        event_id: i64,
        owner: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    /// Deletes `owner`'s undelivered claim so an upstream re-send is not blocked.
    /// A claim held by someone else, or already gone, is left alone (not an error).
    fn release(
        &self,
        event_id: i64,
        owner: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;

    fn get_checkpoint(
        &self,
        shard_id: &str,
        first_sequence: &str,
        now_secs: i64,
    ) -> impl Future<Output = Result<Option<Checkpoint>, Self::Error>> + Send;

    fn put_checkpoint(
        &self,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// Reads one claim (for `sightline replay`; the batch path never reads claims).
pub trait ClaimReader: Send + Sync {
    type Error: PortError;

    /// The live claim on `event_id`, if any (an expired one counts as absent).
    fn read_claim(
        &self,
        event_id: i64,
        now_secs: i64,
    ) -> impl Future<Output = Result<Option<ExistingClaim>, Self::Error>> + Send;
}

/// Where delivered events go (Firehose in production, Parquet locally).
pub trait EventSink: Send + Sync {
    type Error: PortError;

    /// Delivers `events` in order, retrying as the retrier allows. Reports, per
    /// event, whether it was accepted, plus the last error if any was not.
    fn deliver<'a>(
        &'a self,
        events: &'a [crate::model::OutputEvent<'a>],
        retrier: &'a crate::retry::Retrier<'a>,
    ) -> impl Future<Output = Delivery<Self::Error>> + Send + 'a;
}

/// The result of one `deliver` call.
#[derive(Debug)]
pub struct Delivery<E> {
    pub accepted: Vec<bool>,
    pub error: Option<E>,
}

/// Where quarantined records go (S3 in production).
pub trait QuarantineStore: Send + Sync {
    type Error: PortError;

    fn put_object(
        &self,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send;
}

/// A stream that takes keyed records (Kinesis `PutRecords` in production).
pub trait StreamPort: Send + Sync {
    type Error: PortError;

    /// One call with `(partition key, data)` entries; per entry, `None` when accepted.
    fn put_records<'a>(
        &'a self,
        entries: &'a [(&'a str, &'a [u8])],
    ) -> impl Future<Output = Result<Vec<Option<crate::delivery::EntryFailure>>, Self::Error>> + Send + 'a;
}

// Shared ports: several execution environments of one function (the local event
// source mapping's tests) use the same table, stream and bucket.
impl<T: ClaimStore> ClaimStore for std::sync::Arc<T> {
    type Error = T::Error;

    fn claim(
        &self,
        req: &ClaimRequest<'_>,
    ) -> impl Future<Output = Result<ClaimOutcome, Self::Error>> + Send {
        (**self).claim(req)
    }

    const CLAIMS_IN_ONE_CALL: bool = T::CLAIMS_IN_ONE_CALL;

    fn claim_all(
        &self,
        reqs: &[ClaimRequest<'_>],
    ) -> impl Future<Output = Result<Vec<ClaimOutcome>, Self::Error>> + Send {
        (**self).claim_all(reqs)
    }

    fn mark_delivered(
        &self,
        event_id: i64,
        owner: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).mark_delivered(event_id, owner)
    }

    fn release(
        &self,
        event_id: i64,
        owner: &str,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).release(event_id, owner)
    }

    fn get_checkpoint(
        &self,
        shard_id: &str,
        first_sequence: &str,
        now_secs: i64,
    ) -> impl Future<Output = Result<Option<Checkpoint>, Self::Error>> + Send {
        (**self).get_checkpoint(shard_id, first_sequence, now_secs)
    }

    fn put_checkpoint(
        &self,
        checkpoint: &Checkpoint,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).put_checkpoint(checkpoint)
    }
}

impl<T: QuarantineStore> QuarantineStore for std::sync::Arc<T> {
    type Error = T::Error;

    fn put_object(
        &self,
        key: &str,
        body: Vec<u8>,
    ) -> impl Future<Output = Result<(), Self::Error>> + Send {
        (**self).put_object(key, body)
    }
}
