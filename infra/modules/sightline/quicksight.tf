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

# On events_dashboard, DIRECT_QUERY: every visual queries Athena when it loads, so it
# shows events as soon as they land in the lake (the open hours are read live), and each
# query scans the small rollups plus at most 1.75 hours of raw events (docs/rollups.md).
# SPICE would cost one scan per refresh instead of one per load, but its data would be as
# old as its refresh interval (hourly at best on a schedule, 15 minutes with incremental
# refresh): the open hours, the point of the dashboard, would lag by that. camera_ids is
# left out (QuickSight has no array type); distinct cameras over a period come from
# top_locations.sql.
resource "aws_quicksight_data_set" "dashboard" {
  count          = local.quicksight_enabled ? 1 : 0
  aws_account_id = local.account_id
  data_set_id    = "${local.prefix}-dashboard"
  name           = "Sightline ${var.stage} detections (hourly rollups + live)"
  import_mode    = "DIRECT_QUERY"

  physical_table_map {
    physical_table_map_id = "eventsdashboard"
    relational_table {
      data_source_arn = aws_quicksight_data_source.athena[0].arn
      catalog         = "AwsDataCatalog"
      schema          = aws_glue_catalog_database.this.name
      name            = aws_glue_catalog_table.events_dashboard.name

      dynamic "input_columns" {
        for_each = [for c in local.dashboard_view_columns : c if c.name != "camera_ids"]
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
