"""Issue 15 (hourly rollups): both definitions deploy the same rollup table, views, job,
schedule, permissions and alarms, and they agree with the SQL in infra/athena and with
the local rules (shared/sql/src/rollup.rs).

Checked: the rollup job's SQL and the two views' SELECTs in template.yaml and the
Terraform module are the files' queries; the views' columns (Glue and Presto types) are
the SELECTs' aliases, in both; the rollup table projects its partitions like the events
table, in the Hive layout Athena writes; the state machine definitions are the same
(after their placeholders), lock, delete, then INSERT with the hour as the two execution
parameters, and retry a failed INSERT from the delete; the schedule's minute, the state
machine's plan, the dashboard view's switch and the Rust constants are one rule, and the
lateness covers Firehose's largest buffer; the job's role is scoped; both alarms exist
in both; QuickSight reads the dashboard view; the workgroup's scan limit is the one
docs/rollups.md derives; the emulator root points Step Functions and Scheduler at moto.
"""

from __future__ import annotations

import ast
import json
import re

import pytest
import sqlglot

from conftest import ATHENA, ROOT, one

# ------------------------------------------------------------------ helpers


def props(template, logical_id):
    return template["Resources"][logical_id]["Properties"]


def canonical(sql: str) -> str:
    return sqlglot.parse_one(sql, read="trino").sql(dialect="trino", comments=False)


def file_query(name: str) -> str:
    """The file's statement; for a CREATE VIEW, its SELECT."""
    statement = sqlglot.parse_one((ATHENA / name).read_text(), read="trino")
    if isinstance(statement, sqlglot.exp.Create):
        return statement.expression.sql(dialect="trino", comments=False)
    return statement.sql(dialect="trino", comments=False)


def file_aliases(name: str) -> list[str]:
    select = sqlglot.parse_one((ATHENA / name).read_text(), read="trino").expression
    if isinstance(select, sqlglot.exp.Union):
        select = select.left
    return [e.alias_or_name for e in select.expressions]


def sam_view(template, logical_id):
    text = props(template, logical_id)["TableInput"]["ViewOriginalText"]
    parts = text["Fn::Join"][1]
    assert parts[0] == "/* Presto View: " and parts[2] == " */"
    body, variables = parts[1]["Fn::Base64"]["Fn::Sub"]
    definition = json.loads(body.replace("${GlueDatabase}", "sightline_dev").replace("${Sql}", "SQL"))
    return definition, variables["Sql"]


def tf_definition(tf):
    return tf.locals["rollup_definition"]


def sam_definition(template):
    return props(template, "RollupStateMachine")["Definition"]


# TF interpolations -> SAM DefinitionSubstitutions, and HCL's escaped quotes.
TF_TO_SAM = {
    "${aws_dynamodb_table.claims.name}": "${ClaimTable}",
    '${aws_s3_bucket.data["lake"].bucket}': "${LakeBucket}",
    "${aws_glue_catalog_database.this.name}": "${GlueDatabase}",
    "${aws_athena_workgroup.this.name}": "${AthenaWorkGroup}",
    "arn:${local.partition}:": "arn:aws:",
    "${local.rollup_prefix}": "rollups/events_hourly/",
    '\\"': '"',
}


def normalized(value, tf_locals):
    if isinstance(value, dict):
        return {k: normalized(v, tf_locals) for k, v in value.items()}
    if isinstance(value, list):
        return [normalized(v, tf_locals) for v in value]
    if isinstance(value, str):
        if "local.rollup_job_sql" in value:
            return canonical(tf_locals["rollup_job_sql"])
        for a, b in TF_TO_SAM.items():
            value = value.replace(a, b)
    return value


def states(definition):
    return definition["States"]["RollUpEachHour"]["ItemProcessor"]["States"]


# ------------------------------------------------------------------ SQL everywhere


