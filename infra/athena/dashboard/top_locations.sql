-- Locations ranked by detections, last 7 days, from the dashboard view. Distinct
-- cameras over the whole week come from the rows' camera_ids (a sum of per-row camera
-- counts would count a camera once per hour and item).
SELECT
  coalesce(geographical_location, 'UNKNOWN') AS location,
  sum(detections) AS detections,
  cardinality(array_distinct(flatten(array_agg(camera_ids)))) AS cameras
FROM events_dashboard
WHERE event_date >= date_format(current_date - INTERVAL '7' DAY, '%Y-%m-%d')
GROUP BY 1
ORDER BY detections DESC, location
LIMIT 20
