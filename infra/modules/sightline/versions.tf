terraform {
  # 1.9: validation conditions may refer to other variables (dedup_window_secs against
  # stream_retention_hours and max_record_age_in_seconds, and the like in variables.tf).
  required_version = ">= 1.9.0"

  required_providers {
    # Only hashicorp/aws: the machines that check this offline have a local mirror
    # of it (5.100.0) and nothing else. Everything here works on 5.70 to 6.x without
    # deprecated attributes (the region comes from data.aws_region's id: `name` is
    # deprecated in 6.0 and `region` does not exist before it).
    aws = {
      source  = "hashicorp/aws"
      version = ">= 5.70, < 7.0"
    }
  }
}
