-- Locations ranked by detections, last 7 days, from the deduplicated view.
SELECT
  coalesce(geographical_location, 'UNKNOWN') AS location,
  count(*) AS detections,
  count(DISTINCT video_camera_oid) AS cameras
FROM events_dedup
WHERE event_date >= date_format(current_date - INTERVAL '7' DAY, '%Y-%m-%d')
GROUP BY 1
ORDER BY detections DESC, location
LIMIT 20