def test_the_job_and_the_views_are_the_files_queries_in_both_definitions(template, tf):
    job = file_query("rollup_job.sql")
    assert canonical(states(sam_definition(template))["InsertHour"]["Arguments"]["QueryString"]) == job
    assert canonical(tf.locals["rollup_job_sql"]) == job
    for logical_id, local, name in [
        ("EventsHourlyLiveView", "hourly_live_view_sql", "hourly_live_view.sql"),
        ("EventsDashboardView", "dashboard_view_sql", "dashboard_view.sql"),
    ]:
        _, sam_sql = sam_view(template, logical_id)
        assert canonical(sam_sql) == file_query(name), f"template.yaml {logical_id} differs from {name}"
        assert canonical(tf.locals[local]) == file_query(name), f"rollups.tf {local} differs from {name}"


def expand_concat(tf, expression: str) -> list[dict]:
    """`${concat(local.a,[{...}],local.b)}` (as hcl2 renders it) -> the list it builds."""
    match = re.fullmatch(r"\$\{concat\((.*)\)\}", expression, re.S)
    assert match, expression
    out = []
    for part in re.findall(r"local\.[a-z_]+|\[\{.*?\}\]", match.group(1)):
        if part.startswith("local."):
            out += tf.locals[part.removeprefix("local.")]
        else:
            out += ast.literal_eval(part)
    return out


GLUE_TO_PRESTO = {"bigint": "bigint", "string": "varchar", "array<bigint>": "array(bigint)"}


@pytest.mark.parametrize(
    "logical_id,local,name",
    [
        ("EventsHourlyLiveView", "hourly_live_view_columns", "hourly_live_view.sql"),
        ("EventsDashboardView", "dashboard_view_columns", "dashboard_view.sql"),
    ],
)
def test_view_columns_are_the_selects_aliases_with_the_same_types(template, tf, logical_id, local, name):
    aliases = file_aliases(name)
    sam_columns = [(c["Name"], c["Type"]) for c in props(template, logical_id)["TableInput"]["StorageDescriptor"]["Columns"]]
    assert [n for n, _ in sam_columns] == aliases
    definition, _ = sam_view(template, logical_id)
    assert [(c["name"], c["type"]) for c in definition["columns"]] == [(n, GLUE_TO_PRESTO[t]) for n, t in sam_columns]
    tf_columns = expand_concat(tf, tf.locals[local])
    assert [(c["name"], c["glue"]) for c in tf_columns] == sam_columns
    assert [(c["name"], c["presto"]) for c in tf_columns] == [(n, GLUE_TO_PRESTO[t]) for n, t in sam_columns]


def test_the_rollup_table_holds_the_jobs_columns_and_projects_like_the_events_table(template, tf):
    job_columns = file_aliases("rollup_job.sql")
    sam = props(template, "EventsHourlyTable")["TableInput"]
    assert [c["Name"] for c in sam["StorageDescriptor"]["Columns"]] + [k["Name"] for k in sam["PartitionKeys"]] == job_columns
    events = props(template, "EventsTable")["TableInput"]
    for key, value in events["Parameters"].items():
        if key != "storage.location.template":
            assert sam["Parameters"][key] == value, key
    assert sam["Parameters"]["storage.location.template"] == {
        "Fn::Sub": "s3://${LakeBucket}/rollups/events_hourly/event_date=${!event_date}/event_hour=${!event_hour}/"
    }
    assert sam["StorageDescriptor"]["Location"] == {"Fn::Sub": "s3://${LakeBucket}/rollups/events_hourly/"}

    table = tf.resource("aws_glue_catalog_table", "events_hourly")
    tf_events = one(tf.resource("aws_glue_catalog_table", "events")["parameters"])
    params = one(table["parameters"])
    for key, value in tf_events.items():
        if key != "storage.location.template":
            assert params[key] == value, key
    # The Hive layout (root/event_date=${...}/event_hour=${...}/) is what Athena's
    # INSERT INTO writes into a projected table.
    assert params["storage.location.template"].endswith('${local.rollup_prefix}event_date=$${event_date}/event_hour=$${event_hour}/"}')
    assert tf.locals["rollup_prefix"] == "rollups/events_hourly/"
    assert [c["name"] for c in tf.locals["rollup_columns"]] + ["event_date", "event_hour"] == job_columns


