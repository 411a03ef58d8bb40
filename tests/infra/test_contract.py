"""template.yaml and the Terraform module agree with infra/schema.json (and each other).

Checked: the function's runtime and environment variable names (and the defaults of
what the templates set), the claim table's key and TTL attribute, the Glue table's
columns, types and partition keys with partition projection, the Firehose
de-aggregation/partitioning/Parquet settings, the EMF metric names the alarms use,
the dedup view (its SQL against infra/athena/dedup_view.sql, its columns), the
QuickSight dataset's columns, and that the Terraform variables mirror the SAM
parameters.
"""

from __future__ import annotations

import json
import re

import pytest
import sqlglot

from conftest import ATHENA, one

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
    assert table["BillingMode"] == schema["dedup_table"]["billing_mode"]
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
    assert one(table["billing_mode"]) == schema["dedup_table"]["billing_mode"]
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


def test_raw_archive_reads_the_stream(template, tf, schema):
    sam = sam_resource(template, "RawArchiveDeliveryStream")
    assert sam["DeliveryStreamType"] == "KinesisStreamAsSource"
    assert sam["ExtendedS3DestinationConfiguration"]["Prefix"].startswith(schema["lake"]["raw_prefix"])
    raw = tf.resource("aws_kinesis_firehose_delivery_stream", "raw")
    assert "kinesis_source_configuration" in raw
    assert one(one(raw["extended_s3_configuration"])["prefix"]).startswith(schema["lake"]["raw_prefix"])


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


def test_quicksight_dataset(template, tf, schema):
    assert template["Resources"]["QuickSightDataSet"]["Condition"] == "QuickSightEnabled"
    dataset = sam_resource(template, "QuickSightDataSet")
    assert dataset["ImportMode"] == "DIRECT_QUERY"
    table = dataset["PhysicalTableMap"]["eventsdedup"]["RelationalTable"]
    assert table["Name"] == {"Ref": "EventsDedupView"}
    quick = {"bigint": "INTEGER", "string": "STRING"}
    assert [(c["Name"], c["Type"]) for c in table["InputColumns"]] == [(n, quick[t]) for n, t in schema_columns(schema)]
    tf_dataset = tf.resource("aws_quicksight_data_set", "events_dedup")
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
    spec = schema["function"]["environment"]["DEDUP_WINDOW_SECS"]
    param = template["Parameters"]["DedupWindowSecs"]
    assert (param["MinValue"], param["MaxValue"]) == (spec["min"], spec["max"])
