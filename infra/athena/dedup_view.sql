-- events_dedup: the deduplicated, enriched events (Trino / Athena engine v3 dialect).
--
-- dedup-enrich already drops duplicates with its DynamoDB claims and already joins
-- Dataset B (geographical_location comes from the function's embedded CSV), so this
-- view is only the final guard against the doubles no function can prevent:
-- Firehose's own at-least-once delivery, and a batch redelivered after Firehose
-- accepted it but before the function wrote its checkpoint. Keep the first copy by
-- Kinesis arrival, then by sequence number.
--
-- The same SELECT is embedded in template.yaml (EventsDedupView) and in
-- infra/modules/sightline/catalog.tf (local.dedup_view_sql) as a Glue VIRTUAL_VIEW, so
-- the view exists right after deploy; tests/infra checks the three are the same query.
-- Running this file in the workgroup (re)creates the view by hand.
--
-- The window partitions by event_date, event_hour and detection_oid: every copy of
-- one event carries the same timestamp_detected, hence the same partition values,
-- so this removes every double the pipeline can produce, and a filter on
-- event_date/event_hour is pushed below the window so Athena reads only the
-- queried partitions. See infra/README.md ("The dedup view and partition pruning").
CREATE OR REPLACE VIEW events_dedup AS
SELECT
  detection_oid,
  video_camera_oid,
  geographical_location_oid,
  item_name,
  timestamp_detected,
  geographical_location,
  ingested_at,
  source_shard,
  source_sequence,
  event_date,
  event_hour
FROM (
  SELECT
    detection_oid,
    video_camera_oid,
    geographical_location_oid,
    item_name,
    timestamp_detected,
    geographical_location,
    ingested_at,
    source_shard,
    source_sequence,
    event_date,
    event_hour,
    ROW_NUMBER() OVER (
      PARTITION BY event_date, event_hour, detection_oid
      ORDER BY ingested_at, source_sequence
    ) AS copy_rank
  FROM events
) AS ranked
WHERE copy_rank = 1
