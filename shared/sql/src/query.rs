//! `sightline query`: SQL over the local lake, the way an analyst uses Athena.
//!
//! The engine is DataFusion (see README "Why DataFusion"). Tables and views are named
//! as in the Glue catalog, and every view is created by running its file from
//! `infra/athena/` itself:
//! - `events`: the Parquet files under `<lake>/events`, with `event_date` and
//!   `event_hour` read from the Hive-style path, as partition projection does;
//! - `events_dedup`: `dedup_view.sql`;
//! - `events_hourly`: the hourly rollups under `<lake>/rollups/events_hourly`, written
//!   by `rollup_job.sql` (see [`crate::rollup`]);
//! - `events_hourly_live`: `hourly_live_view.sql`, the same aggregation computed live;
//! - `events_dashboard`: `dashboard_view.sql`, rollups for closed hours and the live
//!   aggregation for open ones; what every dashboard query reads.
//!
//! The dashboard runs the very files `infra/athena/dashboard/*.sql` ships for
//! Athena. What DataFusion lacks (Trino's `date_parse` and `date_format`, Athena's
//! `?` execution parameters) is provided by [`crate::trino`]; nothing is rewritten.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Field, Int64Type, Schema, SchemaRef};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::common::config::TableParquetOptions;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::error::DataFusionError;
use datafusion::execution::cache::cache_manager::CacheManagerConfig;
use datafusion::execution::runtime_env::RuntimeEnvBuilder;
use datafusion::prelude::{SessionConfig, SessionContext};

use sightline_local::lake::file_schema;

/// The Athena view, as shipped in `infra/`.
pub const DEDUP_VIEW_SQL: &str = include_str!("../../../infra/athena/dedup_view.sql");

/// `events_hourly_live`: the rollup aggregation, computed live from `events_dedup`.
pub const HOURLY_LIVE_VIEW_SQL: &str = include_str!("../../../infra/athena/hourly_live_view.sql");

/// `events_dashboard`: rollups for closed hours, the live aggregation for open ones.
pub const DASHBOARD_VIEW_SQL: &str = include_str!("../../../infra/athena/dashboard_view.sql");

/// The rollup job: `INSERT INTO events_hourly` one hour (two `?` parameters).
pub const ROLLUP_JOB_SQL: &str = include_str!("../../../infra/athena/rollup_job.sql");

/// Where the rollup table's files live under the lake, as under the lake bucket.
pub const ROLLUP_DIR: &str = "rollups/events_hourly";

/// The dashboard queries, as shipped in `infra/athena/dashboard/`.
pub const DASHBOARD_QUERIES: [(&str, &str); 5] = [
    (
        "detections_per_location_hourly",
        include_str!("../../../infra/athena/dashboard/detections_per_location_hourly.sql"),
    ),
    (
        "top_items_per_location",
        include_str!("../../../infra/athena/dashboard/top_items_per_location.sql"),
    ),
    (
        "top_locations",
        include_str!("../../../infra/athena/dashboard/top_locations.sql"),
    ),
    (
        "doubles_removed_by_view",
        include_str!("../../../infra/athena/dashboard/doubles_removed_by_view.sql"),
    ),
    (
        "freshness",
        include_str!("../../../infra/athena/dashboard/freshness.sql"),
    ),
];

/// What `events_dashboard` is made of in a session.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum DashboardPath {
    /// As deployed (`dashboard_view.sql`): `events_hourly` for closed hours, the live
    /// aggregation of `events_dedup` for open ones.
    #[default]
    Rollups,
    /// Every hour computed live from `events_dedup` (what the dashboards cost before
    /// the rollups); the reference the rollup path is checked against.
    DedupViewOnly,
}

