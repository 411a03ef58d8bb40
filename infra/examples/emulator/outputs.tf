output "stream_name" {
  value = module.sightline.stream_name
}

output "stream_arn" {
  value = module.sightline.stream_arn
}

output "function_name" {
  value = module.sightline.function_name
}

output "ingest_url" {
  value = module.sightline.ingest_url
}

output "ingest_function_name" {
  value = module.sightline.ingest_function_name
}

output "ingest_api_id" {
  value = module.sightline.ingest_api_id
}

output "claim_table_name" {
  value = module.sightline.claim_table_name
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

output "glue_database_name" {
  value = module.sightline.glue_database_name
}

output "events_table_name" {
  value = module.sightline.events_table_name
}
