# Hourly rollups (docs/rollups.md): the events_hourly table, the two views the
# dashboards read (events_hourly_live, events_dashboard), the job that writes each
# closed hour (EventBridge Scheduler -> Step Functions -> Athena INSERT INTO), its
# permissions and its alarms. The same stack as template.yaml's "rollups" section.

locals {
  rollup_prefix = "rollups/events_hourly/"

  # infra/athena/rollup_job.sql (tests/infra checks they are the same query).
  rollup_job_sql = <<-SQL
    INSERT INTO events_hourly SELECT geographical_location_oid, geographical_location,
    item_name, detections, cameras, camera_ids, first_detected_ms, last_detected_ms, lake_rows,
    event_date, event_hour FROM events_hourly_live WHERE event_date = ? AND event_hour = ?
  SQL

  # infra/athena/hourly_live_view.sql's SELECT.
  hourly_live_view_sql = <<-SQL
    WITH hour_rows AS (SELECT geographical_location_oid, geographical_location, item_name,
    video_camera_oid, timestamp_detected, 1 AS in_view, 0 AS in_lake, event_date, event_hour
    FROM events_dedup UNION ALL SELECT geographical_location_oid, geographical_location,
    item_name, CAST(NULL AS bigint) AS video_camera_oid, CAST(NULL AS bigint) AS
    timestamp_detected, 0 AS in_view, 1 AS in_lake, event_date, event_hour FROM events)
    SELECT geographical_location_oid, geographical_location, item_name, sum(in_view) AS
    detections, count(DISTINCT video_camera_oid) AS cameras,
    array_sort(array_agg(DISTINCT video_camera_oid) FILTER (WHERE video_camera_oid IS NOT NULL)) AS camera_ids,
    min(timestamp_detected) AS first_detected_ms, max(timestamp_detected) AS
    last_detected_ms, sum(in_lake) AS lake_rows, event_date, event_hour FROM hour_rows
    GROUP BY event_date, event_hour, geographical_location_oid, geographical_location, item_name
  SQL

  # infra/athena/dashboard_view.sql's SELECT.
  dashboard_view_sql = <<-SQL
    SELECT geographical_location_oid, geographical_location, item_name, detections, cameras,
    camera_ids, first_detected_ms, last_detected_ms, lake_rows, CAST('rollup' AS varchar) AS
    source, event_date, event_hour FROM events_hourly WHERE event_date || event_hour <
    date_format(current_timestamp - INTERVAL '45' MINUTE, '%Y-%m-%d%H') UNION ALL SELECT
    geographical_location_oid, geographical_location, item_name, detections, cameras,
    camera_ids, first_detected_ms, last_detected_ms, lake_rows, CAST('live' AS varchar) AS
    source, event_date, event_hour FROM events_hourly_live WHERE event_date >=
    date_format(current_timestamp - INTERVAL '45' MINUTE, '%Y-%m-%d') AND event_date ||
    event_hour >= date_format(current_timestamp - INTERVAL '45' MINUTE, '%Y-%m-%d%H')
  SQL

  # events_hourly's columns, then the views': Glue (Hive) type, Presto type.
  rollup_columns = [
    { name = "geographical_location_oid", glue = "bigint", presto = "bigint" },
    { name = "geographical_location", glue = "string", presto = "varchar" },
    { name = "item_name", glue = "string", presto = "varchar" },
    { name = "detections", glue = "bigint", presto = "bigint" },
    { name = "cameras", glue = "bigint", presto = "bigint" },
    { name = "camera_ids", glue = "array<bigint>", presto = "array(bigint)" },
    { name = "first_detected_ms", glue = "bigint", presto = "bigint" },
    { name = "last_detected_ms", glue = "bigint", presto = "bigint" },
    { name = "lake_rows", glue = "bigint", presto = "bigint" },
  ]
  partition_columns = [
    { name = "event_date", glue = "string", presto = "varchar" },
    { name = "event_hour", glue = "string", presto = "varchar" },
  ]
  hourly_live_view_columns = concat(local.rollup_columns, local.partition_columns)
  dashboard_view_columns = concat(
    local.rollup_columns,
    [{ name = "source", glue = "string", presto = "varchar" }],
    local.partition_columns,
  )

  # The schedule fires 25 minutes past every hour (an hour closes 25 minutes after it
  # ends: Firehose's buffer, at most 1.5 x 900 s, and late events); the dashboard
  # view switches an hour to the rollups 45 minutes after it ends.
  rollup_schedule = "cron(25 * * * ? *)"
}

