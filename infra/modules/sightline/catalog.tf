resource "aws_glue_catalog_database" "this" {
  name        = "sightline_${var.stage}"
  description = "Sightline detections (deduplicated by dedup-enrich, enriched with Dataset B)."
}

# The output schema of infra/schema.json. Partition projection computes the
# partitions from the S3 layout, so no crawler or MSCK REPAIR is needed. The range
# holds every event_date the function can deliver: from arrival - MAX_EVENT_AGE_SECS
# (at most 366 days) to arrival + 1 day. The start is fixed, not NOW-<n>DAYS, which
# would hide older partitions the lake keeps (docs/deploy.md, "Partition projection").
resource "aws_glue_catalog_table" "events" {
  name          = "events"
  database_name = aws_glue_catalog_database.this.name
  description   = "One row per delivered event (Firehose may deliver a record twice; query events_dedup)."
  table_type    = "EXTERNAL_TABLE"

  parameters = {
    "classification"                      = "parquet"
    "EXTERNAL"                            = "TRUE"
    "parquet.compression"                 = "SNAPPY"
    "projection.enabled"                  = "true"
    "projection.event_date.type"          = "date"
    "projection.event_date.format"        = "yyyy-MM-dd"
    "projection.event_date.range"         = "2020-01-01,NOW+1DAYS"
    "projection.event_date.interval"      = "1"
    "projection.event_date.interval.unit" = "DAYS"
    "projection.event_hour.type"          = "integer"
    "projection.event_hour.range"         = "0,23"
    "projection.event_hour.digits"        = "2"
    "storage.location.template"           = "s3://${aws_s3_bucket.data["lake"].bucket}/events/event_date=$${event_date}/event_hour=$${event_hour}/"
  }

  partition_keys {
    name    = "event_date"
    type    = "string"
    comment = "UTC YYYY-MM-DD of timestamp_detected"
  }

  partition_keys {
    name    = "event_hour"
    type    = "string"
    comment = "UTC HH of timestamp_detected"
  }

  storage_descriptor {
    location      = "s3://${aws_s3_bucket.data["lake"].bucket}/events/"
    input_format  = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetInputFormat"
    output_format = "org.apache.hadoop.hive.ql.io.parquet.MapredParquetOutputFormat"

    ser_de_info {
      serialization_library = "org.apache.hadoop.hive.ql.io.parquet.serde.ParquetHiveSerDe"
    }

    columns {
      name    = "detection_oid"
      type    = "bigint"
      comment = "event id and dedup key"
    }
    columns {
      name = "video_camera_oid"
      type = "bigint"
    }
    columns {
      name = "geographical_location_oid"
      type = "bigint"
    }
    columns {
      name = "item_name"
      type = "string"
    }
    columns {
      name    = "timestamp_detected"
      type    = "bigint"
      comment = "epoch milliseconds"
    }
    columns {
      name    = "geographical_location"
      type    = "string"
      comment = "from Dataset B; null when the id is unknown"
    }
    columns {
      name    = "ingested_at"
      type    = "bigint"
      comment = "Kinesis arrival time in epoch milliseconds"
    }
    columns {
      name = "source_shard"
      type = "string"
    }
    columns {
      name = "source_sequence"
      type = "string"
    }
  }
}

locals {
  # infra/athena/dedup_view.sql's SELECT (tests/infra checks they are the same query).
  dedup_view_sql = <<-SQL
    SELECT detection_oid, video_camera_oid, geographical_location_oid, item_name,
    timestamp_detected, geographical_location, ingested_at, source_shard, source_sequence,
    event_date, event_hour FROM (SELECT detection_oid, video_camera_oid,
    geographical_location_oid, item_name, timestamp_detected, geographical_location,
    ingested_at, source_shard, source_sequence, event_date, event_hour, ROW_NUMBER() OVER
    (PARTITION BY event_date, event_hour, detection_oid ORDER BY ingested_at, source_sequence) AS copy_rank FROM
    events) AS ranked WHERE copy_rank = 1
  SQL

  # The view's columns: Glue (Hive) type for the catalog, Presto type for Athena.
  dedup_view_columns = [
    { name = "detection_oid", glue = "bigint", presto = "bigint" },
    { name = "video_camera_oid", glue = "bigint", presto = "bigint" },
    { name = "geographical_location_oid", glue = "bigint", presto = "bigint" },
    { name = "item_name", glue = "string", presto = "varchar" },
    { name = "timestamp_detected", glue = "bigint", presto = "bigint" },
    { name = "geographical_location", glue = "string", presto = "varchar" },
    { name = "ingested_at", glue = "bigint", presto = "bigint" },
    { name = "source_shard", glue = "string", presto = "varchar" },
    { name = "source_sequence", glue = "string", presto = "varchar" },
    { name = "event_date", glue = "string", presto = "varchar" },
    { name = "event_hour", glue = "string", presto = "varchar" },
  ]
}

# Athena stores a view as a Glue VIRTUAL_VIEW whose original text is the base64
# Presto view definition; creating it here means QuickSight and the dashboards have it
# right after apply. One encoding for every view (this one and rollups.tf's two).
locals {
  presto_views = {
    events_dedup       = { sql = local.dedup_view_sql, columns = local.dedup_view_columns }
    events_hourly_live = { sql = local.hourly_live_view_sql, columns = local.hourly_live_view_columns }
    events_dashboard   = { sql = local.dashboard_view_sql, columns = local.dashboard_view_columns }
  }
  presto_view_text = {
    for name, view in local.presto_views : name => "/* Presto View: ${base64encode(jsonencode({
      originalSql = replace(trimspace(view.sql), "\n", " ")
      catalog     = "awsdatacatalog"
      schema      = aws_glue_catalog_database.this.name
      columns     = [for c in view.columns : { name = c.name, type = c.presto }]
    }))} */"
  }
}

resource "aws_glue_catalog_table" "events_dedup" {
  name          = "events_dedup"
  database_name = aws_glue_catalog_database.this.name
  description   = "events with Firehose's redeliveries removed (first copy by ingested_at, source_sequence)."
  table_type    = "VIRTUAL_VIEW"

  parameters = {
    presto_view = "true"
    comment     = "Presto View"
  }

  view_expanded_text = "/* Presto View */"
  view_original_text = local.presto_view_text["events_dedup"]

  storage_descriptor {
    dynamic "columns" {
      for_each = local.dedup_view_columns
      content {
        name = columns.value.name
        type = columns.value.glue
      }
    }
  }

  depends_on = [aws_glue_catalog_table.events]
}

resource "aws_athena_workgroup" "this" {
  name          = local.prefix
  description   = "Sightline queries; result location, encryption and a scan limit are enforced."
  state         = "ENABLED"
  force_destroy = !local.is_prod

  configuration {
    enforce_workgroup_configuration    = true
    publish_cloudwatch_metrics_enabled = true
    bytes_scanned_cutoff_per_query     = var.athena_bytes_scanned_cutoff

    engine_version {
      selected_engine_version = "Athena engine version 3"
    }

    result_configuration {
      output_location = "s3://${aws_s3_bucket.data["athena"].bucket}/results/"

      encryption_configuration {
        encryption_option = "SSE_KMS"
        kms_key_arn       = aws_kms_key.data.arn
      }
    }
  }

  tags = local.tags
}
