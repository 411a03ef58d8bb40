output "stream_name" {
  value = module.sightline.stream_name
}

output "function_name" {
  value = module.sightline.function_name
}

output "ingest_url" {
  description = "POST events here."
  value       = module.sightline.ingest_url
}

output "ingest_function_name" {
  value = module.sightline.ingest_function_name
}

output "ingest_invoke_policy_arn" {
  value = module.sightline.ingest_invoke_policy_arn
}

output "claim_table_name" {
  value = module.sightline.claim_table_name
}

output "claim_table_prewarm_command" {
  description = "Run once after the first apply when the claim table is on-demand (docs/deploy.md)."
  value       = module.sightline.claim_table_prewarm_command
}

output "delivery_stream_name" {
  value = module.sightline.delivery_stream_name
}

output "lake_bucket_name" {
  value = module.sightline.lake_bucket_name
}

output "quarantine_bucket_name" {
  value = module.sightline.quarantine_bucket_name
}

output "raw_bucket_name" {
  value = module.sightline.raw_bucket_name
}

output "raw_archive_location" {
  value = module.sightline.raw_archive_location
}

output "athena_results_bucket_name" {
  value = module.sightline.athena_results_bucket_name
}

output "glue_database_name" {
  value = module.sightline.glue_database_name
}

output "events_table_name" {
  value = module.sightline.events_table_name
}

output "dedup_view_name" {
  value = module.sightline.dedup_view_name
}

output "athena_workgroup_name" {
  value = module.sightline.athena_workgroup_name
}

output "on_failure_queue_url" {
  value = module.sightline.on_failure_queue_url
}
