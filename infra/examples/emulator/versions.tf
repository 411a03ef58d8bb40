terraform {
  # The module needs 1.9 (cross-variable validation).
  required_version = ">= 1.9.0"

  # No backend block: scripts/tf-emulator-e2e.sh keeps the state in a temporary
  # directory (-state), one per run.

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.70, < 7.0"
    }
  }
}

# Every call goes to the emulator: moto's dummy credentials, no credential check and
# no instance-metadata lookup, path-style S3 (moto serves every bucket on one host).
# The account id is still requested, from moto's STS (123456789012): with
# skip_requesting_account_id the provider builds some ARNs without an account (the
# Athena workgroup's), and moto refuses those in ListTagsForResource.
provider "aws" {
  region                      = var.region
  access_key                  = "test"
  secret_key                  = "test"
  skip_credentials_validation = true
  skip_metadata_api_check     = true
  skip_region_validation      = true
  s3_use_path_style           = true

  endpoints {
    apigatewayv2 = var.endpoint
    athena       = var.endpoint
    cloudwatch   = var.endpoint
    dynamodb     = var.endpoint
    firehose     = var.endpoint
    glue         = var.endpoint
    iam          = var.endpoint
    kinesis      = var.endpoint
    kms          = var.endpoint
    lambda       = var.endpoint
    logs         = var.endpoint
    quicksight   = var.endpoint
    s3           = var.endpoint
    scheduler    = var.endpoint
    sfn          = var.endpoint
    sns          = var.endpoint
    sqs          = var.endpoint
    sts          = var.endpoint
  }

  default_tags {
    tags = {
      managed-by = "terraform"
    }
  }
}
