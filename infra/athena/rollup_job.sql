-- The rollup job: writes one closed hour of events_hourly_live into events_hourly
-- (Trino / Athena engine v3 dialect).
--
-- The two ? are Athena execution parameters, bound in order: the hour's event_date
-- ('YYYY-MM-DD') and event_hour ('HH'), as quoted string literals. Athena allows them
-- in the WHERE clause of an INSERT INTO; the local engine binds them the same way
-- (shared/local/src/trino.rs, bind_execution_parameters).
--
-- INSERT INTO only appends, so rewriting an hour replaces it in two steps, always in
-- this order and never two at once for the same hour: the objects under the hour's
-- prefix, rollups/events_hourly/event_date=D/event_hour=H/, are deleted, then this
-- runs. The state machine (template.yaml RollupStateMachine, Terraform
-- aws_sfn_state_machine.rollup) holds a lock item per hour in the claim table around
-- both steps; `sightline rollup` does the same over the local lake. A rerun, a
-- backfill or the scheduled re-check of an hour therefore replaces that hour, and a
-- late event never doubles a count. See docs/rollups.md.
--
-- Embedded in both state machine definitions; tests/infra checks they are this query.
INSERT INTO events_hourly
SELECT
  geographical_location_oid,
  geographical_location,
  item_name,
  detections,
  cameras,
  camera_ids,
  first_detected_ms,
  last_detected_ms,
  lake_rows,
  event_date,
  event_hour
FROM events_hourly_live
WHERE event_date = ? AND event_hour = ?
