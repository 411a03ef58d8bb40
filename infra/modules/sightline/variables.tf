# These mirror template.yaml's parameters (same defaults and bounds; tests/infra
# compares them). Cross-variable rules (the dedup window against retention and record
# age) reference other variables, which needs Terraform >= 1.9 (versions.tf).

variable "stage" {
  description = "Deployment stage; part of every name (lowercase letters and digits, at most 12)."
  type        = string
  default     = "dev"

  validation {
    condition     = can(regex("^[a-z][a-z0-9]{0,11}$", var.stage))
    error_message = "stage must be 1-12 lowercase letters or digits, starting with a letter."
  }
}

variable "stream_mode" {
  description = "ON_DEMAND scales shards by itself; PROVISIONED uses shard_count."
  type        = string
  default     = "ON_DEMAND"

  validation {
    condition     = contains(["ON_DEMAND", "PROVISIONED"], var.stream_mode)
    error_message = "stream_mode must be ON_DEMAND or PROVISIONED."
  }
}

variable "shard_count" {
  description = "Shards when stream_mode is PROVISIONED. 10,000 events/s needs at least 10 (1,000 records/s per shard)."
  type        = number
  default     = 12

  validation {
    condition     = var.shard_count >= 1 && var.shard_count <= 1000
    error_message = "shard_count must be 1..1000."
  }
}

variable "stream_retention_hours" {
  description = "Kinesis retention (the stream's retention_period and the function's STREAM_RETENTION_HOURS); the raw archive is the long-term replay source."
  type        = number
  default     = 24

  validation {
    condition     = var.stream_retention_hours >= 24 && var.stream_retention_hours <= 8760
    error_message = "stream_retention_hours must be 24..8760."
  }
}

variable "dedup_window_secs" {
  description = "DEDUP_WINDOW_SECS: how long a claim blocks a re-send of the same detection_oid. At least max(stream_retention_hours x 3600, max_record_age_in_seconds)."
  type        = number
  default     = 86400

  # The function accepts 60 s, but the window must cover the stream's retention, which
  # is 24 h at least (the rule below), so anything under a day is refused here too.
  validation {
    condition     = var.dedup_window_secs >= 86400 && var.dedup_window_secs <= 31622400
    error_message = "dedup_window_secs must be between 86400 s (the shortest stream retention) and 366 days."
  }

  # Kinesis can redeliver a record until it leaves the stream or exceeds the mapping's
  # maximum record age; a claim that expired before that lets it through twice.
  validation {
    condition     = var.dedup_window_secs >= max(var.stream_retention_hours * 3600, var.max_record_age_in_seconds)
    error_message = "dedup_window_secs must be at least max(stream_retention_hours * 3600, max_record_age_in_seconds): a record Kinesis redelivers after its claim expired would be delivered twice."
  }
}

variable "max_record_age_in_seconds" {
  description = "The event source mapping's maximum_record_age_in_seconds and the function's MAX_RECORD_AGE_SECS: -1 = until the record leaves the stream, else 60..604800."
  type        = number
  default     = 21600

  validation {
    condition     = var.max_record_age_in_seconds == -1 || (var.max_record_age_in_seconds >= 60 && var.max_record_age_in_seconds <= 604800)
    error_message = "max_record_age_in_seconds must be -1 (infinite) or 60..604800."
  }
}

variable "max_event_age_secs" {
  description = "MAX_EVENT_AGE_SECS: events whose timestamp_detected is older than this before their Kinesis arrival are quarantined as too_old."
  type        = number
  default     = 604800

  validation {
    condition     = var.max_event_age_secs >= 3600 && var.max_event_age_secs <= 31622400
    error_message = "max_event_age_secs must be 3600..31622400 (1 hour to 366 days)."
  }
}

variable "function_timeout_secs" {
  description = "dedup-enrich's Lambda timeout and its FUNCTION_TIMEOUT_SECS (1..900, and at least 31: after the 500 ms reserve it must hold six AWS calls at their 5 s timeout, so that an invocation settles something even when every call is slow; a precondition on the function checks it)."
  type        = number
  default     = 60

  validation {
    condition     = var.function_timeout_secs >= 1 && var.function_timeout_secs <= 900
    error_message = "function_timeout_secs must be 1..900."
  }
}

variable "claim_table_billing_mode" {
  description = "PAY_PER_REQUEST (on-demand; see claim_table_prewarm_command) or PROVISIONED (claim_table_write_units WCU, auto scaling up to claim_table_max_write_units at 70 % utilisation)."
  type        = string
  default     = "PAY_PER_REQUEST"

  validation {
    condition     = contains(["PAY_PER_REQUEST", "PROVISIONED"], var.claim_table_billing_mode)
    error_message = "claim_table_billing_mode must be PAY_PER_REQUEST or PROVISIONED."
  }
}

