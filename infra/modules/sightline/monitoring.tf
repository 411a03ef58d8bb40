resource "aws_sns_topic" "alarms" {
  name              = "${local.prefix}-alarms"
  kms_master_key_id = aws_kms_key.data.arn
  tags              = local.tags
}

resource "aws_sns_topic_subscription" "alarm_email" {
  count     = var.alarm_email == "" ? 0 : 1
  topic_arn = aws_sns_topic.alarms.arn
  protocol  = "email"
  endpoint  = var.alarm_email
}

locals {
  function_dimensions = { FunctionName = aws_lambda_function.dedup_enrich.function_name }

  # Single-metric alarms; what each means is in infra/README.md.
  simple_alarms = {
    iterator-age = {
      description = "The function is falling behind the stream (oldest unprocessed record too old); data in Athena is going stale."
      namespace   = "AWS/Lambda", metric = "IteratorAge", stat = "Maximum", dimensions = local.function_dimensions
      period      = 60, periods = 5, threshold = var.iterator_age_alarm_ms, operator = "GreaterThanThreshold"
    }
    function-errors = {
      description = "Whole invocations failed (crash, timeout, init error); the batch is retried and bisected, then sent to the on-failure queue."
      namespace   = "AWS/Lambda", metric = "Errors", stat = "Sum", dimensions = local.function_dimensions
      period      = 300, periods = 1, threshold = 1, operator = "GreaterThanOrEqualToThreshold"
    }
    function-throttles = {
      description = "Lambda throttled the function (account or reserved concurrency); shards wait."
      namespace   = "AWS/Lambda", metric = "Throttles", stat = "Sum", dimensions = local.function_dimensions
      period      = 300, periods = 1, threshold = 1, operator = "GreaterThanOrEqualToThreshold"
    }
    downstream-throttles = {
      description = "DynamoDB, Firehose or S3 kept throttling the function for 15 minutes (EMF metric Throttled)."
      namespace   = local.metrics_namespace, metric = "Throttled", stat = "Sum", dimensions = local.function_dimensions
      period      = 300, periods = 3, threshold = 1, operator = "GreaterThanOrEqualToThreshold"
    }
    records-retried = {
      description = "Records were reported in batchItemFailures for 15 minutes in a row (EMF metric Failed); a shard may be stuck."
      namespace   = local.metrics_namespace, metric = "Failed", stat = "Sum", dimensions = local.function_dimensions
      period      = 300, periods = 3, threshold = 1, operator = "GreaterThanOrEqualToThreshold"
    }
    on-failure-queue = {
      description = "Kinesis gave up on a batch; its shard and sequence range is in the on-failure queue, to be replayed."
      namespace   = "AWS/SQS", metric = "ApproximateNumberOfMessagesVisible", stat = "Maximum", dimensions = { QueueName = aws_sqs_queue.on_failure.name }
      period      = 300, periods = 1, threshold = 1, operator = "GreaterThanOrEqualToThreshold"
    }
    delivery-freshness = {
      description = "The oldest record in the events delivery stream has waited longer than freshness_alarm_seconds."
      namespace   = "AWS/Firehose", metric = "DeliveryToS3.DataFreshness", stat = "Maximum", dimensions = { DeliveryStreamName = aws_kinesis_firehose_delivery_stream.events.name }
      period      = 300, periods = 2, threshold = var.freshness_alarm_seconds, operator = "GreaterThanThreshold"
    }
    parquet-conversion-failures = {
      description = "Firehose could not convert records to Parquet with the Glue schema; see errors/events/format-conversion-failed/."
      namespace   = "AWS/Firehose", metric = "FailedConversion.Records", stat = "Sum", dimensions = { DeliveryStreamName = aws_kinesis_firehose_delivery_stream.events.name }
      period      = 300, periods = 1, threshold = 1, operator = "GreaterThanOrEqualToThreshold"
    }
    ingest-function-errors = {
      description = "The front door's invocations failed as a whole (crash, timeout, init error such as a bad environment); callers got a 5xx from API Gateway, not the function's per-event answer."
      namespace   = "AWS/Lambda", metric = "Errors", stat = "Sum", dimensions = { FunctionName = aws_lambda_function.ingest.function_name }
      period      = 300, periods = 1, threshold = 1, operator = "GreaterThanOrEqualToThreshold"
    }
    # Direct PUT throughput: the quota is per stream (docs/deploy.md). Throttled entries
    # are re-sent by the function: capped throughput, not loss.
    firehose-throttled-records = {
      description = "The events delivery stream throttled PutRecordBatch entries (its Direct PUT quota of bytes, records or requests per second was exceeded); the function re-sends them, but throughput is capped. Request a quota increase."
      namespace   = "AWS/Firehose", metric = "ThrottledRecords", stat = "Sum", dimensions = { DeliveryStreamName = aws_kinesis_firehose_delivery_stream.events.name }
      period      = 300, periods = 1, threshold = 1, operator = "GreaterThanOrEqualToThreshold"
    }
    # Dynamic partitioning: at most 500 active partitions per stream by default; the
    # excess goes to errors/events/ (activePartitionExceeded), not to the lake.
    firehose-partition-count-exceeded = {
      description = "The events delivery stream exceeded its active partition limit; records of the excess partitions went to errors/events/ in the lake bucket instead of the lake. Look for old or future event dates (max_event_age_secs) or raise the quota."
      namespace   = "AWS/Firehose", metric = "PartitionCountExceeded", stat = "Maximum", dimensions = { DeliveryStreamName = aws_kinesis_firehose_delivery_stream.events.name }
      period      = 300, periods = 1, threshold = 1, operator = "GreaterThanOrEqualToThreshold"
    }
    raw-archive-freshness = {
      description = "The raw archive's oldest buffered record has waited more than 15 minutes (its buffer is 300 s); S3 delivery of raw/ is failing or behind."
      namespace   = "AWS/Firehose", metric = "DeliveryToS3.DataFreshness", stat = "Maximum", dimensions = { DeliveryStreamName = aws_kinesis_firehose_delivery_stream.raw.name }
      period      = 300, periods = 2, threshold = 900, operator = "GreaterThanThreshold"
    }
    # The function writes the archive best effort: the batch is still delivered.
    raw-archive-failed = {
      description = "The function could not write records to the raw archive (EMF metric ArchiveFailed); they were delivered but are missing from raw/, so a range holding them cannot be replayed from the archive once the stream drops it. See the function's WARN log for the error."
      namespace   = local.metrics_namespace, metric = "ArchiveFailed", stat = "Sum", dimensions = local.function_dimensions
      period      = 300, periods = 1, threshold = 1, operator = "GreaterThanOrEqualToThreshold"
    }
  }
}

