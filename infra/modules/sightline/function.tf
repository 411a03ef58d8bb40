resource "aws_cloudwatch_log_group" "dedup_enrich" {
  name              = "/aws/lambda/${local.prefix}-dedup-enrich"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
  tags              = local.tags
}

data "aws_iam_policy_document" "lambda_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["lambda.amazonaws.com"]
    }
  }
}

resource "aws_iam_role" "dedup_enrich" {
  name               = "${local.prefix}-dedup-enrich"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "dedup_enrich" {
  statement {
    sid       = "ClaimTable"
    actions   = ["dynamodb:GetItem", "dynamodb:PutItem", "dynamodb:UpdateItem", "dynamodb:DeleteItem"]
    resources = [aws_dynamodb_table.claims.arn]
  }

  statement {
    sid       = "DeliverPackedRecords"
    actions   = ["firehose:PutRecordBatch"]
    resources = [aws_kinesis_firehose_delivery_stream.events.arn]
  }

  # The raw archive: the function writes each batch as received (the stream's CMK is
  # used through Firehose's own grant, as for events).
  statement {
    sid       = "ArchiveRawRecords"
    actions   = ["firehose:PutRecordBatch"]
    resources = [aws_kinesis_firehose_delivery_stream.raw.arn]
  }

  statement {
    sid       = "WriteQuarantine"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.data["quarantine"].arn}/${local.quarantine_prefix}*"]
  }

  # What Lambda's Kinesis poller needs (no SubscribeToShard: no enhanced fan-out; no
  # ListStreams: the mapping names the stream).
  statement {
    sid = "ReadStream"
    actions = [
      "kinesis:GetRecords",
      "kinesis:GetShardIterator",
      "kinesis:DescribeStream",
      "kinesis:DescribeStreamSummary",
      "kinesis:ListShards",
    ]
    resources = [aws_kinesis_stream.events.arn]
  }

  statement {
    sid       = "OnFailureDestination"
    actions   = ["sqs:SendMessage"]
    resources = [aws_sqs_queue.on_failure.arn]
  }

  # Only through the services that hold data under this key: reading the stream, the
  # on-failure queue, quarantine objects, the claim table.
  statement {
    sid       = "DataKeyForStreamQueueQuarantineAndTable"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values = [
        "kinesis.${local.region}.amazonaws.com",
        "sqs.${local.region}.amazonaws.com",
        "s3.${local.region}.amazonaws.com",
        "dynamodb.${local.region}.amazonaws.com",
      ]
    }
  }

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.dedup_enrich.arn}:*"]
  }

  statement {
    sid       = "XRayHasNoResourceLevelPermissions"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "dedup_enrich" {
  name   = "dedup-enrich"
  role   = aws_iam_role.dedup_enrich.id
  policy = data.aws_iam_policy_document.dedup_enrich.json
}

resource "aws_lambda_function" "dedup_enrich" {
  #checkov:skip=CKV_AWS_116:A stream-triggered function has no async invocations; failed batches go to the event source mapping's on-failure SQS destination instead of a DLQ.
  #checkov:skip=CKV_AWS_117:The function only calls public AWS APIs (DynamoDB, Firehose, S3); a VPC would add NAT or endpoint cost and no isolation.
  #checkov:skip=CKV_AWS_115:Concurrency is bounded by shards x parallelization_factor; a reserved limit below that would throttle the event source.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile; the zip is built by cargo lambda in CI.
  function_name = "${local.prefix}-dedup-enrich"
  description   = "Claims each event in DynamoDB, drops duplicates, joins Dataset B, delivers packed records to Firehose."
  role          = aws_iam_role.dedup_enrich.arn

  # From `cargo lambda build --release --arm64 --output-format zip`.
  filename         = var.lambda_zip_path
  source_code_hash = filebase64sha256(var.lambda_zip_path)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]

  # Memory and timeout: see template.yaml. In short, I/O bound work needs CPU share
  # more than memory (512 MB); a 1,000-record batch takes well under a second and the
  # function keeps DEADLINE_RESERVE_MS plus the measured cost of its remaining steps in
  # hand, so the 60 s default is room for back-off only.
  memory_size = 512
  timeout     = var.function_timeout_secs
  kms_key_arn = aws_kms_key.data.arn

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.dedup_enrich.name
  }

  environment {
    variables = {
      DEDUP_TABLE         = aws_dynamodb_table.claims.name
      DELIVERY_STREAM     = aws_kinesis_firehose_delivery_stream.events.name
      RAW_ARCHIVE_STREAM  = aws_kinesis_firehose_delivery_stream.raw.name
      QUARANTINE_BUCKET   = aws_s3_bucket.data["quarantine"].bucket
      QUARANTINE_PREFIX   = local.quarantine_prefix
      DEDUP_WINDOW_SECS   = tostring(var.dedup_window_secs)
      CLAIM_CONCURRENCY   = "64"
      PACK_MAX_EVENTS     = "500"
      DEADLINE_RESERVE_MS = local.deadline_reserve_ms
      # The same variables that set the mapping, the stream and the timeout, so the
      # function can check the dedup window and its reserve against them at init.
      MAX_RECORD_AGE_SECS    = tostring(var.max_record_age_in_seconds)
      STREAM_RETENTION_HOURS = tostring(var.stream_retention_hours)
      FUNCTION_TIMEOUT_SECS  = tostring(var.function_timeout_secs)
      MAX_EVENT_AGE_SECS     = tostring(var.max_event_age_secs)
      METRICS_NAMESPACE      = local.metrics_namespace
      RUST_LOG               = var.rust_log
    }
  }

  lifecycle {
    # The function refuses to start otherwise; refuse the plan instead.
    precondition {
      condition     = tonumber(local.deadline_reserve_ms) * 2 <= var.function_timeout_secs * 1000
      error_message = "DEADLINE_RESERVE_MS (${local.deadline_reserve_ms}) must be at most half of function_timeout_secs."
    }
    precondition {
      condition     = var.function_timeout_secs * 1000 - tonumber(local.deadline_reserve_ms) >= 6 * tonumber(local.aws_call_timeout_ms)
      error_message = "function_timeout_secs must leave six AWS calls of ${local.aws_call_timeout_ms} ms after the ${local.deadline_reserve_ms} ms reserve (infra/schema.json, slow_calls_fit_timeout)."
    }
  }

  # No depends_on on the role's policy: only the mapping invokes the function, and
  # the mapping waits for the policy. The function's upload (one at a time in the
  # provider) then need not wait for the stream the policy names.
  tags = local.tags
}

