"""Every Athena query in infra/athena parses as Trino (Athena engine v3) SQL.

Executing them against a local lake produced by the project's own code is a later
step (see infra/README.md, TODO).
"""

from __future__ import annotations

import pytest
import sqlglot
from sqlglot.errors import ParseError

from conftest import ATHENA

SQL_FILES = sorted(ATHENA.rglob("*.sql"))


def parse(text: str) -> list[sqlglot.exp.Expression]:
    statements = sqlglot.parse(text, read="trino", error_level=sqlglot.ErrorLevel.RAISE)
    return [s for s in statements if s is not None]


def test_there_are_queries():
    names = {p.relative_to(ATHENA).as_posix() for p in SQL_FILES}
    assert "dedup_view.sql" in names
    assert len([n for n in names if n.startswith("dashboard/")]) >= 4


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda p: p.relative_to(ATHENA).as_posix())
def test_parses_as_trino(path):
    statements = parse(path.read_text())
    assert len(statements) == 1, f"{path.name}: keep one statement per file so a local engine can run it"


@pytest.mark.parametrize(
    "path", [p for p in SQL_FILES if p.parent.name == "dashboard"], ids=lambda p: p.name
)
def test_dashboards_read_the_view(path):
    query = parse(path.read_text())[0]
    ctes = {c.alias_or_name for c in query.find_all(sqlglot.exp.CTE)}
    tables = {t.name for t in query.find_all(sqlglot.exp.Table)} - ctes
    assert "events_dedup" in tables, f"{path.name} must query the deduplicated view"
    assert tables <= {"events", "events_dedup"}


def test_parser_rejects_broken_sql():
    # Guards the check itself: a syntax error must fail, not be skipped.
    with pytest.raises(ParseError):
        parse("SELECT count(* FROM events_dedup")