resource "aws_cloudwatch_metric_alarm" "simple" {
  for_each = local.simple_alarms

  alarm_name          = "${local.prefix}-${each.key}"
  alarm_description   = each.value.description
  namespace           = each.value.namespace
  metric_name         = each.value.metric
  dimensions          = each.value.dimensions
  statistic           = each.value.stat
  period              = each.value.period
  evaluation_periods  = each.value.periods
  datapoints_to_alarm = each.value.periods
  threshold           = each.value.threshold
  comparison_operator = each.value.operator
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = local.tags
}

resource "aws_cloudwatch_metric_alarm" "quarantine_rate" {
  alarm_name          = "${local.prefix}-quarantine-rate"
  alarm_description   = "More than quarantine_rate_alarm_percent of received records were quarantined (malformed upstream data). Records are under quarantine/ in the quarantine bucket."
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = var.quarantine_rate_alarm_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "rate"
    label       = "Quarantined percent of received"
    expression  = "IF(received > 0, 100 * quarantined / received, 0)"
    return_data = true
  }

  metric_query {
    id = "quarantined"
    metric {
      namespace   = local.metrics_namespace
      metric_name = "Quarantined"
      dimensions  = local.function_dimensions
      period      = 300
      stat        = "Sum"
    }
  }

  metric_query {
    id = "received"
    metric {
      namespace   = local.metrics_namespace
      metric_name = "Received"
      dimensions  = local.function_dimensions
      period      = 300
      stat        = "Sum"
    }
  }

  tags = local.tags
}

locals {
  firehose_dimensions = { DeliveryStreamName = aws_kinesis_firehose_delivery_stream.events.name }
  # Each usage metric (a 5-minute sum) against its per-second quota metric.
  firehose_quota_metrics = {
    bytes         = { metric = "IncomingBytes", stat = "Sum" }
    bytesLimit    = { metric = "BytesPerSecondLimit", stat = "Minimum" }
    records       = { metric = "IncomingRecords", stat = "Sum" }
    recordsLimit  = { metric = "RecordsPerSecondLimit", stat = "Minimum" }
    requests      = { metric = "IncomingPutRequests", stat = "Sum" }
    requestsLimit = { metric = "PutRequestsPerSecondLimit", stat = "Minimum" }
  }
}

