# Plan-time checks of the module, offline: `terraform test` with a mocked AWS provider
# (scripts/check-infra.sh runs it). Each run plans the module with one setting and
# expects the variable validation or precondition that must refuse it, so a real
# `terraform plan` stops there instead of deploying a function that refuses to start.

mock_provider "aws" {
  # The policy documents feed key, role and bucket policies; a mocked JSON string keeps
  # them well-formed.
  mock_data "aws_iam_policy_document" {
    defaults = {
      json = "{\"Version\":\"2012-10-17\",\"Statement\":[]}"
    }
  }
  mock_data "aws_region" {
    defaults = {
      id   = "us-east-1"
      name = "us-east-1"
    }
  }
  mock_data "aws_caller_identity" {
    defaults = {
      account_id = "123456789012"
    }
  }
  mock_data "aws_partition" {
    defaults = {
      partition = "aws"
    }
  }
}

variables {
  stage = "test"
  # plan hashes the zips (filebase64sha256) but never uploads them: any file will do.
  lambda_zip_path = "versions.tf"
  ingest_zip_path = "versions.tf"
}

run "defaults_plan" {
  command = plan

  assert {
    condition     = aws_lambda_event_source_mapping.kinesis.maximum_record_age_in_seconds == 21600
    error_message = "the mapping's maximum record age defaults to 21600 s"
  }
  assert {
    condition     = aws_lambda_function.dedup_enrich.environment[0].variables["MAX_RECORD_AGE_SECS"] == tostring(aws_lambda_event_source_mapping.kinesis.maximum_record_age_in_seconds)
    error_message = "MAX_RECORD_AGE_SECS is the mapping's maximum record age"
  }
  assert {
    condition     = aws_lambda_function.dedup_enrich.environment[0].variables["STREAM_RETENTION_HOURS"] == tostring(aws_kinesis_stream.events.retention_period)
    error_message = "STREAM_RETENTION_HOURS is the stream's retention"
  }
  assert {
    condition     = aws_lambda_function.dedup_enrich.environment[0].variables["FUNCTION_TIMEOUT_SECS"] == tostring(aws_lambda_function.dedup_enrich.timeout)
    error_message = "FUNCTION_TIMEOUT_SECS is the function's timeout"
  }
  assert {
    condition     = aws_dynamodb_table.claims.billing_mode == "PAY_PER_REQUEST" && length(aws_appautoscaling_target.claims_write) == 0
    error_message = "the claim table is on-demand by default, without auto scaling"
  }
  assert {
    condition     = output.claim_table_prewarm_command == "aws dynamodb update-table --region us-east-1 --table-name sightline-test-claims --warm-throughput WriteUnitsPerSecond=12000"
    error_message = "an on-demand table comes with the command that pre-warms it"
  }
}

run "settings_that_move_together_plan" {
  command = plan

  variables {
    stream_retention_hours    = 48
    max_record_age_in_seconds = -1
    dedup_window_secs         = 172800
    function_timeout_secs     = 120
  }

  assert {
    condition = (
      aws_kinesis_stream.events.retention_period == 48
      && aws_lambda_function.dedup_enrich.environment[0].variables["STREAM_RETENTION_HOURS"] == "48"
      && aws_lambda_event_source_mapping.kinesis.maximum_record_age_in_seconds == -1
      && aws_lambda_function.dedup_enrich.environment[0].variables["MAX_RECORD_AGE_SECS"] == "-1"
      && aws_lambda_function.dedup_enrich.timeout == 120
      && aws_lambda_function.dedup_enrich.environment[0].variables["FUNCTION_TIMEOUT_SECS"] == "120"
    )
    error_message = "one variable sets both the resource and the function's copy of it"
  }
}