# ------------------------------------------------------------------ the state machine


def test_both_state_machines_have_the_same_definition(template, tf):
    assert normalized(tf_definition(tf), tf.locals) == normalized(sam_definition(template), {})
    sam = props(template, "RollupStateMachine")
    assert sam["DefinitionSubstitutions"] == {
        "ClaimTable": {"Ref": "ClaimTable"},
        "LakeBucket": {"Ref": "LakeBucket"},
        "GlueDatabase": {"Ref": "GlueDatabase"},
        "AthenaWorkGroup": {"Ref": "AthenaWorkGroup"},
    }
    assert one(tf.resource("aws_sfn_state_machine", "rollup")["definition"]) == "${jsonencode(local.rollup_definition)}"


def test_an_hour_is_locked_then_deleted_then_inserted_then_released(template):
    flow = states(sam_definition(template))
    assert flow["TakeHourLock"]["Resource"].endswith("dynamodb:putItem")
    assert flow["TakeHourLock"]["Arguments"]["ConditionExpression"] == "attribute_not_exists(event_id) OR expires_at < :now"
    assert "'rollup#'" in flow["TakeHourLock"]["Arguments"]["Item"]["event_id"]["S"]
    assert flow["TakeHourLock"]["Next"] == "ListPreviousRollup"
    assert flow["ListPreviousRollup"]["Next"] == "AnyPreviousRollup"
    assert flow["AnyPreviousRollup"]["Choices"][0]["Next"] == "DeletePreviousRollup"
    assert flow["AnyPreviousRollup"]["Default"] == "InsertHour"
    # Deleted until nothing is listed, then the INSERT.
    assert flow["DeletedEverything"]["Choices"][0]["Next"] == "ListPreviousRollup"
    insert = flow["InsertHour"]
    assert insert["Resource"] == "arn:aws:states:::athena:startQueryExecution.sync"
    assert insert["Arguments"]["ExecutionParameters"] == ["{% \"'\" & $event_date & \"'\" %}", "{% \"'\" & $event_hour & \"'\" %}"]
    assert insert["Next"] == "ReleaseHourLock"
    # A failed INSERT may have written part of the hour: it is retried from the delete,
    # never appended to, and has no Retry of its own.
    assert "Retry" not in insert
    assert insert["Catch"][0]["Next"] == "InsertFailed"
    assert flow["InsertFailed"]["Choices"][0]["Next"] == "WaitBeforeRetry"
    assert flow["WaitBeforeRetry"]["Next"] == "ListPreviousRollup"
    # Released only by its owner, also after a failure.
    for release in ("ReleaseHourLock", "ReleaseAfterFailure"):
        assert flow[release]["Arguments"]["ConditionExpression"] == "#owner = :me"
    assert flow["ReleaseAfterFailure"]["Next"] == "HourFailed"
    assert flow["HourFailed"]["Type"] == "Fail"
    # Hours one at a time, within one execution.
    assert sam_definition(template)["States"]["RollUpEachHour"]["MaxConcurrency"] == 1


def rust_constant(name: str) -> int:
    text = (ROOT / "shared" / "sql" / "src" / "rollup.rs").read_text()
    match = re.search(rf"pub const {name}: i64 = (\d+);", text)
    assert match, name
    return int(match.group(1))