variable "claim_table_write_units" {
  description = "Expected peak claim writes per second: the on-demand table's warm throughput, or the provisioned table's initial and minimum WCU (12,000 = 10,000 events/s plus 20 %)."
  type        = number
  default     = 12000

  validation {
    condition     = var.claim_table_write_units >= 1 && var.claim_table_write_units <= 40000
    error_message = "claim_table_write_units must be 1..40000."
  }
}

variable "claim_table_max_write_units" {
  description = "Upper bound of write auto scaling when claim_table_billing_mode is PROVISIONED (40,000 is the default per-table quota)."
  type        = number
  default     = 40000

  validation {
    condition     = var.claim_table_max_write_units >= 1 && var.claim_table_max_write_units <= 40000
    error_message = "claim_table_max_write_units must be 1..40000."
  }

  validation {
    condition     = var.claim_table_max_write_units >= var.claim_table_write_units
    error_message = "claim_table_max_write_units must be at least claim_table_write_units."
  }
}

variable "batch_size" {
  description = "Records per invocation of the Kinesis event source."
  type        = number
  default     = 1000

  validation {
    condition     = var.batch_size >= 1 && var.batch_size <= 10000
    error_message = "batch_size must be 1..10000."
  }
}

variable "maximum_batching_window_in_seconds" {
  description = "How long the event source waits to fill a batch; adds to publish-to-queryable delay."
  type        = number
  default     = 1

  validation {
    condition     = var.maximum_batching_window_in_seconds >= 0 && var.maximum_batching_window_in_seconds <= 300
    error_message = "maximum_batching_window_in_seconds must be 0..300."
  }
}

variable "parallelization_factor" {
  description = "Concurrent batches per shard (1..10)."
  type        = number
  default     = 1

  validation {
    condition     = var.parallelization_factor >= 1 && var.parallelization_factor <= 10
    error_message = "parallelization_factor must be 1..10."
  }
}

variable "firehose_buffer_size_mib" {
  description = "Firehose buffer size; 64 MiB is the minimum with Parquet conversion."
  type        = number
  default     = 64

  validation {
    condition     = var.firehose_buffer_size_mib >= 64 && var.firehose_buffer_size_mib <= 128
    error_message = "firehose_buffer_size_mib must be 64..128."
  }
}

variable "firehose_buffer_interval_seconds" {
  description = "Firehose buffer interval, the freshness knob (60..900; dynamic partitioning has no zero buffering)."
  type        = number
  default     = 60

  validation {
    condition     = var.firehose_buffer_interval_seconds >= 60 && var.firehose_buffer_interval_seconds <= 900
    error_message = "firehose_buffer_interval_seconds must be 60..900."
  }
}

variable "athena_bytes_scanned_cutoff" {
  description = "Bytes one query in the workgroup may scan (default 8 GiB: 5 times the largest dashboard query or rollup job at 10,000 events/s, less than a day of raw events; docs/rollups.md)."
  type        = number
  default     = 8589934592

  validation {
    condition     = var.athena_bytes_scanned_cutoff >= 10000000
    error_message = "athena_bytes_scanned_cutoff must be at least 10000000 (Athena's minimum)."
  }
}

variable "iterator_age_alarm_ms" {
  description = "Alarm when the oldest unprocessed record is older than this."
  type        = number
  default     = 60000

  validation {
    condition     = var.iterator_age_alarm_ms >= 1000
    error_message = "iterator_age_alarm_ms must be at least 1000."
  }
}

variable "freshness_alarm_seconds" {
  description = "Alarm when the oldest record inside the events delivery stream is older than this."
  type        = number
  default     = 600

  validation {
    condition     = var.freshness_alarm_seconds >= 60
    error_message = "freshness_alarm_seconds must be at least 60."
  }
}

variable "quarantine_rate_alarm_percent" {
  description = "Alarm when Quarantined / Received over 5 minutes exceeds this, three times in a row."
  type        = number
  default     = 1

  validation {
    condition     = var.quarantine_rate_alarm_percent >= 0 && var.quarantine_rate_alarm_percent <= 100
    error_message = "quarantine_rate_alarm_percent must be 0..100."
  }
}

variable "firehose_quota_alarm_percent" {
  description = "Alarm when the events delivery stream uses more than this percentage of its Direct PUT quota (bytes, records or requests per second) for 15 minutes."
  type        = number
  default     = 80

  validation {
    condition     = var.firehose_quota_alarm_percent >= 1 && var.firehose_quota_alarm_percent <= 100
    error_message = "firehose_quota_alarm_percent must be 1..100."
  }
}

