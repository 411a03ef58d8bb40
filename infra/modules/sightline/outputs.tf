output "stream_name" {
  description = "Kinesis stream the cameras publish to."
  value       = aws_kinesis_stream.events.name
}

output "stream_arn" {
  value = aws_kinesis_stream.events.arn
}

output "function_name" {
  value = aws_lambda_function.dedup_enrich.function_name
}

output "ingest_url" {
  description = "The front door: POST a JSON array or NDJSON of events here (SigV4 for execute-api unless ingest_authorization is NONE)."
  value       = "${aws_apigatewayv2_api.ingest.api_endpoint}/events"
}

output "ingest_function_name" {
  value = aws_lambda_function.ingest.function_name
}

output "ingest_api_id" {
  value = aws_apigatewayv2_api.ingest.id
}

output "ingest_invoke_policy_arn" {
  description = "Managed policy allowing execute-api:Invoke on POST /events; attach it to producers."
  value       = aws_iam_policy.ingest_invoke.arn
}

output "claim_table_name" {
  value = aws_dynamodb_table.claims.name
}

# hashicorp/aws added warm_throughput in 6.13; this module supports 5.70 and later (the
# offline checks run 5.100), so it does not set it, and an on-demand claim table starts
# warm for 4,000 writes/s only. Run this once after the first apply to pre-warm it to
# claim_table_write_units, as template.yaml's WarmThroughput does (needs an AWS CLI
# from after November 2024, when DynamoDB added warm throughput); null when provisioned.
output "claim_table_prewarm_command" {
  value = local.claims_provisioned ? null : "aws dynamodb update-table --region ${local.region} --table-name ${aws_dynamodb_table.claims.name} --warm-throughput WriteUnitsPerSecond=${var.claim_table_write_units}"
}

output "delivery_stream_name" {
  value = aws_kinesis_firehose_delivery_stream.events.name
}

output "raw_archive_delivery_stream_name" {
  value = aws_kinesis_firehose_delivery_stream.raw.name
}

output "raw_archive_location" {
  description = "The raw archive; sightline replay --archive <this> reads given-up ranges from it."
  value       = "s3://${aws_s3_bucket.data["raw"].bucket}/raw/"
}

output "lake_bucket_name" {
  value = aws_s3_bucket.data["lake"].bucket
}

output "quarantine_bucket_name" {
  value = aws_s3_bucket.data["quarantine"].bucket
}

output "raw_bucket_name" {
  value = aws_s3_bucket.data["raw"].bucket
}

output "athena_results_bucket_name" {
  value = aws_s3_bucket.data["athena"].bucket
}

output "glue_database_name" {
  value = aws_glue_catalog_database.this.name
}

output "events_table_name" {
  value = aws_glue_catalog_table.events.name
}

output "dedup_view_name" {
  value = aws_glue_catalog_table.events_dedup.name
}

output "athena_workgroup_name" {
  value = aws_athena_workgroup.this.name
}

output "on_failure_queue_url" {
  value = aws_sqs_queue.on_failure.id
}

output "alarm_topic_arn" {
  value = aws_sns_topic.alarms.arn
}

output "dashboard_name" {
  value = aws_cloudwatch_dashboard.this.dashboard_name
}
