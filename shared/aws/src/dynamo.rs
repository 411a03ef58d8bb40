//! The claim table on DynamoDB.
//!
//! Items: claims keyed by the event id (`"12345"`), and one checkpoint per batch
//! keyed `checkpoint#<shard>#<first sequence>`. Both carry the TTL attribute.

use std::collections::HashMap;

use aws_sdk_dynamodb::Client;
use aws_sdk_dynamodb::operation::delete_item::DeleteItemError;
use aws_sdk_dynamodb::operation::get_item::GetItemError;
use aws_sdk_dynamodb::operation::put_item::PutItemError;
use aws_sdk_dynamodb::operation::update_item::UpdateItemError;
use aws_sdk_dynamodb::types::{AttributeValue, ReturnValue, ReturnValuesOnConditionCheckFailure};
use aws_smithy_runtime_api::client::orchestrator::HttpResponse;
use aws_smithy_runtime_api::client::result::SdkError;
use sightline_core::ports::{
    Checkpoint, ClaimOutcome, ClaimReader, ClaimRequest, ClaimStore, ExistingClaim,
};
use sightline_core::retry::{Classify, ErrorClass};
use thiserror::Error;

use crate::error::classify_sdk;

/// Partition key (String).
pub const ATTR_KEY: &str = "event_id";
/// TTL attribute (Number, epoch seconds).
pub const ATTR_EXPIRES_AT: &str = "expires_at";
pub const ATTR_OWNER: &str = "owner";
pub const ATTR_DELIVERED: &str = "delivered";
pub const ATTR_BATCH: &str = "batch_first_sequence";
pub const ATTR_CLAIMED_AT: &str = "claimed_at";
pub const ATTR_LAST_SEQUENCE: &str = "last_sequence";

// `owner` is a DynamoDB reserved word, hence the #names.
const CLAIM_CONDITION: &str = "attribute_not_exists(#key) OR #exp < :now";
const MARK_CONDITION: &str = "#owner = :me";
const RELEASE_CONDITION: &str = "#owner = :me AND attribute_not_exists(#delivered)";

type Sdk<E> = SdkError<E, HttpResponse>;

#[derive(Debug, Error)]
pub enum DynamoError {
    #[error("DynamoDB PutItem (claim) on table {table} failed")]
    Claim {
        table: String,
        #[source]
        source: Box<Sdk<PutItemError>>,
    },
    #[error("DynamoDB GetItem on table {table} failed")]
    Get {
        table: String,
        #[source]
        source: Box<Sdk<GetItemError>>,
    },
    #[error("DynamoDB UpdateItem (delivered mark) on table {table} failed")]
    Mark {
        table: String,
        #[source]
        source: Box<Sdk<UpdateItemError>>,
    },
    #[error("DynamoDB DeleteItem (claim release) on table {table} failed")]
    Release {
        table: String,
        #[source]
        source: Box<Sdk<DeleteItemError>>,
    },
    #[error("DynamoDB PutItem (checkpoint) on table {table} failed")]
    PutCheckpoint {
        table: String,
        #[source]
        source: Box<Sdk<PutItemError>>,
    },
    #[error("item {key} in table {table} is malformed: {what}")]
    Malformed {
        table: String,
        key: String,
        what: &'static str,
    },
    #[error("claim {key} was held, then gone before it could be read; retrying")]
    Vanished { key: String },
}

impl Classify for DynamoError {
    fn class(&self) -> ErrorClass {
        match self {
            DynamoError::Claim { source, .. } | DynamoError::PutCheckpoint { source, .. } => {
                classify_sdk(source.as_ref())
            }
            DynamoError::Get { source, .. } => classify_sdk(source.as_ref()),
            DynamoError::Mark { source, .. } => classify_sdk(source.as_ref()),
            DynamoError::Release { source, .. } => classify_sdk(source.as_ref()),
            DynamoError::Malformed { .. } => ErrorClass::Permanent,
            DynamoError::Vanished { .. } => ErrorClass::Transient,
        }
    }
}

/// [`ClaimStore`] on a DynamoDB table (`DEDUP_TABLE`).
#[derive(Debug, Clone)]
pub struct DynamoClaimStore {
    client: Client,
    table: String,
}

