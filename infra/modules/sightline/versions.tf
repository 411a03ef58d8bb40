terraform {
  required_version = ">= 1.5.0"

  required_providers {
    # Only hashicorp/aws: the machines that check this offline have a local mirror
    # of it (5.100.0) and nothing else.
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.70, < 7.0"
    }
  }
}
