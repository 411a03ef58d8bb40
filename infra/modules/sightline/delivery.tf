data "aws_iam_policy_document" "firehose_assume" {
  statement {
    actions = ["sts:AssumeRole"]
    principals {
      type        = "Service"
      identifiers = ["firehose.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "sts:ExternalId"
      values   = [local.account_id]
    }
  }
}

# ------------------------------------------------------------------ events (DirectPut)
resource "aws_cloudwatch_log_group" "firehose_events" {
  name              = "/aws/kinesisfirehose/${local.prefix}-events"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_stream" "firehose_events" {
  name           = "DestinationDelivery"
  log_group_name = aws_cloudwatch_log_group.firehose_events.name
}

resource "aws_iam_role" "firehose_events" {
  name               = "${local.prefix}-firehose-events"
  assume_role_policy = data.aws_iam_policy_document.firehose_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "firehose_events" {
  statement {
    sid = "LakeBucket"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:GetBucketLocation",
      "s3:GetObject",
      "s3:ListBucket",
      "s3:ListBucketMultipartUploads",
      "s3:PutObject",
    ]
    resources = [aws_s3_bucket.data["lake"].arn, "${aws_s3_bucket.data["lake"].arn}/*"]
  }

  # For the lake's SSE-KMS objects only (Firehose encrypts its own buffer through a
  # grant it creates with the stream).
  statement {
    sid       = "DataKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid     = "SchemaForParquetConversion"
    actions = ["glue:GetTable", "glue:GetTableVersion", "glue:GetTableVersions"]
    resources = [
      "arn:${local.partition}:glue:${local.region}:${local.account_id}:catalog",
      aws_glue_catalog_database.this.arn,
      aws_glue_catalog_table.events.arn,
    ]
  }

  statement {
    sid       = "Logs"
    actions   = ["logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.firehose_events.arn}:*"]
  }
}

resource "aws_iam_role_policy" "firehose_events" {
  name   = "deliver-events"
  role   = aws_iam_role.firehose_events.id
  policy = data.aws_iam_policy_document.firehose_events.json
}

# DirectPut from dedup-enrich. Each incoming record holds up to 500 JSON lines;
# RecordDeAggregation splits them, MetadataExtraction reads the partition keys,
# dynamic partitioning writes events/event_date=.../event_hour=.../, and the records
# are converted to Parquet with the Glue table's schema.
resource "aws_kinesis_firehose_delivery_stream" "events" {
  name        = "${local.prefix}-events"
  destination = "extended_s3"

  server_side_encryption {
    enabled  = true
    key_type = "CUSTOMER_MANAGED_CMK"
    key_arn  = aws_kms_key.data.arn
  }

  extended_s3_configuration {
    bucket_arn          = aws_s3_bucket.data["lake"].arn
    role_arn            = aws_iam_role.firehose_events.arn
    prefix              = "events/event_date=!{partitionKeyFromQuery:event_date}/event_hour=!{partitionKeyFromQuery:event_hour}/"
    error_output_prefix = "errors/events/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/"

    # Freshness knob: whichever of size and interval is reached first flushes a
    # partition's buffer. See infra/README.md for the resulting delay.
    buffering_size     = var.firehose_buffer_size_mib
    buffering_interval = var.firehose_buffer_interval_seconds

    # Parquet conversion compresses (SNAPPY) itself; S3-level compression must be off.
    compression_format = "UNCOMPRESSED"
    kms_key_arn        = aws_kms_key.data.arn
    s3_backup_mode     = "Disabled"

    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose_events.name
      log_stream_name = aws_cloudwatch_log_stream.firehose_events.name
    }

    dynamic_partitioning_configuration {
      enabled        = true
      retry_duration = 300
    }

    processing_configuration {
      enabled = true

      processors {
        type = "RecordDeAggregation"
        parameters {
          parameter_name  = "SubRecordType"
          parameter_value = "JSON"
        }
      }

      processors {
        type = "MetadataExtraction"
        parameters {
          parameter_name  = "MetadataExtractionQuery"
          parameter_value = "{event_date: .event_date, event_hour: .event_hour}"
        }
        parameters {
          parameter_name  = "JsonParsingEngine"
          parameter_value = "JQ-1.6"
        }
      }
    }

    data_format_conversion_configuration {
      enabled = true

      input_format_configuration {
        deserializer {
          open_x_json_ser_de {}
        }
      }

      output_format_configuration {
        serializer {
          parquet_ser_de {
            compression = "SNAPPY"
          }
        }
      }

      schema_configuration {
        catalog_id    = local.account_id
        database_name = aws_glue_catalog_database.this.name
        table_name    = aws_glue_catalog_table.events.name
        region        = local.region
        role_arn      = aws_iam_role.firehose_events.arn
        version_id    = "LATEST"
      }
    }
  }

  depends_on = [aws_iam_role_policy.firehose_events]
  tags       = local.tags
}

