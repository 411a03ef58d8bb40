-- events_dashboard: what every dashboard query reads (Trino / Athena engine v3 dialect).
-- The hourly rollups for the closed hours, and the same aggregation computed live from
-- the deduplicated view for the hours still open, so a dashboard shows an event as soon
-- as it lands in the lake and still scans only the open hours plus the small rollups.
--
-- The boundary is a fixed time rule on the partition columns only, so Athena prunes
-- both sides at planning time (current_timestamp is a constant within a query, and the
-- Hive connector tests such predicates against each partition's values; the live
-- side's event_date bound also gives partition projection a range to enumerate):
--   * an hour H counts as closed from H + 1 h + 45 min on; before that it is live;
--   * the rollup job writes H at H + 1 h + 25 min (the schedule, cron(25 * * * ? *)):
--     25 min for Firehose's buffer (at most 1.5 x 900 s = 22.5 min) and late events,
--     then 20 min for the job itself (lock, delete, INSERT INTO; about a minute).
-- Hours between 25 and 45 minutes past their end are both rolled up and read live (the
-- same numbers). An hour the job failed to write shows as missing once it closes; the
-- rollup-failed alarm says so and `sightline rollup` rebuilds it. See docs/rollups.md.
--
-- Columns as in events_hourly, plus source: 'rollup' or 'live' (cast to varchar, so the
-- view's stored column type is plain varchar, not varchar(6)). The same SELECT is
-- embedded in template.yaml (EventsDashboardView) and
-- infra/modules/sightline/rollups.tf (local.dashboard_view_sql); tests/infra checks
-- they are the same query.
CREATE OR REPLACE VIEW events_dashboard AS
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
  CAST('rollup' AS varchar) AS source,
  event_date,
  event_hour
FROM events_hourly
WHERE event_date || event_hour < date_format(current_timestamp - INTERVAL '45' MINUTE, '%Y-%m-%d%H')
UNION ALL
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
  CAST('live' AS varchar) AS source,
  event_date,
  event_hour
FROM events_hourly_live
WHERE event_date >= date_format(current_timestamp - INTERVAL '45' MINUTE, '%Y-%m-%d')
  AND event_date || event_hour >= date_format(current_timestamp - INTERVAL '45' MINUTE, '%Y-%m-%d%H')