/// `events_dashboard` over the dedup view alone: [`DashboardPath::DedupViewOnly`].
const DEDUP_ONLY_DASHBOARD_VIEW_SQL: &str = "CREATE VIEW events_dashboard AS SELECT \
geographical_location_oid, geographical_location, item_name, detections, cameras, camera_ids, \
first_detected_ms, last_detected_ms, lake_rows, CAST('live' AS varchar) AS source, event_date, event_hour \
FROM events_hourly_live";

/// The rollup table's file columns (the Glue table's, in order; the partition columns
/// `event_date` and `event_hour` come from the path).
pub fn rollup_file_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("geographical_location_oid", DataType::Int64, true),
        Field::new("geographical_location", DataType::Utf8, true),
        Field::new("item_name", DataType::Utf8, true),
        Field::new("detections", DataType::Int64, true),
        Field::new("cameras", DataType::Int64, true),
        Field::new(
            "camera_ids",
            DataType::List(Arc::new(Field::new_list_field(DataType::Int64, true))),
            true,
        ),
        Field::new("first_detected_ms", DataType::Int64, true),
        Field::new("last_detected_ms", DataType::Int64, true),
        Field::new("lake_rows", DataType::Int64, true),
    ]))
}

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("the lake at {0} has no events/ folder; run `sightline run` or `sightline demo` first")]
    NoLake(String),
    #[error("creating the rollup folder {path}")]
    RollupDir {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error(transparent)]
    Engine(#[from] DataFusionError),
    #[error("column {column:?} is missing from the result")]
    MissingColumn { column: String },
    #[error("column {column:?} row {row} is null or not a {wanted}")]
    BadValue {
        column: String,
        row: usize,
        wanted: &'static str,
    },
}

/// A session over one lake.
pub struct Lake {
    ctx: SessionContext,
}

impl Lake {
    /// Registers `events`, `events_dedup`, `events_hourly`, `events_hourly_live` and
    /// `events_dashboard` over `<lake_dir>`, the dashboard view as deployed.
    pub async fn open(lake_dir: &Path) -> Result<Lake, QueryError> {
        Lake::open_with(lake_dir, DashboardPath::Rollups).await
    }

    /// As [`Lake::open`], with `events_dashboard` made of `path`.
    pub async fn open_with(lake_dir: &Path, path: DashboardPath) -> Result<Lake, QueryError> {
        let events = lake_dir.join("events");
        if !events.is_dir() {
            return Err(QueryError::NoLake(lake_dir.display().to_string()));
        }
        let rollups = lake_dir.join(ROLLUP_DIR);
        std::fs::create_dir_all(&rollups).map_err(|source| QueryError::RollupDir {
            path: rollups.display().to_string(),
            source,
        })?;
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("awsdatacatalog", "sightline");
        // No listing cache: the lake changes under the session (the rollup job deletes
        // an hour's files before it rewrites them), and Athena lists S3 every query.
        let runtime = RuntimeEnvBuilder::new()
            .with_cache_manager(CacheManagerConfig::default().with_list_files_cache_limit(0))
            .build_arc()?;
        let ctx = SessionContext::new_with_config_rt(config, runtime);
        crate::trino::register(&ctx);
        ctx.register_listing_table(
            "events",
            &dir_url(&events),
            partitioned_parquet(),
            Some(file_schema()),
            None,
        )
        .await?;
        ctx.register_listing_table(
            "events_hourly",
            &dir_url(&rollups),
            partitioned_parquet(),
            Some(rollup_file_schema()),
            None,
        )
        .await?;
        ctx.sql(DEDUP_VIEW_SQL).await?.collect().await?;
        ctx.sql(HOURLY_LIVE_VIEW_SQL).await?.collect().await?;
        let dashboard = match path {
            DashboardPath::Rollups => DASHBOARD_VIEW_SQL,
            DashboardPath::DedupViewOnly => DEDUP_ONLY_DASHBOARD_VIEW_SQL,
        };
        ctx.sql(dashboard).await?.collect().await?;
        Ok(Lake { ctx })
    }

