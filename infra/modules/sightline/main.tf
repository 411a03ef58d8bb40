# Sightline, the same stack as template.yaml: Kinesis -> dedup-enrich -> Firehose
# (de-aggregate, partition, Parquet) -> S3 -> Glue (partition projection) -> Athena
# -> QuickSight (opt-in), plus the raw archive. Contract: infra/schema.json.

data "aws_caller_identity" "current" {}
data "aws_partition" "current" {}
data "aws_region" "current" {}

locals {
  prefix     = "sightline-${var.stage}"
  account_id = data.aws_caller_identity.current.account_id
  partition  = data.aws_partition.current.partition
  # `id` is the region name on every provider version allowed (versions.tf).
  region = data.aws_region.current.id

  # Bucket names: <prefix>-<account>-<region>-<role>, at most 61 characters.
  bucket_prefix = "${local.prefix}-${local.account_id}-${local.region}"

  # The function's EMF namespace; the alarms and the dashboard read it.
  metrics_namespace = "Sightline"
  quarantine_prefix = "quarantine/"

  quicksight_enabled = var.enable_quicksight && var.quicksight_principal_arn != ""
  is_prod            = var.stage == "prod"

  tags = merge({ project = "sightline", stage = var.stage }, var.tags)
}

# One customer-managed key for the stack's data at rest. Roles get kms: actions on
# this key only; the key policy lets the account administer it through IAM and lets
# CloudWatch Logs and CloudWatch alarms (SNS) use it.
data "aws_iam_policy_document" "data_key" {
  #checkov:skip=CKV_AWS_111:A key policy is attached to one key; "*" as its resource means that key only.
  #checkov:skip=CKV_AWS_356:A key policy is attached to one key; "*" as its resource means that key only.
  #checkov:skip=CKV_AWS_109:The account-root statement is the standard key-administration grant through IAM; "*" means this key only.
  statement {
    sid       = "AccountAdministersKeyThroughIam"
    actions   = ["kms:*"]
    resources = ["*"]
    principals {
      type        = "AWS"
      identifiers = ["arn:${local.partition}:iam::${local.account_id}:root"]
    }
  }

  statement {
    sid       = "CloudWatchLogsEncryptsThisStacksLogGroups"
    actions   = ["kms:Encrypt*", "kms:Decrypt*", "kms:ReEncrypt*", "kms:GenerateDataKey*", "kms:Describe*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["logs.${local.region}.amazonaws.com"]
    }
    condition {
      test     = "ArnLike"
      variable = "kms:EncryptionContext:aws:logs:arn"
      values   = ["arn:${local.partition}:logs:${local.region}:${local.account_id}:log-group:*"]
    }
  }

  statement {
    sid       = "CloudWatchAlarmsPublishToTheEncryptedTopic"
    actions   = ["kms:Decrypt", "kms:GenerateDataKey*"]
    resources = ["*"]
    principals {
      type        = "Service"
      identifiers = ["cloudwatch.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
  }

  dynamic "statement" {
    for_each = local.quicksight_enabled ? [1] : []
    content {
      sid       = "QuickSightReadsTheLakeAndWritesAthenaResults"
      actions   = ["kms:Decrypt", "kms:GenerateDataKey"]
      resources = ["*"]
      principals {
        type        = "AWS"
        identifiers = ["arn:${local.partition}:iam::${local.account_id}:role/${var.quicksight_service_role_name}"]
      }
    }
  }
}

resource "aws_kms_key" "data" {
  description             = "Sightline ${var.stage} data key"
  enable_key_rotation     = true
  deletion_window_in_days = 30
  policy                  = data.aws_iam_policy_document.data_key.json
  tags                    = local.tags
}

resource "aws_kms_alias" "data" {
  name          = "alias/${local.prefix}"
  target_key_id = aws_kms_key.data.key_id
}
