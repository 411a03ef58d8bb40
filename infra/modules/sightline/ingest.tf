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
# On-demand: a new table is warm for 4,000 writes/s only. hashicorp/aws added
# warm_throughput in 6.13 and this module supports 5.70 on, so the
# claim_table_prewarm_command output is the one-off command that pre-warms it
# (docs/deploy.md).
# Provisioned: claim_table_write_units WCU to start with, auto scaling below.
resource "aws_dynamodb_table" "claims" {
  name                        = "${local.prefix}-claims"
  billing_mode                = var.claim_table_billing_mode
  hash_key                    = "event_id"
  deletion_protection_enabled = local.is_prod

  # Reads are one checkpoint per batch (about one per shard per second).
  read_capacity  = local.claims_provisioned ? 50 : null
  write_capacity = local.claims_provisioned ? var.claim_table_write_units : null

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

  # Auto scaling moves the provisioned capacity; its minimum follows
  # claim_table_write_units.
  lifecycle {
    ignore_changes = [read_capacity, write_capacity]
  }

  tags = local.tags
}

locals {
  claims_provisioned = var.claim_table_billing_mode == "PROVISIONED"
}

# Provisioned claims only: target tracking at 70 % utilisation (Application Auto
# Scaling's service-linked role for DynamoDB, as in template.yaml).
resource "aws_appautoscaling_target" "claims_write" {
  count              = local.claims_provisioned ? 1 : 0
  service_namespace  = "dynamodb"
  resource_id        = "table/${aws_dynamodb_table.claims.name}"
  scalable_dimension = "dynamodb:table:WriteCapacityUnits"
  min_capacity       = var.claim_table_write_units
  max_capacity       = var.claim_table_max_write_units
}

resource "aws_appautoscaling_policy" "claims_write" {
  count              = local.claims_provisioned ? 1 : 0
  name               = "${local.prefix}-claims-write"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.claims_write[0].service_namespace
  resource_id        = aws_appautoscaling_target.claims_write[0].resource_id
  scalable_dimension = aws_appautoscaling_target.claims_write[0].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value = 70
    predefined_metric_specification {
      predefined_metric_type = "DynamoDBWriteCapacityUtilization"
    }
  }
}

resource "aws_appautoscaling_target" "claims_read" {
  count              = local.claims_provisioned ? 1 : 0
  service_namespace  = "dynamodb"
  resource_id        = "table/${aws_dynamodb_table.claims.name}"
  scalable_dimension = "dynamodb:table:ReadCapacityUnits"
  min_capacity       = 50
  max_capacity       = 4000
}

resource "aws_appautoscaling_policy" "claims_read" {
  count              = local.claims_provisioned ? 1 : 0
  name               = "${local.prefix}-claims-read"
  policy_type        = "TargetTrackingScaling"
  service_namespace  = aws_appautoscaling_target.claims_read[0].service_namespace
  resource_id        = aws_appautoscaling_target.claims_read[0].resource_id
  scalable_dimension = aws_appautoscaling_target.claims_read[0].scalable_dimension

  target_tracking_scaling_policy_configuration {
    target_value = 70
    predefined_metric_specification {
      predefined_metric_type = "DynamoDBReadCapacityUtilization"
    }
  }
}

# Kinesis writes the failed batch's shard id and sequence-number range here (not the
# records): replay them from the stream, or from raw/ once they have aged out. Its
# policy is set as it is created, so it never exists without it (a separate
# aws_sqs_queue_policy would also wait out a second round of the provider's
# attribute-propagation reads, six 5 s apart, on apply and on destroy).
resource "aws_sqs_queue" "on_failure" {
  name                              = local.on_failure_queue_name
  kms_master_key_id                 = aws_kms_key.data.arn
  kms_data_key_reuse_period_seconds = 300
  message_retention_seconds         = 1209600
  policy                            = data.aws_iam_policy_document.on_failure_queue.json
  tags                              = local.tags
}

locals {
  on_failure_queue_name = "${local.prefix}-dedup-enrich-on-failure"
  # Built, not read from the queue: its policy is part of its creation.
  on_failure_queue_arn = "arn:${local.partition}:sqs:${local.region}:${local.account_id}:${local.on_failure_queue_name}"
}

data "aws_iam_policy_document" "on_failure_queue" {
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["sqs:*"]
    resources = [local.on_failure_queue_arn]
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
