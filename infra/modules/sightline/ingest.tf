resource "aws_kinesis_stream" "events" {
  name             = "${local.prefix}-events"
  shard_count      = var.stream_mode == "PROVISIONED" ? var.shard_count : null
  retention_period = var.stream_retention_hours
  encryption_type  = "KMS"
  kms_key_id       = aws_kms_key.data.arn

  stream_mode_details {
    stream_mode = var.stream_mode
  }

  tags = local.tags
}

# Claims: one conditional put per event, one checkpoint read and write per batch.
resource "aws_dynamodb_table" "claims" {
  name                        = "${local.prefix}-claims"
  billing_mode                = "PAY_PER_REQUEST"
  hash_key                    = "event_id"
  deletion_protection_enabled = local.is_prod

  attribute {
    name = "event_id"
    type = "S"
  }

  ttl {
    attribute_name = "expires_at"
    enabled        = true
  }

  point_in_time_recovery {
    enabled = true
  }

  server_side_encryption {
    enabled     = true
    kms_key_arn = aws_kms_key.data.arn
  }

  tags = local.tags
}

# Kinesis writes the failed batch's shard id and sequence-number range here (not the
# records): replay them from the stream, or from raw/ once they have aged out.
resource "aws_sqs_queue" "on_failure" {
  name                              = "${local.prefix}-dedup-enrich-on-failure"
  kms_master_key_id                 = aws_kms_key.data.arn
  kms_data_key_reuse_period_seconds = 300
  message_retention_seconds         = 1209600
  tags                              = local.tags
}

data "aws_iam_policy_document" "on_failure_queue" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [aws_sqs_queue.on_failure.arn]
    principals {
      type        = "*"
      identifiers = ["*"]
    }
    condition {
      test     = "Bool"
      variable = "aws:SecureTransport"
      values   = ["false"]
    }
  }
}

resource "aws_sqs_queue_policy" "on_failure" {
  queue_url = aws_sqs_queue.on_failure.id
  policy    = data.aws_iam_policy_document.on_failure_queue.json
}
