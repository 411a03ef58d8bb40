"""Every Athena query in infra/athena parses as Trino (Athena engine v3) SQL, and the
dashboards read the dashboard view, filtered on the partition columns.

The same files run locally over a lake the project's own code wrote
(shared/sql/src/query.rs; cli/tests/demo.rs checks their answers).
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
    assert {"dedup_view.sql", "hourly_live_view.sql", "dashboard_view.sql", "rollup_job.sql"} <= names
    assert len([n for n in names if n.startswith("dashboard/")]) >= 4


@pytest.mark.parametrize("path", SQL_FILES, ids=lambda p: p.relative_to(ATHENA).as_posix())
def test_parses_as_trino(path):
    statements = parse(path.read_text())
    assert len(statements) == 1, f"{path.name}: keep one statement per file so a local engine can run it"


DASHBOARD_FILES = [p for p in SQL_FILES if p.parent.name == "dashboard"]


def from_of(select):
    """A SELECT's FROM clause (sqlglot 30 names the key `from_`)."""
    return select.args.get("from_") or select.args.get("from")


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboards_read_the_dashboard_view(path):
    query = parse(path.read_text())[0]
    ctes = {c.alias_or_name for c in query.find_all(sqlglot.exp.CTE)}
    tables = {t.name for t in query.find_all(sqlglot.exp.Table)} - ctes
    assert tables == {"events_dashboard"}, f"{path.name} must read events_dashboard only (rollups + live), not {tables}"


@pytest.mark.parametrize("path", DASHBOARD_FILES, ids=lambda p: p.name)
def test_dashboards_filter_on_the_partition_columns(path):
    """Every scan of the view is bounded by event_date, so Athena prunes partitions."""
    query = parse(path.read_text())[0]
    selects = [s for s in query.find_all(sqlglot.exp.Select)
               if from_of(s) and any(t.name == "events_dashboard" for t in from_of(s).find_all(sqlglot.exp.Table))]
    assert selects, path.name
    for select in selects:
        where = select.args.get("where")
        assert where is not None, f"{path.name}: a scan of events_dashboard without WHERE"
        columns = {c.name for c in where.find_all(sqlglot.exp.Column)}
        assert "event_date" in columns, f"{path.name}: the WHERE must bound event_date"


def test_the_views_filter_both_sides_on_the_partition_columns():
    view = parse((ATHENA / "dashboard_view.sql").read_text())[0].expression
    union = view if isinstance(view, sqlglot.exp.Union) else view.find(sqlglot.exp.Union)
    sides = [union.left, union.right]
    assert [from_of(s).this.name for s in sides] == ["events_hourly", "events_hourly_live"]
    for side in sides:
        columns = {c.name for c in side.args["where"].find_all(sqlglot.exp.Column)}
        assert columns == {"event_date", "event_hour"}, columns


def test_the_rollup_job_writes_one_hour_of_the_live_view():
    insert = parse((ATHENA / "rollup_job.sql").read_text())[0]
    assert isinstance(insert, sqlglot.exp.Insert)
    assert insert.this.name == "events_hourly"
    select = insert.expression
    assert from_of(select).this.name == "events_hourly_live"
    placeholders = list(select.args["where"].find_all(sqlglot.exp.Placeholder))
    assert len(placeholders) == 2, "event_date = ? AND event_hour = ?"
    # Partition columns last, as Athena's INSERT INTO into a Hive table needs.
    assert [e.alias_or_name for e in select.expressions][-2:] == ["event_date", "event_hour"]


def test_parser_rejects_broken_sql():
    # Guards the check itself: a syntax error must fail, not be skipped.
    with pytest.raises(ParseError):
        parse("SELECT count(* FROM events_dedup")
