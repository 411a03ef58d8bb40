"""Issue 20 ("Deploy day"): what a real account enforces and no emulator reports.

Checked offline, on both definitions: the function's environment contract for the
deployment-dependent limits (MAX_RECORD_AGE_SECS, STREAM_RETENTION_HOURS,
FUNCTION_TIMEOUT_SECS, MAX_EVENT_AGE_SECS) and that each comes from the same setting
as the resource it describes; the cross-variable rules of infra/schema.json
("constraints") as SAM's ConfigCheck custom resource implements them (its inline code is
run here) and as Terraform declares them (the refusals themselves run in
`terraform test`, infra/modules/sightline/tests); the same parameter bounds in both;
Terraform's version floor and no deprecated provider attributes; the Glue projection
range against the ages the function delivers; the Firehose throughput and partition
alarms; the claim table's billing modes; the security findings (KMS ViaService, no
SubscribeToShard or ListStreams, the log-delivery grant's SourceArn, the QuickSight
role parameter, bucket lifecycles, the Athena results bucket on delete); samconfig.toml
and .gitignore for `sam build` / `sam deploy`.
"""

from __future__ import annotations

import datetime as dt
import io
import itertools
import json
import os
import re
import shutil
import subprocess
import tomllib
import types

import pytest
from conftest import ROOT, TerraformModule, one

NEW_VARIABLES = ["MAX_RECORD_AGE_SECS", "STREAM_RETENTION_HOURS", "FUNCTION_TIMEOUT_SECS", "MAX_EVENT_AGE_SECS"]


def props(template, logical_id):
    return template["Resources"][logical_id]["Properties"]


def sam_env(template):
    return props(template, "DedupEnrichFunction")["Environment"]["Variables"]


def tf_env(tf):
    return one(one(tf.resource("aws_lambda_function", "dedup_enrich")["environment"])["variables"])


def mapping_properties(template):
    return props(template, "DedupEnrichFunction")["Events"]["EventStream"]["Properties"]


def as_list(value):
    return value if isinstance(value, list) else [value]


def validations(tf, name):
    return [one(v["condition"]) for v in tf.variables[name].get("validation", [])]


def constraint_holds(rule: str, values: dict) -> bool:
    """Evaluates one schema.json constraint ("A >= max(B * 3600, C)") on integer values."""
    expression = re.sub(r"\b[A-Z][A-Z0-9_]+\b", lambda m: str(values[m.group(0)]), rule)
    assert re.fullmatch(r"[-0-9 ()*/<>=,+]+", expression.replace("max(", "(")), expression
    return bool(eval(expression, {"__builtins__": {}, "max": max}))  # noqa: S307 - numbers, operators and max only


# ------------------------------------------------------------------ the contract


def test_schema_declares_the_deploy_day_environment(schema):
    env = schema["function"]["environment"]
    assert (env["DEADLINE_RESERVE_MS"]["default"], env["DEADLINE_RESERVE_MS"]["min"], env["DEADLINE_RESERVE_MS"]["max"]) == ("500", 0, 60000)
    expected = {
        "MAX_RECORD_AGE_SECS": ("21600", 60, 604800),
        "STREAM_RETENTION_HOURS": ("24", 24, 8760),
        "FUNCTION_TIMEOUT_SECS": ("60", 1, 900),
        "MAX_EVENT_AGE_SECS": ("604800", 3600, 31622400),
    }
    for name, (default, low, high) in expected.items():
        spec = env[name]
        assert (spec["default"], spec["min"], spec["max"]) == (default, low, high), name
        assert spec["required"] is False and spec.get("deploy", True), f"{name} is set by both templates"
    assert env["MAX_RECORD_AGE_SECS"]["also"] == [-1]
    assert "too_old" in env["MAX_EVENT_AGE_SECS"]["meaning"]
    rules = {c["id"]: c["rule"] for c in schema["function"]["constraints"]}
    assert rules == {
        "dedup_window_covers_redelivery": "DEDUP_WINDOW_SECS >= max(STREAM_RETENTION_HOURS * 3600, MAX_RECORD_AGE_SECS)",
        "deadline_reserve_fits_timeout": "DEADLINE_RESERVE_MS <= FUNCTION_TIMEOUT_SECS * 1000 / 2",
        "slow_calls_fit_timeout": "FUNCTION_TIMEOUT_SECS * 1000 - DEADLINE_RESERVE_MS >= 6 * AWS_CALL_TIMEOUT_MS",
    }


def test_the_default_settings_satisfy_every_constraint(schema, template, tf):
    env = schema["function"]["environment"]
    defaults = {name: int(spec["default"]) for name, spec in env.items() if str(spec.get("default", "")).lstrip("-").isdigit()}
    for constraint in schema["function"]["constraints"]:
        assert constraint_holds(constraint["rule"], defaults), constraint["id"]
    # ... and the templates deploy those defaults.
    params = template["Parameters"]
    for name, spec in env.items():
        source = spec.get("set_from", {}).get("sam")
        if source in params:
            assert str(params[source]["Default"]) == spec["default"], source
            assert str(one(tf.variables[spec["set_from"]["terraform"]]["default"])) == spec["default"], spec["set_from"]["terraform"]


