//! `lake/dashboard.html`: one self-contained page (inline CSS and SVG, no script,
//! no network) that mirrors the QuickSight dashboard. Its data comes from the same
//! SQL `infra/athena/dashboard/` ships for Athena, over `events_dashboard` (hourly
//! rollups for closed hours, the deduplicated view for open ones), the way QuickSight
//! reads it (see `report::dashboard_data`).
//!
//! Every chart is an `<svg>` with an `id` and a `data-chart` name, so the browser
//! test can find it in the rendered DOM.

use std::collections::BTreeMap;
use std::fmt::Write as _;

use crate::report::thousands;

/// One row of `detections_per_location_hourly.sql`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct HourlyRow {
    pub hour_utc: String,
    pub location: String,
    pub detections: i64,
}

/// One row of `top_items_per_location.sql`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopItemRow {
    pub location: String,
    pub item_rank: i64,
    pub item_name: String,
    pub detections: i64,
}

/// One row of `top_locations.sql`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct TopLocationRow {
    pub location: String,
    pub detections: i64,
    pub cameras: i64,
}

/// One row of `doubles_removed_by_view.sql`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct DoublesRow {
    pub event_date: String,
    pub rows_in_lake: i64,
    pub rows_in_view: i64,
    pub doubles_removed: i64,
}

/// One row of `freshness.sql`: one source of `events_dashboard`.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct FreshnessRow {
    /// `rollup` (closed hours, from `events_hourly`) or `live` (open hours).
    pub source: String,
    pub hours: i64,
    /// `YYYY-MM-DDTHH`.
    pub first_hour: String,
    pub last_hour: String,
    pub newest_detected_ms: i64,
}

/// How fresh the page is: what each source covers, and when the queries ran.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Freshness {
    pub sources: Vec<FreshnessRow>,
    /// When the dashboard queries started (epoch ms).
    pub queried_at_ms: i64,
    /// How long the dashboard queries took.
    pub query_ms: u64,
}

impl Freshness {
    /// The newest `timestamp_detected` on the page.
    pub fn newest_ms(&self) -> Option<i64> {
        self.sources.iter().map(|s| s.newest_detected_ms).max()
    }

    /// How old the newest detection was when the queries ran.
    pub fn age_ms(&self) -> Option<i64> {
        self.newest_ms().map(|n| self.queried_at_ms - n)
    }

    fn source(&self, name: &str) -> Option<&FreshnessRow> {
        self.sources.iter().find(|s| s.source == name)
    }
}

/// The function's own counts (in AWS: its EMF metrics), since duplicates and
/// quarantined records never reach the lake.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Rates {
    pub received: u64,
    pub delivered: u64,
    pub duplicates: u64,
    pub quarantined: u64,
    pub quarantined_by_reason: Vec<(String, u64)>,
    pub unknown_locations: u64,
}

#[derive(Debug, Clone, Default, PartialEq)]
pub struct Dashboard {
    pub title: String,
    pub generated_at: String,
    pub source_note: String,
    pub hourly: Vec<HourlyRow>,
    pub top_items: Vec<TopItemRow>,
    pub top_locations: Vec<TopLocationRow>,
    pub doubles_removed: Vec<DoublesRow>,
    pub rates: Rates,
    pub freshness: Freshness,
}

/// Locations drawn as lines in "detections over time" (the busiest ones).
pub const TIME_SERIES_LINES: usize = 8;

const PALETTE: [&str; 10] = [
    "#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f",
    "#bcbd22", "#17becf",
];
const TOTAL_COLOUR: &str = "#444";

/// Escapes text for HTML element content and attribute values.
pub fn escape(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    for c in text.chars() {
        match c {
            '&' => out.push_str("&amp;"),
            '<' => out.push_str("&lt;"),
            '>' => out.push_str("&gt;"),
            '"' => out.push_str("&quot;"),
            '\'' => out.push_str("&#39;"),
            _ => out.push(c),
        }
    }
    out
}

