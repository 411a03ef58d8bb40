-- events_hourly_live: the hourly rollup computed live from the deduplicated view
-- (Trino / Athena engine v3 dialect). One definition, used twice:
--   * the rollup job (rollup_job.sql) writes one closed hour of it into events_hourly;
--   * the dashboard view (dashboard_view.sql) reads it for the hours still open.
-- So the rolled-up and the live hours are computed by the same query.
--
-- One row per event_date, event_hour, geographical_location_oid, geographical_location
-- and item_name:
--   detections          rows of events_dedup (each unique event once);
--   cameras             distinct video_camera_oid in the row;
--   camera_ids          those cameras, sorted: distinct cameras over any set of rows is
--                       cardinality(array_distinct(flatten(array_agg(camera_ids)))),
--                       exact, which a count of per-hour counts could not give;
--   first_detected_ms,
--   last_detected_ms    min and max timestamp_detected (epoch ms);
--   lake_rows           rows of the raw events table, doubles included (lake_rows -
--                       detections = the doubles the dedup view removed).
-- Every copy of one event carries the same location, item and timestamp, so the doubles
-- fall in the row of the event they double.
--
-- A filter on event_date/event_hour (both are grouping keys) is pushed through the GROUP
-- BY and the UNION ALL into both scans, so Athena reads only the filtered partitions.
-- The same SELECT is embedded in template.yaml (EventsHourlyLiveView) and
-- infra/modules/sightline/rollups.tf (local.hourly_live_view_sql); tests/infra checks
-- they are the same query. Running this file (re)creates the view by hand.
CREATE OR REPLACE VIEW events_hourly_live AS
WITH hour_rows AS (
  SELECT
    geographical_location_oid,
    geographical_location,
    item_name,
    video_camera_oid,
    timestamp_detected,
    1 AS in_view,
    0 AS in_lake,
    event_date,
    event_hour
  FROM events_dedup
  UNION ALL
  SELECT
    geographical_location_oid,
    geographical_location,
    item_name,
    CAST(NULL AS bigint) AS video_camera_oid,
    CAST(NULL AS bigint) AS timestamp_detected,
    0 AS in_view,
    1 AS in_lake,
    event_date,
    event_hour
  FROM events
)
SELECT
  geographical_location_oid,
  geographical_location,
  item_name,
  sum(in_view) AS detections,
  count(DISTINCT video_camera_oid) AS cameras,
  array_sort(array_agg(DISTINCT video_camera_oid) FILTER (WHERE video_camera_oid IS NOT NULL)) AS camera_ids,
  min(timestamp_detected) AS first_detected_ms,
  max(timestamp_detected) AS last_detected_ms,
  sum(in_lake) AS lake_rows,
  event_date,
  event_hour
FROM hour_rows
GROUP BY event_date, event_hour, geographical_location_oid, geographical_location, item_name
