terraform {
  # The module needs 1.9 (cross-variable validation).
  required_version = ">= 1.9.0"

  # No backend block: state is local. For a shared deployment add an S3 backend
  # (bucket, key, use_lockfile = true) here.

  required_providers {
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.70, < 7.0"
    }
  }
}

provider "aws" {
  region = var.region

  default_tags {
    tags = {
      managed-by = "terraform"
    }
  }
}