def test_the_schedule_the_plan_the_view_and_the_local_rules_are_one_rule(template, tf):
    lateness = rust_constant("LATENESS_MINUTES")
    recheck = rust_constant("RECHECK_HOURS")
    switch = rust_constant("DASHBOARD_SWITCH_MINUTES")
    cron = f"cron({lateness} * * * ? *)"
    assert props(template, "RollupSchedule")["ScheduleExpression"] == cron
    assert tf.locals["rollup_schedule"] == cron
    assert one(tf.resource("aws_scheduler_schedule", "rollup")["schedule_expression"]) == "${local.rollup_schedule}"
    for plan in (sam_definition(template), tf_definition(tf)):
        hours = plan["States"]["PlanHours"]["Output"]["hours"]
        assert f"- {lateness * 60_000})" in hours, "the hour that closed at the scheduled time"
        assert f"$closed - {recheck * 3_600_000}]" in hours, "and the re-checked one"
    view = (ATHENA / "dashboard_view.sql").read_text()
    assert view.count(f"INTERVAL '{switch}' MINUTE") == 3
    # The job writes an hour before the view reads it from the rollups, with room for the job.
    assert switch - lateness >= 15
    # The lateness covers Firehose's largest buffer (dynamic partitioning: up to 1.5 x the interval).
    assert 1.5 * template["Parameters"]["FirehoseBufferIntervalSeconds"]["MaxValue"] <= lateness * 60


def test_the_schedule_passes_only_its_scheduled_time(template, tf):
    sam = props(template, "RollupSchedule")
    assert sam["FlexibleTimeWindow"] == {"Mode": "OFF"}
    assert sam["ScheduleExpressionTimezone"] == "UTC"
    assert json.loads(sam["Target"]["Input"]) == {"scheduled_time": "<aws.scheduler.scheduled-time>"}
    assert sam["Target"]["Arn"] == {"Ref": "RollupStateMachine"}
    schedule = tf.resource("aws_scheduler_schedule", "rollup")
    target = one(schedule["target"])
    assert one(target["input"]).replace("'", '"') == '${jsonencode({"scheduled_time": "<aws.scheduler.scheduled-time>"})}'
    assert one(one(schedule["flexible_time_window"])["mode"]) == "OFF"
    assert one(schedule["schedule_expression_timezone"]) == "UTC"


def test_the_jobs_role_takes_only_rollup_locks_and_writes_only_rollups(template, tf):
    statements = {s["Sid"]: s for s in props(template, "RollupRole")["Policies"][0]["PolicyDocument"]["Statement"]}
    lock = statements["HourLockInTheClaimTable"]
    assert lock["Condition"] == {"ForAllValues:StringLike": {"dynamodb:LeadingKeys": ["rollup#*"]}}
    assert sorted(lock["Action"]) == ["dynamodb:DeleteItem", "dynamodb:PutItem"]
    assert statements["RewriteRollups"]["Resource"] == {"Fn::Sub": "${LakeBucket.Arn}/rollups/events_hourly/*"}
    writes = [s for s in statements.values() if any(a in ("s3:PutObject", "s3:DeleteObject") for a in s["Action"] if isinstance(s["Action"], list))]
    assert {s["Sid"] for s in writes} == {"RewriteRollups", "AthenaResults"}

    tf_statements = {one(s["sid"]): s for s in tf.data[("aws_iam_policy_document", "rollup")]["statement"]}
    tf_lock = tf_statements["HourLockInTheClaimTable"]
    condition = one(tf_lock["condition"])
    assert (one(condition["test"]), one(condition["variable"]), one(condition["values"])) == (
        "ForAllValues:StringLike", "dynamodb:LeadingKeys", ["rollup#*"])
    assert set(tf_statements) == set(statements)
    schedule_role = props(template, "RollupScheduleRole")["Policies"][0]["PolicyDocument"]["Statement"]
    assert schedule_role == [{"Sid": "StartTheRollup", "Effect": "Allow", "Action": "states:StartExecution", "Resource": {"Ref": "RollupStateMachine"}}]


