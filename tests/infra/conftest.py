"""Shared loaders for the infrastructure checks.

template.yaml is CloudFormation/SAM YAML: its short-form intrinsics (!Ref, !Sub, ...)
are turned into their long form ({"Ref": ...}, {"Fn::Sub": ...}). The Terraform
module is parsed with the `hcl2` module (bc-python-hcl2, the parser checkov ships),
which wraps every attribute value in a one-element list.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import hcl2
import pytest
import yaml

ROOT = Path(__file__).resolve().parents[2]
TEMPLATE = ROOT / "template.yaml"
SCHEMA = ROOT / "infra" / "schema.json"
MODULE = ROOT / "infra" / "modules" / "sightline"
ATHENA = ROOT / "infra" / "athena"


class CfnLoader(yaml.SafeLoader):
    """SafeLoader that understands CloudFormation's short-form intrinsic functions."""


def _intrinsic(loader: CfnLoader, tag_suffix: str, node: yaml.Node):
    if isinstance(node, yaml.ScalarNode):
        value = loader.construct_scalar(node)
    elif isinstance(node, yaml.SequenceNode):
        value = loader.construct_sequence(node, deep=True)
    else:
        value = loader.construct_mapping(node, deep=True)
    if tag_suffix == "Ref":
        return {"Ref": value}
    if tag_suffix == "Condition":
        return {"Condition": value}
    if tag_suffix == "GetAtt" and isinstance(value, str):
        value = value.split(".", 1)
    return {f"Fn::{tag_suffix}": value}


CfnLoader.add_multi_constructor("!", _intrinsic)


def load_template() -> dict:
    return yaml.load(TEMPLATE.read_text(), Loader=CfnLoader)  # noqa: S506 - SafeLoader subclass


def one(value):
    """hcl2 wraps attribute values in a one-element list; unwrap it."""
    if isinstance(value, list) and len(value) == 1:
        return value[0]
    return value


class TerraformModule:
    """Every .tf file of one module directory, merged."""

    def __init__(self, directory: Path):
        self.resources: dict[tuple[str, str], dict] = {}
        self.data: dict[tuple[str, str], dict] = {}
        self.locals: dict[str, object] = {}
        self.variables: dict[str, dict] = {}
        self.outputs: dict[str, dict] = {}
        for path in sorted(directory.glob("*.tf")):
            with path.open() as handle:
                doc = hcl2.load(handle)
            for block in doc.get("resource", []):
                for rtype, named in block.items():
                    for name, body in named.items():
                        self.resources[(rtype, name)] = body
            for block in doc.get("data", []):
                for dtype, named in block.items():
                    for name, body in named.items():
                        self.data[(dtype, name)] = body
            for block in doc.get("locals", []):
                for key, value in block.items():
                    if not key.startswith("__"):
                        self.locals[key] = one(value)
            for block in doc.get("variable", []):
                self.variables.update(block)
            for block in doc.get("output", []):
                self.outputs.update(block)

    def resource(self, rtype: str, name: str) -> dict:
        return self.resources[(rtype, name)]

    def resolve(self, value):
        """Resolves a bare `${local.name}` reference to a literal local, else returns it."""
        if isinstance(value, str):
            match = re.fullmatch(r"\$\{local\.([A-Za-z0-9_]+)\}", value)
            if match and isinstance(self.locals.get(match.group(1)), str):
                return self.locals[match.group(1)]
        return value


@pytest.fixture(scope="session")
def schema() -> dict:
    return json.loads(SCHEMA.read_text())


@pytest.fixture(scope="session")
def template() -> dict:
    return load_template()


@pytest.fixture(scope="session")
def tf() -> TerraformModule:
    return TerraformModule(MODULE)