locals {
  # Margin kept before the invocation deadline (infra/schema.json).
  deadline_reserve_ms = "500"
  # Not set on the function: its default AWS_CALL_TIMEOUT_MS (infra/schema.json), for the check above.
  aws_call_timeout_ms = "5000"
}

resource "aws_lambda_event_source_mapping" "kinesis" {
  event_source_arn                   = aws_kinesis_stream.events.arn
  function_name                      = aws_lambda_function.dedup_enrich.arn
  starting_position                  = "TRIM_HORIZON"
  batch_size                         = var.batch_size
  maximum_batching_window_in_seconds = var.maximum_batching_window_in_seconds
  parallelization_factor             = var.parallelization_factor
  function_response_types            = ["ReportBatchItemFailures"]
  bisect_batch_on_function_error     = true

  # Bounded: a poison batch is retried (and bisected) at most 10 times or for
  # max_record_age_in_seconds (6 hours by default), then its shard/sequence range goes
  # to the on-failure queue.
  maximum_retry_attempts        = 10
  maximum_record_age_in_seconds = var.max_record_age_in_seconds

  destination_config {
    on_failure {
      destination_arn = aws_sqs_queue.on_failure.arn
    }
  }

  depends_on = [aws_iam_role_policy.dedup_enrich]
}
