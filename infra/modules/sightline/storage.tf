# Four data buckets share one shape (SSE-KMS with a bucket key, public access
# blocked, owner-enforced, versioned, TLS-only, access-logged); lifecycles differ.
#   lake        events/ (Parquet, Hive partitions), errors/ (Firehose failures)
#   quarantine  quarantine/dt=YYYY-MM-DD/... written by the function
#   raw         raw/ every stream record as the function received it (JSON lines, gzip)
#   athena      query results
locals {
  data_buckets = toset(["lake", "quarantine", "raw", "athena"])
}

resource "aws_s3_bucket" "data" {
  #checkov:skip=CKV_AWS_144:Single-region by design; raw/ is the replay source. Add cross-region replication per your DR policy.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object-created events; Athena reads the lake through partition projection.
  for_each = local.data_buckets
  bucket   = "${local.bucket_prefix}-${each.key}"
  # Query results are disposable (they expire after 7 days), so `terraform destroy`
  # empties the athena bucket instead of failing on it; the data buckets follow
  # force_destroy. (template.yaml retains all of them; docs/deploy.md, "Tear down".)
  force_destroy = each.key == "athena" ? true : var.force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_public_access_block" "data" {
  for_each                = local.data_buckets
  bucket                  = aws_s3_bucket.data[each.key].id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "data" {
  for_each = local.data_buckets
  bucket   = aws_s3_bucket.data[each.key].id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "data" {
  for_each = local.data_buckets
  bucket   = aws_s3_bucket.data[each.key].id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm     = "aws:kms"
      kms_master_key_id = aws_kms_key.data.arn
    }
    bucket_key_enabled = true
  }
}

resource "aws_s3_bucket_versioning" "data" {
  for_each = local.data_buckets
  bucket   = aws_s3_bucket.data[each.key].id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_logging" "data" {
  for_each      = local.data_buckets
  bucket        = aws_s3_bucket.data[each.key].id
  target_bucket = aws_s3_bucket.access_logs.id
  target_prefix = "${each.key}/"

  # The log bucket must grant the logging service first (moto refuses otherwise).
  depends_on = [aws_s3_bucket_policy.access_logs]
}

data "aws_iam_policy_document" "tls_only" {
  for_each = local.data_buckets
  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.data[each.key].arn, "${aws_s3_bucket.data[each.key].arn}/*"]
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

resource "aws_s3_bucket_policy" "data" {
  for_each = local.data_buckets
  bucket   = aws_s3_bucket.data[each.key].id
  policy   = data.aws_iam_policy_document.tls_only[each.key].json

  depends_on = [aws_s3_bucket_public_access_block.data]
}

