# Mirrors template.yaml's parameters; see infra/modules/sightline/variables.tf for
# what each one does.

variable "region" {
  type    = string
  default = "ap-southeast-1"
}

variable "stage" {
  type    = string
  default = "dev"
}

variable "stream_mode" {
  type    = string
  default = "ON_DEMAND"
}

variable "shard_count" {
  type    = number
  default = 12
}

variable "stream_retention_hours" {
  type    = number
  default = 24
}

variable "dedup_window_secs" {
  type    = number
  default = 86400
}

variable "max_record_age_in_seconds" {
  type    = number
  default = 21600
}

variable "max_event_age_secs" {
  type    = number
  default = 604800
}

variable "function_timeout_secs" {
  type    = number
  default = 60
}

variable "claim_table_billing_mode" {
  type    = string
  default = "PAY_PER_REQUEST"
}

variable "claim_table_write_units" {
  type    = number
  default = 12000
}

variable "claim_table_max_write_units" {
  type    = number
  default = 40000
}

variable "batch_size" {
  type    = number
  default = 1000
}

variable "maximum_batching_window_in_seconds" {
  type    = number
  default = 1
}

variable "parallelization_factor" {
  type    = number
  default = 1
}

variable "firehose_buffer_size_mib" {
  type    = number
  default = 64
}

variable "firehose_buffer_interval_seconds" {
  type    = number
  default = 60
}

variable "athena_bytes_scanned_cutoff" {
  type    = number
  default = 8589934592
}

variable "iterator_age_alarm_ms" {
  type    = number
  default = 60000
}

variable "freshness_alarm_seconds" {
  type    = number
  default = 600
}

variable "quarantine_rate_alarm_percent" {
  type    = number
  default = 1
}

variable "firehose_quota_alarm_percent" {
  type    = number
  default = 80
}

variable "log_retention_days" {
  type    = number
  default = 365
}

variable "rust_log" {
  type    = string
  default = "info"
}

variable "alarm_email" {
  type    = string
  default = ""
}

variable "enable_quicksight" {
  type    = bool
  default = false
}

variable "quicksight_principal_arn" {
  type    = string
  default = ""
}

variable "quicksight_service_role_name" {
  type    = string
  default = "service-role/aws-quicksight-service-role-v0"
}

variable "lambda_zip_path" {
  description = "dedup-enrich's bootstrap.zip from scripts/build-lambda.sh, which writes $CARGO_TARGET_DIR/lambda/dedup-enrich/bootstrap.zip (~/.cache/sightline/target unless CARGO_TARGET_DIR is set). The default is the repo's own target/ (a plain `cargo lambda build --release --arm64 --output-format zip -p dedup-enrich` without CARGO_TARGET_DIR). `terraform validate` does not read it; `plan` and `apply` do."
  type        = string
  default     = "../../../target/lambda/dedup-enrich/bootstrap.zip"
}

variable "ingest_zip_path" {
  description = "The ingest function's bootstrap.zip from the same build, relative to this directory (see lambda_zip_path)."
  type        = string
  default     = "../../../target/lambda/ingest/bootstrap.zip"
}

variable "ingest_authorization" {
  description = "AWS_IAM (SigV4, the default) or NONE when a gateway or an authorizer in front authenticates; see infra/README.md."
  type        = string
  default     = "AWS_IAM"
}

variable "ingest_throttling_rate_limit" {
  type    = number
  default = 1000
}

variable "ingest_throttling_burst_limit" {
  type    = number
  default = 2000
}

variable "ingest_server_error_alarm_percent" {
  type    = number
  default = 1
}

variable "force_destroy" {
  description = "Let `terraform destroy` empty and delete the data and log buckets. Leave false for real stages; to tear down a test stage, apply once with true, then destroy (docs/deploy.md)."
  type        = bool
  default     = false
}
