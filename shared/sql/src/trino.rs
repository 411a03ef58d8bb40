//! Trino's `date_parse` and `date_format`, for DataFusion, so the Athena SQL in
//! `infra/athena/` runs locally unchanged; and Athena's execution parameters (`?`
//! bound in order), [`bind_execution_parameters`].
//!
//! Both functions take MySQL-style format strings as Trino does. The supported
//! specifiers are `%Y %m %d %H %i %s %S %%`; anything else is an error rather than a
//! guess.

use std::sync::Arc;

use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, StringBuilder, TimestampMillisecondBuilder,
};
use datafusion::arrow::compute::cast;
use datafusion::arrow::datatypes::{DataType, TimeUnit, TimestampMillisecondType};
use datafusion::common::{Result, exec_err};
use datafusion::logical_expr::{
    ColumnarValue, ScalarFunctionArgs, ScalarUDF, ScalarUDFImpl, Signature, Volatility,
};
use datafusion::prelude::SessionContext;
use sightline_core::time::civil_from_days;

const MS_PER_DAY: i64 = 86_400_000;

/// Adds the two functions to a session.
pub fn register(ctx: &SessionContext) {
    ctx.register_udf(ScalarUDF::new_from_impl(DateParse::new()));
    ctx.register_udf(ScalarUDF::new_from_impl(DateFormat::new()));
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Spec {
    Year,
    Month,
    Day,
    Hour,
    Minute,
    Second,
    Literal(char),
}

fn parse_format(format: &str) -> Result<Vec<Spec>> {
    let mut out = Vec::new();
    let mut chars = format.chars();
    while let Some(c) = chars.next() {
        if c != '%' {
            out.push(Spec::Literal(c));
            continue;
        }
        out.push(match chars.next() {
            Some('Y') => Spec::Year,
            Some('m') => Spec::Month,
            Some('d') => Spec::Day,
            Some('H') => Spec::Hour,
            Some('i') => Spec::Minute,
            Some('s' | 'S') => Spec::Second,
            Some('%') => Spec::Literal('%'),
            other => {
                return exec_err!(
                    "format specifier %{} is not supported by the local Trino shim (supported: %Y %m %d %H %i %s %%)",
                    other.map(String::from).unwrap_or_default()
                );
            }
        });
    }
    Ok(out)
}

/// Days since 1970-01-01 of a proleptic Gregorian date.
pub(crate) fn days_from_civil(y: i64, m: i64, d: i64) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y - era * 400;
    let mp = (m + 9) % 12;
    let doy = (153 * mp + 2) / 5 + d - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn format_ms(ms: i64, specs: &[Spec], out: &mut String) {
    use std::fmt::Write;
    let (y, mo, d) = civil_from_days(ms.div_euclid(MS_PER_DAY));
    let in_day = ms.rem_euclid(MS_PER_DAY) / 1000;
    for spec in specs {
        let _ = match spec {
            Spec::Year => write!(out, "{y:04}"),
            Spec::Month => write!(out, "{mo:02}"),
            Spec::Day => write!(out, "{d:02}"),
            Spec::Hour => write!(out, "{:02}", in_day / 3600),
            Spec::Minute => write!(out, "{:02}", in_day / 60 % 60),
            Spec::Second => write!(out, "{:02}", in_day % 60),
            Spec::Literal(c) => write!(out, "{c}"),
        };
    }
}

/// Parses `text` with `specs`; `None` when it does not match.
fn parse_ms(text: &str, specs: &[Spec]) -> Option<i64> {
    let bytes = text.as_bytes();
    let mut at = 0;
    let (mut y, mut mo, mut d, mut h, mut mi, mut s) = (1970i64, 1i64, 1i64, 0i64, 0i64, 0i64);
    let number = |at: &mut usize, max_digits: usize| -> Option<i64> {
        let start = *at;
        while *at < bytes.len() && *at - start < max_digits && bytes[*at].is_ascii_digit() {
            *at += 1;
        }
        text.get(start..*at)?.parse().ok()
    };
    for spec in specs {
        match spec {
            Spec::Year => y = number(&mut at, 4)?,
            Spec::Month => mo = number(&mut at, 2)?,
            Spec::Day => d = number(&mut at, 2)?,
            Spec::Hour => h = number(&mut at, 2)?,
            Spec::Minute => mi = number(&mut at, 2)?,
            Spec::Second => s = number(&mut at, 2)?,
            Spec::Literal(c) => {
                let rest = text.get(at..)?;
                if !rest.starts_with(*c) {
                    return None;
                }
                at += c.len_utf8();
            }
        }
    }
    let valid = at == bytes.len()
        && (1..=12).contains(&mo)
        && (1..=31).contains(&d)
        && (0..24).contains(&h)
        && (0..60).contains(&mi)
        && (0..60).contains(&s);
    valid.then(|| days_from_civil(y, mo, d) * MS_PER_DAY + ((h * 60 + mi) * 60 + s) * 1000)
}

/// The format argument: one constant string, as in every query we ship.
fn format_arg(args: &[ColumnarValue], name: &str) -> Result<Vec<Spec>> {
    match args.get(1) {
        Some(ColumnarValue::Scalar(v)) => match v.try_as_str() {
            Some(Some(f)) => parse_format(f),
            _ => exec_err!("{name}: the format must be a non-null string"),
        },
        _ => exec_err!("{name}: the format must be a constant string"),
    }
}

fn first_arg(args: &[ColumnarValue], rows: usize, to: &DataType) -> Result<ArrayRef> {
    let Some(value) = args.first() else {
        return exec_err!("missing first argument");
    };
    Ok(cast(&value.to_array(rows)?, to)?)
}

/// `date_parse(varchar, format) -> timestamp`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DateParse {
    signature: Signature,
}