variable "log_retention_days" {
  description = "Retention of the function's and Firehose's log groups."
  type        = number
  default     = 365

  validation {
    condition     = contains([30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653], var.log_retention_days)
    error_message = "log_retention_days must be one of 30, 60, 90, 120, 150, 180, 365, 400, 545, 731, 1096, 1827, 2192, 2557, 2922, 3288, 3653 (as template.yaml allows)."
  }
}

variable "rust_log" {
  description = "RUST_LOG filter of both functions."
  type        = string
  default     = "info"
}

variable "alarm_email" {
  description = "Optional e-mail address subscribed to the alarm topic."
  type        = string
  default     = ""
}

variable "enable_quicksight" {
  description = "Create a QuickSight Athena data source and a DIRECT_QUERY dataset on events_dashboard, the hourly rollups + the open hours live (needs QuickSight Enterprise)."
  type        = bool
  default     = false
}

variable "quicksight_principal_arn" {
  description = "QuickSight user or group ARN that owns the data source and dataset (required when enable_quicksight)."
  type        = string
  default     = ""

  validation {
    condition     = !var.enable_quicksight || var.quicksight_principal_arn != ""
    error_message = "enable_quicksight = true needs quicksight_principal_arn (a QuickSight user or group ARN)."
  }
}

variable "quicksight_service_role_name" {
  description = "Path and name of the IAM role QuickSight uses in this account; the data key's policy lets it decrypt when enable_quicksight. The default is the role QuickSight creates; accounts with a custom role must name it (a key policy naming a missing role is refused)."
  type        = string
  default     = "service-role/aws-quicksight-service-role-v0"

  validation {
    condition     = can(regex("^[\\w+=,.@/-]{1,512}$", var.quicksight_service_role_name))
    error_message = "quicksight_service_role_name must be an IAM role path and name, e.g. service-role/aws-quicksight-service-role-v0."
  }
}

variable "lambda_zip_path" {
  description = "Path of dedup-enrich's bootstrap.zip from scripts/build-lambda.sh (cargo lambda build --release --arm64 --output-format zip -p dedup-enrich): $CARGO_TARGET_DIR/lambda/dedup-enrich/bootstrap.zip."
  type        = string
}

variable "tags" {
  description = "Tags added to every resource that takes them."
  type        = map(string)
  default     = {}
}

variable "force_destroy" {
  description = "Let `terraform destroy` empty and delete the data and log buckets. Leave false for real stages; the emulator example (infra/examples/emulator) sets it so its test stacks can be torn down."
  type        = bool
  default     = false
}

variable "ingest_zip_path" {
  description = "Path of the ingest function's bootstrap.zip from scripts/build-lambda.sh: $CARGO_TARGET_DIR/lambda/ingest/bootstrap.zip."
  type        = string
}

variable "ingest_authorization" {
  description = "Authorization of the front door's POST /events route. AWS_IAM (default): SigV4-signed requests of principals allowed execute-api:Invoke (attach ingest_invoke_policy_arn). NONE only when something in front authenticates (a gateway, or a JWT/Lambda authorizer you add; see infra/README.md)."
  type        = string
  default     = "AWS_IAM"

  validation {
    condition     = contains(["AWS_IAM", "NONE"], var.ingest_authorization)
    error_message = "ingest_authorization must be AWS_IAM or NONE."
  }
}

variable "ingest_throttling_rate_limit" {
  description = "Steady requests/s the front door's $default stage accepts before answering 429; bounds the ingest function's concurrency (see template.yaml)."
  type        = number
  default     = 1000

  validation {
    condition     = var.ingest_throttling_rate_limit >= 1 && var.ingest_throttling_rate_limit <= 10000
    error_message = "ingest_throttling_rate_limit must be 1..10000."
  }
}

variable "ingest_throttling_burst_limit" {
  description = "Requests the front door accepts in a burst above the rate limit."
  type        = number
  default     = 2000

  validation {
    condition     = var.ingest_throttling_burst_limit >= 1 && var.ingest_throttling_burst_limit <= 5000
    error_message = "ingest_throttling_burst_limit must be 1..5000."
  }
}

variable "ingest_server_error_alarm_percent" {
  description = "Alarm when 5xx answers of the front door exceed this percentage of its requests for 10 minutes."
  type        = number
  default     = 1

  validation {
    condition     = var.ingest_server_error_alarm_percent >= 0 && var.ingest_server_error_alarm_percent <= 100
    error_message = "ingest_server_error_alarm_percent must be 0..100."
  }
}