run "provisioned_claims_scale" {
  command = plan

  variables {
    claim_table_billing_mode    = "PROVISIONED"
    claim_table_write_units     = 15000
    claim_table_max_write_units = 30000
  }

  assert {
    condition     = aws_dynamodb_table.claims.write_capacity == 15000 && aws_appautoscaling_target.claims_write[0].min_capacity == 15000 && aws_appautoscaling_target.claims_write[0].max_capacity == 30000
    error_message = "a provisioned table starts at claim_table_write_units and scales up to claim_table_max_write_units"
  }
  assert {
    condition     = aws_appautoscaling_policy.claims_write[0].target_tracking_scaling_policy_configuration[0].predefined_metric_specification[0].predefined_metric_type == "DynamoDBWriteCapacityUtilization"
    error_message = "writes scale on write utilisation"
  }
  assert {
    condition     = output.claim_table_prewarm_command == null
    error_message = "a provisioned table needs no pre-warming"
  }
}

# ------------------------------------------------------------------ refused settings

run "dedup_window_shorter_than_retention_is_refused" {
  command = plan
  variables {
    stream_retention_hours = 48
    dedup_window_secs      = 86400
  }
  expect_failures = [var.dedup_window_secs]
}

run "dedup_window_shorter_than_record_age_is_refused" {
  command = plan
  variables {
    max_record_age_in_seconds = 604800
    dedup_window_secs         = 172800
  }
  expect_failures = [var.dedup_window_secs]
}

run "dedup_window_under_a_day_is_refused" {
  command = plan
  variables {
    dedup_window_secs = 3600
  }
  expect_failures = [var.dedup_window_secs]
}

run "record_age_between_0_and_59_is_refused" {
  command = plan
  variables {
    max_record_age_in_seconds = 30
  }
  expect_failures = [var.max_record_age_in_seconds]
}

run "function_timeout_under_31_is_refused" {
  command = plan
  variables {
    function_timeout_secs = 30
  }
  expect_failures = [aws_lambda_function.dedup_enrich]
}

run "function_timeout_over_900_is_refused" {
  command = plan
  variables {
    function_timeout_secs = 901
  }
  expect_failures = [var.function_timeout_secs]
}

run "max_event_age_under_an_hour_is_refused" {
  command = plan
  variables {
    max_event_age_secs = 60
  }
  expect_failures = [var.max_event_age_secs]
}

run "shard_count_over_1000_is_refused" {
  command = plan
  variables {
    shard_count = 1001
  }
  expect_failures = [var.shard_count]
}

run "retention_under_24_hours_is_refused" {
  command = plan
  variables {
    stream_retention_hours = 12
  }
  expect_failures = [var.stream_retention_hours]
}

run "batching_window_over_300_is_refused" {
  command = plan
  variables {
    maximum_batching_window_in_seconds = 301
  }
  expect_failures = [var.maximum_batching_window_in_seconds]
}

run "log_retention_cloudwatch_does_not_offer_is_refused" {
  command = plan
  variables {
    log_retention_days = 100
  }
  expect_failures = [var.log_retention_days]
}

run "athena_scan_limit_under_athenas_minimum_is_refused" {
  command = plan
  variables {
    athena_bytes_scanned_cutoff = 1000
  }
  expect_failures = [var.athena_bytes_scanned_cutoff]
}

run "alarm_thresholds_out_of_range_are_refused" {
  command = plan
  variables {
    iterator_age_alarm_ms             = 10
    freshness_alarm_seconds           = 10
    quarantine_rate_alarm_percent     = 101
    ingest_server_error_alarm_percent = -1
    firehose_quota_alarm_percent      = 0
  }
  expect_failures = [
    var.iterator_age_alarm_ms,
    var.freshness_alarm_seconds,
    var.quarantine_rate_alarm_percent,
    var.ingest_server_error_alarm_percent,
    var.firehose_quota_alarm_percent,
  ]
}

run "autoscaling_maximum_below_the_minimum_is_refused" {
  command = plan
  variables {
    claim_table_billing_mode    = "PROVISIONED"
    claim_table_write_units     = 20000
    claim_table_max_write_units = 10000
  }
  expect_failures = [var.claim_table_max_write_units]
}

run "quicksight_without_a_principal_is_refused" {
  command = plan
  variables {
    enable_quicksight = true
  }
  expect_failures = [var.quicksight_principal_arn]
}
