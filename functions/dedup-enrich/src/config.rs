//! The function's environment contract, read and checked once at init.

use std::time::Duration;

use sightline_core::batch::SLOW_CALLS_TO_SETTLE;
use sightline_core::decode::DEFAULT_MAX_EVENT_AGE_MS;
use sightline_core::defaults;
pub use sightline_core::env::ConfigError;
use sightline_core::env::EnvReader;
use sightline_core::packing::MAX_EVENTS_PER_PACKED_RECORD;
use sightline_core::retry::DEFAULT_ATTEMPT_TIMEOUT_MS;

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
pub const ENV_MAX_RECORD_AGE_SECS: &str = "MAX_RECORD_AGE_SECS";
pub const ENV_STREAM_RETENTION_HOURS: &str = "STREAM_RETENTION_HOURS";
pub const ENV_FUNCTION_TIMEOUT_SECS: &str = "FUNCTION_TIMEOUT_SECS";
pub const ENV_MAX_EVENT_AGE_SECS: &str = "MAX_EVENT_AGE_SECS";
pub const ENV_RAW_ARCHIVE_STREAM: &str = "RAW_ARCHIVE_STREAM";

/// Every variable the function reads, for the infra consistency checks.
pub const ENV_VARS: [&str; 17] = [
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
    ENV_MAX_RECORD_AGE_SECS,
    ENV_STREAM_RETENTION_HOURS,
    ENV_FUNCTION_TIMEOUT_SECS,
    ENV_MAX_EVENT_AGE_SECS,
    ENV_RAW_ARCHIVE_STREAM,
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
    /// The event source mapping's `MaximumRecordAgeInSeconds`; `None` is -1 (no limit).
    pub max_record_age_secs: Option<i64>,
    pub stream_retention_hours: i64,
    /// The function's own timeout, to check the reserve against.
    pub function_timeout_secs: i64,
    /// Events older than this before their arrival are quarantined (`too_old`).
    pub max_event_age_secs: i64,
    /// The Direct PUT delivery stream of the raw archive; `None` (unset or
    /// empty): no archive.
    pub raw_archive_stream: Option<String>,
}

impl Config {
    pub fn from_env() -> Result<Self, ConfigError> {
        Config::from_lookup(|k| std::env::var(k).ok())
    }

    /// How long after its arrival Kinesis may still hand a record to the
    /// function: the mapping's maximum record age, or the stream's retention
    /// when the age is unlimited (or longer). An operator's replay re-reads the
    /// stream for as long as it retains a record, so both count.
    pub fn redelivery_horizon_secs(&self) -> i64 {
        let retention = self.stream_retention_hours * 3_600;
        self.max_record_age_secs
            .map_or(retention, |age| age.max(retention))
    }

    /// Reads through `lookup` so tests need not touch the process environment.
    pub fn from_lookup(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let config = Config::read(lookup)?;
        config.check()?;
        Ok(config)
    }

    /// Settings that are valid alone but not together.
    fn check(&self) -> Result<(), ConfigError> {
        let horizon = self.redelivery_horizon_secs();
        if self.dedup_window_secs < horizon {
            return Err(ConfigError::Conflict(format!(
                "{ENV_DEDUP_WINDOW_SECS}={} is shorter than the {horizon} s for which Kinesis can still deliver a record again \
                 ({ENV_MAX_RECORD_AGE_SECS}={}, {ENV_STREAM_RETENTION_HOURS}={}): a record redelivered after its claim, \
                 delivered mark and checkpoint expired would be delivered twice; raise the window to at least {horizon}",
                self.dedup_window_secs,
                self.max_record_age_secs.unwrap_or(-1),
                self.stream_retention_hours,
            )));
        }
        let timeout_ms = self.function_timeout_secs * 1_000;
        if self.deadline_reserve_ms > timeout_ms / 2 {
            return Err(ConfigError::Conflict(format!(
                "{ENV_DEADLINE_RESERVE_MS}={} leaves less than half of the {timeout_ms} ms timeout \
                 ({ENV_FUNCTION_TIMEOUT_SECS}={}) for work; it is only the margin for answering Lambda \
                 (the remaining steps' cost is measured), so keep it at most {}",
                self.deadline_reserve_ms,
                self.function_timeout_secs,
                timeout_ms / 2
            )));
        }
        let call_ms = i64::try_from(self.aws_call_timeout.as_millis()).unwrap_or(i64::MAX);
        let need_ms = SLOW_CALLS_TO_SETTLE.saturating_mul(call_ms);
        if timeout_ms - self.deadline_reserve_ms < need_ms {
            return Err(ConfigError::Conflict(format!(
                "{ENV_FUNCTION_TIMEOUT_SECS}={} leaves {} ms after {ENV_DEADLINE_RESERVE_MS}={}: when AWS is slow, the \
                 checkpoint read, a claim, the Firehose put, the quarantine put, the checkpoint write and the marks may \
                 each take up to {ENV_AWS_CALL_TIMEOUT_MS}={call_ms}, and an invocation without time for all \
                 {SLOW_CALLS_TO_SETTLE} settles nothing, spending one of the mapping's retries; raise the timeout to at least {} s",
                self.function_timeout_secs,
                timeout_ms - self.deadline_reserve_ms,
                self.deadline_reserve_ms,
                (need_ms + self.deadline_reserve_ms + 999) / 1_000
            )));
        }
        Ok(())
    }

