# The front door, as template.yaml's IngestApi and IngestFunction: POST /events on an
# API Gateway HTTP API (payload format 2.0) -> the ingest function -> PutRecords to
# the events stream. Callers that cannot use the Kinesis API directly (cameras,
# gateways) send a JSON array or NDJSON of at most 500 events and 1 MiB; the function
# validates each event and forwards the valid ones. Contract: infra/schema.json,
# "ingest_function".

# ------------------------------------------------------------------ the function
resource "aws_cloudwatch_log_group" "ingest" {
  name              = "/aws/lambda/${local.prefix}-ingest"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
  tags              = local.tags
}

resource "aws_iam_role" "ingest" {
  name               = "${local.prefix}-ingest"
  assume_role_policy = data.aws_iam_policy_document.lambda_assume.json
  tags               = local.tags
}

data "aws_iam_policy_document" "ingest" {
  statement {
    sid       = "PutRecordsToTheEventsStream"
    actions   = ["kinesis:PutRecords", "kinesis:PutRecord"]
    resources = [aws_kinesis_stream.events.arn]
  }

  # The stream is encrypted with the data key: a producer needs GenerateDataKey on
  # it, and only through Kinesis.
  statement {
    sid       = "DataKeyForTheStream"
    actions   = ["kms:GenerateDataKey"]
    resources = [aws_kms_key.data.arn]
    condition {
      test     = "StringEquals"
      variable = "kms:ViaService"
      values   = ["kinesis.${local.region}.amazonaws.com"]
    }
  }

  statement {
    sid       = "Logs"
    actions   = ["logs:CreateLogStream", "logs:PutLogEvents"]
    resources = ["${aws_cloudwatch_log_group.ingest.arn}:*"]
  }

  statement {
    sid       = "XRayHasNoResourceLevelPermissions"
    actions   = ["xray:PutTraceSegments", "xray:PutTelemetryRecords"]
    resources = ["*"]
  }
}

resource "aws_iam_role_policy" "ingest" {
  name   = "ingest"
  role   = aws_iam_role.ingest.id
  policy = data.aws_iam_policy_document.ingest.json
}

resource "aws_lambda_function" "ingest" {
  #checkov:skip=CKV_AWS_116:Only API Gateway invokes it, synchronously; the caller gets every failure as an HTTP answer, so a DLQ (async invocations only) would never receive anything.
  #checkov:skip=CKV_AWS_117:The function only calls the public Kinesis API; a VPC would add NAT or endpoint cost and no isolation.
  #checkov:skip=CKV_AWS_115:The stage's throttling (ingest_throttling_rate_limit) bounds its concurrency; a reserved limit would be carved out of the account pool dedup-enrich shares and fails to apply in accounts with a low concurrency quota.
  #checkov:skip=CKV_AWS_272:Code signing needs an AWS Signer profile; the zip is built by cargo lambda in CI.
  function_name = "${local.prefix}-ingest"
  description   = "HTTP front door. Validates each event of a POST /events body and forwards the valid ones to Kinesis with PutRecords."
  role          = aws_iam_role.ingest.arn

  # From `cargo lambda build --release --arm64 --output-format zip` (binary `ingest`).
  filename         = var.ingest_zip_path
  source_code_hash = filebase64sha256(var.ingest_zip_path)
  handler          = "bootstrap"
  runtime          = "provided.al2023"
  architectures    = ["arm64"]

  # Memory and timeout: see template.yaml. In short, a request is at most 1 MiB and
  # 500 events, so 256 MB is CPU share, not memory; 15 s covers RETRY_MAX_ATTEMPTS (4)
  # x AWS_CALL_TIMEOUT_MS (3 s) plus back-off, with DEADLINE_RESERVE_MS (1 s) kept to
  # answer 503 + Retry-After, well under the HTTP API's 30 s integration timeout.
  memory_size = 256
  timeout     = 15
  kms_key_arn = aws_kms_key.data.arn

  tracing_config {
    mode = "Active"
  }

  logging_config {
    log_format = "Text"
    log_group  = aws_cloudwatch_log_group.ingest.name
  }

  # Exactly the ingest contract (infra/schema.json, "ingest_function").
  environment {
    variables = {
      STREAM_NAME         = aws_kinesis_stream.events.name
      RETRY_MAX_ATTEMPTS  = "4"
      DEADLINE_RESERVE_MS = "1000"
      AWS_CALL_TIMEOUT_MS = "3000"
      RUST_LOG            = var.rust_log
    }
  }

  depends_on = [aws_iam_role_policy.ingest]
  tags       = local.tags
}

