-- Detections per location per hour (UTC), last 7 days, from the dashboard view (hourly
-- rollups for closed hours, the deduplicated view for the open ones).
-- Unknown Dataset B ids are delivered with a null location; they are shown as UNKNOWN.
SELECT
  date_parse(event_date || ' ' || event_hour, '%Y-%m-%d %H') AS hour_utc,
  coalesce(geographical_location, 'UNKNOWN') AS location,
  sum(detections) AS detections
FROM events_dashboard
WHERE event_date >= date_format(current_date - INTERVAL '7' DAY, '%Y-%m-%d')
GROUP BY 1, 2
ORDER BY hour_utc, location