resource "aws_s3_bucket_lifecycle_configuration" "lake" {
  bucket = aws_s3_bucket.data["lake"].id

  rule {
    id     = "events-to-intelligent-tiering"
    status = "Enabled"
    filter {
      prefix = "events/"
    }
    transition {
      days          = 30
      storage_class = "INTELLIGENT_TIERING"
    }
  }

  rule {
    id     = "expire-delivery-errors"
    status = "Enabled"
    filter {
      prefix = "errors/"
    }
    expiration {
      days = 30
    }
  }

  rule {
    id     = "housekeeping"
    status = "Enabled"
    filter {}
    expiration {
      expired_object_delete_marker = true
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "quarantine" {
  bucket = aws_s3_bucket.data["quarantine"].id

  rule {
    id     = "expire-quarantine"
    status = "Enabled"
    filter {
      prefix = local.quarantine_prefix
    }
    expiration {
      days = 90
    }
  }

  rule {
    id     = "housekeeping"
    status = "Enabled"
    filter {}
    expiration {
      expired_object_delete_marker = true
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "raw" {
  bucket = aws_s3_bucket.data["raw"].id

  rule {
    id     = "raw-archive"
    status = "Enabled"
    filter {
      prefix = "raw/"
    }
    transition {
      days          = 30
      storage_class = "GLACIER_IR"
    }
    expiration {
      days = 400
    }
  }

  rule {
    id     = "expire-delivery-errors"
    status = "Enabled"
    filter {
      prefix = "errors/"
    }
    expiration {
      days = 30
    }
  }

  rule {
    id     = "housekeeping"
    status = "Enabled"
    filter {}
    expiration {
      expired_object_delete_marker = true
    }
    noncurrent_version_expiration {
      noncurrent_days = 7
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "athena" {
  bucket = aws_s3_bucket.data["athena"].id

  rule {
    id     = "expire-query-results"
    status = "Enabled"
    filter {}
    expiration {
      days = 7
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  # A rule that expires after days cannot also expire delete markers.
  rule {
    id     = "expire-delete-markers"
    status = "Enabled"
    filter {}
    expiration {
      expired_object_delete_marker = true
    }
  }
}

# Server access logs of the data buckets. S3 log delivery cannot write to an SSE-KMS
# bucket, so this one alone uses SSE-S3.
resource "aws_s3_bucket" "access_logs" {
  #checkov:skip=CKV_AWS_18:This is the access-log target; logging it into itself would loop.
  #checkov:skip=CKV_AWS_145:S3 server access log delivery does not support SSE-KMS target buckets; SSE-S3 is used.
  #checkov:skip=CKV_AWS_144:Access logs stay in the region they describe.
  #checkov:skip=CKV2_AWS_62:Nothing consumes object-created events of the log bucket.
  bucket        = "${local.bucket_prefix}-logs"
  force_destroy = var.force_destroy
  tags          = local.tags
}

resource "aws_s3_bucket_public_access_block" "access_logs" {
  bucket                  = aws_s3_bucket.access_logs.id
  block_public_acls       = true
  block_public_policy     = true
  ignore_public_acls      = true
  restrict_public_buckets = true
}

resource "aws_s3_bucket_ownership_controls" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    object_ownership = "BucketOwnerEnforced"
  }
}

resource "aws_s3_bucket_server_side_encryption_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  rule {
    apply_server_side_encryption_by_default {
      sse_algorithm = "AES256"
    }
  }
}

resource "aws_s3_bucket_versioning" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id
  versioning_configuration {
    status = "Enabled"
  }
}

resource "aws_s3_bucket_lifecycle_configuration" "access_logs" {
  bucket = aws_s3_bucket.access_logs.id

  rule {
    id     = "expire-access-logs"
    status = "Enabled"
    filter {}
    expiration {
      days = 90
    }
    noncurrent_version_expiration {
      noncurrent_days = 1
    }
    abort_incomplete_multipart_upload {
      days_after_initiation = 1
    }
  }

  rule {
    id     = "expire-delete-markers"
    status = "Enabled"
    filter {}
    expiration {
      expired_object_delete_marker = true
    }
  }
}

data "aws_iam_policy_document" "access_logs" {
  # The log-delivery grant comes first: moto's PutBucketLogging check reads the
  # statements in order and fails on a "*" principal before it finds this one.
  statement {
    sid       = "S3ServerAccessLogDelivery"
    actions   = ["s3:PutObject"]
    resources = ["${aws_s3_bucket.access_logs.arn}/*"]
    principals {
      type        = "Service"
      identifiers = ["logging.s3.amazonaws.com"]
    }
    condition {
      test     = "StringEquals"
      variable = "aws:SourceAccount"
      values   = [local.account_id]
    }
    # Only for this stack's data buckets.
    condition {
      test     = "ArnLike"
      variable = "aws:SourceArn"
      values   = [for name in sort(tolist(local.data_buckets)) : "arn:${local.partition}:s3:::${local.bucket_prefix}-${name}"]
    }
  }

  statement {
    sid       = "DenyInsecureTransport"
    effect    = "Deny"
    actions   = ["s3:*"]
    resources = [aws_s3_bucket.access_logs.arn, "${aws_s3_bucket.access_logs.arn}/*"]
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

resource "aws_s3_bucket_policy" "access_logs" {
  bucket     = aws_s3_bucket.access_logs.id
  policy     = data.aws_iam_policy_document.access_logs.json
  depends_on = [aws_s3_bucket_public_access_block.access_logs]
}
