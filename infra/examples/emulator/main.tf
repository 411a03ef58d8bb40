# The Sightline module applied to a moto server (scripts/tf-emulator-e2e.sh; see
# infra/README.md, "Apply to the emulator"). The same module as examples/complete,
# with the stream PROVISIONED so the test knows its shards.
module "sightline" {
  source = "../../modules/sightline"

  stage           = var.stage
  stream_mode     = "PROVISIONED"
  shard_count     = var.shard_count
  lambda_zip_path = var.lambda_zip_path
  # moto stores the zip and never runs it; without an ingest build, reuse the other.
  ingest_zip_path = coalesce(var.ingest_zip_path, var.lambda_zip_path)

  # Test stacks are torn down with their data.
  force_destroy = true
}
