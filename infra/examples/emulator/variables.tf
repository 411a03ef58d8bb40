variable "endpoint" {
  description = "URL of the moto server every AWS call goes to, e.g. http://127.0.0.1:5000."
  type        = string
}

variable "region" {
  type    = string
  default = "us-east-1"
}

variable "stage" {
  description = "Part of every name; unique per run so that runs sharing one moto server do not collide."
  type        = string
  default     = "emu"
}

variable "shard_count" {
  type    = number
  default = 2
}

variable "lambda_zip_path" {
  description = "bootstrap.zip of dedup-enrich. The emulator stores it but does not run it (no Docker), so a host build is fine."
  type        = string
}

variable "ingest_zip_path" {
  description = "bootstrap.zip of ingest (a host build is fine, as for lambda_zip_path). Null reuses lambda_zip_path: moto only stores the code."
  type        = string
  default     = null
}