# ------------------------------------------------------------------ raw archive
resource "aws_cloudwatch_log_group" "firehose_raw" {
  name              = "/aws/kinesisfirehose/${local.prefix}-raw"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
  tags              = local.tags
}

resource "aws_cloudwatch_log_stream" "firehose_raw" {
  name           = "DestinationDelivery"
  log_group_name = aws_cloudwatch_log_group.firehose_raw.name
}

resource "aws_iam_role" "firehose_raw" {
  name               = "${local.prefix}-firehose-raw"
  assume_role_policy = data.aws_iam_policy_document.firehose_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "firehose_raw" {
  statement {
    sid = "RawBucket"
    actions = [
      "s3:AbortMultipartUpload",
      "s3:GetBucketLocation",
      "s3:GetObject",
      "s3:ListBucket",
      "s3:ListBucketMultipartUploads",
      "s3:PutObject",
    ]
    resources = [aws_s3_bucket.data["raw"].arn, "${aws_s3_bucket.data["raw"].arn}/*"]
  }

  statement {
    sid       = "DataKeyThroughS3"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["s3.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "Logs"
    actions   = ["logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.firehose_raw.arn}:*"]
  }
}

resource "aws_iam_role_policy" "firehose_raw" {
  name   = "archive-raw"
  role   = aws_iam_role.firehose_raw.id
  policy = data.aws_iam_policy_document.firehose_raw.json
}

# DirectPut from dedup-enrich (RAW_ARCHIVE_STREAM): every Kinesis record as the
# function received it, one JSON line (shard, sequence number, arrival time, partition
# key, the bytes in base64), many lines per Firehose record, so the 5 KB per-record
# rounding adds nothing; gzip-compressed; filed by the hour Firehose received it.
# `sightline replay --archive` reads a given-up range back from here once the stream's
# retention has dropped it.
resource "aws_kinesis_firehose_delivery_stream" "raw" {
  name        = "${local.prefix}-raw"
  destination = "extended_s3"

  server_side_encryption {
    enabled  = true
    key_type = "CUSTOMER_MANAGED_CMK"
    key_arn  = aws_kms_key.data.arn
  }

  extended_s3_configuration {
    bucket_arn          = aws_s3_bucket.data["raw"].arn
    role_arn            = aws_iam_role.firehose_raw.arn
    prefix              = "raw/dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
    error_output_prefix = "errors/raw/!{firehose:error-output-type}/dt=!{timestamp:yyyy-MM-dd}/"

    # Not on the freshness path: large buffers, fewer objects.
    buffering_size     = 128
    buffering_interval = 300
    compression_format = "GZIP"
    kms_key_arn        = aws_kms_key.data.arn
    s3_backup_mode     = "Disabled"

    cloudwatch_logging_options {
      enabled         = true
      log_group_name  = aws_cloudwatch_log_group.firehose_raw.name
      log_stream_name = aws_cloudwatch_log_stream.firehose_raw.name
    }
    # The function's lines end in a newline already: no processing.
  }

  depends_on = [aws_iam_role_policy.firehose_raw]
  tags       = local.tags
}