def test_sam_sets_each_derived_variable_from_the_parameter_that_sets_the_resource(template, schema):
    env = sam_env(template)
    fn = props(template, "DedupEnrichFunction")
    assert env["STREAM_RETENTION_HOURS"] == {"Ref": "StreamRetentionHours"} == props(template, "EventStream")["RetentionPeriodHours"]
    assert env["MAX_RECORD_AGE_SECS"] == {"Ref": "MaxRecordAgeInSeconds"} == mapping_properties(template)["MaximumRecordAgeInSeconds"]
    assert env["FUNCTION_TIMEOUT_SECS"] == {"Ref": "FunctionTimeoutSecs"} == fn["Timeout"]
    assert env["MAX_EVENT_AGE_SECS"] == {"Ref": "MaxEventAgeSecs"}
    assert env["DEADLINE_RESERVE_MS"] == schema["function"]["environment"]["DEADLINE_RESERVE_MS"]["default"]
    for name in NEW_VARIABLES:
        assert env[name] == {"Ref": schema["function"]["environment"][name]["set_from"]["sam"]}, name


def test_terraform_sets_each_derived_variable_from_the_variable_that_sets_the_resource(tf, schema):
    env = tf_env(tf)
    fn = tf.resource("aws_lambda_function", "dedup_enrich")
    stream = tf.resource("aws_kinesis_stream", "events")
    mapping = tf.resource("aws_lambda_event_source_mapping", "kinesis")
    assert env["STREAM_RETENTION_HOURS"] == "${tostring(var.stream_retention_hours)}"
    assert one(stream["retention_period"]) == "${var.stream_retention_hours}"
    assert env["MAX_RECORD_AGE_SECS"] == "${tostring(var.max_record_age_in_seconds)}"
    assert one(mapping["maximum_record_age_in_seconds"]) == "${var.max_record_age_in_seconds}"
    assert env["FUNCTION_TIMEOUT_SECS"] == "${tostring(var.function_timeout_secs)}"
    assert one(fn["timeout"]) == "${var.function_timeout_secs}"
    assert env["MAX_EVENT_AGE_SECS"] == "${tostring(var.max_event_age_secs)}"
    assert tf.resolve(env["DEADLINE_RESERVE_MS"]) == schema["function"]["environment"]["DEADLINE_RESERVE_MS"]["default"]
    for name in NEW_VARIABLES:
        assert env[name] == "${tostring(var.%s)}" % schema["function"]["environment"][name]["set_from"]["terraform"], name


def test_sam_parameters_carry_the_contract_bounds(template, schema):
    env = schema["function"]["environment"]
    params = template["Parameters"]
    for name in NEW_VARIABLES:
        spec = env[name]
        param = params[spec["set_from"]["sam"]]
        low = min([spec["min"], *spec.get("also", [])])
        assert (param["MinValue"], param["MaxValue"]) == (low, spec["max"]), name


# ------------------------------------------------------------------ SAM: the deploy-time check


def config_check_module(template):
    code = props(template, "ConfigCheckFunction")["Code"]["ZipFile"]
    module = types.ModuleType("config_check")
    exec(compile(code, "template.yaml:ConfigCheckFunction", "exec"), module.__dict__)  # noqa: S102 - our own inline code
    return module


def check_properties(**overrides):
    values = {
        "DedupWindowSecs": 86400, "StreamRetentionHours": 24, "MaxRecordAgeInSeconds": 21600,
        "FunctionTimeoutSecs": 60, "DeadlineReserveMs": 500, "AwsCallTimeoutMs": 5000,
        "ClaimTableWriteUnits": 12000, "ClaimTableMaxWriteUnits": 40000,
    }
    values.update(overrides)
    # CloudFormation passes every property as a string.
    return {"ServiceToken": "arn:aws:lambda:us-east-1:123456789012:function:x", "ServiceTimeout": "120", **{k: str(v) for k, v in values.items()}}


def test_sam_config_check_refuses_exactly_what_the_contract_refuses(template, schema):
    check = config_check_module(template)
    rules = [c["rule"] for c in schema["function"]["constraints"]]
    grid = itertools.product(
        [86400, 172800, 604800, 31622400],        # DedupWindowSecs
        [24, 48, 168, 8760],                       # StreamRetentionHours
        [-1, 0, 59, 60, 21600, 172800, 604800],    # MaxRecordAgeInSeconds
        [1, 2, 30, 31, 60, 900],                   # FunctionTimeoutSecs
    )
    for window, retention, age, timeout in grid:
        values = {"DEDUP_WINDOW_SECS": window, "STREAM_RETENTION_HOURS": retention, "MAX_RECORD_AGE_SECS": age,
                  "FUNCTION_TIMEOUT_SECS": timeout, "DEADLINE_RESERVE_MS": 500, "AWS_CALL_TIMEOUT_MS": 5000}
        age_valid = age == -1 or 60 <= age <= 604800
        expected_ok = age_valid and all(constraint_holds(rule, values) for rule in rules)
        problems = check.problems(check_properties(DedupWindowSecs=window, StreamRetentionHours=retention,
                                                   MaxRecordAgeInSeconds=age, FunctionTimeoutSecs=timeout))
        assert (problems == []) == expected_ok, (values, problems)
    assert check.problems(check_properties(DeadlineReserveMs=1001, FunctionTimeoutSecs=2))
    assert check.problems(check_properties(ClaimTableWriteUnits=20000, ClaimTableMaxWriteUnits=10000))


