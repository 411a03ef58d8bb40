# Opt-in: needs a QuickSight Enterprise subscription, and QuickSight's service role
# must be allowed to read the lake and athena buckets (QuickSight admin, "Security &
# permissions"); the data key's policy already lets that role decrypt.
resource "aws_quicksight_data_source" "athena" {
  count          = local.quicksight_enabled ? 1 : 0
  aws_account_id = local.account_id
  data_source_id = "${local.prefix}-athena"
  name           = "Sightline ${var.stage} (Athena)"
  type           = "ATHENA"

  parameters {
    athena {
      work_group = aws_athena_workgroup.this.name
    }
  }

  ssl_properties {
    disable_ssl = false
  }

  permission {
    principal = var.quicksight_principal_arn
    actions = [
      "quicksight:DescribeDataSource",
      "quicksight:DescribeDataSourcePermissions",
      "quicksight:PassDataSource",
      "quicksight:UpdateDataSource",
      "quicksight:DeleteDataSource",
      "quicksight:UpdateDataSourcePermissions",
    ]
  }

  tags = local.tags
}

resource "aws_quicksight_data_set" "events_dedup" {
  count          = local.quicksight_enabled ? 1 : 0
  aws_account_id = local.account_id
  data_set_id    = "${local.prefix}-events-dedup"
  name           = "Sightline ${var.stage} detections (deduplicated)"

  # Every visual queries Athena live: freshness is the lake's, no SPICE refresh.
  import_mode = "DIRECT_QUERY"

  physical_table_map {
    physical_table_map_id = "eventsdedup"
    relational_table {
      data_source_arn = aws_quicksight_data_source.athena[0].arn
      catalog         = "AwsDataCatalog"
      schema          = aws_glue_catalog_database.this.name
      name            = aws_glue_catalog_table.events_dedup.name

      dynamic "input_columns" {
        for_each = local.dedup_view_columns
        content {
          name = input_columns.value.name
          type = input_columns.value.glue == "bigint" ? "INTEGER" : "STRING"
        }
      }
    }
  }

  permissions {
    principal = var.quicksight_principal_arn
    actions = [
      "quicksight:DescribeDataSet",
      "quicksight:DescribeDataSetPermissions",
      "quicksight:PassDataSet",
      "quicksight:DescribeIngestion",
      "quicksight:ListIngestions",
      "quicksight:UpdateDataSet",
      "quicksight:DeleteDataSet",
      "quicksight:CreateIngestion",
      "quicksight:CancelIngestion",
      "quicksight:UpdateDataSetPermissions",
    ]
  }

  tags = local.tags
}
