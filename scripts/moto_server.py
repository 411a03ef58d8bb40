"""moto's server, plus two Step Functions actions moto 5.2 lacks.

The AWS provider for Terraform calls ValidateStateMachineDefinition while planning
an aws_sfn_state_machine, and ListStateMachineVersions when reading one; moto
answers 500 (not implemented) and the provider retries for many minutes.
- ValidateStateMachineDefinition is answered the way AWS does for a definition
  that parses: JSON with StartAt naming one of its States is OK, anything else
  FAIL with a diagnostic. AWS checks far more (tests/infra checks our
  definitions' own rules).
- ListStateMachineVersions lists none: the stacks never publish a version.
Usage: moto_server.py [moto_server's arguments]
"""
import json
import sys

from moto.server import main
from moto.stepfunctions.responses import StepFunctionResponse


def _diagnostics(definition):
    try:
        doc = json.loads(definition)
    except (TypeError, ValueError) as e:
        return [f"the definition is not JSON: {e}"]
    if not isinstance(doc, dict) or not isinstance(doc.get("States"), dict):
        return ["the definition has no States object"]
    if doc.get("StartAt") not in doc["States"]:
        return [f"StartAt {doc.get('StartAt')!r} is not one of the States"]
    return []


def validate_state_machine_definition(self):
    problems = _diagnostics(self._get_param("definition"))
    return json.dumps({
        "result": "FAIL" if problems else "OK",
        "diagnostics": [{"severity": "ERROR", "code": "SCHEMA_VALIDATION_FAILED", "message": p}
                        for p in problems],
    })


def list_state_machine_versions(self):
    return json.dumps({"stateMachineVersions": []})


StepFunctionResponse.validate_state_machine_definition = validate_state_machine_definition
StepFunctionResponse.list_state_machine_versions = list_state_machine_versions

if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