class FakeResponse:
    def close(self):
        pass


def run_config_check(template, monkeypatch, request_type, resource_properties):
    check = config_check_module(template)
    sent = []
    monkeypatch.setattr(check.urllib.request, "urlopen", lambda request, timeout: sent.append(request) or FakeResponse())
    event = {
        "RequestType": request_type, "ResponseURL": "https://cloudformation-custom-resource-response.example/x",
        "StackId": "arn:aws:cloudformation:us-east-1:123456789012:stack/s/1", "RequestId": "r1",
        "LogicalResourceId": "ConfigCheck", "ResourceProperties": resource_properties,
    }
    monkeypatch.setattr("sys.stdout", io.StringIO())
    check.handler(event, None)
    assert len(sent) == 1 and sent[0].get_method() == "PUT"
    return json.loads(sent[0].data)


def test_sam_config_check_answers_cloudformation(template, monkeypatch):
    ok = run_config_check(template, monkeypatch, "Create", check_properties())
    assert ok["Status"] == "SUCCESS" and ok["LogicalResourceId"] == "ConfigCheck" and ok["RequestId"] == "r1"
    bad = run_config_check(template, monkeypatch, "Update", check_properties(StreamRetentionHours=48))
    assert bad["Status"] == "FAILED" and "DedupWindowSecs=86400" in bad["Reason"] and "172800" in bad["Reason"]
    garbled = run_config_check(template, monkeypatch, "Create", {"ServiceToken": "x"})
    assert garbled["Status"] == "FAILED"
    # A stack must always be deletable, whatever its parameters were.
    gone = run_config_check(template, monkeypatch, "Delete", check_properties(DedupWindowSecs=60))
    assert gone["Status"] == "SUCCESS"


def test_sam_config_check_sees_what_the_stack_deploys(template, schema):
    check = props(template, "ConfigCheck")
    env = sam_env(template)
    # Not set on the function, so the check uses the function's default.
    assert "AWS_CALL_TIMEOUT_MS" not in env
    assert check["AwsCallTimeoutMs"] == schema["function"]["environment"]["AWS_CALL_TIMEOUT_MS"]["default"]
    assert check["DedupWindowSecs"] == env["DEDUP_WINDOW_SECS"]
    assert check["StreamRetentionHours"] == env["STREAM_RETENTION_HOURS"]
    assert check["MaxRecordAgeInSeconds"] == env["MAX_RECORD_AGE_SECS"]
    assert check["FunctionTimeoutSecs"] == env["FUNCTION_TIMEOUT_SECS"]
    assert check["DeadlineReserveMs"] == env["DEADLINE_RESERVE_MS"]
    assert check["ClaimTableWriteUnits"] == {"Ref": "ClaimTableWriteUnits"}
    assert check["ClaimTableMaxWriteUnits"] == {"Ref": "ClaimTableMaxWriteUnits"}
    assert check["ServiceToken"] == {"Fn::GetAtt": ["ConfigCheckFunction", "Arn"]}
    assert template["Resources"]["ConfigCheckFunction"]["Properties"]["Runtime"].startswith("python3.")


def references(value):
    """Logical ids a template value refers to (Ref, GetAtt, ${X} and ${X.Attr} in Sub)."""
    found = set()
    if isinstance(value, dict):
        for key, inner in value.items():
            if key == "Ref" and isinstance(inner, str):
                found.add(inner)
            elif key == "Fn::GetAtt":
                found.add(inner[0] if isinstance(inner, list) else inner.split(".")[0])
            elif key == "Fn::Sub":
                text = inner if isinstance(inner, str) else inner[0]
                found |= {m.split(".")[0] for m in re.findall(r"\$\{([A-Za-z0-9.]+)\}", text)}
                if isinstance(inner, list):
                    found |= references(inner[1])
            found |= references(inner)
    elif isinstance(value, list):
        for inner in value:
            found |= references(inner)
    return found


def test_nothing_retained_on_rollback_is_created_before_the_check_passes(template):
    resources = template["Resources"]
    depends = {}
    for name, body in resources.items():
        explicit = set(as_list(body.get("DependsOn", [])))
        depends[name] = (references(body.get("Properties", {})) | explicit) & set(resources)

    def waits_for_check(name, seen=()):
        if name == "ConfigCheck":
            return True
        return any(waits_for_check(d, (*seen, name)) for d in depends[name] if d not in seen)

    retained = [n for n, b in resources.items() if b.get("DeletionPolicy") == "Retain"]
    assert len(retained) >= 5, retained
    for name in retained + ["ClaimTable", "DedupEnrichFunction", "EventStream"]:
        assert waits_for_check(name), f"{name} could be created before ConfigCheck refuses the parameters"
    assert template["Resources"]["DataKey"]["DependsOn"] == "ConfigCheck"