    fn read(lookup: impl Fn(&str) -> Option<String>) -> Result<Self, ConfigError> {
        let env = EnvReader::new(lookup);
        let mut quarantine_prefix = env
            .optional(ENV_QUARANTINE_PREFIX)
            .unwrap_or_else(|| defaults::QUARANTINE_PREFIX.to_string());
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
                defaults::DEDUP_WINDOW_SECS,
                defaults::MIN_DEDUP_WINDOW_SECS,
                366 * 86_400,
                "seconds between 60 and 31622400",
            )?,
            claim_concurrency: env.integer(
                ENV_CLAIM_CONCURRENCY,
                defaults::CLAIM_CONCURRENCY as i64,
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
                defaults::DEADLINE_RESERVE_MS,
                0,
                60_000,
                "milliseconds from 0 to 60000",
            )?,
            metrics_namespace: env
                .optional(ENV_METRICS_NAMESPACE)
                .unwrap_or_else(|| "Sightline".into()),
            aws_call_timeout: Duration::from_millis(env.integer(
                ENV_AWS_CALL_TIMEOUT_MS,
                DEFAULT_ATTEMPT_TIMEOUT_MS,
                100,
                60_000,
                "milliseconds from 100 to 60000",
            )? as u64),
            s3_force_path_style: env.flag(ENV_S3_FORCE_PATH_STYLE, endpoint_set)?,
            retry_max_attempts: env.integer(
                ENV_RETRY_MAX_ATTEMPTS,
                i64::from(defaults::RETRY_MAX_ATTEMPTS),
                1,
                20,
                "an integer from 1 to 20",
            )? as u32,
            max_record_age_secs: match env.integer(
                ENV_MAX_RECORD_AGE_SECS,
                defaults::esm::MAXIMUM_RECORD_AGE_SECS as i64,
                -1,
                604_800,
                "-1 (no limit) or seconds from 60 to 604800",
            )? {
                -1 => None,
                age if age >= 60 => Some(age),
                age => {
                    return Err(ConfigError::Invalid {
                        name: ENV_MAX_RECORD_AGE_SECS,
                        value: age.to_string(),
                        expected: "-1 (no limit) or seconds from 60 to 604800",
                    });
                }
            },
            stream_retention_hours: env.integer(
                ENV_STREAM_RETENTION_HOURS,
                defaults::STREAM_RETENTION_HOURS,
                24,
                8_760,
                "hours from 24 to 8760",
            )?,
            function_timeout_secs: env.integer(
                ENV_FUNCTION_TIMEOUT_SECS,
                defaults::esm::FUNCTION_TIMEOUT_SECS as i64,
                1,
                900,
                "seconds from 1 to 900",
            )?,
            max_event_age_secs: env.integer(
                ENV_MAX_EVENT_AGE_SECS,
                DEFAULT_MAX_EVENT_AGE_MS / 1_000,
                3_600,
                366 * 86_400,
                "seconds from 3600 to 31622400",
            )?,
            raw_archive_stream: env.optional(ENV_RAW_ARCHIVE_STREAM),
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
        assert_eq!(c.deadline_reserve_ms, 500);
        assert_eq!(c.max_record_age_secs, Some(21_600));
        assert_eq!(c.max_event_age_secs, 604_800);
        assert!(!c.s3_force_path_style);
        assert_eq!(c.raw_archive_stream, None, "no archive unless configured");
    }

    #[test]
    fn the_raw_archive_is_on_only_when_its_stream_is_named() {
        let mut pairs = BASE.to_vec();
        pairs.push(("RAW_ARCHIVE_STREAM", "sightline-dev-raw"));
        let c = Config::from_lookup(env(&pairs)).expect("valid");
        assert_eq!(c.raw_archive_stream.as_deref(), Some("sightline-dev-raw"));
        let mut pairs = BASE.to_vec();
        pairs.push(("RAW_ARCHIVE_STREAM", ""));
        let c = Config::from_lookup(env(&pairs)).expect("valid");
        assert_eq!(c.raw_archive_stream, None);
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
    fn a_window_shorter_than_the_time_kinesis_can_redeliver_is_refused_at_init() {
        let mut pairs = BASE.to_vec();
        pairs.push(("DEDUP_WINDOW_SECS", "3600"));
        pairs.push(("MAX_RECORD_AGE_SECS", "21600"));
        let err = Config::from_lookup(env(&pairs)).expect_err("too short");
        let msg = err.to_string();
        assert!(
            msg.contains("DEDUP_WINDOW_SECS=3600") && msg.contains("86400"),
            "{msg}"
        );
        // The stream's retention counts too: a replay re-reads it.
        let mut pairs = BASE.to_vec();
        pairs.push(("STREAM_RETENTION_HOURS", "48"));
        let err = Config::from_lookup(env(&pairs)).expect_err("shorter than retention");
        assert!(err.to_string().contains("172800"), "{err}");
        // An unlimited record age falls back to the retention.
        let mut pairs = BASE.to_vec();
        pairs.push(("MAX_RECORD_AGE_SECS", "-1"));
        let c = Config::from_lookup(env(&pairs)).expect("24 h window, 24 h retention");
        assert_eq!(c.redelivery_horizon_secs(), 86_400);
        assert_eq!(c.max_record_age_secs, None);
    }

    #[test]
    fn a_reserve_larger_than_half_the_timeout_is_refused_at_init() {
        let mut pairs = BASE.to_vec();
        pairs.push(("FUNCTION_TIMEOUT_SECS", "3"));
        pairs.push(("DEADLINE_RESERVE_MS", "2000"));
        let err = Config::from_lookup(env(&pairs)).expect_err("reserve too large");
        assert!(
            err.to_string().contains("DEADLINE_RESERVE_MS=2000"),
            "{err}"
        );
        let mut pairs = BASE.to_vec();
        pairs.push(("FUNCTION_TIMEOUT_SECS", "3"));
        pairs.push(("AWS_CALL_TIMEOUT_MS", "400"));
        assert!(
            Config::from_lookup(env(&pairs)).is_ok(),
            "the default reserve fits 3 s"
        );
    }

    #[test]
    fn a_timeout_too_short_for_six_slow_calls_is_refused_at_init() {
        // 6 x 5000 ms (the default call timeout) + 500 ms reserve = 30.5 s.
        let mut pairs = BASE.to_vec();
        pairs.push(("FUNCTION_TIMEOUT_SECS", "30"));
        let err = Config::from_lookup(env(&pairs)).expect_err("30 s is too short");
        let text = err.to_string();
        assert!(text.contains("FUNCTION_TIMEOUT_SECS=30"), "{text}");
        assert!(text.contains("at least 31 s"), "{text}");
        let mut pairs = BASE.to_vec();
        pairs.push(("FUNCTION_TIMEOUT_SECS", "31"));
        assert!(Config::from_lookup(env(&pairs)).is_ok(), "31 s fits");
        // A shorter call timeout allows a shorter function timeout.
        let mut pairs = BASE.to_vec();
        pairs.push(("FUNCTION_TIMEOUT_SECS", "10"));
        pairs.push(("AWS_CALL_TIMEOUT_MS", "1500"));
        assert!(
            Config::from_lookup(env(&pairs)).is_ok(),
            "6 x 1.5 s + 0.5 s fits 10 s"
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