def test_the_state_machine_logs_and_traces_like_the_rest_of_the_stack(template, tf):
    sam = props(template, "RollupStateMachine")
    assert sam["LoggingConfiguration"]["Level"] == "ALL" and sam["TracingConfiguration"] == {"Enabled": True}
    assert props(template, "RollupLogGroup")["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    machine = tf.resource("aws_sfn_state_machine", "rollup")
    assert one(one(machine["logging_configuration"])["level"]) == "ALL"
    assert one(one(machine["tracing_configuration"])["enabled"]) is True
    assert one(tf.resource("aws_cloudwatch_log_group", "rollup")["kms_key_id"]) == "${aws_kms_key.data.arn}"


def test_a_failed_or_missing_rollup_alarms_in_both(template, tf):
    failed = props(template, "RollupFailedAlarm")
    metrics = {m["Id"]: m for m in failed["Metrics"]}
    assert {m["MetricStat"]["Metric"]["MetricName"] for m in metrics.values() if "MetricStat" in m} == {
        "ExecutionsFailed", "ExecutionsTimedOut", "ExecutionsAborted"}
    for m in metrics.values():
        if "MetricStat" in m:
            assert m["MetricStat"]["Metric"]["Dimensions"] == [{"Name": "StateMachineArn", "Value": {"Ref": "RollupStateMachine"}}]
    stale = props(template, "RollupStaleAlarm")
    assert (stale["MetricName"], stale["ComparisonOperator"], stale["TreatMissingData"]) == ("ExecutionsSucceeded", "LessThanThreshold", "breaching")
    for alarm in (failed, stale):
        assert alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]

    tf_failed = tf.resource("aws_cloudwatch_metric_alarm", "rollup_failed")
    assert "ExecutionsTimedOut" in json.dumps(tf_failed)
    tf_stale = tf.resource("aws_cloudwatch_metric_alarm", "rollup_stale")
    assert (one(tf_stale["metric_name"]), one(tf_stale["treat_missing_data"])) == ("ExecutionsSucceeded", "breaching")


# ------------------------------------------------------------------ QuickSight, the workgroup, the emulator


def test_quicksight_reads_every_scalar_column_of_the_dashboard_view(template, tf):
    table = props(template, "QuickSightDataSet")["PhysicalTableMap"]["eventsdashboard"]["RelationalTable"]
    assert table["Name"] == {"Ref": "EventsDashboardView"}
    view = [(c["Name"], c["Type"]) for c in props(template, "EventsDashboardView")["TableInput"]["StorageDescriptor"]["Columns"]]
    quick = {"bigint": "INTEGER", "string": "STRING"}
    # QuickSight has no array type: camera_ids stays in Athena (top_locations.sql).
    assert [(c["Name"], c["Type"]) for c in table["InputColumns"]] == [(n, quick[t]) for n, t in view if t in quick]
    dataset = tf.resource("aws_quicksight_data_set", "dashboard")
    text = json.dumps(dataset)
    assert "local.dashboard_view_columns" in text and 'c.name != \\"camera_ids\\"' in text


def documented_scan_limit() -> int:
    text = (ROOT / "docs" / "rollups.md").read_text()
    match = re.search(r"`AthenaBytesScannedCutoff` = ([0-9,]+)", text)
    assert match, "docs/rollups.md states the workgroup's scan limit as `AthenaBytesScannedCutoff` = <bytes>"
    return int(match.group(1).replace(",", ""))


def test_the_workgroup_scan_limit_is_the_one_the_scan_figures_derive(template, tf):
    limit = documented_scan_limit()
    assert template["Parameters"]["AthenaBytesScannedCutoff"]["Default"] == limit
    assert int(one(tf.variables["athena_bytes_scanned_cutoff"]["default"])) == limit


def test_the_emulator_root_points_step_functions_and_scheduler_at_moto():
    text = (ROOT / "infra" / "examples" / "emulator" / "versions.tf").read_text()
    for service in ("sfn", "scheduler"):
        assert re.search(rf"\b{service}\s*=\s*var\.endpoint", text), service


def test_outputs_name_the_job_and_the_view(template, tf):
    for sam, tf_name in [("RollupStateMachineArn", "rollup_state_machine_arn"), ("RollupTableName", "rollup_table_name"),
                         ("DashboardViewName", "dashboard_view_name")]:
        assert sam in template["Outputs"]
        assert tf_name in tf.outputs