def test_sam_rules_check_what_cloudformation_can_compare(template):
    rule = template["Rules"]["QuickSightNeedsAPrincipal"]
    assert rule["RuleCondition"] == {"Fn::Equals": [{"Ref": "EnableQuickSight"}, "true"]}
    assert rule["Assertions"][0]["Assert"] == {"Fn::Not": [{"Fn::Equals": [{"Ref": "QuickSightPrincipalArn"}, ""]}]}


# ------------------------------------------------------------------ Terraform: the same bounds and rules


def tf_bounds(conditions, var):
    """(min, max, allowed list, special equality values) a variable's validations state."""
    low = high = allowed = None
    equals = []
    for condition in conditions:
        for op, number in re.findall(rf"var\.{var}\s*(>=|<=|==)\s*(-?[0-9.]+)\b", condition):
            number = float(number) if "." in number else int(number)
            if op == ">=":
                low = number
            elif op == "<=":
                high = number
            else:
                equals.append(number)
        listed = re.search(rf"contains\(\[([^\]]*)\],\s*var\.{var}\)", condition)
        if listed:
            allowed = [json.loads(x.strip().replace("'", '"')) for x in listed.group(1).split(",")]
    return low, high, allowed, equals


def snake(name: str) -> str:
    name = name.replace("MiB", "Mib").replace("QuickSight", "Quicksight")
    return re.sub(r"(?<=[a-z0-9])([A-Z])", r"_\1", name).lower()


def test_terraform_validates_the_bounds_sam_validates(template, tf):
    checked = []
    for name, param in template["Parameters"].items():
        var = snake(name)
        conditions = validations(tf, var)
        low, high, allowed, equals = tf_bounds(conditions, var)
        if "MinValue" in param:
            assert low == param["MinValue"] or param["MinValue"] in equals, f"{var}: Terraform minimum {low}, SAM {param['MinValue']}"
            checked.append(name)
        if "MaxValue" in param:
            assert high == param["MaxValue"], f"{var}: Terraform maximum {high}, SAM {param['MaxValue']}"
        if "AllowedValues" in param and one(tf.variables[var]["type"]) != "${bool}":
            assert allowed is not None and [str(a).lower() for a in allowed] == [str(a).lower() for a in param["AllowedValues"]], var
            checked.append(name)
        if "AllowedPattern" in param:
            patterns = [re.search(r'regex\("(.*)",\s*var\.', c) for c in conditions]
            tf_patterns = [m.group(1).replace("\\\\", "\\") for m in patterns if m]
            assert param["AllowedPattern"] in tf_patterns, f"{var}: {tf_patterns} vs {param['AllowedPattern']}"
    # Every bound the issue names.
    for name in ["ShardCount", "StreamRetentionHours", "MaximumBatchingWindowInSeconds", "LogRetentionDays", "AthenaBytesScannedCutoff",
                 "IteratorAgeAlarmMs", "FreshnessAlarmSeconds", "QuarantineRateAlarmPercent", "IngestServerErrorAlarmPercent"]:
        assert name in checked, name


def test_terraform_declares_the_contract_constraints(tf, schema):
    window = validations(tf, "dedup_window_secs")
    assert any(re.search(r"var\.dedup_window_secs >= max\(var\.stream_retention_hours \* 3600,\s*var\.max_record_age_in_seconds\)", c) for c in window), window
    assert any("var.claim_table_max_write_units >= var.claim_table_write_units" in c for c in validations(tf, "claim_table_max_write_units"))
    assert any("var.enable_quicksight" in c for c in validations(tf, "quicksight_principal_arn"))
    preconditions = one(tf.resource("aws_lambda_function", "dedup_enrich")["lifecycle"])["precondition"]
    assert any("local.deadline_reserve_ms" in one(p["condition"]) and "var.function_timeout_secs * 1000" in one(p["condition"]) for p in preconditions)
    assert any("6 * tonumber(local.aws_call_timeout_ms)" in one(p["condition"]) for p in preconditions)
    assert tf.resolve("${local.aws_call_timeout_ms}") == schema["function"]["environment"]["AWS_CALL_TIMEOUT_MS"]["default"]
    tests = list((ROOT / "infra" / "modules" / "sightline" / "tests").glob("*.tftest.hcl"))
    assert tests, "the refusals are exercised by terraform test"
    text = "\n".join(t.read_text() for t in tests)
    for var in ["dedup_window_secs", "max_record_age_in_seconds", "claim_table_max_write_units", "shard_count", "log_retention_days"]:
        assert f"expect_failures = [var.{var}]" in text, var


def required_version(directory):
    text = (directory / "versions.tf").read_text()
    return re.search(r'required_version\s*=\s*">=\s*([0-9.]+)"', text).group(1)


def test_terraform_version_floor_allows_cross_variable_validation():
    for directory in [ROOT / "infra" / "modules" / "sightline", ROOT / "infra" / "examples" / "complete", ROOT / "infra" / "examples" / "emulator"]:
        major, minor, *_ = (int(x) for x in required_version(directory).split("."))
        assert (major, minor) >= (1, 9), directory


def test_no_region_name_attribute_deprecated_in_provider_6():
    for path in (ROOT / "infra").rglob("*.tf"):
        text = path.read_text()
        assert not re.search(r"data\.aws_region\.[a-z_]+\.name\b", text), f"{path}: use .id (name is deprecated in hashicorp/aws 6, region missing in 5)"


