//! `sightline query`: SQL over the local lake, the way an analyst uses Athena.
//!
//! The engine is DataFusion (see README "Why DataFusion"). Tables are named as in
//! the Glue catalog:
//! - `events`: the Parquet files under `<lake>/events`, with `event_date` and
//!   `event_hour` read from the Hive-style path, as partition projection does;
//! - `events_dedup`: created by running `infra/athena/dedup_view.sql` itself.
//!
//! The dashboard runs the very files `infra/athena/dashboard/*.sql` ships for
//! Athena. The two functions they use that DataFusion lacks, Trino's `date_parse`
//! and `date_format`, are provided by [`crate::trino`]; nothing is rewritten.

use std::path::Path;
use std::sync::Arc;

use datafusion::arrow::array::{Array, AsArray, RecordBatch};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, Int64Type};
use datafusion::arrow::util::pretty::pretty_format_batches;
use datafusion::datasource::file_format::parquet::ParquetFormat;
use datafusion::datasource::listing::ListingOptions;
use datafusion::error::DataFusionError;
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::lake::file_schema;

/// The Athena view, as shipped in `infra/`.
pub const DEDUP_VIEW_SQL: &str = include_str!("../../../infra/athena/dedup_view.sql");

/// The dashboard queries, as shipped in `infra/athena/dashboard/`.
pub const DASHBOARD_QUERIES: [(&str, &str); 4] = [
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
];

#[derive(Debug, thiserror::Error)]
pub enum QueryError {
    #[error("the lake at {0} has no events/ folder; run `sightline run` or `sightline demo` first")]
    NoLake(String),
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
    /// Registers `events` and `events_dedup` over `<lake_dir>/events`.
    pub async fn open(lake_dir: &Path) -> Result<Lake, QueryError> {
        let events = lake_dir.join("events");
        if !events.is_dir() {
            return Err(QueryError::NoLake(lake_dir.display().to_string()));
        }
        let config = SessionConfig::new()
            .with_information_schema(true)
            .with_default_catalog_and_schema("awsdatacatalog", "sightline");
        let ctx = SessionContext::new_with_config(config);
        crate::trino::register(&ctx);
        let options = ListingOptions::new(Arc::new(ParquetFormat::default()))
            .with_file_extension(".parquet")
            .with_table_partition_cols(vec![
                ("event_date".to_string(), DataType::Utf8),
                ("event_hour".to_string(), DataType::Utf8),
            ]);
        let mut url = events.display().to_string();
        if !url.ends_with('/') {
            url.push('/');
        }
        ctx.register_listing_table("events", &url, options, Some(file_schema()), None)
            .await?;
        ctx.sql(DEDUP_VIEW_SQL).await?.collect().await?;
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