# Partition projection like events; Parquet (Snappy) written by Athena's INSERT INTO
# into the Hive layout under rollups/events_hourly/, the only layout Athena writes to
# a projected table.
resource "aws_glue_catalog_table" "events_hourly" {
  name          = "events_hourly"
  database_name = aws_glue_catalog_database.this.name
  description   = "Hourly rollups of events_dedup per location and item, one partition per closed hour (rewritten whole by the rollup job); dashboards read events_dashboard."
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    "classification"                      = "parquet"
    "EXTERNAL"                            = "TRUE"
    "parquet.compression"                 = "SNAPPY"
    "projection.enabled"                  = "true"
    "projection.event_date.type"          = "date"
    "projection.event_date.format"        = "yyyy-MM-dd"
    "projection.event_date.range"         = "2020-01-01,NOW+1DAYS"
    "projection.event_date.interval"      = "1"
    "projection.event_date.interval.unit" = "DAYS"
    "projection.event_hour.type"          = "integer"
    "projection.event_hour.range"         = "0,23"
    "projection.event_hour.digits"        = "2"
    "storage.location.template"           = "s3://${aws_s3_bucket.data["lake"].bucket}/${local.rollup_prefix}event_date=$${event_date}/event_hour=$${event_hour}/"
  }

  partition_keys {
    name    = "event_date"
    type    = "string"
    comment = "UTC YYYY-MM-DD of timestamp_detected"
  }

  partition_keys {
    name    = "event_hour"
    type    = "string"
    comment = "UTC HH of timestamp_detected"
  }

  storage_descriptor {
    location      = "s3://${aws_s3_bucket.data["lake"].bucket}/${local.rollup_prefix}"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }

    dynamic "columns" {
      for_each = local.rollup_columns
      content {
        name = columns.value.name
        type = columns.value.glue
      }
    }
  }
}

resource "aws_glue_catalog_table" "events_hourly_live" {
  name          = "events_hourly_live"
  database_name = aws_glue_catalog_database.this.name
  description   = "The hourly rollup computed live from events_dedup (the rollup job writes closed hours of it into events_hourly)."
  table_type    = "VIRTUAL_VIEW"

  parameters = {
    presto_view = "true"
    comment     = "Presto View"
  }

  view_expanded_text = "/* Presto View */"
  view_original_text = local.presto_view_text["events_hourly_live"]

  storage_descriptor {
    dynamic "columns" {
      for_each = local.hourly_live_view_columns
      content {
        name = columns.value.name
        type = columns.value.glue
      }
    }
  }

  depends_on = [aws_glue_catalog_table.events_dedup]
}

resource "aws_glue_catalog_table" "events_dashboard" {
  name          = "events_dashboard"
  database_name = aws_glue_catalog_database.this.name
  description   = "What the dashboards read: events_hourly for closed hours, events_hourly_live for open ones (an hour switches 45 minutes after it ends)."
  table_type    = "VIRTUAL_VIEW"

  parameters = {
    presto_view = "true"
    comment     = "Presto View"
  }

  view_expanded_text = "/* Presto View */"
  view_original_text = local.presto_view_text["events_dashboard"]

  storage_descriptor {
    dynamic "columns" {
      for_each = local.dashboard_view_columns
      content {
        name = columns.value.name
        type = columns.value.glue
      }
    }
  }

  depends_on = [aws_glue_catalog_table.events_hourly, aws_glue_catalog_table.events_hourly_live]
}

# ---------------------------------------------------------------- the job

resource "aws_cloudwatch_log_group" "rollup" {
  # /aws/vendedlogs/: Step Functions delivers through CloudWatch Logs' vended-log path.
  name              = "/aws/vendedlogs/states/${local.prefix}-rollup"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
  tags              = local.tags
}

