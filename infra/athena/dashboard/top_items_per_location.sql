-- Top 10 items per location, last 7 days, from the dashboard view.
WITH item_counts AS (
  SELECT
    coalesce(geographical_location, 'UNKNOWN') AS location,
    item_name,
    sum(detections) AS detections
  FROM events_dashboard
  WHERE event_date >= date_format(current_date - INTERVAL '7' DAY, '%Y-%m-%d')
  GROUP BY 1, 2
),
ranked AS (
  SELECT
    location,
    item_name,
    detections,
    ROW_NUMBER() OVER (PARTITION BY location ORDER BY detections DESC, item_name) AS item_rank
  FROM item_counts
)
SELECT location, item_rank, item_name, detections
FROM ranked
WHERE item_rank <= 10
ORDER BY location, item_rank
