#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! The embedded claim store answers exactly as the reference model of the
//! DynamoDB claim table (`sightline_core::fakes::MemoryStore`) does, for any
//! sequence of operations, and keeps its answers across a reopen.

use proptest::prelude::*;
use sightline_core::fakes::MemoryStore;
use sightline_core::ports::{Checkpoint, ClaimOutcome, ClaimRequest, ClaimStore};
use sightline_local::store::{LocalClaimStore, StoreOptions};

#[derive(Debug, Clone)]
enum Op {
    Claim {
        id: i64,
        owner: u8,
        batch: u8,
        now: i64,
        window: i64,
    },
    /// A batch's claims in one call, as the batch logic makes them: distinct ids,
    /// one batch, one time.
    ClaimAll {
        claims: Vec<(i64, u8)>,
        batch: u8,
        now: i64,
        window: i64,
    },
    Mark {
        id: i64,
        owner: u8,
    },
    Release {
        id: i64,
        owner: u8,
    },
    PutCheckpoint {
        batch: u8,
        last: u8,
        expires: i64,
    },
    GetCheckpoint {
        batch: u8,
        now: i64,
    },
    Reopen,
}

fn op() -> impl Strategy<Value = Op> {
    // A handful of ids, owners and times, so operations collide often.
    prop_oneof![
        6 => (0i64..6, 0u8..4, 0u8..3, 0i64..40, 1i64..20)
            .prop_map(|(id, owner, batch, now, window)| Op::Claim { id, owner, batch, now, window }),
        3 => (proptest::collection::btree_map(0i64..6, 0u8..4, 0..6), 0u8..3, 0i64..40, 1i64..20)
            .prop_map(|(claims, batch, now, window)| Op::ClaimAll { claims: claims.into_iter().collect(), batch, now, window }),
        2 => (0i64..6, 0u8..4).prop_map(|(id, owner)| Op::Mark { id, owner }),
        2 => (0i64..6, 0u8..4).prop_map(|(id, owner)| Op::Release { id, owner }),
        1 => (0u8..3, 0u8..9, 0i64..40).prop_map(|(batch, last, expires)| Op::PutCheckpoint { batch, last, expires }),
        1 => (0u8..3, 0i64..40).prop_map(|(batch, now)| Op::GetCheckpoint { batch, now }),
        1 => Just(Op::Reopen),
    ]
}

fn owner(o: u8) -> String {
    format!("shardId-000000000000/{o}")
}

#[derive(Debug, PartialEq)]
enum Answer {
    Claim(ClaimOutcome),
    Claims(Vec<ClaimOutcome>),
    Unit,
    Checkpoint(Option<Checkpoint>),
}

async fn apply<S: ClaimStore>(store: &S, op: &Op) -> Answer {
    match op {
        Op::Claim {
            id,
            owner: o,
            batch,
            now,
            window,
        } => {
            let o = owner(*o);
            let b = batch.to_string();
            let req = ClaimRequest {
                event_id: *id,
                owner: &o,
                batch_first_sequence: &b,
                now_secs: *now,
                expires_at: now + window,
            };
            Answer::Claim(store.claim(&req).await.expect("claim"))
        }
        Op::ClaimAll {
            claims,
            batch,
            now,
            window,
        } => {
            let owners: Vec<String> = claims.iter().map(|(_, o)| owner(*o)).collect();
            let b = batch.to_string();
            let reqs: Vec<ClaimRequest<'_>> = claims
                .iter()
                .zip(&owners)
                .map(|((id, _), o)| ClaimRequest {
                    event_id: *id,
                    owner: o,
                    batch_first_sequence: &b,
                    now_secs: *now,
                    expires_at: now + window,
                })
                .collect();
            // The model makes one claim after the other (the trait's default); the
            // embedded store claims them in one pass and one commit.
            Answer::Claims(store.claim_all(&reqs).await.expect("claim_all"))
        }
        Op::Mark { id, owner: o } => {
            store.mark_delivered(*id, &owner(*o)).await.expect("mark");
            Answer::Unit
        }
        Op::Release { id, owner: o } => {
            store.release(*id, &owner(*o)).await.expect("release");
            Answer::Unit
        }
        Op::PutCheckpoint {
            batch,
            last,
            expires,
        } => {
            let cp = Checkpoint {
                shard_id: "shardId-000000000000".into(),
                first_sequence: batch.to_string(),
                last_sequence: last.to_string(),
                expires_at: *expires,
            };
            store.put_checkpoint(&cp).await.expect("put checkpoint");
            Answer::Unit
        }
        Op::GetCheckpoint { batch, now } => Answer::Checkpoint(
            store
                .get_checkpoint("shardId-000000000000", &batch.to_string(), *now)
                .await
                .expect("get checkpoint"),
        ),
        Op::Reopen => Answer::Unit,
    }
}

