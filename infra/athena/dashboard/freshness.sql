-- How fresh the dashboard is, last 7 days: per source ('rollup' for closed hours from
-- events_hourly, 'live' for open hours from the deduplicated view), the hours it covers
-- and the newest timestamp_detected it shows (epoch ms). The page shows the age of the
-- newest detection, and which hours are live.
SELECT
  source,
  count(DISTINCT event_date || event_hour) AS hours,
  min(event_date || 'T' || event_hour) AS first_hour,
  max(event_date || 'T' || event_hour) AS last_hour,
  max(last_detected_ms) AS newest_detected_ms
FROM events_dashboard
WHERE event_date >= date_format(current_date - INTERVAL '7' DAY, '%Y-%m-%d')
GROUP BY source
ORDER BY source