data "aws_iam_policy_document" "states_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["states.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "rollup" {
  name               = "${local.prefix}-rollup"
  assume_role_policy = data.aws_iam_policy_document.states_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "rollup" {
  # The per-hour lock: items rollup#<date>T<hour> in the claim table, nothing else.
  statement {
    sid       = "HourLockInTheClaimTable"
    actions   = ["dynamodb:PutItem", "dynamodb:DeleteItem"]
    resources = [aws_dynamodb_table.claims.arn]
    condition {
      test     = "ForAllValues:StringLike"
      variable = "dynamodb:LeadingKeys"
      values   = ["rollup#*"]
    }
  }

  statement {
    sid       = "ListTheLake"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.data["lake"].arn]
  }

  # Athena runs the INSERT INTO with this role: it reads events/ and writes rollups/.
  statement {
    sid       = "ReadEvents"
    actions   = ["s3:GetObject"]
    resources = ["${aws_s3_bucket.data["lake"].arn}/events/*", "${aws_s3_bucket.data["lake"].arn}/${local.rollup_prefix}*"]
  }

  statement {
    sid       = "RewriteRollups"
    actions   = ["s3:PutObject", "s3:DeleteObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    resources = ["${aws_s3_bucket.data["lake"].arn}/${local.rollup_prefix}*"]
  }

  statement {
    sid = "AthenaResults"
    actions = [
      "s3:GetObject",
      "s3:PutObject",
      "s3:AbortMultipartUpload",
      "s3:ListMultipartUploadParts",
    ]
    resources = ["${aws_s3_bucket.data["athena"].arn}/results/*"]
  }

  statement {
    sid       = "AthenaResultsBucket"
    actions   = ["s3:ListBucket", "s3:GetBucketLocation"]
    resources = [aws_s3_bucket.data["athena"].arn]
  }

  statement {
    sid = "RunTheJobInTheWorkgroup"
    actions = [
      "athena:StartQueryExecution",
      "athena:GetQueryExecution",
      "athena:GetQueryResults",
      "athena:StopQueryExecution",
      "athena:GetWorkGroup",
    ]
    resources = [aws_athena_workgroup.this.arn]
  }

  statement {
    sid = "CatalogOfTheJob"
    actions = [
      "glue:GetDatabase",
      "glue:GetTable",
      "glue:GetPartition",
      "glue:GetPartitions",
      "glue:BatchGetPartition",
      "glue:BatchCreatePartition",
      "glue:CreatePartition",
    ]
    resources = [
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:catalog",
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:database/${aws_glue_catalog_database.this.name}",
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:table/${aws_glue_catalog_database.this.name}/*",
    ]
  }

  # Lake objects, rollups and query results are SSE-KMS with the data key (S3 calls
  # KMS); the lock item is in the KMS-encrypted claim table.
  statement {
    sid       = "DataKeyForTheLakeResultsAndLock"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values = [
        "s3.${local.region}.amazonaws.com",
        "dynamodb.${local.region}.amazonaws.com",
      ]
    }
  }

  # Step Functions' execution logs go through CloudWatch Logs' log delivery, whose
  # actions have no resource-level permissions.
  statement {
    sid = "LogDeliveryHasNoResourceLevelPermissions"
    actions = [
      "logs:CreateLogDelivery",
      "logs:GetLogDelivery",
      "logs:UpdateLogDelivery",
      "logs:DeleteLogDelivery",
      "logs:ListLogDeliveries",
      "logs:PutResourcePolicy",
      "logs:DescribeResourcePolicies",
      "logs:DescribeLogGroups",
    ]
    resources = ["*"]
  }

  statement {
    sid       = "XRayHasNoResourceLevelPermissions"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords", "xray:GetSamplingRules", "xray:GetSamplingTargets"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "rollup" {
  name   = "rollup"
  role   = aws_iam_role.rollup.id
  policy = data.aws_iam_policy_document.rollup.json
}

locals {
  # The state machine (JSONata). Per hour, one at a time: take the hour's lock item in
  # the claim table (retried while another run holds it), delete the hour's rollup
  # objects (until none are listed), INSERT INTO with the hour as the two execution
  # parameters, release the lock. A failed INSERT is retried from the delete, so a
  # partial write is never appended to. The lock expires after 2 hours (longer than the
  # execution may run), should an execution die holding it.
  rollup_definition = {
    Comment        = "Sightline hourly rollups, rewrites closed hours of events_hourly (docs/rollups.md)."
    QueryLanguage  = "JSONata"
    TimeoutSeconds = 3600
    StartAt        = "PlanHours"
    States = {
      PlanHours = {
        Type    = "Pass"
        Comment = "A backfill names its hours; the schedule passes its scheduled time, the hour that closed 25 minutes before it, and the one 6 hours before that (late events)."
        Output = {
          hours = "{% $exists($states.input.hours) ? $states.input.hours : ($closed := $floor(($toMillis($states.input.scheduled_time) - 1500000) / 3600000) * 3600000 - 3600000; [$closed, $closed - 21600000].{'event_date': $fromMillis($, '[Y0001]-[M01]-[D01]'), 'event_hour': $fromMillis($, '[H01]')}) %}"
        }
        Next = "RollUpEachHour"
      }
      RollUpEachHour = {
        Type           = "Map"
        Items          = "{% $states.input.hours %}"
        MaxConcurrency = 1
        ItemProcessor = {
          ProcessorConfig = { Mode = "INLINE" }
          StartAt         = "TakeHourLock"
          States = {
            TakeHourLock = {
              Type     = "Task"
              Resource = "arn:${local.partition}:states:::dynamodb:putItem"
              Arguments = {
                TableName = aws_dynamodb_table.claims.name
                Item = {
                  event_id   = { S = "{% 'rollup#' & $states.input.event_date & 'T' & $states.input.event_hour %}" }
                  owner      = { S = "{% $states.context.Execution.Id %}" }
                  expires_at = { N = "{% $string($floor($millis() / 1000) + 7200) %}" }
                }
                ConditionExpression       = "attribute_not_exists(event_id) OR expires_at < :now"
                ExpressionAttributeValues = { ":now" = { N = "{% $string($floor($millis() / 1000)) %}" } }
              }
              Assign = {
                event_date = "{% $states.input.event_date %}"
                event_hour = "{% $states.input.event_hour %}"
                lock       = "{% 'rollup#' & $states.input.event_date & 'T' & $states.input.event_hour %}"
                attempts   = 0
              }
              Retry = [
                { ErrorEquals = ["DynamoDB.ConditionalCheckFailedException"], IntervalSeconds = 30, BackoffRate = 1.5, MaxAttempts = 12, MaxDelaySeconds = 300, JitterStrategy = "FULL" },
                { ErrorEquals = ["DynamoDB.ProvisionedThroughputExceededException", "DynamoDB.InternalServerErrorException", "DynamoDB.ThrottlingException"], IntervalSeconds = 2, BackoffRate = 2, MaxAttempts = 6, JitterStrategy = "FULL" },
              ]
              Catch = [{
                ErrorEquals = ["States.ALL"]
                Assign      = { error = "{% $states.errorOutput.Error %}", cause = "{% 'the lock of ' & $states.input.event_date & 'T' & $states.input.event_hour & ' was not taken: ' & $states.errorOutput.Cause %}" }
                Next        = "HourFailed"
              }]
              Next = "ListPreviousRollup"
            }
            ListPreviousRollup = {
              Type     = "Task"
              Resource = "arn:${local.partition}:states:::aws-sdk:s3:listObjectsV2"
              Arguments = {
                Bucket = aws_s3_bucket.data["lake"].bucket
                Prefix = "{% '${local.rollup_prefix}event_date=' & $event_date & '/event_hour=' & $event_hour & '/' %}"
              }
              Retry = [{ ErrorEquals = ["States.TaskFailed"], IntervalSeconds = 2, BackoffRate = 2, MaxAttempts = 4, JitterStrategy = "FULL" }]
              Catch = [{
                ErrorEquals = ["States.ALL"]
                Assign      = { error = "{% $states.errorOutput.Error %}", cause = "{% $states.errorOutput.Cause %}" }
                Next        = "ReleaseAfterFailure"
              }]
              Next = "AnyPreviousRollup"
            }
            AnyPreviousRollup = {
              Type    = "Choice"
              Choices = [{ Condition = "{% $count($states.input.Contents) > 0 %}", Next = "DeletePreviousRollup" }]
              Default = "InsertHour"
            }
            DeletePreviousRollup = {
              Type     = "Task"
              Resource = "arn:${local.partition}:states:::aws-sdk:s3:deleteObjects"
              Arguments = {
                Bucket = aws_s3_bucket.data["lake"].bucket
                Delete = {
                  Objects = "{% [$states.input.Contents.{'Key': Key}] %}"
                  Quiet   = true
                }
              }
              Retry = [{ ErrorEquals = ["States.TaskFailed"], IntervalSeconds = 2, BackoffRate = 2, MaxAttempts = 4, JitterStrategy = "FULL" }]
              Catch = [{
                ErrorEquals = ["States.ALL"]
                Assign      = { error = "{% $states.errorOutput.Error %}", cause = "{% $states.errorOutput.Cause %}" }
                Next        = "ReleaseAfterFailure"
              }]
              Next = "DeletedEverything"
            }
            DeletedEverything = {
              Type    = "Choice"
              Choices = [{ Condition = "{% $count($states.input.Errors) = 0 %}", Next = "ListPreviousRollup" }]
              Default = "DeleteRefused"
            }
            DeleteRefused = {
              Type   = "Pass"
              Assign = { error = "RollupDeleteFailed", cause = "{% $string($states.input.Errors) %}" }
              Next   = "ReleaseAfterFailure"
            }
            InsertHour = {
              Type     = "Task"
              Resource = "arn:${local.partition}:states:::athena:startQueryExecution.sync"
              Arguments = {
                QueryString           = replace(trimspace(local.rollup_job_sql), "\n", " ")
                QueryExecutionContext = { Catalog = "AwsDataCatalog", Database = aws_glue_catalog_database.this.name }
                WorkGroup             = aws_athena_workgroup.this.name
                ExecutionParameters   = ["{% \"'\" & $event_date & \"'\" %}", "{% \"'\" & $event_hour & \"'\" %}"]
              }
              Catch = [{
                ErrorEquals = ["States.ALL"]
                Assign      = { attempts = "{% $attempts + 1 %}", error = "{% $states.errorOutput.Error %}", cause = "{% $states.errorOutput.Cause %}" }
                Next        = "InsertFailed"
              }]
              Next = "ReleaseHourLock"
            }
            InsertFailed = {
              Type    = "Choice"
              Comment = "An INSERT that failed may have written part of the hour, so it is retried from the delete."
              Choices = [{ Condition = "{% $attempts < 3 %}", Next = "WaitBeforeRetry" }]
              Default = "ReleaseAfterFailure"
            }
            WaitBeforeRetry = {
              Type    = "Wait"
              Seconds = 60
              Next    = "ListPreviousRollup"
            }
            ReleaseHourLock = {
              Type     = "Task"
              Resource = "arn:${local.partition}:states:::dynamodb:deleteItem"
              Arguments = {
                TableName                 = aws_dynamodb_table.claims.name
                Key                       = { event_id = { S = "{% $lock %}" } }
                ConditionExpression       = "#owner = :me"
                ExpressionAttributeNames  = { "#owner" = "owner" }
                ExpressionAttributeValues = { ":me" = { S = "{% $states.context.Execution.Id %}" } }
              }
              Retry = [{ ErrorEquals = ["DynamoDB.ProvisionedThroughputExceededException", "DynamoDB.InternalServerErrorException", "DynamoDB.ThrottlingException"], IntervalSeconds = 2, BackoffRate = 2, MaxAttempts = 6, JitterStrategy = "FULL" }]
              End   = true
            }
            ReleaseAfterFailure = {
              Type     = "Task"
              Resource = "arn:${local.partition}:states:::dynamodb:deleteItem"
              Arguments = {
                TableName                 = aws_dynamodb_table.claims.name
                Key                       = { event_id = { S = "{% $lock %}" } }
                ConditionExpression       = "#owner = :me"
                ExpressionAttributeNames  = { "#owner" = "owner" }
                ExpressionAttributeValues = { ":me" = { S = "{% $states.context.Execution.Id %}" } }
              }
              Catch = [{ ErrorEquals = ["States.ALL"], Next = "HourFailed" }]
              Next  = "HourFailed"
            }
            HourFailed = {
              Type  = "Fail"
              Error = "{% $error %}"
              Cause = "{% $cause %}"
            }
          }
        }
        End = true
      }
    }
  }
}

resource "aws_sfn_state_machine" "rollup" {
  name       = "${local.prefix}-rollup"
  role_arn   = aws_iam_role.rollup.arn
  type       = "STANDARD"
  definition = jsonencode(local.rollup_definition)

  logging_configuration {
    log_destination        = "${aws_cloudwatch_log_group.rollup.arn}:*"
    include_execution_data = true
    level                  = "ALL"
  }

  tracing_configuration {
    enabled = true
  }

  tags = local.tags

  depends_on = [aws_iam_role_policy.rollup]
}

# ---------------------------------------------------------------- the schedule

data "aws_iam_policy_document" "scheduler_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["scheduler.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }
}

resource "aws_iam_role" "rollup_schedule" {
  name               = "${local.prefix}-rollup-schedule"
  assume_role_policy = data.aws_iam_policy_document.scheduler_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "rollup_schedule" {
  statement {
    sid       = "StartTheRollup"
    actions   = ["states:StartExecution"]
    resources = [aws_sfn_state_machine.rollup.arn]
  }
}

resource "aws_iam_role_policy" "rollup_schedule" {
  name   = "rollup-schedule"
  role   = aws_iam_role.rollup_schedule.id
  policy = data.aws_iam_policy_document.rollup_schedule.json
}

resource "aws_scheduler_schedule" "rollup" {
  #checkov:skip=CKV_AWS_297:The schedule's only payload is its own scheduled time (no data); the state machine's inputs and logs are what hold hours, and its log group uses the data key.
  name                         = "${local.prefix}-rollup"
  description                  = "Rolls up the hour that closed 25 minutes ago (and re-checks the one 6 hours before it) into events_hourly."
  schedule_expression          = local.rollup_schedule
  schedule_expression_timezone = "UTC"
  state                        = "ENABLED"

  flexible_time_window {
    mode = "OFF"
  }

  target {
    arn      = aws_sfn_state_machine.rollup.arn
    role_arn = aws_iam_role.rollup_schedule.arn
    input    = jsonencode({ scheduled_time = "<aws.scheduler.scheduled-time>" })

    retry_policy {
      maximum_event_age_in_seconds = 3600
      maximum_retry_attempts       = 10
    }
  }
}

# ---------------------------------------------------------------- alarms

resource "aws_cloudwatch_metric_alarm" "rollup_failed" {
  alarm_name          = "${local.prefix}-rollup-failed"
  alarm_description   = "An execution of the rollup state machine failed, timed out or was aborted: its hours are missing from events_dashboard once they close. Read the execution's error, then rebuild them with sightline rollup --state-machine <arn> --from <hour> --to <hour>."
  evaluation_periods  = 1
  datapoints_to_alarm = 1
  threshold           = 1
  comparison_operator = "GreaterThanOrEqualToThreshold"
  treat_missing_data  = "notBreaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]

  metric_query {
    id          = "unsuccessful"
    label       = "Rollup executions failed, timed out or aborted"
    expression  = "FILL(failed, 0) + FILL(timedout, 0) + FILL(aborted, 0)"
    return_data = true
  }

  dynamic "metric_query" {
    for_each = { failed = "ExecutionsFailed", timedout = "ExecutionsTimedOut", aborted = "ExecutionsAborted" }
    content {
      id = metric_query.key
      metric {
        namespace   = "AWS/States"
        metric_name = metric_query.value
        dimensions  = { StateMachineArn = aws_sfn_state_machine.rollup.arn }
        period      = 300
        stat        = "Sum"
      }
    }
  }

  tags = local.tags
}

resource "aws_cloudwatch_metric_alarm" "rollup_stale" {
  alarm_name          = "${local.prefix}-rollup-stale"
  alarm_description   = "No rollup execution succeeded for 2 hours: the schedule is not starting the state machine (its role, or the schedule disabled) or every run fails. Closed hours are missing from events_dashboard until rebuilt."
  namespace           = "AWS/States"
  metric_name         = "ExecutionsSucceeded"
  dimensions          = { StateMachineArn = aws_sfn_state_machine.rollup.arn }
  statistic           = "Sum"
  period              = 3600
  evaluation_periods  = 2
  datapoints_to_alarm = 2
  threshold           = 1
  comparison_operator = "LessThanThreshold"
  treat_missing_data  = "breaching"
  alarm_actions       = [aws_sns_topic.alarms.arn]
  ok_actions          = [aws_sns_topic.alarms.arn]
  tags                = local.tags
}

# ---------------------------------------------------------------- outputs

output "rollup_state_machine_arn" {
  description = "The rollup job; `sightline rollup --state-machine <this> --from <hour> --to <hour>` rebuilds hours."
  value       = aws_sfn_state_machine.rollup.arn
}

output "rollup_table_name" {
  value = aws_glue_catalog_table.events_hourly.name
}

output "dashboard_view_name" {
  description = "The view the dashboards (and QuickSight) read."
  value       = aws_glue_catalog_table.events_dashboard.name
}