fn pct(part: u64, whole: u64) -> f64 {
    if whole == 0 {
        0.0
    } else {
        part as f64 * 100.0 / whole as f64
    }
}

/// The whole page.
pub fn render(d: &Dashboard) -> String {
    let mut html = String::with_capacity(256 * 1024);
    let title = escape(&d.title);
    let _ = write!(
        html,
        r#"<!DOCTYPE html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>{title}</title>
<style>{CSS}</style>
</head>
<body>
<header>
<h1>{title}</h1>
<p class="meta">Generated {generated} &middot; {note}</p>
{freshness}</header>
"#,
        generated = escape(&d.generated_at),
        note = escape(&d.source_note),
        freshness = freshness_note(&d.freshness),
    );
    kpis(&mut html, d);
    section(
        &mut html,
        "Detections over time",
        "Detections per hour (UTC) from the dashboard view (hourly rollups, and the deduplicated view for open hours): all locations, then the busiest ones.",
        &time_series(&d.hourly),
    );
    section(
        &mut html,
        "Top items per location",
        "The ten most detected items at each location, busiest locations first.",
        &top_items(&d.top_items, &d.top_locations),
    );
    section(
        &mut html,
        "Duplicate and quarantine rates",
        "What the function did with every received record. Duplicates and quarantined records never reach the lake; in AWS these rates come from the function's EMF metrics.",
        &rates(&d.rates, &d.doubles_removed),
    );
    section(
        &mut html,
        "Locations with the most detections",
        "Detections and distinct cameras per location, from the dashboard view.",
        &top_locations(&d.top_locations),
    );
    html.push_str("</body>\n</html>\n");
    html
}