fn n(v: i64) -> AttributeValue {
    AttributeValue::N(v.to_string())
}

fn s(v: &str) -> AttributeValue {
    AttributeValue::S(v.to_string())
}

pub fn checkpoint_key(shard_id: &str, first_sequence: &str) -> String {
    format!("checkpoint#{shard_id}#{first_sequence}")
}

impl DynamoClaimStore {
    pub fn new(client: Client, table: impl Into<String>) -> Self {
        DynamoClaimStore {
            client,
            table: table.into(),
        }
    }

    fn malformed(&self, key: &str, what: &'static str) -> DynamoError {
        DynamoError::Malformed {
            table: self.table.clone(),
            key: key.to_string(),
            what,
        }
    }

    fn existing(
        &self,
        key: &str,
        item: &HashMap<String, AttributeValue>,
    ) -> Result<ExistingClaim, DynamoError> {
        let owner = match item.get(ATTR_OWNER) {
            Some(AttributeValue::S(o)) => o.clone(),
            _ => return Err(self.malformed(key, "claim has no string `owner`")),
        };
        Ok(ExistingClaim {
            owner,
            delivered: item.contains_key(ATTR_DELIVERED),
            batch_first_sequence: match item.get(ATTR_BATCH) {
                Some(AttributeValue::S(b)) => Some(b.clone()),
                _ => None,
            },
        })
    }

    async fn read(
        &self,
        key: &str,
    ) -> Result<Option<HashMap<String, AttributeValue>>, DynamoError> {
        let out = self
            .client
            .get_item()
            .table_name(&self.table)
            .key(ATTR_KEY, s(key))
            .consistent_read(true)
            .send()
            .await
            .map_err(|source| DynamoError::Get {
                table: self.table.clone(),
                source: Box::new(source),
            })?;
        Ok(out.item)
    }
}

impl ClaimStore for DynamoClaimStore {
    type Error = DynamoError;

    async fn claim(&self, req: &ClaimRequest<'_>) -> Result<ClaimOutcome, DynamoError> {
        let key = req.event_id.to_string();
        let result = self
            .client
            .put_item()
            .table_name(&self.table)
            .item(ATTR_KEY, s(&key))
            .item(ATTR_OWNER, s(req.owner))
            .item(ATTR_EXPIRES_AT, n(req.expires_at))
            .item(ATTR_BATCH, s(req.batch_first_sequence))
            .item(ATTR_CLAIMED_AT, n(req.now_secs))
            .condition_expression(CLAIM_CONDITION)
            .expression_attribute_names("#key", ATTR_KEY)
            .expression_attribute_names("#exp", ATTR_EXPIRES_AT)
            .expression_attribute_values(":now", n(req.now_secs))
            .return_values(ReturnValue::AllOld)
            .return_values_on_condition_check_failure(ReturnValuesOnConditionCheckFailure::AllOld)
            .send()
            .await;
        match result {
            Ok(out) => Ok(ClaimOutcome::Claimed {
                took_over_expired: out.attributes.is_some_and(|a| !a.is_empty()),
            }),
            Err(SdkError::ServiceError(se))
                if matches!(se.err(), PutItemError::ConditionalCheckFailedException(_)) =>
            {
                let old = match se.err() {
                    PutItemError::ConditionalCheckFailedException(c) => c.item().cloned(),
                    _ => None,
                };
                // DynamoDB returns the old item with ALL_OLD; read it if an emulator does not.
                let item = match old {
                    Some(item) if !item.is_empty() => item,
                    _ => self
                        .read(&key)
                        .await?
                        .ok_or(DynamoError::Vanished { key: key.clone() })?,
                };
                Ok(ClaimOutcome::Held(self.existing(&key, &item)?))
            }
            Err(source) => Err(DynamoError::Claim {
                table: self.table.clone(),
                source: Box::new(source),
            }),
        }
    }

