-- Doubles removed by the deduplicated view, per day, last 7 days: rows in the lake minus
-- rows in events_dedup, from the dashboard view's lake_rows and detections. These are
-- Firehose's at-least-once redeliveries and batches retried after Firehose accepted them
-- but before the function's checkpoint was written.
--
-- The duplicate rate and the quarantine rate can NOT come from the lake alone: the
-- function drops upstream duplicates and quarantines bad records before Firehose,
-- so neither ever reaches events/. Those rates come from the function's EMF metrics
-- (namespace Sightline, dimension FunctionName: Duplicates / Received and
-- Quarantined / Received), shown on the CloudWatch dashboard and alarmed on there.
SELECT
  event_date,
  sum(lake_rows) AS rows_in_lake,
  sum(detections) AS rows_in_view,
  sum(lake_rows) - sum(detections) AS doubles_removed
FROM events_dashboard
WHERE event_date >= date_format(current_date - INTERVAL '7' DAY, '%Y-%m-%d')
GROUP BY event_date
ORDER BY event_date
