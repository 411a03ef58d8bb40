//! Replaying a range the event source mapping gave up on (`sightline replay`).
//!
//! When the mapping gives up on a batch, its records may still hold claims
//! without a `delivered` mark (the function was killed after claiming, or its
//! releases failed). A record put into the stream again would meet those claims
//! and be dropped as a duplicate: lost. So, per record of the range:
//!
//! - an event whose claim is this record's own and unmarked, and whose batch's
//!   checkpoint does not cover it, was not delivered: its claim is released
//!   (conditional delete: owner and no mark) and the record is put again;
//! - an event with no live claim was never claimed (or its claim was released):
//!   the record is put again;
//! - an event marked delivered, or covered by its batch's checkpoint, was
//!   delivered: nothing is done (putting it again would only be dropped);
//! - an event claimed by another record belongs to that record's fate;
//! - a bad record (or a KPL aggregate with one) is put again and quarantined
//!   when it arrives.
//!
//! A KPL aggregate is put again whole when any of its user records must be;
//! the ones that were delivered meet their claims and drop as duplicates.

use crate::decode::decode_bytes_with;
use crate::kpl;
use crate::model::InputRecord;
use crate::ports::{ClaimReader, ClaimStore};
use crate::retry::{CallError, Retrier};
use crate::seq::sequence_le;

/// What the replay found and did.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ReplayReport {
    /// Kinesis records in the range.
    pub records: u64,
    /// Events (user records) in them.
    pub events: u64,
    /// Claims released (held by the range, unmarked, not covered by a checkpoint).
    pub released: u64,
    /// Events found delivered (a mark, or their batch's checkpoint).
    pub delivered: u64,
    /// Events claimed by another record (an upstream re-send or the original).
    pub held_by_others: u64,
    /// Events with no live claim.
    pub unclaimed: u64,
    /// Bad records (or bad user records) in the range.
    pub bad: u64,
    /// Kinesis records to put into the stream again.
    pub to_put: Vec<usize>,
}

/// Why a replay step failed.
#[derive(Debug, thiserror::Error)]
pub enum ReplayError<E: std::error::Error + 'static> {
    #[error("reading the claim of event {event_id}")]
    Read {
        event_id: i64,
        #[source]
        source: CallError<E>,
    },
    #[error("reading the checkpoint of batch {batch}")]
    Checkpoint {
        batch: String,
        #[source]
        source: CallError<E>,
    },
    #[error("releasing the claim of event {event_id} held by {owner}")]
    Release {
        event_id: i64,
        owner: String,
        #[source]
        source: CallError<E>,
    },
}

