"""template.yaml and the Terraform module agree with infra/schema.json (and each other).

Checked: the function's runtime and environment variable names (and the defaults of
what the templates set), the claim table's key and TTL attribute, the Glue table's
columns, types and partition keys with partition projection, the Firehose
de-aggregation/partitioning/Parquet settings, the EMF metric names the alarms use,
the dedup view (its SQL against infra/athena/dedup_view.sql, its columns), the
QuickSight dataset's view (its columns: test_rollups.py), and that the Terraform variables mirror the SAM
parameters. The front door (schema.json "ingest_function"): the ingest function's
runtime, build and environment (exactly the contract, which is also what
functions/ingest/src/lib.rs reads), its least-privilege role, the HTTP API's
POST /events route (AWS_IAM by default), Lambda proxy integration (payload 2.0),
$default stage with access logs and throttling, the invoke permission, the alarms
and the IngestUrl / ingest_url outputs.
"""

from __future__ import annotations

import json
import re

import pytest
import sqlglot

from conftest import ATHENA, ROOT, TerraformModule, one

# ------------------------------------------------------------------ helpers


def schema_columns(schema, partition=None):
    cols = schema["glue_table"]["columns"]
    if partition is None:
        return [(c["name"], c["type"]) for c in cols]
    return [(c["name"], c["type"]) for c in cols if bool(c.get("partition")) == partition]


def deployable_env(schema):
    return {k for k, v in schema["function"]["environment"].items() if v.get("deploy", True)}


def sam_resource(template, logical_id):
    return template["Resources"][logical_id]["Properties"]


def sam_resources_of_type(template, rtype):
    return {k: v for k, v in template["Resources"].items() if v["Type"] == rtype}


def sam_function(template):
    return template["Resources"]["DedupEnrichFunction"]


def sam_env(template):
    return sam_function(template)["Properties"]["Environment"]["Variables"]


def tf_function(tf):
    return tf.resource("aws_lambda_function", "dedup_enrich")


def tf_env(tf):
    return one(one(tf_function(tf)["environment"])["variables"])


def canonical_sql(sql: str) -> str:
    return sqlglot.parse_one(sql, read="trino").sql(dialect="trino")


def view_select_from_file() -> str:
    create = sqlglot.parse_one((ATHENA / "dedup_view.sql").read_text(), read="trino")
    assert isinstance(create, sqlglot.exp.Create), "dedup_view.sql must be one CREATE VIEW"
    assert create.this.name == "events_dedup"
    return create.expression.sql(dialect="trino")


def sam_view_definition(template):
    text = sam_resource(template, "EventsDedupView")["TableInput"]["ViewOriginalText"]
    parts = text["Fn::Join"][1]
    assert parts[0] == "/* Presto View: " and parts[2] == " */"
    body, variables = parts[1]["Fn::Base64"]["Fn::Sub"]
    definition = json.loads(body.replace("${GlueDatabase}", "sightline_dev").replace("${Sql}", "SQL"))
    return definition, variables["Sql"]


def tf_string(value: str) -> str:
    """A parsed HCL template string `${"...$${x}..."}` -> the literal text with `${x}`."""
    match = re.fullmatch(r'\$\{"(.*)"\}', value, re.S)
    if match:
        value = match.group(1)
    return value.replace("$${", "${")


# ------------------------------------------------------------------ the schema itself


def test_schema_is_consistent(schema):
    env = schema["function"]["environment"]
    assert {k for k, v in env.items() if v["required"]} == {"DEDUP_TABLE", "DELIVERY_STREAM", "QUARANTINE_BUCKET"}
    assert schema["dedup_table"]["partition_key"] == {"name": "event_id", "type": "S"}
    assert schema["dedup_table"]["ttl_attribute"] == "expires_at"
    assert [n for n, _ in schema_columns(schema, partition=True)] == ["event_date", "event_hour"]
    assert {t for _, t in schema_columns(schema)} <= {"bigint", "string"}
    assert env["METRICS_NAMESPACE"]["default"] == schema["metrics"]["namespace_default"]
    assert env["QUARANTINE_PREFIX"]["default"] == schema["lake"]["quarantine_prefix"]
    assert schema["firehose"]["prefix"].startswith(schema["lake"]["events_prefix"])


# ------------------------------------------------------------------ the function


def test_sam_function_runtime(template, schema):
    fn = sam_function(template)
    props = fn["Properties"]
    assert props["Runtime"] == schema["function"]["runtime"]
    assert props["Architectures"] == [schema["function"]["architecture"]]
    assert props["Handler"] == schema["function"]["handler"]
    assert fn["Metadata"]["BuildMethod"] == "rust-cargolambda"
    assert fn["Metadata"]["BuildProperties"]["Binary"] == schema["function"]["binary"]


def test_tf_function_runtime(tf, schema):
    fn = tf_function(tf)
    assert one(fn["runtime"]) == schema["function"]["runtime"]
    assert one(fn["architectures"]) == [schema["function"]["architecture"]]
    assert one(fn["handler"]) == schema["function"]["handler"]


@pytest.mark.parametrize("source", ["sam", "terraform"])
def test_env_var_names_match_schema(source, template, tf, schema):
    names = set(sam_env(template) if source == "sam" else tf_env(tf))
    known = set(schema["function"]["environment"])
    required = {k for k, v in schema["function"]["environment"].items() if v["required"]}
    assert names - known == set(), f"{source} sets variables the function does not read"
    assert required - names == set(), f"{source} misses required variables"
    assert names == deployable_env(schema), f"{source} should set every deployable variable explicitly"


def test_env_var_names_agree_between_sam_and_terraform(template, tf):
    assert set(sam_env(template)) == set(tf_env(tf))