impl DateParse {
    fn new() -> Self {
        DateParse {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for DateParse {
    fn name(&self) -> &str {
        "date_parse"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Timestamp(TimeUnit::Millisecond, None))
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let specs = format_arg(&args.args, "date_parse")?;
        let text = first_arg(&args.args, args.number_rows, &DataType::Utf8)?;
        let text = text.as_string::<i32>();
        let mut out = TimestampMillisecondBuilder::with_capacity(text.len());
        for i in 0..text.len() {
            if text.is_null(i) {
                out.append_null();
                continue;
            }
            match parse_ms(text.value(i), &specs) {
                Some(ms) => out.append_value(ms),
                None => {
                    return exec_err!("date_parse: {:?} does not match the format", text.value(i));
                }
            }
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// `date_format(timestamp or date, format) -> varchar`.
#[derive(Debug, PartialEq, Eq, Hash)]
struct DateFormat {
    signature: Signature,
}

impl DateFormat {
    fn new() -> Self {
        DateFormat {
            signature: Signature::any(2, Volatility::Immutable),
        }
    }
}

impl ScalarUDFImpl for DateFormat {
    fn name(&self) -> &str {
        "date_format"
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn return_type(&self, _args: &[DataType]) -> Result<DataType> {
        Ok(DataType::Utf8)
    }

    fn invoke_with_args(&self, args: ScalarFunctionArgs) -> Result<ColumnarValue> {
        let specs = format_arg(&args.args, "date_format")?;
        let ts = first_arg(
            &args.args,
            args.number_rows,
            &DataType::Timestamp(TimeUnit::Millisecond, None),
        )?;
        let ts = ts.as_primitive::<TimestampMillisecondType>();
        let mut out = StringBuilder::with_capacity(ts.len(), ts.len() * 16);
        let mut text = String::new();
        for i in 0..ts.len() {
            if ts.is_null(i) {
                out.append_null();
                continue;
            }
            text.clear();
            format_ms(ts.value(i), &specs, &mut text);
            out.append_value(&text);
        }
        Ok(ColumnarValue::Array(Arc::new(out.finish())))
    }
}

/// Why a query's execution parameters could not be bound.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BindError {
    #[error("the query has {placeholders} `?` placeholder(s) but {values} value(s) were given")]
    Count { placeholders: usize, values: usize },
    #[error(
        "execution parameter {value:?} is not a single-quoted string literal (Athena's form: '2026-11-24')"
    )]
    NotALiteral { value: String },
    #[error("the query has an unterminated {what}")]
    Unterminated { what: &'static str },
}

/// Binds Athena execution parameters: each `?` outside string literals, quoted
/// identifiers and comments is replaced, in order, by the next value. As with
/// Athena's `ExecutionParameters`, each value is SQL text; only single-quoted string
/// literals are accepted here (`'2026-11-24'`, quotes doubled inside), which is all
/// the rollup job passes, so nothing else can be injected.
pub fn bind_execution_parameters(sql: &str, values: &[&str]) -> Result<String, BindError> {
    for value in values {
        if !is_string_literal(value) {
            return Err(BindError::NotALiteral {
                value: (*value).to_string(),
            });
        }
    }
    let mut out = String::with_capacity(sql.len() + values.iter().map(|v| v.len()).sum::<usize>());
    let mut next = values.iter();
    let mut placeholders = 0;
    let mut chars = sql.char_indices().peekable();
    while let Some((_, c)) = chars.next() {
        match c {
            '\'' | '"' => {
                out.push(c);
                let mut closed = false;
                while let Some((_, d)) = chars.next() {
                    out.push(d);
                    if d == c {
                        // A doubled quote is an escaped quote, not the end.
                        if chars.peek().is_some_and(|(_, e)| *e == c) {
                            if let Some((_, e)) = chars.next() {
                                out.push(e);
                            }
                            continue;
                        }
                        closed = true;
                        break;
                    }
                }
                if !closed {
                    return Err(BindError::Unterminated {
                        what: if c == '\'' {
                            "string literal"
                        } else {
                            "quoted identifier"
                        },
                    });
                }
            }
            '-' if chars.peek().is_some_and(|(_, d)| *d == '-') => {
                out.push(c);
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if d == '\n' {
                        break;
                    }
                }
            }
            '/' if chars.peek().is_some_and(|(_, d)| *d == '*') => {
                out.push(c);
                if let Some((_, star)) = chars.next() {
                    out.push(star);
                }
                let mut previous = ' ';
                let mut closed = false;
                for (_, d) in chars.by_ref() {
                    out.push(d);
                    if previous == '*' && d == '/' {
                        closed = true;
                        break;
                    }
                    previous = d;
                }
                if !closed {
                    return Err(BindError::Unterminated { what: "comment" });
                }
            }
            '?' => {
                placeholders += 1;
                match next.next() {
                    Some(value) => out.push_str(value),
                    None => out.push('?'),
                }
            }
            _ => out.push(c),
        }
    }
    if placeholders != values.len() {
        return Err(BindError::Count {
            placeholders,
            values: values.len(),
        });
    }
    Ok(out)
}

/// `'...'` with every inner quote doubled.
fn is_string_literal(value: &str) -> bool {
    let Some(inner) = value.strip_prefix('\'').and_then(|v| v.strip_suffix('\'')) else {
        return false;
    };
    inner.replace("''", "").find('\'').is_none()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn binds_question_marks_in_order_outside_literals_and_comments() {
        let sql =
            "-- why? a comment\nSELECT '?' AS q, \"a?\" /* is ? */ FROM t WHERE d = ? AND h = ?";
        let bound = bind_execution_parameters(sql, &["'2026-11-24'", "'07'"]).expect("binds");
        assert_eq!(
            bound,
            "-- why? a comment\nSELECT '?' AS q, \"a?\" /* is ? */ FROM t WHERE d = '2026-11-24' AND h = '07'"
        );
    }

    #[test]
    fn binding_refuses_a_wrong_count_and_anything_but_string_literals() {
        assert_eq!(
            bind_execution_parameters("SELECT 1 WHERE a = ?", &[]),
            Err(BindError::Count {
                placeholders: 1,
                values: 0
            })
        );
        assert_eq!(
            bind_execution_parameters("SELECT 1", &["'x'"]),
            Err(BindError::Count {
                placeholders: 0,
                values: 1
            })
        );
        for bad in ["1 OR 1=1", "'a' OR 'b'", "'unterminated", "x'"] {
            assert!(
                matches!(
                    bind_execution_parameters("SELECT ?", &[bad]),
                    Err(BindError::NotALiteral { .. })
                ),
                "{bad}"
            );
        }
        assert_eq!(
            bind_execution_parameters("SELECT ?", &["'it''s'"]).expect("doubled quote"),
            "SELECT 'it''s'"
        );
        assert!(matches!(
            bind_execution_parameters("SELECT 'open", &[]),
            Err(BindError::Unterminated { .. })
        ));
    }

    #[test]
    fn formats_and_parses_the_specifiers_the_queries_use() {
        let specs = parse_format("%Y-%m-%d %H").expect("format");
        let ms = parse_ms("2025-11-23 07", &specs).expect("parses");
        assert_eq!(ms, 1_763_881_200_000);
        let mut s = String::new();
        format_ms(
            ms,
            &parse_format("%Y-%m-%d %H:%i:%s").expect("format"),
            &mut s,
        );
        assert_eq!(s, "2025-11-23 07:00:00");
    }

    #[test]
    fn rejects_text_that_does_not_match_and_unknown_specifiers() {
        let specs = parse_format("%Y-%m-%d %H").expect("format");
        assert_eq!(parse_ms("2025-11-23", &specs), None);
        assert_eq!(parse_ms("2025-13-01 00", &specs), None);
        assert_eq!(parse_ms("2025-11-23 07x", &specs), None);
        assert!(parse_format("%W").is_err());
    }

    #[test]
    fn days_from_civil_inverts_civil_from_days() {
        for days in [-800_000, -1, 0, 1, 19_000, 20_415, 2_000_000] {
            let (y, m, d) = civil_from_days(days);
            assert_eq!(
                days_from_civil(i64::from(y), i64::from(m), i64::from(d)),
                days
            );
        }
    }

    #[tokio::test]
    async fn the_functions_work_in_sql_as_in_trino() {
        let ctx = SessionContext::new();
        register(&ctx);
        let batches = ctx
            .sql("SELECT date_format(date_parse('2025-11-23 07', '%Y-%m-%d %H'), '%Y-%m-%d %H:%i') AS t, date_format(DATE '2025-11-20', '%Y-%m-%d') AS d")
            .await
            .expect("plans")
            .collect()
            .await
            .expect("runs");
        let rows = crate::query::Rows::new(&batches);
        assert_eq!(rows.strings("t").expect("t"), ["2025-11-23 07:00"]);
        assert_eq!(rows.strings("d").expect("d"), ["2025-11-20"]);
    }
}