    async fn mark_delivered(&self, event_id: i64, owner: &str) -> Result<(), DynamoError> {
        let result = self
            .client
            .update_item()
            .table_name(&self.table)
            .key(ATTR_KEY, s(&event_id.to_string()))
            .update_expression("SET #delivered = :t")
            .condition_expression(MARK_CONDITION)
            .expression_attribute_names("#delivered", ATTR_DELIVERED)
            .expression_attribute_names("#owner", ATTR_OWNER)
            .expression_attribute_values(":t", AttributeValue::Bool(true))
            .expression_attribute_values(":me", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            // Someone else holds it now (ours expired): nothing of ours to mark.
            Err(SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    UpdateItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                Ok(())
            }
            Err(source) => Err(DynamoError::Mark {
                table: self.table.clone(),
                source: Box::new(source),
            }),
        }
    }

    async fn release(&self, event_id: i64, owner: &str) -> Result<(), DynamoError> {
        let result = self
            .client
            .delete_item()
            .table_name(&self.table)
            .key(ATTR_KEY, s(&event_id.to_string()))
            .condition_expression(RELEASE_CONDITION)
            .expression_attribute_names("#owner", ATTR_OWNER)
            .expression_attribute_names("#delivered", ATTR_DELIVERED)
            .expression_attribute_values(":me", s(owner))
            .send()
            .await;
        match result {
            Ok(_) => Ok(()),
            Err(SdkError::ServiceError(se))
                if matches!(
                    se.err(),
                    DeleteItemError::ConditionalCheckFailedException(_)
                ) =>
            {
                Ok(())
            }
            Err(source) => Err(DynamoError::Release {
                table: self.table.clone(),
                source: Box::new(source),
            }),
        }
    }

    async fn get_checkpoint(
        &self,
        shard_id: &str,
        first_sequence: &str,
        now_secs: i64,
    ) -> Result<Option<Checkpoint>, DynamoError> {
        let key = checkpoint_key(shard_id, first_sequence);
        let Some(item) = self.read(&key).await? else {
            return Ok(None);
        };
        let last_sequence = match item.get(ATTR_LAST_SEQUENCE) {
            Some(AttributeValue::S(v)) => v.clone(),
            _ => return Err(self.malformed(&key, "checkpoint has no string `last_sequence`")),
        };
        let expires_at = match item.get(ATTR_EXPIRES_AT) {
            Some(AttributeValue::N(v)) => v
                .parse::<i64>()
                .map_err(|_| self.malformed(&key, "checkpoint `expires_at` is not an integer"))?,
            _ => return Err(self.malformed(&key, "checkpoint has no numeric `expires_at`")),
        };
        // TTL deletion is lazy: an expired item counts as absent.
        if expires_at < now_secs {
            return Ok(None);
        }
        Ok(Some(Checkpoint {
            shard_id: shard_id.to_string(),
            first_sequence: first_sequence.to_string(),
            last_sequence,
            expires_at,
        }))
    }

    async fn put_checkpoint(&self, cp: &Checkpoint) -> Result<(), DynamoError> {
        self.client
            .put_item()
            .table_name(&self.table)
            .item(
                ATTR_KEY,
                s(&checkpoint_key(&cp.shard_id, &cp.first_sequence)),
            )
            .item(ATTR_LAST_SEQUENCE, s(&cp.last_sequence))
            .item(ATTR_EXPIRES_AT, n(cp.expires_at))
            .send()
            .await
            .map(|_| ())
            .map_err(|source| DynamoError::PutCheckpoint {
                table: self.table.clone(),
                source: Box::new(source),
            })
    }
}

impl ClaimReader for DynamoClaimStore {
    type Error = DynamoError;

    async fn read_claim(
        &self,
        event_id: i64,
        now_secs: i64,
    ) -> Result<Option<ExistingClaim>, DynamoError> {
        let key = event_id.to_string();
        let Some(item) = self.read(&key).await? else {
            return Ok(None);
        };
        let expires_at = match item.get(ATTR_EXPIRES_AT) {
            Some(AttributeValue::N(v)) => v
                .parse::<i64>()
                .map_err(|_| self.malformed(&key, "claim `expires_at` is not an integer"))?,
            _ => return Err(self.malformed(&key, "claim has no numeric `expires_at`")),
        };
        // TTL deletion is lazy: an expired claim counts as absent.
        if expires_at < now_secs {
            return Ok(None);
        }
        self.existing(&key, &item).map(Some)
    }
}