def test_sam_env_values_follow_schema_defaults(template, schema):
    params = template["Parameters"]
    for name, value in sam_env(template).items():
        default = schema["function"]["environment"][name].get("default")
        if isinstance(value, dict) and "Ref" in value and value["Ref"] in params:
            value = params[value["Ref"]].get("Default")
        if isinstance(value, (str, int)) and default is not None:
            assert str(value) == default, f"{name}: template.yaml uses {value!r}, contract default is {default!r}"


def test_tf_env_values_follow_schema_defaults(tf, schema):
    for name, value in tf_env(tf).items():
        default = schema["function"]["environment"][name].get("default")
        value = tf.resolve(value)
        var = re.fullmatch(r"\$\{(?:tostring\()?var\.([a-z0-9_]+)\)?\}", value)
        if var:
            value = one(tf.variables[var.group(1)].get("default"))
        if isinstance(value, (str, int)) and not str(value).startswith("${") and default is not None:
            assert str(value) == default, f"{name}: Terraform uses {value!r}, contract default is {default!r}"


def test_quarantine_write_permission_matches_prefix(template, tf, schema):
    prefix = schema["lake"]["quarantine_prefix"]
    policy = sam_resource(template, "DedupEnrichRole")["Policies"][0]["PolicyDocument"]["Statement"]
    statement = next(s for s in policy if s["Sid"] == "WriteQuarantine")
    assert statement["Resource"]["Fn::Sub"].endswith(f"/{prefix}*")
    assert tf.locals["quarantine_prefix"] == prefix


# ------------------------------------------------------------------ the claim table


def test_sam_claim_table(template, schema):
    table = sam_resource(template, "ClaimTable")
    key = schema["dedup_table"]["partition_key"]
    assert table["KeySchema"] == [{"AttributeName": key["name"], "KeyType": "HASH"}]
    assert table["AttributeDefinitions"] == [{"AttributeName": key["name"], "AttributeType": key["type"]}]
    assert table["TimeToLiveSpecification"] == {"AttributeName": schema["dedup_table"]["ttl_attribute"], "Enabled": True}
    assert table["BillingMode"] == {"Ref": "ClaimTableBillingMode"}
    param = template["Parameters"]["ClaimTableBillingMode"]
    assert param["Default"] == schema["dedup_table"]["billing_mode_default"]
    assert param["AllowedValues"] == schema["dedup_table"]["billing_modes"]
    assert table["PointInTimeRecoverySpecification"]["PointInTimeRecoveryEnabled"] is True
    assert table["SSESpecification"]["SSEEnabled"] is True


def test_tf_claim_table(tf, schema):
    table = tf.resource("aws_dynamodb_table", "claims")
    key = schema["dedup_table"]["partition_key"]
    assert one(table["hash_key"]) == key["name"]
    assert "range_key" not in table
    assert [(one(a["name"]), one(a["type"])) for a in table["attribute"]] == [(key["name"], key["type"])]
    ttl = one(table["ttl"])
    assert (one(ttl["attribute_name"]), one(ttl["enabled"])) == (schema["dedup_table"]["ttl_attribute"], True)
    assert one(table["billing_mode"]) == "${var.claim_table_billing_mode}"
    assert one(tf.variables["claim_table_billing_mode"]["default"]) == schema["dedup_table"]["billing_mode_default"]
    assert one(one(table["point_in_time_recovery"])["enabled"]) is True
    assert one(one(table["server_side_encryption"])["enabled"]) is True


# ------------------------------------------------------------------ the Glue table


def test_sam_glue_table(template, schema):
    table = sam_resource(template, "EventsTable")["TableInput"]
    assert table["Name"] == schema["glue_table"]["name"]
    columns = [(c["Name"], c["Type"]) for c in table["StorageDescriptor"]["Columns"]]
    assert columns == schema_columns(schema, partition=False)
    assert [(c["Name"], c["Type"]) for c in table["PartitionKeys"]] == schema_columns(schema, partition=True)
    assert table["StorageDescriptor"]["Location"]["Fn::Sub"].endswith("/" + schema["lake"]["events_prefix"])
    params = table["Parameters"]
    template_str = params["storage.location.template"]["Fn::Sub"].replace("${!", "${")
    assert template_str.endswith("/" + schema["glue_table"]["storage_location_template"])
    check_projection(params)


def test_tf_glue_table(tf, schema):
    table = tf.resource("aws_glue_catalog_table", "events")
    assert one(table["name"]) == schema["glue_table"]["name"]
    descriptor = one(table["storage_descriptor"])
    columns = [(one(c["name"]), one(c["type"])) for c in descriptor["columns"]]
    assert columns == schema_columns(schema, partition=False)
    partitions = [(one(c["name"]), one(c["type"])) for c in table["partition_keys"]]
    assert partitions == schema_columns(schema, partition=True)
    assert tf_string(one(descriptor["location"])).endswith("/" + schema["lake"]["events_prefix"])
    params = one(table["parameters"])
    assert tf_string(params["storage.location.template"]).endswith("/" + schema["glue_table"]["storage_location_template"])
    check_projection(params)


def check_projection(params):
    assert params["projection.enabled"] == "true"
    assert params["projection.event_date.type"] == "date"
    assert params["projection.event_date.format"] == "yyyy-MM-dd"
    assert re.fullmatch(r"\d{4}-\d{2}-\d{2},NOW(\+\d+DAYS)?", params["projection.event_date.range"])
    if params["projection.event_hour.type"] == "integer":
        assert params["projection.event_hour.range"] == "0,23"
        assert params["projection.event_hour.digits"] == "2"
    else:
        assert params["projection.event_hour.type"] == "enum"
        assert params["projection.event_hour.values"].split(",") == [f"{h:02d}" for h in range(24)]