# ------------------------------------------------------------------ the HTTP API
resource "aws_apigatewayv2_api" "ingest" {
  name          = "${local.prefix}-ingest"
  description   = "Sightline front door, POST /events (JSON array or NDJSON, at most 500 events and 1 MiB)."
  protocol_type = "HTTP"
  tags          = local.tags
}

resource "aws_apigatewayv2_integration" "ingest" {
  api_id                 = aws_apigatewayv2_api.ingest.id
  integration_type       = "AWS_PROXY"
  integration_method     = "POST"
  integration_uri        = aws_lambda_function.ingest.arn
  payload_format_version = "2.0"
  # The HTTP API maximum; the function (15 s) always answers first.
  timeout_milliseconds = 30000
}

# AWS_IAM by default: only SigV4-signed requests of principals allowed
# execute-api:Invoke on this route reach the function. ingest_authorization = "NONE"
# is for a gateway or an authorizer that authenticates instead (infra/README.md).
resource "aws_apigatewayv2_route" "ingest" {
  api_id             = aws_apigatewayv2_api.ingest.id
  route_key          = "POST /events"
  authorization_type = var.ingest_authorization
  target             = "integrations/${aws_apigatewayv2_integration.ingest.id}"
}

resource "aws_cloudwatch_log_group" "ingest_access" {
  name              = "/aws/apigateway/${local.prefix}-ingest-access"
  retention_in_days = var.log_retention_days
  kms_key_id        = aws_kms_key.data.arn
  tags              = local.tags
}

resource "aws_apigatewayv2_stage" "ingest" {
  api_id      = aws_apigatewayv2_api.ingest.id
  name        = "$default"
  auto_deploy = true

  default_route_settings {
    throttling_rate_limit    = var.ingest_throttling_rate_limit
    throttling_burst_limit   = var.ingest_throttling_burst_limit
    detailed_metrics_enabled = false
  }

  # One JSON line per request; userArn is the SigV4 caller under AWS_IAM.
  access_log_settings {
    destination_arn = aws_cloudwatch_log_group.ingest_access.arn
    format          = local.ingest_access_log_format
  }

  tags = local.tags
}

locals {
  # The same fields as template.yaml's IngestStage (jsonencode sorts them by name).
  ingest_access_log_format = jsonencode({
    requestId          = "$context.requestId"
    requestTime        = "$context.requestTime"
    sourceIp           = "$context.identity.sourceIp"
    userAgent          = "$context.identity.userAgent"
    userArn            = "$context.identity.userArn"
    routeKey           = "$context.routeKey"
    status             = "$context.status"
    protocol           = "$context.protocol"
    requestLength      = "$context.requestLength"
    responseLength     = "$context.responseLength"
    responseLatency    = "$context.responseLatency"
    integrationStatus  = "$context.integrationStatus"
    integrationLatency = "$context.integrationLatency"
    integrationError   = "$context.integrationErrorMessage"
    error              = "$context.error.message"
  })
}

resource "aws_lambda_permission" "ingest_api" {
  statement_id  = "AllowIngestApiInvoke"
  action        = "lambda:InvokeFunction"
  function_name = aws_lambda_function.ingest.function_name
  principal     = "apigateway.amazonaws.com"
  source_arn    = "${aws_apigatewayv2_api.ingest.execution_arn}/*/POST/events"
}

# What a producer's role or user needs under AWS_IAM: attach it (output
# ingest_invoke_policy_arn) and sign requests for the execute-api service.
data "aws_iam_policy_document" "ingest_invoke" {
  statement {
    sid       = "PostEvents"
    actions   = ["execute-api:Invoke"]
    resources = ["${aws_apigatewayv2_api.ingest.execution_arn}/$default/POST/events"]
  }
}

resource "aws_iam_policy" "ingest_invoke" {
  name        = "${local.prefix}-ingest-invoke"
  description = "Lets a producer POST /events to the Sightline front door (IAM authorization)."
  policy      = data.aws_iam_policy_document.ingest_invoke.json
  tags        = local.tags
}