def test_no_deprecated_provider_attributes(tf):
    """With the provider schema check-infra.sh writes (terraform providers schema -json)."""
    path = os.environ.get("SIGHTLINE_TF_PROVIDER_SCHEMA")
    if not path:
        pytest.skip("SIGHTLINE_TF_PROVIDER_SCHEMA is not set (scripts/check-infra.sh sets it)")
    provider = json.loads(open(path).read())["provider_schemas"]["registry.terraform.io/hashicorp/aws"]

    def used_deprecated(block, body, where):
        found = []
        for key, value in body.items():
            if key.startswith("__"):
                continue
            attribute = block.get("attributes", {}).get(key)
            if attribute and attribute.get("deprecated"):
                found.append(f"{where}.{key}")
            nested = block.get("block_types", {}).get(key)
            if nested:
                if nested["block"].get("deprecated"):
                    found.append(f"{where}.{key}")
                for inner in as_list(value):
                    if isinstance(inner, dict):
                        found += used_deprecated(nested["block"], inner, f"{where}.{key}")
        return found

    found = []
    for (rtype, name), body in tf.resources.items():
        found += used_deprecated(provider["resource_schemas"][rtype]["block"], body, f"{rtype}.{name}")
    for (dtype, name), body in tf.data.items():
        found += used_deprecated(provider["data_source_schemas"][dtype]["block"], body, f"data.{dtype}.{name}")
    assert found == []


# ------------------------------------------------------------------ Glue: partition projection


def test_projection_range_holds_every_event_date_the_function_delivers(template, tf, schema):
    """The function delivers timestamps from arrival - MAX_EVENT_AGE_SECS to arrival + 1 day."""
    oldest_age = dt.timedelta(seconds=schema["function"]["environment"]["MAX_EVENT_AGE_SECS"]["max"])
    for params in (props(template, "EventsTable")["TableInput"]["Parameters"], one(tf.resource("aws_glue_catalog_table", "events")["parameters"])):
        start, end = params["projection.event_date.range"].split(",")
        # Fixed: a relative start (NOW-nDAYS) would hide the older partitions the lake keeps.
        start = dt.date.fromisoformat(start)
        assert end == "NOW+1DAYS"
        # Anything arriving from today on, at the largest MAX_EVENT_AGE_SECS, is inside.
        assert start <= dt.date.today() - oldest_age - dt.timedelta(days=1)


# ------------------------------------------------------------------ Firehose limits


def sam_alarm(template, logical_id):
    return props(template, logical_id)


def test_firehose_throttling_and_partition_alarms_in_both_definitions(template, tf):
    events = {"Ref": "EventsDeliveryStream"}
    for logical_id, metric, stat in [("FirehoseThrottledRecordsAlarm", "ThrottledRecords", "Sum"),
                                     ("FirehosePartitionCountExceededAlarm", "PartitionCountExceeded", "Maximum")]:
        alarm = sam_alarm(template, logical_id)
        assert (alarm["Namespace"], alarm["MetricName"], alarm["Statistic"]) == ("AWS/Firehose", metric, stat)
        assert alarm["Dimensions"] == [{"Name": "DeliveryStreamName", "Value": events}]
        assert alarm["Threshold"] == 1 and alarm["AlarmActions"] == [{"Ref": "AlarmTopic"}]
    simple = tf.locals["simple_alarms"]
    for key, metric, stat in [("firehose-throttled-records", "ThrottledRecords", "Sum"),
                              ("firehose-partition-count-exceeded", "PartitionCountExceeded", "Maximum")]:
        alarm = simple[key]
        assert (alarm["namespace"], alarm["metric"], alarm["stat"], alarm["threshold"]) == ("AWS/Firehose", metric, stat, 1)
        assert alarm["dimensions"] == {"DeliveryStreamName": "${aws_kinesis_firehose_delivery_stream.events.name}"}


def test_firehose_quota_alarm_compares_each_usage_metric_with_its_limit(template, tf):
    pairs = {"IncomingBytes": "BytesPerSecondLimit", "IncomingRecords": "RecordsPerSecondLimit", "IncomingPutRequests": "PutRequestsPerSecondLimit"}
    alarm = sam_alarm(template, "FirehoseQuotaAlarm")
    ids = {m["Id"]: m["MetricStat"]["Metric"]["MetricName"] for m in alarm["Metrics"] if "MetricStat" in m}
    expression = next(m["Expression"] for m in alarm["Metrics"] if "Expression" in m)
    for usage, limit in pairs.items():
        usage_id = next(i for i, n in ids.items() if n == usage)
        limit_id = next(i for i, n in ids.items() if n == limit)
        assert f"{usage_id} / 300 / {limit_id}" in expression
    assert alarm["Threshold"] == {"Ref": "FirehoseQuotaAlarmPercent"}
    terraform = tf.resource("aws_cloudwatch_metric_alarm", "firehose_quota")
    tf_expression = next(one(q["expression"]) for q in terraform["metric_query"] if "expression" in q)
    assert tf_expression == expression
    assert {k: v["metric"] for k, v in tf.locals["firehose_quota_metrics"].items()} == ids
    assert one(terraform["threshold"]) == "${var.firehose_quota_alarm_percent}"