def test_glue_tables_agree(template, tf):
    sam = sam_resource(template, "EventsTable")["TableInput"]["Parameters"]
    terraform = one(tf.resource("aws_glue_catalog_table", "events")["parameters"])
    plain = {k: v for k, v in sam.items() if isinstance(v, str)}
    assert plain == {k: v for k, v in terraform.items() if k in plain}
    assert set(sam) == set(terraform)


# ------------------------------------------------------------------ Firehose


def check_processors(processors, schema):
    types = [p["type"] for p in processors]
    assert types == ["RecordDeAggregation", "MetadataExtraction"], types
    deagg = dict(processors[0]["parameters"])
    assert deagg["SubRecordType"] == schema["firehose"]["deaggregation"]["sub_record_type"]
    extract = dict(processors[1]["parameters"])
    assert extract["JsonParsingEngine"] == schema["firehose"]["metadata_extraction"]["engine"]
    for key in schema["firehose"]["metadata_extraction"]["keys"]:
        assert f"{key}: .{key}" in extract["MetadataExtractionQuery"]


def test_sam_firehose(template, schema):
    stream = sam_resource(template, "EventsDeliveryStream")
    assert stream["DeliveryStreamType"] == "DirectPut"
    dest = stream["ExtendedS3DestinationConfiguration"]
    assert dest["Prefix"] == schema["firehose"]["prefix"]
    assert dest["ErrorOutputPrefix"]
    assert dest["CloudWatchLoggingOptions"]["Enabled"] is True
    assert dest["DynamicPartitioningConfiguration"]["Enabled"] is True
    processors = [
        {"type": p["Type"], "parameters": [(q["ParameterName"], q["ParameterValue"]) for q in p.get("Parameters", [])]}
        for p in dest["ProcessingConfiguration"]["Processors"]
    ]
    check_processors(processors, schema)
    conversion = dest["DataFormatConversionConfiguration"]
    assert conversion["Enabled"] is True
    assert "ParquetSerDe" in conversion["OutputFormatConfiguration"]["Serializer"]
    assert conversion["SchemaConfiguration"]["TableName"] == {"Ref": "EventsTable"}
    assert dest["CompressionFormat"] == "UNCOMPRESSED"
    params = template["Parameters"]
    assert params["FirehoseBufferSizeMiB"]["MinValue"] >= 64
    assert params["FirehoseBufferIntervalSeconds"]["MinValue"] >= 60


def test_tf_firehose(tf, schema):
    stream = tf.resource("aws_kinesis_firehose_delivery_stream", "events")
    assert one(stream["destination"]) == "extended_s3"
    assert "kinesis_source_configuration" not in stream
    dest = one(stream["extended_s3_configuration"])
    assert one(dest["prefix"]) == schema["firehose"]["prefix"]
    assert one(dest["error_output_prefix"])
    assert one(one(dest["cloudwatch_logging_options"])["enabled"]) is True
    assert one(one(dest["dynamic_partitioning_configuration"])["enabled"]) is True
    processors = [
        {
            "type": one(p["type"]),
            "parameters": [(one(q["parameter_name"]), one(q["parameter_value"])) for q in p.get("parameters", [])],
        }
        for p in one(dest["processing_configuration"])["processors"]
    ]
    check_processors(processors, schema)
    conversion = one(dest["data_format_conversion_configuration"])
    assert one(conversion["enabled"]) is True
    serializer = one(one(conversion["output_format_configuration"])["serializer"])
    assert "parquet_ser_de" in serializer
    assert one(one(conversion["schema_configuration"])["table_name"]) == "${aws_glue_catalog_table.events.name}"
    assert one(dest["compression_format"]) == "UNCOMPRESSED"


def test_raw_archive_is_a_direct_put_stream_the_function_writes(template, tf, schema):
    """The function archives each batch itself (RAW_ARCHIVE_STREAM); nothing else reads the stream."""
    raw_prefix = schema["lake"]["raw_prefix"]
    sam = sam_resource(template, "RawArchiveDeliveryStream")
    assert sam["DeliveryStreamType"] == "DirectPut"
    assert "KinesisStreamSourceConfiguration" not in sam
    assert sam["DeliveryStreamEncryptionConfigurationInput"] == {"KeyType": "CUSTOMER_MANAGED_CMK", "KeyARN": {"Fn::GetAtt": ["DataKey", "Arn"]}}
    dest = sam["ExtendedS3DestinationConfiguration"]
    assert dest["Prefix"] == raw_prefix + "dt=!{timestamp:yyyy-MM-dd}/hour=!{timestamp:HH}/"
    assert dest["CompressionFormat"] == "GZIP"
    assert "ProcessingConfiguration" not in dest, "the function's lines end in a newline already"
    raw = tf.resource("aws_kinesis_firehose_delivery_stream", "raw")
    assert "kinesis_source_configuration" not in raw
    sse = one(raw["server_side_encryption"])
    assert (one(sse["enabled"]), one(sse["key_type"]), one(sse["key_arn"])) == (True, "CUSTOMER_MANAGED_CMK", "${aws_kms_key.data.arn}")
    tf_dest = one(raw["extended_s3_configuration"])
    assert one(tf_dest["prefix"]) == dest["Prefix"]
    assert one(tf_dest["compression_format"]) == "GZIP"
    assert "processing_configuration" not in tf_dest
    # The function names it, and may put to it and to nothing else new.
    assert sam_env(template)["RAW_ARCHIVE_STREAM"] == {"Ref": "RawArchiveDeliveryStream"}
    assert tf_env(tf)["RAW_ARCHIVE_STREAM"] == "${aws_kinesis_firehose_delivery_stream.raw.name}"
    statements = statements_by_sid(sam_resource(template, "DedupEnrichRole")["Policies"][0]["PolicyDocument"]["Statement"])
    assert statements["ArchiveRawRecords"]["Action"] == "firehose:PutRecordBatch"
    assert statements["ArchiveRawRecords"]["Resource"] == {"Fn::GetAtt": ["RawArchiveDeliveryStream", "Arn"]}
    tf_statements = statements_by_sid(tf.data[("aws_iam_policy_document", "dedup_enrich")]["statement"])
    assert one(tf_statements["ArchiveRawRecords"]["actions"]) == ["firehose:PutRecordBatch"]
    assert one(tf_statements["ArchiveRawRecords"]["resources"]) == ["${aws_kinesis_firehose_delivery_stream.raw.arn}"]
    # Firehose's own role only writes the bucket and its logs: no stream reading left.
    sam_role = sam_resource(template, "RawFirehoseRole")["Policies"][0]["PolicyDocument"]["Statement"]
    assert not [a for st in sam_role for a in as_list(st["Action"]) if a.startswith("kinesis:")]
    assert set(statements_by_sid(sam_role)) == {"RawBucket", "DataKeyThroughS3", "Logs"}
    tf_role = statements_by_sid(tf.data[("aws_iam_policy_document", "firehose_raw")]["statement"])
    assert set(tf_role) == {"RawBucket", "DataKeyThroughS3", "Logs"}