/// Runs `ops` against the model and the embedded store, reopening where asked.
fn check_against_the_model(ops: &[Op], options: StoreOptions) -> Result<(), TestCaseError> {
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .expect("runtime");
    rt.block_on(async {
        let dir = tempfile::tempdir().expect("tempdir");
        let model = MemoryStore::default();
        // Opening at time 0 drops nothing: every expiry in these ops is >= 0.
        let open = || LocalClaimStore::open_with(dir.path(), 0, options).expect("open");
        let (mut local, _) = open();
        for (i, op) in ops.iter().enumerate() {
            if let Op::Reopen = op {
                drop(local);
                local = open().0;
                continue;
            }
            let want = apply(&model, op).await;
            let got = apply(&local, op).await;
            prop_assert_eq!(got, want, "op {} of {:?}", i, ops);
        }
        Ok(())
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 64, ..ProptestConfig::default() })]

    /// Claims mostly wait in the log and in memory (the default: thousands
    /// gather before they are written into the tree), and are replayed from
    /// the log on a reopen.
    #[test]
    fn answers_like_the_claim_table_model(ops in proptest::collection::vec(op(), 1..40)) {
        check_against_the_model(&ops, StoreOptions::default())?;
    }

    /// Every commit is written into the tree at once: claims, marks and
    /// releases (as tombstones) are read back from the tree.
    #[test]
    fn answers_like_the_claim_table_model_when_every_commit_goes_into_the_tree(
        ops in proptest::collection::vec(op(), 1..40),
    ) {
        check_against_the_model(&ops, StoreOptions { ingest_every: 1 })?;
    }
}

#[tokio::test]
async fn claims_expired_when_the_store_opens_are_dropped_like_a_ttl() {
    let dir = tempfile::tempdir().expect("tempdir");
    {
        let (store, _) = LocalClaimStore::open(dir.path(), 0).expect("open");
        for (id, expires_at) in [(1, 100), (2, 300)] {
            let req = ClaimRequest {
                event_id: id,
                owner: "s/1",
                batch_first_sequence: "1",
                now_secs: 0,
                expires_at,
            };
            assert_eq!(
                store.claim(&req).await.expect("claim"),
                ClaimOutcome::Claimed {
                    took_over_expired: false
                }
            );
        }
    }
    let (store, stats) = LocalClaimStore::open(dir.path(), 200).expect("reopen");
    assert_eq!((stats.live_claims, stats.expired_removed), (1, 1));
    let again = |id| ClaimRequest {
        event_id: id,
        owner: "s/2",
        batch_first_sequence: "2",
        now_secs: 200,
        expires_at: 500,
    };
    assert_eq!(
        store.claim(&again(1)).await.expect("claim"),
        ClaimOutcome::Claimed {
            took_over_expired: false
        }
    );
    assert!(matches!(
        store.claim(&again(2)).await.expect("claim"),
        ClaimOutcome::Held(h) if h.owner == "s/1"
    ));
}

#[tokio::test]
async fn concurrent_claims_share_one_commit() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (store, _) = LocalClaimStore::open(dir.path(), 0).expect("open");
    let owners: Vec<String> = (0..1000).map(|i| format!("s/{i}")).collect();
    let claims = owners.iter().enumerate().map(|(i, o)| {
        let store = &store;
        async move {
            let req = ClaimRequest {
                event_id: i as i64,
                owner: o,
                batch_first_sequence: "1",
                now_secs: 0,
                expires_at: 100,
            };
            store.claim(&req).await
        }
    });
    let results = futures::future::join_all(claims).await;
    assert!(
        results
            .iter()
            .all(|r| matches!(r, Ok(ClaimOutcome::Claimed { .. })))
    );
    assert!(
        store.commits() <= 2,
        "1,000 concurrent claims took {} commits",
        store.commits()
    );
    assert_eq!(store.claims_made(), 1000);
}

#[tokio::test]
async fn claims_committed_to_the_log_but_not_the_tree_are_replayed_when_the_store_opens() {
    let dir = tempfile::tempdir().expect("tempdir");
    let options = StoreOptions { ingest_every: 3 };
    let req = |id| ClaimRequest {
        event_id: id,
        owner: "shardId-000000000000/7",
        batch_first_sequence: "1",
        now_secs: 0,
        expires_at: 100,
    };
    {
        let (store, _) = LocalClaimStore::open_with(dir.path(), 0, options).expect("open");
        let reqs: Vec<_> = (1..=4).map(req).collect();
        store.claim_all(&reqs).await.expect("claim 1-4");
        // Four committed: three is the threshold, so all four went into the tree.
        assert_eq!(store.ingestions(), 1);
        store.claim(&req(5)).await.expect("claim 5");
        store
            .release(4, "shardId-000000000000/7")
            .await
            .expect("release 4");
        assert_eq!(store.ingestions(), 1);
    }
    let (store, stats) = LocalClaimStore::open_with(dir.path(), 0, options).expect("reopen");
    // Claim 5 and the release of 4 were only in the log.
    assert_eq!(stats.replayed_from_log, 2);
    assert_eq!(stats.live_claims, 4);
    for id in [1, 2, 3, 5] {
        assert!(
            matches!(
                store.claim(&req(id)).await.expect("claim"),
                ClaimOutcome::Held(_)
            ),
            "{id}"
        );
    }
    assert_eq!(
        store.claim(&req(4)).await.expect("claim 4"),
        ClaimOutcome::Claimed {
            took_over_expired: false
        }
    );
}