# ------------------------------------------------------------------ capacity settings


def test_claim_table_is_prewarmed_on_demand_or_auto_scaled_when_provisioned(template, tf):
    table = props(template, "ClaimTable")
    assert table["WarmThroughput"] == {"Fn::If": ["ClaimsProvisioned", {"Ref": "AWS::NoValue"}, {"WriteUnitsPerSecond": {"Ref": "ClaimTableWriteUnits"}}]}
    provisioned = table["ProvisionedThroughput"]["Fn::If"]
    assert provisioned[0] == "ClaimsProvisioned" and provisioned[1]["WriteCapacityUnits"] == {"Ref": "ClaimTableWriteUnits"}
    assert template["Conditions"]["ClaimsProvisioned"] == {"Fn::Equals": [{"Ref": "ClaimTableBillingMode"}, "PROVISIONED"]}
    assert template["Parameters"]["ClaimTableWriteUnits"]["Default"] >= 10000 * 1.2, "10,000 events/s plus headroom"
    scaling = {n: b for n, b in template["Resources"].items() if b["Type"].startswith("AWS::ApplicationAutoScaling::")}
    assert all(b.get("Condition") == "ClaimsProvisioned" for b in scaling.values())
    write_target = next(b["Properties"] for b in scaling.values()
                        if b["Properties"].get("ScalableDimension") == "dynamodb:table:WriteCapacityUnits")
    assert (write_target["MinCapacity"], write_target["MaxCapacity"]) == ({"Ref": "ClaimTableWriteUnits"}, {"Ref": "ClaimTableMaxWriteUnits"})
    metrics = {b["Properties"]["TargetTrackingScalingPolicyConfiguration"]["PredefinedMetricSpecification"]["PredefinedMetricType"]
               for b in scaling.values() if b["Type"].endswith("ScalingPolicy")}
    assert metrics == {"DynamoDBWriteCapacityUtilization", "DynamoDBReadCapacityUtilization"}

    claims = tf.resource("aws_dynamodb_table", "claims")
    assert one(claims["write_capacity"]) == "${local.claims_provisioned ? var.claim_table_write_units : None}"
    target = tf.resource("aws_appautoscaling_target", "claims_write")
    assert (one(target["min_capacity"]), one(target["max_capacity"])) == ("${var.claim_table_write_units}", "${var.claim_table_max_write_units}")
    assert one(target["count"]) == "${local.claims_provisioned ? 1 : 0}"
    # Provider 5.x has no warm_throughput: the module hands over the command instead.
    assert "--warm-throughput WriteUnitsPerSecond=${var.claim_table_write_units}" in one(tf.outputs["claim_table_prewarm_command"]["value"])


def test_kinesis_capacity_mode_is_a_setting_in_both(template, tf):
    param = template["Parameters"]["StreamMode"]
    assert sorted(param["AllowedValues"]) == ["ON_DEMAND", "PROVISIONED"]
    assert props(template, "EventStream")["StreamModeDetails"] == {"StreamMode": {"Ref": "StreamMode"}}
    stream = tf.resource("aws_kinesis_stream", "events")
    assert one(one(stream["stream_mode_details"])["stream_mode"]) == "${var.stream_mode}"
    assert one(tf.variables["stream_mode"]["default"]) == param["Default"]


# ------------------------------------------------------------------ security findings


def sam_role_statements(template):
    for name, body in template["Resources"].items():
        if body["Type"] == "AWS::IAM::Role":
            for policy in body["Properties"].get("Policies", []):
                for statement in policy["PolicyDocument"]["Statement"]:
                    yield name, statement


def tf_role_statements(tf):
    for (dtype, name), body in tf.data.items():
        if dtype == "aws_iam_policy_document" and name != "data_key":  # the key policy is not a role's
            for statement in body.get("statement", []):
                yield name, statement


def test_kms_grants_to_roles_carry_via_service(template, tf):
    seen = 0
    for role, statement in sam_role_statements(template):
        if any(a.startswith("kms:") for a in as_list(statement["Action"])):
            via = statement.get("Condition", {}).get("StringEquals", {}).get("kms:ViaService")
            assert via, f"{role}/{statement.get('Sid')} grants KMS without kms:ViaService"
            seen += 1
    for document, statement in tf_role_statements(tf):
        if any(a.startswith("kms:") for a in one(statement["actions"])):
            conditions = statement.get("condition", [])
            assert any(one(c["variable"]) == "kms:ViaService" and one(c["test"]) == "StringEquals" for c in conditions), \
                f"{document}/{one(statement['sid'])} grants KMS without kms:ViaService"
            seen += 1
    assert seen >= 8


# Step Functions' execution logging (the rollup state machine): CloudWatch Logs'
# log-delivery actions, which have no resource-level permissions.
LOG_DELIVERY_ACTIONS = {
    "logs:CreateLogDelivery",
    "logs:GetLogDelivery",
    "logs:UpdateLogDelivery",
    "logs:DeleteLogDelivery",
    "logs:ListLogDeliveries",
    "logs:PutResourcePolicy",
    "logs:DescribeResourcePolicies",
    "logs:DescribeLogGroups",
}