def test_raw_archive_failures_alarm_in_both_definitions(template, tf):
    sam = sam_resource(template, "RawArchiveFailedAlarm")
    assert (sam["Namespace"], sam["MetricName"], sam["Statistic"], sam["Threshold"]) == ("Sightline", "ArchiveFailed", "Sum", 1)
    assert sam["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "DedupEnrichFunction"}}]
    assert sam["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    terraform = tf.locals["simple_alarms"]["raw-archive-failed"]
    assert (terraform["metric"], terraform["stat"], terraform["threshold"]) == ("ArchiveFailed", "Sum", 1)
    assert (terraform["period"], terraform["periods"]) == (sam["Period"], sam["EvaluationPeriods"])
    assert terraform["dimensions"] == "${local.function_dimensions}"
    # The archive's S3 delivery is still watched.
    assert sam_resource(template, "RawArchiveFreshnessAlarm")["Dimensions"] == [{"Name": "DeliveryStreamName", "Value": {"Ref": "RawArchiveDeliveryStream"}}]
    assert "raw-archive-freshness" in tf.locals["simple_alarms"]


def test_raw_archive_location_is_an_output_of_both(template, tf):
    assert template["Outputs"]["RawArchiveLocation"]["Value"] == {"Fn::Sub": "s3://${RawBucket}/raw/"}
    assert tf_string(one(tf.outputs["raw_archive_location"]["value"])) == 's3://${aws_s3_bucket.data["raw"].bucket}/raw/'
    for example in ("complete", "emulator"):
        root = TerraformModule(ROOT / "infra" / "examples" / example)
        assert one(root.outputs["raw_archive_location"]["value"]) == "${module.sightline.raw_archive_location}", example


# ------------------------------------------------------------------ EMF metrics and alarms


def test_sam_alarms_use_contract_metrics(template, schema):
    namespace = sam_env(template)["METRICS_NAMESPACE"]
    assert namespace == schema["metrics"]["namespace_default"]
    seen = set()
    for alarm in sam_resources_of_type(template, "AWS::CloudWatch::Alarm").values():
        props = alarm["Properties"]
        metrics = [props] if "MetricName" in props else [m["MetricStat"]["Metric"] for m in props.get("Metrics", []) if "MetricStat" in m]
        for metric in metrics:
            if metric["Namespace"] == namespace:
                assert metric["MetricName"] in schema["metrics"]["names"]
                assert [d["Name"] for d in metric["Dimensions"]] == [schema["metrics"]["dimension"]]
                seen.add(metric["MetricName"])
    assert {"Quarantined", "Received"} <= seen, "the quarantine-rate alarm must use the EMF metrics"


def test_tf_alarms_use_contract_metrics(tf, schema):
    namespace = tf.resolve(tf_env(tf)["METRICS_NAMESPACE"])
    assert namespace == schema["metrics"]["namespace_default"]
    seen = set()
    for alarm in tf.locals["simple_alarms"].values():
        if tf.resolve(alarm["namespace"]) == namespace:
            assert alarm["metric"] in schema["metrics"]["names"]
            seen.add(alarm["metric"])
    for query in tf.resource("aws_cloudwatch_metric_alarm", "quarantine_rate")["metric_query"]:
        for metric in query.get("metric", []):
            assert tf.resolve(one(metric["namespace"])) == namespace
            assert one(metric["metric_name"]) in schema["metrics"]["names"]
            seen.add(one(metric["metric_name"]))
    assert {"Quarantined", "Received"} <= seen
    assert tf.locals["function_dimensions"] == {schema["metrics"]["dimension"]: "${aws_lambda_function.dedup_enrich.function_name}"}


# ------------------------------------------------------------------ the dedup view and QuickSight


def test_view_sql_is_the_same_query_everywhere(template, tf):
    expected = view_select_from_file()
    _, sam_sql = sam_view_definition(template)
    assert canonical_sql(sam_sql) == expected, "template.yaml's EventsDedupView differs from dedup_view.sql"
    assert canonical_sql(tf.locals["dedup_view_sql"]) == expected, "glue.tf's dedup_view_sql differs from dedup_view.sql"


def test_view_dedups_on_detection_oid():
    select = sqlglot.parse_one((ATHENA / "dedup_view.sql").read_text(), read="trino").expression
    windows = list(select.find_all(sqlglot.exp.Window))
    assert len(windows) == 1
    window = windows[0]
    assert isinstance(window.this, sqlglot.exp.RowNumber)
    assert "detection_oid" in [c.name for c in window.args["partition_by"]]
    assert [o.this.name for o in window.args["order"].expressions] == ["ingested_at", "source_sequence"]


def test_view_columns(template, tf, schema):
    expected = schema_columns(schema)
    sam_table = sam_resource(template, "EventsDedupView")["TableInput"]
    assert [(c["Name"], c["Type"]) for c in sam_table["StorageDescriptor"]["Columns"]] == expected
    definition, _ = sam_view_definition(template)
    presto = {"bigint": "bigint", "string": "varchar"}
    assert [(c["name"], c["type"]) for c in definition["columns"]] == [(n, presto[t]) for n, t in expected]
    assert [(c["name"], c["glue"]) for c in tf.locals["dedup_view_columns"]] == expected
    assert [(c["name"], c["presto"]) for c in tf.locals["dedup_view_columns"]] == [(n, presto[t]) for n, t in expected]
    select = sqlglot.parse_one((ATHENA / "dedup_view.sql").read_text(), read="trino").expression
    assert [e.alias_or_name for e in select.expressions] == [n for n, _ in expected]


def test_quicksight_dataset(template, tf):
    """QuickSight reads the dashboard view (tests/infra/test_rollups.py checks its columns)."""
    assert template["Resources"]["QuickSightDataSet"]["Condition"] == "QuickSightEnabled"
    dataset = sam_resource(template, "QuickSightDataSet")
    assert dataset["ImportMode"] == "DIRECT_QUERY"
    table = dataset["PhysicalTableMap"]["eventsdashboard"]["RelationalTable"]
    assert table["Name"] == {"Ref": "EventsDashboardView"}
    tf_dataset = tf.resource("aws_quicksight_data_set", "dashboard")
    assert one(tf_dataset["import_mode"]) == "DIRECT_QUERY"
    assert one(tf_dataset["count"]) == "${local.quicksight_enabled ? 1 : 0}"


# ------------------------------------------------------------------ parameters and outputs


def snake(name: str) -> str:
    name = name.replace("MiB", "Mib").replace("QuickSight", "Quicksight")
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def test_terraform_variables_mirror_sam_parameters(template, tf):
    for name, param in template["Parameters"].items():
        var = snake(name)
        assert var in tf.variables, f"SAM parameter {name} has no Terraform variable {var}"
        sam_default = str(param.get("Default")).lower()
        tf_default = str(one(tf.variables[var].get("default"))).lower()
        assert sam_default == tf_default, f"{name}={sam_default} but {var}={tf_default}"


def test_outputs_name_stream_buckets_and_table(template, tf):
    for output in ["StreamName", "LakeBucketName", "QuarantineBucketName", "RawBucketName", "ClaimTableName", "DeliveryStreamName", "EventsTableName"]:
        assert output in template["Outputs"]
        assert snake(output) in tf.outputs


# ------------------------------------------------------------------ the Rust side


def test_schema_lists_what_the_function_reads(schema):
    """config.rs declares ENV_VARS 'for the infra consistency checks'; it must match."""
    from conftest import ROOT

    source = ROOT / "functions" / "dedup-enrich" / "src" / "config.rs"
    if not source.exists():
        pytest.skip("functions/dedup-enrich/src/config.rs is not there")
    text = source.read_text()
    consts = dict(re.findall(r'pub const (ENV_[A-Z0-9_]+): &str = "([A-Z0-9_]+)";', text))
    listed = re.search(r"pub const ENV_VARS: \[&str; \d+\] = \[(.*?)\];", text, re.S)
    assert listed, "config.rs no longer declares ENV_VARS"
    code = {consts[name] for name in re.findall(r"ENV_[A-Z0-9_]+", listed.group(1))}
    env = schema["function"]["environment"]
    contract = {k for k, v in env.items() if "read_by" not in v}
    assert code == contract, f"only in config.rs: {code - contract}; only in schema.json: {contract - code}"


def test_dedup_window_bounds(template, schema):
    """The function takes 60 s and up; a deployment needs at least the shortest retention."""
    env = schema["function"]["environment"]
    spec = env["DEDUP_WINDOW_SECS"]
    param = template["Parameters"]["DedupWindowSecs"]
    assert spec["deploy_min"] == max(spec["min"], env["STREAM_RETENTION_HOURS"]["min"] * 3600)
    assert (param["MinValue"], param["MaxValue"]) == (spec["deploy_min"], spec["max"])



# ------------------------------------------------------------------ the front door (ingest)


def ingest_contract(schema):
    return schema["ingest_function"]


def ingest_deployable_env(schema):
    return {k for k, v in ingest_contract(schema)["environment"].items() if v.get("deploy", True)}


def sam_ingest_function(template):
    return template["Resources"]["IngestFunction"]


def sam_ingest_env(template):
    return sam_ingest_function(template)["Properties"]["Environment"]["Variables"]


def tf_ingest_function(tf):
    return tf.resource("aws_lambda_function", "ingest")


def tf_ingest_env(tf):
    return one(one(tf_ingest_function(tf)["environment"])["variables"])


def sam_param_default(template, value):
    """A literal, or the default of the parameter a {"Ref": ...} names."""
    if isinstance(value, dict) and "Ref" in value and value["Ref"] in template["Parameters"]:
        return template["Parameters"][value["Ref"]].get("Default")
    return value


def tf_var_default(tf, value):
    """A literal, or the default of the variable a `${var.x}` names."""
    var = re.fullmatch(r"\$\{(?:tostring\()?var\.([a-z0-9_]+)\)?\}", str(value))
    if var:
        return one(tf.variables[var.group(1)].get("default"))
    return value


def statements_by_sid(statements):
    return {s["Sid"] if "Sid" in s else one(s["sid"]): s for s in statements}


def as_list(value):
    return value if isinstance(value, list) else [value]


def test_ingest_schema_is_consistent(schema):
    contract = ingest_contract(schema)
    env = contract["environment"]
    assert {k for k, v in env.items() if v["required"]} == {"STREAM_NAME"}
    assert set(env) == {"STREAM_NAME", "RETRY_MAX_ATTEMPTS", "DEADLINE_RESERVE_MS", "AWS_CALL_TIMEOUT_MS", "RUST_LOG"}
    assert contract["api"]["authorization_default"] == "AWS_IAM"
    assert contract["api"]["authorization_default"] in contract["api"]["authorization_allowed"]
    assert contract["api"]["route_key"].split(" ")[1] == contract["api"]["url_suffix"]


def test_sam_ingest_function_runtime_and_build(template, schema):
    contract = ingest_contract(schema)
    fn = sam_ingest_function(template)
    props = fn["Properties"]
    assert fn["Type"] == "AWS::Serverless::Function"
    assert props["Runtime"] == contract["runtime"]
    assert props["Architectures"] == [contract["architecture"]]
    assert props["Handler"] == contract["handler"]
    assert props["CodeUri"] == contract["code_uri"]
    assert fn["Metadata"]["BuildMethod"] == "rust-cargolambda"
    assert fn["Metadata"]["BuildProperties"]["Binary"] == contract["binary"]
    assert props["Tracing"] == "Active"
    assert props["LoggingConfig"]["LogGroup"] == {"Ref": "IngestLogGroup"}
    assert props["KmsKeyArn"] == {"Fn::GetAtt": ["DataKey", "Arn"]}


def test_tf_ingest_function_runtime(tf, schema):
    contract = ingest_contract(schema)
    fn = tf_ingest_function(tf)
    assert one(fn["runtime"]) == contract["runtime"]
    assert one(fn["architectures"]) == [contract["architecture"]]
    assert one(fn["handler"]) == contract["handler"]
    assert one(fn["filename"]) == "${var.ingest_zip_path}"
    assert one(one(fn["tracing_config"])["mode"]) == "Active"
    assert one(one(fn["logging_config"])["log_group"]) == "${aws_cloudwatch_log_group.ingest.name}"
    assert one(fn["kms_key_arn"]) == "${aws_kms_key.data.arn}"


def test_ingest_memory_and_timeouts_agree(template, tf, schema):
    sam = sam_ingest_function(template)["Properties"]
    terraform = tf_ingest_function(tf)
    assert sam["MemorySize"] == one(terraform["memory_size"])
    assert sam["Timeout"] == one(terraform["timeout"])
    sam_integration = sam_resource(template, "IngestIntegration")["TimeoutInMillis"]
    tf_integration = one(tf.resource("aws_apigatewayv2_integration", "ingest")["timeout_milliseconds"])
    assert sam_integration == tf_integration <= ingest_contract(schema)["api"]["max_integration_timeout_ms"]
    # The caller gets the function's own answer (503 + per-event results), never
    # API Gateway's timeout: the function ends well before the integration does.
    assert sam["Timeout"] * 1000 < sam_integration
    reserve = int(sam_ingest_env(template)["DEADLINE_RESERVE_MS"])
    attempt = int(sam_ingest_env(template)["AWS_CALL_TIMEOUT_MS"])
    attempts = int(sam_ingest_env(template)["RETRY_MAX_ATTEMPTS"])
    assert attempts * attempt + reserve <= sam["Timeout"] * 1000, "the retries do not fit in the timeout"


@pytest.mark.parametrize("source", ["sam", "terraform"])
def test_ingest_env_is_exactly_the_contract(source, template, tf, schema):
    names = set(sam_ingest_env(template) if source == "sam" else tf_ingest_env(tf))
    assert names == ingest_deployable_env(schema), f"{source}: only there {names - ingest_deployable_env(schema)}, missing {ingest_deployable_env(schema) - names}"


def test_ingest_env_names_agree_between_sam_and_terraform(template, tf):
    assert set(sam_ingest_env(template)) == set(tf_ingest_env(tf))


def test_ingest_env_values(template, tf, schema):
    env = ingest_contract(schema)["environment"]
    sam, terraform = sam_ingest_env(template), tf_ingest_env(tf)
    assert sam["STREAM_NAME"] == {"Ref": "EventStream"}, "STREAM_NAME must name the stack's events stream"
    assert terraform["STREAM_NAME"] == "${aws_kinesis_stream.events.name}"
    assert sam_param_default(template, sam["RUST_LOG"]) == tf_var_default(tf, terraform["RUST_LOG"])
    for name, spec in env.items():
        if spec.get("default") is None:
            continue
        assert str(sam_param_default(template, sam[name])) == spec["default"], f"SAM {name}"
        assert str(tf_var_default(tf, tf.resolve(terraform[name]))) == spec["default"], f"Terraform {name}"


def test_ingest_contract_is_what_the_code_reads(schema):
    """functions/ingest/src/lib.rs reads exactly the contract's variables, with its defaults and bounds."""
    source = ROOT / "functions" / "ingest" / "src" / "lib.rs"
    if not source.exists():
        pytest.skip("functions/ingest/src/lib.rs is not there")
    text = source.read_text()
    consts = dict(re.findall(r'pub const (ENV_[A-Z0-9_]+): &str = "([A-Z0-9_]+)";', text))
    read = {}
    for method, arg, rest in re.findall(r"\benv\.(required|optional|integer|string|boolean|bool)\(\s*(\"[A-Z0-9_]+\"|ENV_[A-Z0-9_]+)\s*(,[^)]*)?\)", text):
        name = arg.strip('"') if arg.startswith('"') else consts[arg]
        numbers = [int(n.replace("_", "")) for n in re.findall(r"(?<![\w.])-?[0-9][0-9_]*(?![\w.])", rest or "")]
        read[name] = (method, numbers)
    env = ingest_contract(schema)["environment"]
    contract = {k for k, v in env.items() if "read_by" not in v}
    assert set(read) == contract, f"only in lib.rs: {set(read) - contract}; only in schema.json: {contract - set(read)}"
    for name, (method, numbers) in read.items():
        spec = env[name]
        assert (method == "required") == spec["required"], name
        if method == "integer":
            assert numbers[:3] == [int(spec["default"]), spec["min"], spec["max"]], f"{name}: lib.rs {numbers[:3]}"


def test_sam_ingest_role_is_least_privilege(template):
    role = sam_resource(template, "IngestRole")
    assert role["AssumeRolePolicyDocument"]["Statement"][0]["Principal"] == {"Service": "lambda.amazonaws.com"}
    statements = statements_by_sid(one(role["Policies"])["PolicyDocument"]["Statement"])
    assert set(statements) == {"PutRecordsToTheEventsStream", "DataKeyForTheStream", "Logs", "XRayHasNoResourceLevelPermissions"}
    put = statements["PutRecordsToTheEventsStream"]
    assert set(as_list(put["Action"])) <= {"kinesis:PutRecords", "kinesis:PutRecord"} and "kinesis:PutRecords" in as_list(put["Action"])
    assert put["Resource"] == {"Fn::GetAtt": ["EventStream", "Arn"]}
    key = statements["DataKeyForTheStream"]
    assert as_list(key["Action"]) == ["kms:GenerateDataKey"]
    assert key["Resource"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    assert statements["Logs"]["Resource"] == {"Fn::Sub": "${IngestLogGroup.Arn}"}
    assert set(as_list(statements["XRayHasNoResourceLevelPermissions"]["Action"])) == {"xray:PutTraceSegments", "xray:PutTelemetryRecords"}
    assert sam_ingest_function(template)["Properties"]["Role"] == {"Fn::GetAtt": ["IngestRole", "Arn"]}


def test_tf_ingest_role_is_least_privilege(tf):
    statements = statements_by_sid(tf.data[("aws_iam_policy_document", "ingest")]["statement"])
    assert set(statements) == {"PutRecordsToTheEventsStream", "DataKeyForTheStream", "Logs", "XRayHasNoResourceLevelPermissions"}
    put = statements["PutRecordsToTheEventsStream"]
    assert set(one(put["actions"])) <= {"kinesis:PutRecords", "kinesis:PutRecord"} and "kinesis:PutRecords" in one(put["actions"])
    assert one(put["resources"]) == ["${aws_kinesis_stream.events.arn}"]
    key = statements["DataKeyForTheStream"]
    assert one(key["actions"]) == ["kms:GenerateDataKey"]
    assert one(key["resources"]) == ["${aws_kms_key.data.arn}"]
    assert one(statements["Logs"]["resources"]) == ["${aws_cloudwatch_log_group.ingest.arn}:*"]
    assert one(tf_ingest_function(tf)["role"]) == "${aws_iam_role.ingest.arn}"


def test_ingest_log_groups_are_encrypted(template, tf):
    for name in ("IngestLogGroup", "IngestAccessLogGroup"):
        assert sam_resource(template, name)["KmsKeyId"] == {"Fn::GetAtt": ["DataKey", "Arn"]}
    for name in ("ingest", "ingest_access"):
        assert one(tf.resource("aws_cloudwatch_log_group", name)["kms_key_id"]) == "${aws_kms_key.data.arn}"


def test_sam_ingest_api(template, schema):
    api_contract = ingest_contract(schema)["api"]
    assert sam_resource(template, "IngestApi")["ProtocolType"] == api_contract["protocol"]
    route = sam_resource(template, "IngestRoute")
    assert route["RouteKey"] == api_contract["route_key"]
    assert route["Target"] == {"Fn::Sub": "integrations/${IngestIntegration}"}
    # AWS_IAM by default, NONE allowed; nothing else.
    assert route["AuthorizationType"] == {"Ref": "IngestAuthorization"}
    param = template["Parameters"]["IngestAuthorization"]
    assert param["Default"] == api_contract["authorization_default"] == "AWS_IAM"
    assert param["AllowedValues"] == api_contract["authorization_allowed"]
    integration = sam_resource(template, "IngestIntegration")
    assert integration["IntegrationType"] == "AWS_PROXY"
    assert integration["PayloadFormatVersion"] == api_contract["payload_format_version"]
    assert integration["IntegrationUri"] == {"Fn::GetAtt": ["IngestFunction", "Arn"]}
    stage = sam_resource(template, "IngestStage")
    assert stage["StageName"] == api_contract["stage"] and stage["AutoDeploy"] is True
    assert stage["AccessLogSettings"]["DestinationArn"] == {"Fn::GetAtt": ["IngestAccessLogGroup", "Arn"]}
    json.loads(stage["AccessLogSettings"]["Format"])
    throttle = stage["DefaultRouteSettings"]
    assert throttle["ThrottlingRateLimit"] == {"Ref": "IngestThrottlingRateLimit"}
    assert throttle["ThrottlingBurstLimit"] == {"Ref": "IngestThrottlingBurstLimit"}
    permission = sam_resource(template, "IngestApiInvokePermission")
    assert permission["Principal"] == "apigateway.amazonaws.com"
    assert permission["FunctionName"] == {"Fn::GetAtt": ["IngestFunction", "Arn"]}
    source_arn = permission["SourceArn"]["Fn::Sub"]
    assert ":execute-api:" in source_arn and "${IngestApi}/" in source_arn and source_arn.endswith("/POST/events")


def test_tf_ingest_api(tf, schema):
    api_contract = ingest_contract(schema)["api"]
    assert one(tf.resource("aws_apigatewayv2_api", "ingest")["protocol_type"]) == api_contract["protocol"]
    route = tf.resource("aws_apigatewayv2_route", "ingest")
    assert one(route["route_key"]) == api_contract["route_key"]
    assert one(route["target"]) == "integrations/${aws_apigatewayv2_integration.ingest.id}"
    assert one(route["authorization_type"]) == "${var.ingest_authorization}"
    var = tf.variables["ingest_authorization"]
    assert one(var["default"]) == api_contract["authorization_default"] == "AWS_IAM"
    condition = one(one(var["validation"])["condition"])
    allowed = re.fullmatch(r"\$\{contains\(\[(.*)\],\s*var\.ingest_authorization\)\}", condition)
    assert allowed, condition
    assert re.findall(r"['\"]([A-Z_]+)['\"]", allowed.group(1)) == api_contract["authorization_allowed"]
    integration = tf.resource("aws_apigatewayv2_integration", "ingest")
    assert one(integration["integration_type"]) == "AWS_PROXY"
    assert one(integration["payload_format_version"]) == api_contract["payload_format_version"]
    assert one(integration["integration_uri"]) == "${aws_lambda_function.ingest.arn}"
    stage = tf.resource("aws_apigatewayv2_stage", "ingest")
    assert one(stage["name"]) == api_contract["stage"] and one(stage["auto_deploy"]) is True
    logs = one(stage["access_log_settings"])
    assert one(logs["destination_arn"]) == "${aws_cloudwatch_log_group.ingest_access.arn}"
    throttle = one(stage["default_route_settings"])
    assert one(throttle["throttling_rate_limit"]) == "${var.ingest_throttling_rate_limit}"
    assert one(throttle["throttling_burst_limit"]) == "${var.ingest_throttling_burst_limit}"
    permission = tf.resource("aws_lambda_permission", "ingest_api")
    assert one(permission["principal"]) == "apigateway.amazonaws.com"
    assert one(permission["function_name"]) == "${aws_lambda_function.ingest.function_name}"
    assert one(permission["source_arn"]) == "${aws_apigatewayv2_api.ingest.execution_arn}/*/POST/events"


def test_ingest_access_logs_have_the_same_fields(template, tf):
    sam = json.loads(sam_resource(template, "IngestStage")["AccessLogSettings"]["Format"])
    terraform = str(tf.locals["ingest_access_log_format"])
    pairs = dict(re.findall(r"['\"]?(\w+)['\"]?\s*[:=]\s*['\"](\$context\.[\w.]+)['\"]", terraform))
    assert pairs == sam


def test_ingest_alarms(template, tf):
    errors = sam_resource(template, "IngestFunctionErrorsAlarm")
    assert (errors["Namespace"], errors["MetricName"]) == ("AWS/Lambda", "Errors")
    assert errors["Dimensions"] == [{"Name": "FunctionName", "Value": {"Ref": "IngestFunction"}}]
    assert errors["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    rate = sam_resource(template, "IngestServerErrorRateAlarm")
    metrics = {m["MetricStat"]["Metric"]["MetricName"]: m["MetricStat"]["Metric"] for m in rate["Metrics"] if "MetricStat" in m}
    assert set(metrics) == {"5xx", "Count"}
    assert all(m["Namespace"] == "AWS/ApiGateway" and m["Dimensions"] == [{"Name": "ApiId", "Value": {"Ref": "IngestApi"}}] for m in metrics.values())
    assert rate["AlarmActions"] == [{"Ref": "AlarmTopic"}]

    tf_errors = tf.locals["simple_alarms"]["ingest-function-errors"]
    assert (tf_errors["namespace"], tf_errors["metric"]) == ("AWS/Lambda", "Errors")
    assert tf_errors["dimensions"] == {"FunctionName": "${aws_lambda_function.ingest.function_name}"}
    tf_rate = tf.resource("aws_cloudwatch_metric_alarm", "ingest_5xx_rate")
    tf_metrics = {one(m["metric_name"]): m for q in tf_rate["metric_query"] for m in q.get("metric", [])}
    assert set(tf_metrics) == {"5xx", "Count"}
    assert all(one(m["namespace"]) == "AWS/ApiGateway" and one(m["dimensions"]) == {"ApiId": "${aws_apigatewayv2_api.ingest.id}"}
               for m in tf_metrics.values())
    assert one(tf_rate["alarm_actions"]) == ["${aws_sns_topic.alarms.arn}"]
    sam_expr = next(m["Expression"] for m in rate["Metrics"] if "Expression" in m)
    tf_expr = next(one(q["expression"]) for q in tf_rate["metric_query"] if "expression" in q)
    assert sam_expr == tf_expr


def test_ingest_url_outputs(template, tf, schema):
    suffix = ingest_contract(schema)["api"]["url_suffix"]
    assert template["Outputs"]["IngestUrl"]["Value"] == {"Fn::Sub": "${IngestApi.ApiEndpoint}" + suffix}
    assert one(tf.outputs["ingest_url"]["value"]) == "${aws_apigatewayv2_api.ingest.api_endpoint}" + suffix
    assert template["Outputs"]["IngestFunctionName"]["Value"] == {"Ref": "IngestFunction"}
    assert one(tf.outputs["ingest_function_name"]["value"]) == "${aws_lambda_function.ingest.function_name}"
    for example in ("complete", "emulator"):
        root = TerraformModule(ROOT / "infra" / "examples" / example)
        assert one(root.outputs["ingest_url"]["value"]) == "${module.sightline.ingest_url}", example
