//! The function's environment contract, read and checked once at init.

use std::time::Duration;

pub use sightline_core::env::ConfigError;
use sightline_core::env::EnvReader;
use sightline_core::packing::MAX_EVENTS_PER_PACKED_RECORD;

pub const ENV_DEDUP_TABLE: &str = "DEDUP_TABLE";
pub const ENV_DELIVERY_STREAM: &str = "DELIVERY_STREAM";
pub const ENV_QUARANTINE_BUCKET: &str = "QUARANTINE_BUCKET";
pub const ENV_QUARANTINE_PREFIX: &str = "QUARANTINE_PREFIX";
pub const ENV_DEDUP_WINDOW_SECS: &str = "DEDUP_WINDOW_SECS";
pub const ENV_CLAIM_CONCURRENCY: &str = "CLAIM_CONCURRENCY";
pub const ENV_PACK_MAX_EVENTS: &str = "PACK_MAX_EVENTS";
pub const ENV_DEADLINE_RESERVE_MS: &str = "DEADLINE_RESERVE_MS";
pub const ENV_METRICS_NAMESPACE: &str = "METRICS_NAMESPACE";
pub const ENV_AWS_CALL_TIMEOUT_MS: &str = "AWS_CALL_TIMEOUT_MS";
pub const ENV_S3_FORCE_PATH_STYLE: &str = "S3_FORCE_PATH_STYLE";
pub const ENV_RETRY_MAX_ATTEMPTS: &str = "RETRY_MAX_ATTEMPTS";

/// Every variable the function reads, for the infra consistency checks.
pub const ENV_VARS: [&str; 12] = [
    ENV_DEDUP_TABLE,
    ENV_DELIVERY_STREAM,
    ENV_QUARANTINE_BUCKET,
    ENV_QUARANTINE_PREFIX,
    ENV_DEDUP_WINDOW_SECS,
    ENV_CLAIM_CONCURRENCY,
    ENV_PACK_MAX_EVENTS,
    ENV_DEADLINE_RESERVE_MS,
    ENV_METRICS_NAMESPACE,
    ENV_AWS_CALL_TIMEOUT_MS,
    ENV_S3_FORCE_PATH_STYLE,
    ENV_RETRY_MAX_ATTEMPTS,
];

#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Config {
    pub dedup_table: String,
    pub delivery_stream: String,
    pub quarantine_bucket: String,
    pub quarantine_prefix: String,
    pub dedup_window_secs: i64,
    pub claim_concurrency: usize,
    pub pack_max_events: usize,
    pub deadline_reserve_ms: i64,
    pub metrics_namespace: String,
    pub aws_call_timeout: Duration,
    pub s3_force_path_style: bool,
    /// Attempts per AWS call within one invocation, the first included.
    pub retry_max_attempts: u32,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// Reads through `lookup` so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = EnvReader::new(lookup);
        let mut quarantine_prefix = env
            .optional(ENV_QUARANTINE_PREFIX)
            .unwrap_or_else(|| "quarantine/".to_string());
        if !quarantine_prefix.ends_with('/') {
            quarantine_prefix.push('/');
        }
        let endpoint_set = env.optional("AWS_ENDPOINT_URL").is_some()
            || env.optional("AWS_ENDPOINT_URL_S3").is_some();
        Ok(Config {
            dedup_table: env.required(ENV_DEDUP_TABLE)?,
            delivery_stream: env.required(ENV_DELIVERY_STREAM)?,
            quarantine_bucket: env.required(ENV_QUARANTINE_BUCKET)?,
            quarantine_prefix,
            dedup_window_secs: env.integer(
                ENV_DEDUP_WINDOW_SECS,
                86_400,
                60,
                366 * 86_400,
                "seconds between 60 and 31622400",
            )?,
            claim_concurrency: env.integer(
                ENV_CLAIM_CONCURRENCY,
                64,
                1,
                1_000,
                "an integer from 1 to 1000",
            )? as usize,
            pack_max_events: env.integer(
                ENV_PACK_MAX_EVENTS,
                MAX_EVENTS_PER_PACKED_RECORD as i64,
                1,
                MAX_EVENTS_PER_PACKED_RECORD as i64,
                "an integer from 1 to 500 (1 disables packing)",
            )? as usize,
            deadline_reserve_ms: env.integer(
                ENV_DEADLINE_RESERVE_MS,
                2_000,
                0,
                60_000,
                "milliseconds from 0 to 60000",
            )?,
            metrics_namespace: env
                .optional(ENV_METRICS_NAMESPACE)
                .unwrap_or_else(|| "Sightline".into()),
            aws_call_timeout: Duration::from_millis(env.integer(
                ENV_AWS_CALL_TIMEOUT_MS,
                5_000,
                100,
                60_000,
                "milliseconds from 100 to 60000",
            )? as u64),
            s3_force_path_style: env.flag(ENV_S3_FORCE_PATH_STYLE, endpoint_set)?,
            retry_max_attempts: env.integer(
                ENV_RETRY_MAX_ATTEMPTS,
                6,
                1,
                20,
                "an integer from 1 to 20",
            )? as u32,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::collections::HashMap;

    fn env(pairs: &[(&str, &str)]) -> impl Fn(&str) -> Option<String> {
        let m: HashMap<String, String> = pairs
            .iter()
            .map(|(k, v)| (k.to_string(), v.to_string()))
            .collect();
        move |k| m.get(k).cloned()
    }

    const BASE: [(&str, &str); 3] = [
        ("DEDUP_TABLE", "t"),
        ("DELIVERY_STREAM", "d"),
        ("QUARANTINE_BUCKET", "q"),
    ];

    #[test]
    fn defaults_apply_when_only_required_variables_are_set() {
        let c = Config::from_lookup(env(&BASE)).expect("valid");
        assert_eq!(c.dedup_window_secs, 86_400);
        assert_eq!(c.claim_concurrency, 64);
        assert_eq!(c.pack_max_events, 500);
        assert_eq!(c.quarantine_prefix, "quarantine/");
        assert_eq!(c.retry_max_attempts, 6);
        assert!(!c.s3_force_path_style);
    }

    #[test]
    fn a_missing_required_variable_is_named() {
        let err = Config::from_lookup(env(&BASE[..2])).expect_err("missing");
        assert_eq!(err, ConfigError::Missing("QUARANTINE_BUCKET"));
        assert!(err.to_string().contains("QUARANTINE_BUCKET"));
    }

    #[test]
    fn an_invalid_variable_is_named_with_its_value() {
        let mut pairs = BASE.to_vec();
        pairs.push(("PACK_MAX_EVENTS", "501"));
        let err = Config::from_lookup(env(&pairs)).expect_err("invalid");
        assert!(matches!(
            err,
            ConfigError::Invalid {
                name: "PACK_MAX_EVENTS",
                ..
            }
        ));
        let mut pairs = BASE.to_vec();
        pairs.push(("CLAIM_CONCURRENCY", "lots"));
        let msg = Config::from_lookup(env(&pairs))
            .expect_err("invalid")
            .to_string();
        assert!(
            msg.contains("CLAIM_CONCURRENCY") && msg.contains("lots"),
            "{msg}"
        );
    }

    #[test]
    fn an_emulator_endpoint_switches_s3_to_path_style() {
        let mut pairs = BASE.to_vec();
        pairs.push(("AWS_ENDPOINT_URL", "http://127.0.0.1:5000"));
        pairs.push(("QUARANTINE_PREFIX", "bad"));
        let c = Config::from_lookup(env(&pairs)).expect("valid");
        assert!(c.s3_force_path_style);
        assert_eq!(c.quarantine_prefix, "bad/");
    }
}
