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
  default = 10737418240
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

variable "lambda_zip_path" {
  description = "bootstrap.zip from `cargo lambda build --release --arm64 --output-format zip`, relative to this directory. `terraform validate` does not read it; `plan` and `apply` do. If CARGO_TARGET_DIR is set (scripts/common.sh sets ~/.cache/sightline/target), pass that path instead."
  type        = string
  default     = "../../../target/lambda/dedup-enrich/bootstrap.zip"
}

variable "ingest_zip_path" {
  description = "The ingest function's bootstrap.zip from the same `cargo lambda build`, relative to this directory (see lambda_zip_path)."
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
