# These mirror template.yaml's parameters (same defaults and bounds).

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
}

variable "stream_retention_hours" {
  description = "Kinesis retention; the raw archive is the long-term replay source."
  type        = number
  default     = 24
}

variable "dedup_window_secs" {
  description = "DEDUP_WINDOW_SECS: how long a claim blocks a re-send of the same detection_oid."
  type        = number
  default     = 86400

  validation {
    condition     = var.dedup_window_secs >= 60 && var.dedup_window_secs <= 31622400
    error_message = "dedup_window_secs must be between 60 s and 366 days."
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
  description = "Bytes one query in the workgroup may scan (default 10 GiB)."
  type        = number
  default     = 10737418240
}

variable "iterator_age_alarm_ms" {
  description = "Alarm when the oldest unprocessed record is older than this."
  type        = number
  default     = 60000
}

variable "freshness_alarm_seconds" {
  description = "Alarm when the oldest record inside the events delivery stream is older than this."
  type        = number
  default     = 600
}

variable "quarantine_rate_alarm_percent" {
  description = "Alarm when Quarantined / Received over 5 minutes exceeds this, three times in a row."
  type        = number
  default     = 1
}

variable "log_retention_days" {
  description = "Retention of the function's and Firehose's log groups."
  type        = number
  default     = 365
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
  description = "Create a QuickSight Athena data source and a DIRECT_QUERY dataset on events_dedup (needs QuickSight Enterprise)."
  type        = bool
  default     = false
}

variable "quicksight_principal_arn" {
  description = "QuickSight user or group ARN that owns the data source and dataset (required when enable_quicksight)."
  type        = string
  default     = ""
}

variable "lambda_zip_path" {
  description = "Path of bootstrap.zip from `cargo lambda build --release --arm64 --output-format zip`."
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
  description = "Path of the ingest function's bootstrap.zip from `cargo lambda build --release --arm64 --output-format zip` (target/lambda/ingest/bootstrap.zip)."
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
}