/// Decides, for every record of a given-up range, whether it must be put again,
/// and (unless `dry_run`) releases the claims that would block it. `now_secs`
/// judges expiry.
pub async fn release_and_plan<S>(
    records: &[InputRecord],
    store: &S,
    retrier: &Retrier<'_>,
    now_secs: i64,
    dry_run: bool,
) -> Result<ReplayReport, ReplayError<<S as ClaimStore>::Error>>
where
    S: ClaimStore + ClaimReader<Error = <S as ClaimStore>::Error>,
{
    let mut report = ReplayReport {
        records: records.len() as u64,
        ..ReplayReport::default()
    };
    for (i, record) in records.iter().enumerate() {
        let units: Vec<(Option<u32>, &[u8])> = if kpl::is_aggregated(&record.data) {
            match kpl::deaggregate(&record.data) {
                Ok(users) => users
                    .into_iter()
                    .enumerate()
                    .map(|(k, u)| (Some(u32::try_from(k).unwrap_or(u32::MAX)), u.data))
                    .collect(),
                // A corrupt aggregate is bad as a whole.
                Err(_) => vec![(None, b"" as &[u8])],
            }
        } else {
            vec![(None, record.data.as_slice())]
        };
        let mut put = false;
        for (sub, data) in units {
            report.events += 1;
            // The age rule does not apply: the replay only needs the id.
            let Ok(event) = decode_bytes_with(data, record.arrival_ms, i64::MAX) else {
                report.bad += 1;
                put = true;
                continue;
            };
            let owner = match sub {
                None => record.owner(),
                Some(k) => record.user_record_owner(k),
            };
            let id = event.detection_oid;
            let claim = retrier
                .run(|| store.read_claim(id, now_secs))
                .await
                .map_err(|source| ReplayError::Read {
                    event_id: id,
                    source,
                })?;
            let Some(claim) = claim else {
                report.unclaimed += 1;
                put = true;
                continue;
            };
            if claim.owner != owner {
                report.held_by_others += 1;
                continue;
            }
            if claim.delivered {
                report.delivered += 1;
                continue;
            }
            let covered = match &claim.batch_first_sequence {
                Some(batch) => retrier
                    .run(|| store.get_checkpoint(&record.shard_id, batch, now_secs))
                    .await
                    .map_err(|source| ReplayError::Checkpoint {
                        batch: batch.clone(),
                        source,
                    })?
                    .is_some_and(|cp| sequence_le(&record.sequence_number, &cp.last_sequence)),
                None => false,
            };
            if covered {
                report.delivered += 1;
                continue;
            }
            if !dry_run {
                retrier
                    .run(|| store.release(id, &owner))
                    .await
                    .map_err(|source| ReplayError::Release {
                        event_id: id,
                        owner: owner.clone(),
                        source,
                    })?;
            }
            report.released += 1;
            put = true;
        }
        if put {
            report.to_put.push(i);
        }
    }
    Ok(report)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::cost::CostModel;
    use crate::fakes::{ClaimItem, MemoryStore};
    use crate::ports::Checkpoint;
    use crate::retry::{RetryCounters, RetryPolicy};
    use crate::time::{Deadline, SystemClock};

    fn record(seq: u64, data: &str) -> InputRecord {
        InputRecord {
            shard_id: "shardId-000000000000".into(),
            sequence_number: format!("{}", 49_000_000_000_000_000u64 + seq),
            arrival_ms: 1_763_900_000_000,
            data: data.as_bytes().to_vec(),
        }
    }

    fn event(id: i64) -> String {
        format!(
            r#"{{"detection_oid":{id},"video_camera_oid":1,"geographical_location_oid":1,"item_name":"car","timestamp_detected":1763899000000}}"#
        )
    }

    #[tokio::test]
    async fn only_undelivered_claims_of_the_range_are_released_and_their_records_put_again() {
        let store = MemoryStore::default();
        let records: Vec<InputRecord> = (1..=6).map(|i| record(i, &event(i as i64))).collect();
        let batch = records[0].sequence_number.clone();
        let claim = |r: &InputRecord, delivered| ClaimItem {
            owner: r.owner(),
            expires_at: i64::MAX,
            delivered,
            batch_first_sequence: batch.clone(),
        };
        {
            let mut claims = store.claims.lock().expect("lock");
            // 1, 2: delivered per the batch's checkpoint; 3: marked delivered;
            // 4: held and unmarked past the checkpoint; 5: another record's; 6: none.
            claims.insert(1, claim(&records[0], false));
            claims.insert(2, claim(&records[1], false));
            claims.insert(3, claim(&records[2], true));
            claims.insert(4, claim(&records[3], false));
            claims.insert(
                5,
                ClaimItem {
                    owner: "shardId-000000000001/7".into(),
                    ..claim(&records[4], false)
                },
            );
        }
        store.checkpoints.lock().expect("lock").insert(
            ("shardId-000000000000".into(), batch.clone()),
            Checkpoint {
                shard_id: "shardId-000000000000".into(),
                first_sequence: batch.clone(),
                last_sequence: records[1].sequence_number.clone(),
                expires_at: i64::MAX,
            },
        );
        let mut with_bad = records.clone();
        with_bad.push(record(7, "{broken"));
        let counters = RetryCounters::default();
        let costs = CostModel::default();
        let retrier = Retrier::new(
            RetryPolicy::default(),
            Deadline::none(),
            &SystemClock,
            &counters,
            &costs,
        );
        let dry = release_and_plan(&with_bad, &store, &retrier, 0, true)
            .await
            .expect("dry run");
        assert!(
            store.claims.lock().expect("lock").contains_key(&4),
            "a dry run releases nothing"
        );
        let report = release_and_plan(&with_bad, &store, &retrier, 0, false)
            .await
            .expect("replay");
        assert_eq!(report, dry);
        assert_eq!(report.to_put, vec![3, 5, 6]);
        assert_eq!(
            (
                report.released,
                report.delivered,
                report.held_by_others,
                report.unclaimed,
                report.bad
            ),
            (1, 3, 1, 1, 1)
        );
        let claims = store.claims.lock().expect("lock");
        assert!(
            !claims.contains_key(&4),
            "the undelivered claim was released"
        );
        assert!(claims.contains_key(&1) && claims.contains_key(&5));
    }
}