    pub async fn sql(&self, sql: &str) -> Result<Vec<RecordBatch>, QueryError> {
        Ok(self.ctx.sql(sql).await?.collect().await?)
    }

    /// Runs `sql` and renders the result as a text table.
    pub async fn sql_table(&self, sql: &str) -> Result<String, QueryError> {
        let batches = self.sql(sql).await?;
        Ok(pretty_format_batches(&batches)
            .map_err(DataFusionError::from)?
            .to_string())
    }
}

/// A listing-table URL for a directory (DataFusion needs the trailing slash).
fn dir_url(dir: &Path) -> String {
    let mut url = dir.display().to_string();
    if !url.ends_with('/') {
        url.push('/');
    }
    url
}

/// Parquet partitioned by `event_date`/`event_hour` (strings, as in Glue), written
/// Snappy-compressed like the Glue tables' `parquet.compression`.
fn partitioned_parquet() -> ListingOptions {
    let mut parquet = TableParquetOptions::default();
    parquet.global.compression = Some("snappy".to_string());
    ListingOptions::new(Arc::new(ParquetFormat::default().with_options(parquet)))
        .with_file_extension(".parquet")
        .with_table_partition_cols(vec![
            ("event_date".to_string(), DataType::Utf8),
            ("event_hour".to_string(), DataType::Utf8),
        ])
}

/// Reads result columns by name, whatever string or integer encoding the engine chose.
pub struct Rows<'a> {
    batches: &'a [RecordBatch],
}

impl<'a> Rows<'a> {
    pub fn new(batches: &'a [RecordBatch]) -> Self {
        Rows { batches }
    }

    pub fn len(&self) -> usize {
        self.batches.iter().map(RecordBatch::num_rows).sum()
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    fn column(&self, name: &str, wanted: &DataType) -> Result<Vec<Arc<dyn Array>>, QueryError> {
        self.batches
            .iter()
            .map(|b| {
                let col = b
                    .column_by_name(name)
                    .ok_or_else(|| QueryError::MissingColumn {
                        column: name.to_string(),
                    })?;
                Ok(cast(col, wanted).map_err(DataFusionError::from)?)
            })
            .collect()
    }

    /// A string column (a timestamp is rendered as `YYYY-MM-DD HH:MM:SS`).
    /// The column as text. Timestamps read as Athena shows them,
    /// `YYYY-MM-DD HH:MM:SS[.fff]`, not Arrow's ISO `T` form.
    pub fn strings(&self, name: &str) -> Result<Vec<String>, QueryError> {
        let mut out = Vec::with_capacity(self.len());
        for col in self.column(name, &DataType::Utf8)? {
            let col = col.as_string::<i32>();
            for i in 0..col.len() {
                if col.is_null(i) {
                    return Err(QueryError::BadValue {
                        column: name.to_string(),
                        row: out.len(),
                        wanted: "string",
                    });
                }
                out.push(col.value(i).to_string());
            }
        }
        if self.is_timestamp(name) {
            for v in &mut out {
                if v.len() > 10 && v.as_bytes()[10] == b'T' {
                    v.replace_range(10..11, " ");
                }
            }
        }
        Ok(out)
    }

    fn is_timestamp(&self, name: &str) -> bool {
        self.batches.first().is_some_and(|b| {
            b.schema()
                .field_with_name(name)
                .is_ok_and(|f| matches!(f.data_type(), DataType::Timestamp(..)))
        })
    }

    pub fn ints(&self, name: &str) -> Result<Vec<i64>, QueryError> {
        let mut out = Vec::with_capacity(self.len());
        for col in self.column(name, &DataType::Int64)? {
            let col = col.as_primitive::<Int64Type>();
            for i in 0..col.len() {
                if col.is_null(i) {
                    return Err(QueryError::BadValue {
                        column: name.to_string(),
                        row: out.len(),
                        wanted: "bigint",
                    });
                }
                out.push(col.value(i));
            }
        }
        Ok(out)
    }
}
