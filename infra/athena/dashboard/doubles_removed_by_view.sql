-- Doubles removed by the view, per day, last 7 days: rows in the lake minus rows in
-- events_dedup. These are Firehose's at-least-once redeliveries and batches retried
-- after Firehose accepted them but before the function's checkpoint was written.
--
-- The duplicate rate and the quarantine rate can NOT come from the lake alone: the
-- function drops upstream duplicates and quarantines bad records before Firehose,
-- so neither ever reaches events/. Those rates come from the function's EMF metrics
-- (namespace Sightline, dimension FunctionName: Duplicates / Received and
-- Quarantined / Received), shown on the CloudWatch dashboard and alarmed on there.
WITH lake AS (
  SELECT event_date, count(*) AS rows_in_lake
  FROM events
  WHERE event_date >= date_format(current_date - INTERVAL '7' DAY, '%Y-%m-%d')
  GROUP BY event_date
),
deduplicated AS (
  SELECT event_date, count(*) AS rows_in_view
  FROM events_dedup
  WHERE event_date >= date_format(current_date - INTERVAL '7' DAY, '%Y-%m-%d')
  GROUP BY event_date
)
SELECT
  lake.event_date,
  lake.rows_in_lake,
  coalesce(deduplicated.rows_in_view, 0) AS rows_in_view,
  lake.rows_in_lake - coalesce(deduplicated.rows_in_view, 0) AS doubles_removed
FROM lake
LEFT JOIN deduplicated ON deduplicated.event_date = lake.event_date
ORDER BY lake.event_date
