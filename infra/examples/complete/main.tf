# Example root: the whole Sightline stack in one region. Build the zips with
# scripts/build-lambda.sh, then from this directory (docs/deploy.md):
#   terraform init && terraform apply -var stage=dev -var lambda_zip_path=... -var ingest_zip_path=...
module "sightline" {
  source = "../../modules/sightline"

  stage                              = var.stage
  stream_mode                        = var.stream_mode
  shard_count                        = var.shard_count
  stream_retention_hours             = var.stream_retention_hours
  dedup_window_secs                  = var.dedup_window_secs
  max_record_age_in_seconds          = var.max_record_age_in_seconds
  max_event_age_secs                 = var.max_event_age_secs
  function_timeout_secs              = var.function_timeout_secs
  claim_table_billing_mode           = var.claim_table_billing_mode
  claim_table_write_units            = var.claim_table_write_units
  claim_table_max_write_units        = var.claim_table_max_write_units
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.maximum_batching_window_in_seconds
  parallelization_factor             = var.parallelization_factor
  firehose_buffer_size_mib           = var.firehose_buffer_size_mib
  firehose_buffer_interval_seconds   = var.firehose_buffer_interval_seconds
  athena_bytes_scanned_cutoff        = var.athena_bytes_scanned_cutoff
  iterator_age_alarm_ms              = var.iterator_age_alarm_ms
  freshness_alarm_seconds            = var.freshness_alarm_seconds
  quarantine_rate_alarm_percent      = var.quarantine_rate_alarm_percent
  firehose_quota_alarm_percent       = var.firehose_quota_alarm_percent
  log_retention_days                 = var.log_retention_days
  rust_log                           = var.rust_log
  alarm_email                        = var.alarm_email
  enable_quicksight                  = var.enable_quicksight
  quicksight_principal_arn           = var.quicksight_principal_arn
  quicksight_service_role_name       = var.quicksight_service_role_name
  lambda_zip_path                    = var.lambda_zip_path
  force_destroy                      = var.force_destroy

  # The front door (POST /events -> ingest -> Kinesis).
  ingest_zip_path                   = var.ingest_zip_path
  ingest_authorization              = var.ingest_authorization
  ingest_throttling_rate_limit      = var.ingest_throttling_rate_limit
  ingest_throttling_burst_limit     = var.ingest_throttling_burst_limit
  ingest_server_error_alarm_percent = var.ingest_server_error_alarm_percent
}
