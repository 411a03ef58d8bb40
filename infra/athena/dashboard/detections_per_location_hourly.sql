-- Detections per location per hour (UTC), last 7 days, from the deduplicated view.
-- Unknown Dataset B ids are delivered with a null location; they are shown as UNKNOWN.
SELECT
  date_parse(event_date || ' ' || event_hour, '%Y-%m-%d %H') AS hour_utc,
  coalesce(geographical_location, 'UNKNOWN') AS location,
  count(*) AS detections
FROM events_dedup
WHERE event_date >= date_format(current_date - INTERVAL '7' DAY, '%Y-%m-%d')
GROUP BY 1, 2
ORDER BY hour_utc, location