def test_no_enhanced_fan_out_or_list_streams_permissions(template, tf):
    everything = json.dumps(template["Resources"]) + json.dumps({str(k): v for k, v in tf.data.items()})
    assert "kinesis:SubscribeToShard" not in everything
    assert "kinesis:ListStreams" not in everything
    # Only actions without resource-level permissions may have "*": X-Ray's, and the
    # CloudWatch Logs log-delivery actions Step Functions' execution logging needs.
    def unscoped(action):
        return action.startswith("xray:") or action in LOG_DELIVERY_ACTIONS

    for role, statement in sam_role_statements(template):
        if statement.get("Resource") == "*":
            assert all(unscoped(a) for a in as_list(statement["Action"])), f"{role}/{statement['Sid']}"
    for document, statement in tf_role_statements(tf):
        if one(statement.get("resources", [[]])) == ["*"] and one(statement.get("effect", ["Allow"])) == "Allow":
            assert all(unscoped(a) for a in one(statement["actions"])), f"{document}/{one(statement['sid'])}"


def test_log_delivery_grant_is_scoped_to_this_stacks_buckets(template, tf):
    statements = props(template, "AccessLogsBucketPolicy")["PolicyDocument"]["Statement"]
    grant = next(s for s in statements if s["Sid"] == "S3ServerAccessLogDelivery")
    sources = [a["Fn::Sub"] for a in grant["Condition"]["ArnLike"]["aws:SourceArn"]]
    logged = [b for b, body in template["Resources"].items()
              if body["Type"] == "AWS::S3::Bucket" and "LoggingConfiguration" in body["Properties"]]
    names = sorted(props(template, b)["BucketName"]["Fn::Sub"] for b in logged)
    assert sorted(s.removeprefix("arn:${AWS::Partition}:s3:::") for s in sources) == names
    assert grant["Condition"]["StringEquals"]["aws:SourceAccount"] == {"Ref": "AWS::AccountId"}

    tf_grant = next(s for s in tf.data[("aws_iam_policy_document", "access_logs")]["statement"] if one(s["sid"]) == "S3ServerAccessLogDelivery")
    conditions = {one(c["variable"]): (one(c["test"]), one(c["values"])) for c in tf_grant["condition"]}
    test, values = conditions["aws:SourceArn"]
    assert test == "ArnLike" and "local.data_buckets" in str(values) and "${local.bucket_prefix}-${name}" in str(values)
    assert conditions["aws:SourceAccount"][0] == "StringEquals"


def test_quicksight_service_role_is_a_parameter(template, tf):
    param = template["Parameters"]["QuickSightServiceRoleName"]
    assert param["Default"] == "service-role/aws-quicksight-service-role-v0"
    statements = props(template, "DataKey")["KeyPolicy"]["Statement"]
    conditional = next(s["Fn::If"] for s in statements if isinstance(s, dict) and "Fn::If" in s)
    assert conditional[0] == "QuickSightEnabled"
    assert conditional[1]["Principal"]["AWS"] == {"Fn::Sub": "arn:${AWS::Partition}:iam::${AWS::AccountId}:role/${QuickSightServiceRoleName}"}
    assert one(tf.variables["quicksight_service_role_name"]["default"]) == param["Default"]
    key_policy = json.dumps(tf.data[("aws_iam_policy_document", "data_key")])
    assert "role/${var.quicksight_service_role_name}" in key_policy
    assert "aws-quicksight-service-role-v0" not in key_policy


def test_deleting_the_stack_never_fails_on_athena_results(template, tf):
    # SAM retains the bucket (like every data bucket); Terraform empties it on destroy.
    assert template["Resources"]["AthenaResultsBucket"]["DeletionPolicy"] == "Retain"
    assert template["Resources"]["AthenaResultsBucket"]["UpdateReplacePolicy"] == "Retain"
    assert one(tf.resource("aws_s3_bucket", "data")["force_destroy"]).startswith('${each.key == "athena" ? True')


def whole_bucket(rule):
    return "Prefix" not in rule and "TagFilters" not in rule


def test_versioned_buckets_expire_noncurrent_versions_and_delete_markers(template, tf):
    buckets = [b for b, body in template["Resources"].items()
               if body["Type"] == "AWS::S3::Bucket" and body["Properties"].get("VersioningConfiguration", {}).get("Status") == "Enabled"]
    assert len(buckets) == 5
    for bucket in buckets:
        rules = props(template, bucket)["LifecycleConfiguration"]["Rules"]
        assert any(whole_bucket(r) and "NoncurrentVersionExpiration" in r for r in rules), bucket
        assert any(whole_bucket(r) and r.get("ExpiredObjectDeleteMarker") is True and "ExpirationInDays" not in r for r in rules), bucket

    lifecycles = {name: body for (rtype, name), body in tf.resources.items() if rtype == "aws_s3_bucket_lifecycle_configuration"}
    assert set(lifecycles) == {"lake", "quarantine", "raw", "athena", "access_logs"}
    for name, body in lifecycles.items():
        rules = body["rule"]
        everywhere = [r for r in rules if one(r.get("filter", [{}])) == {}]
        assert any("noncurrent_version_expiration" in r for r in everywhere), name
        assert any(one(one(r.get("expiration", [{}])).get("expired_object_delete_marker", [False])) is True for r in everywhere), name


