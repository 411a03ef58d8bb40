//! Dataset B: `geographical_location_oid` -> `geographical_location`, compiled into
//! the binary and parsed once at start-up.

use thiserror::Error;

/// The embedded CSV (Singapore's 55 URA planning areas, stable integer IDs).
pub const EMBEDDED_CSV: &str = include_str!("../data/dataset_b.csv");

const HEADER: &str = "geographical_location_oid,geographical_location";

#[derive(Debug, Error, PartialEq, Eq)]
pub enum DatasetError {
    #[error("dataset B: header must be `{HEADER}`, found `{0}`")]
    BadHeader(String),
    #[error("dataset B line {line}: expected `<id>,<name>`")]
    BadRow { line: usize },
    #[error("dataset B line {line}: id `{value}` is not a positive integer")]
    BadId { line: usize, value: String },
    #[error("dataset B line {line}: empty location name")]
    EmptyName { line: usize },
    #[error("dataset B line {line}: id {id} appears twice")]
    DuplicateId { line: usize, id: i64 },
    #[error("dataset B is empty")]
    Empty,
}

/// The lookup table. Names borrow from the CSV text.
#[derive(Debug, Clone)]
pub struct DatasetB<'a> {
    // Sorted by id; ~55 rows, so a binary search beats hashing.
    rows: Vec<(i64, &'a str)>,
}

impl DatasetB<'static> {
    /// Parses the CSV compiled into the binary.
    pub fn embedded() -> Result<Self, DatasetError> {
        DatasetB::parse(EMBEDDED_CSV)
    }
}

impl<'a> DatasetB<'a> {
    pub fn parse(csv: &'a str) -> Result<Self, DatasetError> {
        let mut lines = csv.lines().enumerate();
        match lines.next() {
            Some((_, h)) if h.trim_end_matches('\r').trim() == HEADER => {}
            Some((_, h)) => return Err(DatasetError::BadHeader(h.to_string())),
            None => return Err(DatasetError::Empty),
        }
        let mut rows = Vec::new();
        let mut seen = std::collections::HashSet::new();
        for (idx, raw) in lines {
            let line = idx + 1;
            let text = raw.trim_end_matches('\r');
            if text.trim().is_empty() {
                continue;
            }
            let (id_text, name) = text.split_once(',').ok_or(DatasetError::BadRow { line })?;
            let id: i64 = id_text
                .trim()
                .parse()
                .ok()
                .filter(|v| *v > 0)
                .ok_or_else(|| DatasetError::BadId {
                    line,
                    value: id_text.to_string(),
                })?;
            let name = name.trim();
            let name = name
                .strip_prefix('"')
                .and_then(|n| n.strip_suffix('"'))
                .unwrap_or(name);
            if name.is_empty() {
                return Err(DatasetError::EmptyName { line });
            }
            if !seen.insert(id) {
                return Err(DatasetError::DuplicateId { line, id });
            }
            rows.push((id, name));
        }
        if rows.is_empty() {
            return Err(DatasetError::Empty);
        }
        rows.sort_by_key(|(id, _)| *id);
        Ok(DatasetB { rows })
    }

    pub fn lookup(&self, id: i64) -> Option<&'a str> {
        self.rows
            .binary_search_by_key(&id, |(k, _)| *k)
            .ok()
            .map(|i| self.rows[i].1)
    }

    pub fn len(&self) -> usize {
        self.rows.len()
    }

    pub fn is_empty(&self) -> bool {
        self.rows.is_empty()
    }

    pub fn iter(&self) -> impl Iterator<Item = (i64, &'a str)> + '_ {
        self.rows.iter().copied()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn embedded_file_parses_into_55_planning_areas() {
        let b = DatasetB::embedded().expect("embedded dataset B parses");
        assert_eq!(b.len(), 55);
        assert_eq!(b.lookup(1), Some("Ang Mo Kio"));
        assert_eq!(b.lookup(55), Some("Yishun"));
        assert_eq!(b.lookup(0), None);
        assert_eq!(b.lookup(56), None);
        let ids: Vec<i64> = b.iter().map(|(id, _)| id).collect();
        assert_eq!(ids, (1..=55).collect::<Vec<_>>());
    }

    #[test]
    fn duplicate_ids_are_rejected_with_their_line() {
        let err =
            DatasetB::parse("geographical_location_oid,geographical_location\n1,A\n2,B\n1,C\n")
                .expect_err("duplicate id");
        // Line numbers are the file's, header included.
        assert_eq!(err, DatasetError::DuplicateId { line: 4, id: 1 });
    }

    #[test]
    fn malformed_rows_are_named() {
        let h = "geographical_location_oid,geographical_location\n";
        assert_eq!(
            DatasetB::parse(&format!("{h}x,A\n")).expect_err("bad id"),
            DatasetError::BadId {
                line: 2,
                value: "x".into()
            }
        );
        assert_eq!(
            DatasetB::parse(&format!("{h}3\n")).expect_err("no comma"),
            DatasetError::BadRow { line: 2 }
        );
        assert_eq!(
            DatasetB::parse(&format!("{h}3, \n")).expect_err("empty"),
            DatasetError::EmptyName { line: 2 }
        );
        assert!(matches!(
            DatasetB::parse("id,name\n1,A\n"),
            Err(DatasetError::BadHeader(_))
        ));
        assert_eq!(DatasetB::parse(h).expect_err("empty"), DatasetError::Empty);
    }

    #[test]
    fn quoted_names_and_crlf_are_accepted() {
        let b = DatasetB::parse(
            "geographical_location_oid,geographical_location\r\n7,\"Toa Payoh\"\r\n",
        )
        .expect("parses");
        assert_eq!(b.lookup(7), Some("Toa Payoh"));
    }
}