resource "aws_cloudwatch_metric_alarm" "firehose_quota" {
  alarm_name          = "${local.prefix}-firehose-quota"
  alarm_description   = "The events delivery stream used more than firehose_quota_alarm_percent of its Direct PUT quota (the highest of bytes, records and requests per second) for 15 minutes; throttling is next."
  evaluation_periods  = 3
  datapoints_to_alarm = 3
  threshold           = var.firehose_quota_alarm_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "used"
    label       = "Percent of the Direct PUT quota (highest of bytes, records, requests)"
    expression  = "100 * MAX([bytes / 300 / bytesLimit, records / 300 / recordsLimit, requests / 300 / requestsLimit])"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = local.firehose_quota_metrics
    content {
      id = metric_query.key
      metric {
        namespace   = "AWS/Firehose"
        metric_name = metric_query.value.metric
        dimensions  = local.firehose_dimensions
        period      = 300
        stat        = metric_query.value.stat
      }
    }
  }

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "ingest_5xx_rate" {
  alarm_name          = "${local.prefix}-ingest-5xx-rate"
  alarm_description   = "More than ingest_server_error_alarm_percent of the front door's requests got a 5xx for 10 minutes (Kinesis throttling answered with 503, a refused PutRecords with 502, or the function failing). Callers must re-send."
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  threshold           = var.ingest_server_error_alarm_percent
  comparison_operator = "GreaterThanThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "rate"
    label       = "5xx percent of requests"
    expression  = "IF(requests > 0, 100 * errors / requests, 0)"
    return_data = true
  }

  metric_query {
    id = "errors"
    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "5xx"
      dimensions  = { ApiId = aws_apigatewayv2_api.ingest.id }
      period      = 300
      stat        = "Sum"
    }
  }

  metric_query {
    id = "requests"
    metric {
      namespace   = "AWS/ApiGateway"
      metric_name = "Count"
      dimensions  = { ApiId = aws_apigatewayv2_api.ingest.id }
      period      = 300
      stat        = "Sum"
    }
  }

  tags = local.tags
}

locals {
  fn = aws_lambda_function.dedup_enrich.function_name
  ns = local.metrics_namespace
}

