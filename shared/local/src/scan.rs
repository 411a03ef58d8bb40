//! What a query over the lake would scan in Athena, from the lake's own Parquet files.
//!
//! Athena bills the bytes it reads from S3: for Parquet, the compressed column chunks of
//! the columns a query references, in the partitions it does not prune (partition
//! columns come from the path and cost nothing). [`column_bytes`] sums those chunk
//! sizes per column from the files' footers, so bytes per row of any set of columns is
//! a division; `docs/rollups.md` scales them to 10,000 events/s.

use std::collections::BTreeMap;
use std::fs::File;
use std::path::{Path, PathBuf};

use parquet::file::reader::{FileReader, SerializedFileReader};

#[derive(Debug, thiserror::Error)]
pub enum ScanError {
    #[error("listing {path}")]
    List {
        path: String,
        #[source]
        source: std::io::Error,
    },
    #[error("reading the Parquet footer of {path}")]
    Footer {
        path: String,
        #[source]
        source: parquet::errors::ParquetError,
    },
    #[error("opening {path}")]
    Open {
        path: String,
        #[source]
        source: std::io::Error,
    },
}

/// Compressed bytes per top-level column, over every Parquet file under a folder.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct ColumnBytes {
    pub files: usize,
    pub rows: u64,
    /// Compressed column-chunk bytes; a nested column (`camera_ids`) sums its leaves.
    pub bytes: BTreeMap<String, u64>,
    /// Every file's size, footers and page headers included.
    pub file_bytes: u64,
}

impl ColumnBytes {
    /// Bytes per row of these columns together (columns that do not exist count 0).
    pub fn per_row(&self, columns: &[&str]) -> f64 {
        if self.rows == 0 {
            return 0.0;
        }
        let total: u64 = columns
            .iter()
            .map(|c| self.bytes.get(*c).copied().unwrap_or(0))
            .sum();
        total as f64 / self.rows as f64
    }

    /// Bytes per row of the whole files.
    pub fn file_bytes_per_row(&self) -> f64 {
        if self.rows == 0 {
            0.0
        } else {
            self.file_bytes as f64 / self.rows as f64
        }
    }
}

fn parquet_files(dir: &Path) -> Result<Vec<PathBuf>, ScanError> {
    let mut out = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        let entries = match std::fs::read_dir(&d) {
            Ok(entries) => entries,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => continue,
            Err(source) => {
                return Err(ScanError::List {
                    path: d.display().to_string(),
                    source,
                });
            }
        };
        for entry in entries {
            let entry = entry.map_err(|source| ScanError::List {
                path: d.display().to_string(),
                source,
            })?;
            let path = entry.path();
            let hidden = entry.file_name().to_string_lossy().starts_with(['.', '_']);
            if path.is_dir() {
                stack.push(path);
            } else if !hidden && path.extension().is_some_and(|e| e == "parquet") {
                out.push(path);
            }
        }
    }
    out.sort();
    Ok(out)
}

/// Sums the compressed size of every column chunk of every `.parquet` file under `dir`
/// (hidden files, as Athena skips them, are skipped).
pub fn column_bytes(dir: &Path) -> Result<ColumnBytes, ScanError> {
    let mut out = ColumnBytes::default();
    for path in parquet_files(dir)? {
        let shown = || path.display().to_string();
        let file = File::open(&path).map_err(|source| ScanError::Open {
            path: shown(),
            source,
        })?;
        out.file_bytes += file.metadata().map(|m| m.len()).unwrap_or_default();
        let reader = SerializedFileReader::new(file).map_err(|source| ScanError::Footer {
            path: shown(),
            source,
        })?;
        let metadata = reader.metadata();
        out.files += 1;
        for group in metadata.row_groups() {
            out.rows += u64::try_from(group.num_rows()).unwrap_or_default();
            for column in group.columns() {
                let name = column
                    .column_path()
                    .parts()
                    .first()
                    .cloned()
                    .unwrap_or_default();
                *out.bytes.entry(name).or_default() +=
                    u64::try_from(column.compressed_size()).unwrap_or_default();
            }
        }
    }
    Ok(out)
}