# ------------------------------------------------------------------ sam build / sam deploy


def test_samconfig_grants_the_capabilities_the_template_needs(template):
    config = tomllib.loads((ROOT / "samconfig.toml").read_text())
    deploy = config["default"]["deploy"]["parameters"]
    capabilities = deploy["capabilities"].split() if isinstance(deploy["capabilities"], str) else deploy["capabilities"]
    named = [n for n, b in template["Resources"].items()
             if any(k in b.get("Properties", {}) for k in ("RoleName", "ManagedPolicyName", "GroupName", "UserName"))]
    assert named, "the template names an IAM resource (IngestInvokePolicy)"
    assert {"CAPABILITY_IAM", "CAPABILITY_NAMED_IAM"} <= set(capabilities)
    assert deploy["confirm_changeset"] is True and deploy["resolve_s3"] is True
    assert config["default"]["global"]["parameters"]["stack_name"]
    build = config["default"]["build"]["parameters"]
    assert build.get("parallel", False) is False, "parallel cargo builds would fight over one target directory and 2 cores"


@pytest.mark.parametrize("path", [".aws-sam/build/template.yaml", "functions/dedup-enrich/target/lambda/x", "functions/ingest/target/x", "target/lambda/x"])
def test_build_outputs_are_ignored_by_git(path):
    if not shutil.which("git") or not (ROOT / ".git").exists():
        pytest.skip("not a git checkout")
    result = subprocess.run(["git", "check-ignore", "-q", path], cwd=ROOT)
    assert result.returncode == 0, f"{path} is not ignored"


def test_deploy_guide_names_what_the_stack_outputs(template, tf):
    guide = (ROOT / "docs" / "deploy.md").read_text()
    for output in ["AthenaWorkGroupName", "GlueDatabaseName", "IngestUrl", "StreamName"]:
        assert output in template["Outputs"] and output in guide, output
    for output in ["athena_workgroup_name", "glue_database_name", "ingest_url", "claim_table_prewarm_command"]:
        assert output in guide, output
    complete = TerraformModule(ROOT / "infra" / "examples" / "complete")
    assert {"athena_workgroup_name", "glue_database_name", "claim_table_prewarm_command"} <= set(complete.outputs)
    assert "scripts/build-lambda.sh" in guide and "sam build" in guide and "sightline produce" in guide


# ------------------------------------------------------------------ the Rust side of the contract


RUST_SOURCES = [ROOT / "shared" / "core" / "src", ROOT / "functions" / "dedup-enrich" / "src"]


def rust_constants():
    """`const NAME: type = expr;` of the function's crates, by name (last segment)."""
    found = {}
    for directory in RUST_SOURCES:
        for path in directory.rglob("*.rs"):
            for name, expr in re.findall(r"\bconst ([A-Z][A-Z0-9_]*): [\w:]+ = ([^;]+);", path.read_text()):
                found.setdefault(name, expr.strip())
    return found


def rust_value(expr: str, constants: dict, depth: int = 0):
    """An integer constant expression of the Rust config (literals, *, /, casts, named constants), or None."""
    expr = re.sub(r"\bas [iu](64|32|size)\b", "", expr)
    expr = re.sub(r"\b[iu](64|32)::from\((.*)\)", r"\2", expr)
    if depth > 4:
        return None

    def name(match):
        value = rust_value(constants.get(match.group(1).split("::")[-1], "x"), constants, depth + 1)
        if value is None:
            raise LookupError(match.group(1))
        return str(value)

    try:
        expr = re.sub(r"\b((?:[a-z_]+::)*[A-Z][A-Z0-9_]+)\b", name, expr)
    except LookupError:
        return None
    expr = expr.replace("_", "")
    if not re.fullmatch(r"[-0-9 ()*/+]+", expr):
        return None
    return int(eval(expr, {"__builtins__": {}}))  # noqa: S307 - digits and operators only


def test_config_rs_reads_the_contract_defaults_and_bounds(schema):
    source = ROOT / "functions" / "dedup-enrich" / "src" / "config.rs"
    if not source.exists():
        pytest.skip("functions/dedup-enrich/src/config.rs is not there")
    text = source.read_text()
    names = dict(re.findall(r'pub const (ENV_[A-Z0-9_]+): &str = "([A-Z0-9_]+)";', text))
    constants = rust_constants()
    calls = re.findall(r"env\.integer\(\s*(ENV_[A-Z0-9_]+),\s*([^,]+),\s*([^,]+),\s*([^,]+),", text)
    env = schema["function"]["environment"]
    checked = set()
    for const, default, low, high in calls:
        name = names[const]
        spec = env[name]
        assert rust_value(low, constants) == min([spec["min"], *spec.get("also", [])]), f"{name}: minimum {low}"
        assert rust_value(high, constants) == spec["max"], f"{name}: maximum {high}"
        value = rust_value(default, constants)
        if value is not None:
            assert str(value) == spec["default"], f"{name}: default {default} = {value}"
        checked.add(name)
    assert set(NEW_VARIABLES) | {"DEADLINE_RESERVE_MS", "DEDUP_WINDOW_SECS"} <= checked, checked