resource "aws_cloudwatch_dashboard" "this" {
  dashboard_name = local.prefix
  dashboard_body = jsonencode({
    widgets = [
      {
        type = "metric", x = 0, y = 0, width = 12, height = 6
        properties = {
          title = "Records by outcome (EMF)", region = local.region, stat = "Sum", period = 60, view = "timeSeries"
          metrics = [
            [local.ns, "Received", "FunctionName", local.fn],
            [".", "Delivered", ".", "."],
            [".", "Duplicates", ".", "."],
            [".", "Quarantined", ".", "."],
            [".", "UnknownLocation", ".", "."],
            [".", "Failed", ".", "."],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 0, width = 12, height = 6
        properties = {
          title = "Duplicate and quarantine rate (%)", region = local.region, period = 300, view = "timeSeries"
          metrics = [
            [{ expression = "IF(r > 0, 100 * d / r, 0)", label = "duplicates %", id = "dr" }],
            [{ expression = "IF(r > 0, 100 * q / r, 0)", label = "quarantined %", id = "qr" }],
            [local.ns, "Received", "FunctionName", local.fn, { id = "r", stat = "Sum", visible = false }],
            [".", "Duplicates", ".", ".", { id = "d", stat = "Sum", visible = false }],
            [".", "Quarantined", ".", ".", { id = "q", stat = "Sum", visible = false }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 6, width = 8, height = 6
        properties = {
          title   = "Iterator age (ms)", region = local.region, stat = "Maximum", period = 60, view = "timeSeries"
          metrics = [["AWS/Lambda", "IteratorAge", "FunctionName", local.fn]]
        }
      },
      {
        type = "metric", x = 8, y = 6, width = 8, height = 6
        properties = {
          title = "Batch duration (ms, EMF)", region = local.region, period = 60, view = "timeSeries"
          metrics = [
            [local.ns, "DurationMs", "FunctionName", local.fn, { stat = "p50" }],
            ["...", { stat = "p99" }],
          ]
        }
      },
      {
        type = "metric", x = 16, y = 6, width = 8, height = 6
        properties = {
          title = "Errors, throttles, retries", region = local.region, stat = "Sum", period = 60, view = "timeSeries"
          metrics = [
            ["AWS/Lambda", "Errors", "FunctionName", local.fn],
            [".", "Throttles", ".", "."],
            [local.ns, "Throttled", "FunctionName", local.fn],
            [".", "Retried", ".", "."],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 12, width = 8, height = 6
        properties = {
          title = "Firehose freshness (s)", region = local.region, stat = "Maximum", period = 60, view = "timeSeries"
          metrics = [
            ["AWS/Firehose", "DeliveryToS3.DataFreshness", "DeliveryStreamName", aws_kinesis_firehose_delivery_stream.events.name],
            ["...", aws_kinesis_firehose_delivery_stream.raw.name],
          ]
        }
      },
      {
        type = "metric", x = 8, y = 12, width = 8, height = 6
        properties = {
          title = "Firehose records in / converted / failed", region = local.region, stat = "Sum", period = 60, view = "timeSeries"
          metrics = [
            ["AWS/Firehose", "IncomingRecords", "DeliveryStreamName", aws_kinesis_firehose_delivery_stream.events.name],
            [".", "SucceedConversion.Records", ".", "."],
            [".", "FailedConversion.Records", ".", "."],
          ]
        }
      },
      {
        type = "metric", x = 16, y = 12, width = 8, height = 6
        properties = {
          title = "Claim table and on-failure queue", region = local.region, stat = "Sum", period = 60, view = "timeSeries"
          metrics = [
            ["AWS/DynamoDB", "ConsumedWriteCapacityUnits", "TableName", aws_dynamodb_table.claims.name],
            [".", "ThrottledRequests", ".", "."],
            ["AWS/SQS", "ApproximateNumberOfMessagesVisible", "QueueName", aws_sqs_queue.on_failure.name, { stat = "Maximum" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 18, width = 8, height = 6
        properties = {
          title = "Front door requests and errors", region = local.region, stat = "Sum", period = 60, view = "timeSeries"
          metrics = [
            ["AWS/ApiGateway", "Count", "ApiId", aws_apigatewayv2_api.ingest.id],
            [".", "4xx", ".", "."],
            [".", "5xx", ".", "."],
          ]
        }
      },
      {
        type = "metric", x = 8, y = 18, width = 8, height = 6
        properties = {
          title = "Front door latency (ms)", region = local.region, period = 60, view = "timeSeries"
          metrics = [
            ["AWS/ApiGateway", "Latency", "ApiId", aws_apigatewayv2_api.ingest.id, { stat = "p50" }],
            ["...", { stat = "p99" }],
            [".", "IntegrationLatency", ".", ".", { stat = "p99" }],
          ]
        }
      },
      {
        type = "metric", x = 16, y = 18, width = 8, height = 6
        properties = {
          title = "Ingest function", region = local.region, stat = "Sum", period = 60, view = "timeSeries"
          metrics = [
            ["AWS/Lambda", "Errors", "FunctionName", aws_lambda_function.ingest.function_name],
            [".", "Throttles", ".", "."],
            [".", "ConcurrentExecutions", ".", ".", { stat = "Maximum" }],
          ]
        }
      },
      {
        type = "metric", x = 0, y = 24, width = 12, height = 6
        properties = {
          title = "Firehose events: throttling and active partitions", region = local.region, period = 60, view = "timeSeries"
          metrics = [
            ["AWS/Firehose", "ThrottledRecords", "DeliveryStreamName", aws_kinesis_firehose_delivery_stream.events.name, { stat = "Sum" }],
            [".", "PartitionCount", ".", ".", { stat = "Maximum" }],
            [".", "ActivePartitionsLimit", ".", ".", { stat = "Minimum" }],
            [".", "PartitionCountExceeded", ".", ".", { stat = "Maximum" }],
          ]
        }
      },
      {
        type = "metric", x = 12, y = 24, width = 12, height = 6
        properties = {
          title = "Firehose events: bytes in vs Direct PUT quota (bytes/s)", region = local.region, period = 300, view = "timeSeries"
          metrics = [
            [{ expression = "b / 300", label = "incoming bytes/s", id = "rate" }],
            ["AWS/Firehose", "IncomingBytes", "DeliveryStreamName", aws_kinesis_firehose_delivery_stream.events.name, { id = "b", stat = "Sum", visible = false }],
            [".", "BytesPerSecondLimit", ".", ".", { stat = "Minimum", label = "quota bytes/s" }],
          ]
        }
      },
    ]
  })
}