const CSS: &str = "
body{font-family:system-ui,-apple-system,'Segoe UI',Roboto,sans-serif;margin:0;padding:0 24px 40px;color:#222;background:#f6f7f9}
header{padding:16px 0 4px}h1{margin:0;font-size:22px}h2{font-size:17px;margin:0 0 4px}
.meta,.note{color:#666;font-size:12px;margin:4px 0 10px}
section{background:#fff;border:1px solid #dde;border-radius:6px;padding:14px 16px;margin:14px 0}
.kpis{display:flex;flex-wrap:wrap;gap:12px;margin:12px 0}
.kpi{background:#fff;border:1px solid #dde;border-radius:6px;padding:10px 14px;min-width:140px}
.kpi .v{font-size:22px;font-weight:600}.kpi .l{font-size:12px;color:#666}
.grid{display:flex;flex-wrap:wrap;gap:10px}
.small{border:1px solid #eee;border-radius:4px;padding:4px 6px}
.small h3{font-size:12px;margin:2px 0}
svg text{font-size:11px;fill:#333}
.legend{display:flex;flex-wrap:wrap;gap:10px;font-size:12px;margin-top:6px}
.legend i{display:inline-block;width:10px;height:10px;margin-right:4px;vertical-align:middle}
table{border-collapse:collapse;font-size:12px;margin-top:8px}
td,th{border-bottom:1px solid #eee;padding:3px 8px;text-align:right}td:first-child,th:first-child{text-align:left}
.empty{color:#999;font-style:italic}
";

fn section(html: &mut String, title: &str, note: &str, body: &str) {
    let _ = write!(
        html,
        "<section>\n<h2>{}</h2>\n<p class=\"note\">{}</p>\n{body}</section>\n",
        escape(title),
        escape(note)
    );
}

fn kpis(html: &mut String, d: &Dashboard) {
    let r = &d.rates;
    let locations = d
        .hourly
        .iter()
        .map(|r| r.location.as_str())
        .filter(|l| *l != "UNKNOWN")
        .collect::<std::collections::BTreeSet<_>>()
        .len();
    let tiles = [
        ("received", thousands(r.received)),
        ("delivered", thousands(r.delivered)),
        (
            "duplicate rate",
            format!("{:.2}%", pct(r.duplicates, r.received)),
        ),
        (
            "quarantine rate",
            format!("{:.2}%", pct(r.quarantined, r.received)),
        ),
        ("unknown locations", thousands(r.unknown_locations)),
        ("locations with detections", thousands(locations as u64)),
        (
            "newest detection, age",
            d.freshness.age_ms().map_or_else(
                || "-".to_string(),
                |ms| format!("{:.1} s", ms as f64 / 1000.0),
            ),
        ),
    ];
    html.push_str("<div class=\"kpis\" id=\"kpis\">\n");
    for (label, value) in tiles {
        let _ = writeln!(
            html,
            "<div class=\"kpi\"><div class=\"v\">{}</div><div class=\"l\">{}</div></div>",
            escape(&value),
            escape(label)
        );
    }
    html.push_str("</div>\n");
}

/// Which hours come from the rollups and which are live, and the newest detection.
fn freshness_note(f: &Freshness) -> String {
    let Some(newest) = f.newest_ms() else {
        return String::new();
    };
    let mut note = format!(
        "Newest detection shown: {}, {:.1} s before the dashboard queries ran (they took {:.1} s).",
        sightline_core::quarantine::iso8601(newest),
        f.age_ms().unwrap_or_default() as f64 / 1000.0,
        f.query_ms as f64 / 1000.0
    );
    for (name, what) in [
        ("rollup", "from the hourly rollups (events_hourly)"),
        ("live", "live from the deduplicated view"),
    ] {
        if let Some(s) = f.source(name) {
            let _ = write!(
                note,
                " {} h {} ({} to {}).",
                s.hours, what, s.first_hour, s.last_hour
            );
        }
    }
    format!("<p class=\"meta\" id=\"freshness\">{}</p>\n", escape(&note))
}

fn empty(what: &str) -> String {
    format!(
        "<p class=\"empty\">No {} in the last 7 days.</p>\n",
        escape(what)
    )
}

/// A "nice" axis maximum: 1, 2 or 5 times a power of ten, at least `max`.
fn nice_max(max: f64) -> f64 {
    if max <= 0.0 {
        return 1.0;
    }
    let power = 10f64.powf(max.log10().floor());
    for step in [1.0, 2.0, 5.0, 10.0] {
        if step * power >= max {
            return step * power;
        }
    }
    10.0 * power
}

fn time_series(rows: &[HourlyRow]) -> String {
    if rows.is_empty() {
        return empty("detections");
    }
    let hours: Vec<&str> = {
        let mut h: Vec<&str> = rows.iter().map(|r| r.hour_utc.as_str()).collect();
        h.sort_unstable();
        h.dedup();
        h
    };
    let hour_index: BTreeMap<&str, usize> =
        hours.iter().enumerate().map(|(i, h)| (*h, i)).collect();
    let mut totals: BTreeMap<&str, i64> = BTreeMap::new();
    for r in rows {
        *totals.entry(r.location.as_str()).or_default() += r.detections;
    }
    let mut ranked: Vec<(&str, i64)> = totals.into_iter().collect();
    ranked.sort_by(|a, b| b.1.cmp(&a.1).then(a.0.cmp(b.0)));
    let shown: Vec<&str> = ranked
        .iter()
        .take(TIME_SERIES_LINES)
        .map(|(l, _)| *l)
        .collect();

    // One line per shown location, and the all-locations total on its own chart
    // (summed into the first, it would flatten every other line).
    let mut series = vec![vec![0i64; hours.len()]; shown.len()];
    let mut all = vec![0i64; hours.len()];
    for r in rows {
        let Some(&h) = hour_index.get(r.hour_utc.as_str()) else {
            continue;
        };
        all[h] += r.detections;
        if let Some(line) = shown.iter().position(|l| *l == r.location) {
            series[line][h] += r.detections;
        }
    }
    let named: Vec<(&str, &str, &[i64])> = shown
        .iter()
        .zip(&series)
        .enumerate()
        .map(|(i, (l, s))| (*l, PALETTE[i % PALETTE.len()], s.as_slice()))
        .collect();
    let mut out = line_chart(
        "chart-detections-total",
        "detections-total",
        "All locations",
        &hours,
        &[("all locations", TOTAL_COLOUR, all.as_slice())],
        160.0,
    );
    let rest = ranked.len().saturating_sub(shown.len());
    out.push_str(&line_chart(
        "chart-detections-over-time",
        "detections-over-time",
        &if rest > 0 {
            format!(
                "The {} busiest locations ({rest} more in the tables below)",
                shown.len()
            )
        } else {
            "Every location".to_string()
        },
        &hours,
        &named,
        300.0,
    ));
    out
}

/// Lines over hours, with a y axis from 0 and a legend.
fn line_chart(
    id: &str,
    chart: &str,
    caption: &str,
    hours: &[&str],
    lines: &[(&str, &str, &[i64])],
    h: f64,
) -> String {
    let max = lines
        .iter()
        .flat_map(|l| l.2.iter())
        .copied()
        .max()
        .unwrap_or(0) as f64;
    let y_max = nice_max(max);
    let (w, left, right, top, bottom) = (900.0, 60.0, 40.0, 10.0, 30.0);
    let pw = w - left - right;
    let ph = h - top - bottom;
    let x = |i: usize| {
        if hours.len() <= 1 {
            left + pw / 2.0
        } else {
            left + pw * i as f64 / (hours.len() - 1) as f64
        }
    };
    let y = |v: f64| top + ph - ph * v / y_max;

    let mut svg = format!("<h3>{}</h3>\n", escape(caption));
    let _ = writeln!(
        svg,
        r#"<svg id="{id}" data-chart="{chart}" role="img" aria-label="{label}" viewBox="0 0 {w} {h}" width="100%" preserveAspectRatio="xMinYMin meet">"#,
        id = escape(id),
        chart = escape(chart),
        label = escape(caption),
    );
    for tick in 0..=4 {
        let v = y_max * f64::from(tick) / 4.0;
        let _ = writeln!(
            svg,
            r##"<line x1="{left}" x2="{}" y1="{y:.1}" y2="{y:.1}" stroke="#eee"/><text x="{}" y="{:.1}" text-anchor="end">{}</text>"##,
            w - right,
            left - 6.0,
            y(v) + 4.0,
            thousands(v as u64),
            y = y(v)
        );
    }
    let label_every = hours.len().div_ceil(8).max(1);
    for (i, hour) in hours.iter().enumerate() {
        if i % label_every == 0 || i + 1 == hours.len() {
            let _ = writeln!(
                svg,
                r#"<text x="{:.1}" y="{}" text-anchor="middle">{}</text>"#,
                x(i),
                h - bottom + 16.0,
                escape(hour.get(5..).unwrap_or(hour))
            );
        }
    }
    let mut legend = String::from("<div class=\"legend\">");
    for (name, colour, values) in lines {
        let points: Vec<String> = values
            .iter()
            .enumerate()
            .map(|(hi, v)| format!("{:.1},{:.1}", x(hi), y(*v as f64)))
            .collect();
        let _ = writeln!(
            svg,
            r#"<polyline class="series" data-location="{name}" fill="none" stroke="{colour}" stroke-width="2" points="{points}"><title>{name}</title></polyline>"#,
            name = escape(name),
            points = points.join(" ")
        );
        let _ = write!(
            legend,
            "<span><i style=\"background:{colour}\"></i>{}</span>",
            escape(name)
        );
    }
    svg.push_str("</svg>\n");
    legend.push_str("</div>\n");
    svg + &legend
}

/// A horizontal bar chart: one row per (label, value).
fn bar_chart(id: &str, chart: &str, bars: &[(String, i64)], width: f64, colour: &str) -> String {
    let label_w = 130.0;
    let value_w = 70.0;
    let row_h = 18.0;
    let h = row_h * bars.len() as f64 + 4.0;
    let max = bars.iter().map(|b| b.1).max().unwrap_or(0).max(1) as f64;
    let bar_space = width - label_w - value_w;
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg id="{id}" data-chart="{chart}" role="img" viewBox="0 0 {width} {h}" width="{width}" height="{h}">"#,
        id = escape(id),
        chart = escape(chart),
    );
    for (i, (label, value)) in bars.iter().enumerate() {
        let y = i as f64 * row_h + 2.0;
        let bw = (bar_space * (*value).max(0) as f64 / max).max(1.0);
        let _ = writeln!(
            svg,
            r#"<text x="{lx}" y="{ty:.1}" text-anchor="end">{label}</text><rect class="bar" x="{label_w}" y="{y:.1}" width="{bw:.1}" height="{bh}" fill="{colour}"><title>{label}: {v}</title></rect><text x="{vx:.1}" y="{ty:.1}">{v}</text>"#,
            lx = label_w - 6.0,
            ty = y + row_h - 6.0,
            label = escape(label),
            bh = row_h - 4.0,
            vx = label_w + bw + 4.0,
            v = thousands((*value).max(0) as u64),
        );
    }
    svg.push_str("</svg>\n");
    svg
}

fn top_items(rows: &[TopItemRow], locations: &[TopLocationRow]) -> String {
    if rows.is_empty() {
        return empty("items");
    }
    let mut by_location: BTreeMap<&str, Vec<&TopItemRow>> = BTreeMap::new();
    for r in rows {
        by_location.entry(r.location.as_str()).or_default().push(r);
    }
    // Busiest locations first (the order of top_locations), then the rest by name.
    let mut order: Vec<&str> = locations
        .iter()
        .map(|l| l.location.as_str())
        .filter(|l| by_location.contains_key(l))
        .collect();
    for l in by_location.keys() {
        if !order.contains(l) {
            order.push(l);
        }
    }
    let mut out =
        String::from("<div class=\"grid\" id=\"chart-top-items\" data-chart=\"top-items\">\n");
    for (i, location) in order.iter().enumerate() {
        let Some(items) = by_location.get(location) else {
            continue;
        };
        let mut items = items.clone();
        items.sort_by_key(|r| r.item_rank);
        let bars: Vec<(String, i64)> = items
            .iter()
            .map(|r| (r.item_name.clone(), r.detections))
            .collect();
        let _ = write!(
            out,
            "<div class=\"small\"><h3>{}</h3>\n{}</div>\n",
            escape(location),
            bar_chart(
                &format!("chart-top-items-{i}"),
                "top-items-location",
                &bars,
                300.0,
                PALETTE[i % PALETTE.len()],
            )
        );
    }
    out.push_str("</div>\n");
    out
}

fn rates(r: &Rates, doubles: &[DoublesRow]) -> String {
    let settled = r.delivered + r.duplicates + r.quarantined;
    let other = r.received.saturating_sub(settled);
    let parts = [
        ("delivered", r.delivered, "#2ca02c"),
        ("duplicates dropped", r.duplicates, "#ff7f0e"),
        ("quarantined", r.quarantined, "#d62728"),
        ("not settled", other, "#7f7f7f"),
    ];
    let (w, h) = (900.0, 54.0);
    let mut svg = String::new();
    let _ = writeln!(
        svg,
        r#"<svg id="chart-rates" data-chart="duplicate-quarantine-rates" role="img" aria-label="Duplicate and quarantine rates" viewBox="0 0 {w} {h}" width="100%" preserveAspectRatio="xMinYMin meet">"#
    );
    let mut x = 0.0;
    let mut legend = String::from("<div class=\"legend\">");
    for (label, n, colour) in parts {
        if n == 0 && label == "not settled" {
            continue;
        }
        let share = pct(n, r.received);
        let bw = w * share / 100.0;
        let _ = writeln!(
            svg,
            r#"<rect class="bar" x="{x:.1}" y="4" width="{bw:.1}" height="28" fill="{colour}"><title>{label}: {n} ({share:.2}%)</title></rect>"#,
            n = thousands(n),
        );
        let _ = write!(
            legend,
            "<span><i style=\"background:{colour}\"></i>{label}: {} ({share:.2}%)</span>",
            thousands(n)
        );
        x += bw;
    }
    let _ = writeln!(
        svg,
        r#"<text x="0" y="48">0</text><text x="{w}" y="48" text-anchor="end">{} received</text>"#,
        thousands(r.received)
    );
    svg.push_str("</svg>\n");
    legend.push_str("</div>\n");

    let mut out = svg + &legend;
    if !r.quarantined_by_reason.is_empty() {
        let bars: Vec<(String, i64)> = r
            .quarantined_by_reason
            .iter()
            .map(|(reason, n)| (reason.clone(), i64::try_from(*n).unwrap_or(i64::MAX)))
            .collect();
        out.push_str("<h3>Quarantined by reason</h3>\n");
        out.push_str(&bar_chart(
            "chart-quarantine-reasons",
            "quarantine-reasons",
            &bars,
            600.0,
            "#d62728",
        ));
    }
    let _ = writeln!(
        out,
        "<p class=\"note\">Unknown locations (delivered, shown as UNKNOWN): {} ({:.2}% of received).</p>",
        thousands(r.unknown_locations),
        pct(r.unknown_locations, r.received)
    );
    out.push_str("<h3>Doubles removed by the deduplicated view</h3>\n");
    if doubles.is_empty() {
        out.push_str(&empty("lake rows"));
    } else {
        out.push_str("<table id=\"table-doubles-removed\"><tr><th>event_date</th><th>rows in lake</th><th>rows in view</th><th>doubles removed</th></tr>\n");
        for d in doubles {
            let _ = writeln!(
                out,
                "<tr><td>{}</td><td>{}</td><td>{}</td><td>{}</td></tr>",
                escape(&d.event_date),
                d.rows_in_lake,
                d.rows_in_view,
                d.doubles_removed
            );
        }
        out.push_str("</table>\n");
    }
    out
}

fn top_locations(rows: &[TopLocationRow]) -> String {
    if rows.is_empty() {
        return empty("locations");
    }
    let bars: Vec<(String, i64)> = rows
        .iter()
        .map(|r| (r.location.clone(), r.detections))
        .collect();
    let mut out = bar_chart(
        "chart-top-locations",
        "top-locations",
        &bars,
        700.0,
        "#1f77b4",
    );
    out.push_str("<table id=\"table-top-locations\"><tr><th>location</th><th>detections</th><th>cameras</th></tr>\n");
    for r in rows {
        let _ = writeln!(
            out,
            "<tr><td>{}</td><td>{}</td><td>{}</td></tr>",
            escape(&r.location),
            thousands(r.detections.max(0) as u64),
            r.cameras
        );
    }
    out.push_str("</table>\n");
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> Dashboard {
        let mut hourly = Vec::new();
        for hour in ["2026-11-23 10:00", "2026-11-23 11:00"] {
            for (i, loc) in [
                "Bedok", "Bishan", "<script>", "A", "B", "C", "D", "E", "F", "G",
            ]
            .iter()
            .enumerate()
            {
                hourly.push(HourlyRow {
                    hour_utc: hour.into(),
                    location: (*loc).into(),
                    detections: 10 + i as i64,
                });
            }
        }
        Dashboard {
            title: "T & T".into(),
            generated_at: "now".into(),
            source_note: "note".into(),
            hourly,
            top_items: vec![
                TopItemRow {
                    location: "Bedok".into(),
                    item_rank: 2,
                    item_name: "car".into(),
                    detections: 5,
                },
                TopItemRow {
                    location: "Bedok".into(),
                    item_rank: 1,
                    item_name: "person".into(),
                    detections: 9,
                },
            ],
            top_locations: vec![TopLocationRow {
                location: "Bedok".into(),
                detections: 14,
                cameras: 3,
            }],
            doubles_removed: vec![DoublesRow {
                event_date: "2026-11-23".into(),
                rows_in_lake: 15,
                rows_in_view: 14,
                doubles_removed: 1,
            }],
            rates: Rates {
                received: 20,
                delivered: 14,
                duplicates: 4,
                quarantined: 2,
                quarantined_by_reason: vec![("invalid_json".into(), 2)],
                unknown_locations: 1,
            },
            freshness: Freshness {
                sources: vec![
                    FreshnessRow {
                        source: "live".into(),
                        hours: 2,
                        first_hour: "2026-11-23T10".into(),
                        last_hour: "2026-11-23T11".into(),
                        newest_detected_ms: 1_795_000_000_000,
                    },
                    FreshnessRow {
                        source: "rollup".into(),
                        hours: 20,
                        first_hour: "2026-11-22T14".into(),
                        last_hour: "2026-11-23T09".into(),
                        newest_detected_ms: 1_794_990_000_000,
                    },
                ],
                queried_at_ms: 1_795_000_012_500,
                query_ms: 900,
            },
        }
    }

    #[test]
    fn every_chart_is_present_with_its_id() {
        let html = render(&sample());
        for id in [
            "chart-detections-over-time",
            "chart-top-items",
            "chart-rates",
            "chart-quarantine-reasons",
            "chart-top-locations",
            "table-doubles-removed",
        ] {
            assert!(html.contains(&format!("id=\"{id}\"")), "missing {id}");
        }
        assert!(html.contains("Top items"));
        assert!(html.contains("Detections over time"));
    }

    #[test]
    fn the_page_says_which_hours_are_rolled_up_and_how_old_the_newest_detection_is() {
        let html = render(&sample());
        assert!(html.contains("id=\"freshness\""));
        assert!(html.contains("12.5 s before the dashboard queries ran"));
        assert!(html.contains(
            "20 h from the hourly rollups (events_hourly) (2026-11-22T14 to 2026-11-23T09)"
        ));
        assert!(html.contains("2 h live from the deduplicated view"));
        assert!(html.contains(">12.5 s<"), "the age KPI");
        assert!(!render(&Dashboard::default()).contains("id=\"freshness\""));
    }

    #[test]
    fn text_from_the_data_is_escaped() {
        let html = render(&sample());
        assert!(!html.contains("<script>"));
        assert!(html.contains("&lt;script&gt;"));
        assert!(html.contains("T &amp; T"));
    }

    #[test]
    fn time_series_draws_the_total_and_the_busiest_locations() {
        let html = time_series(&sample().hourly);
        assert_eq!(
            html.matches("<polyline").count(),
            TIME_SERIES_LINES + 1,
            "the total, then the 8 busiest locations"
        );
        assert!(html.contains("data-location=\"all locations\""));
        // The two least busy locations are left out; the total still counts them.
        assert!(!html.contains("data-location=\"Bedok\""));
        assert!(html.contains("data-location=\"G\""));
        assert!(html.contains("2 more in the tables below"));
    }

    #[test]
    fn top_items_are_drawn_in_rank_order() {
        let html = top_items(&sample().top_items, &sample().top_locations);
        let person = html.find(">person<").unwrap();
        let car = html.find(">car<").unwrap();
        assert!(person < car);
    }

    #[test]
    fn an_empty_dashboard_renders_without_charts_and_says_so() {
        let html = render(&Dashboard::default());
        assert!(html.contains("No detections in the last 7 days."));
        assert!(html.contains("id=\"chart-rates\""));
        assert!(!html.contains("NaN"));
    }

    #[test]
    fn nice_axis_maximum_rounds_up_to_1_2_or_5() {
        assert_eq!(nice_max(0.0), 1.0);
        assert_eq!(nice_max(7.0), 10.0);
        assert_eq!(nice_max(130.0), 200.0);
        assert_eq!(nice_max(5000.0), 5000.0);
        assert_eq!(nice_max(4100.0), 5000.0);
    }
}
