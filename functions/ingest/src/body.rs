//! Body parsing: a request's events as the exact bytes sent, or why the request
//! is refused before any event is looked at.

use lambda_http::Request;
use lambda_http::http::header::CONTENT_ENCODING;
use serde_json::value::RawValue;

use crate::{MAX_BODY_BYTES, MAX_EVENTS};

/// Why a request is answered without looking at its events.
#[derive(Debug, thiserror::Error)]
pub enum Refusal {
    #[error("Content-Encoding `{0}` is not supported; send the body uncompressed")]
    ContentEncoding(String),
    #[error("{0} bytes; the limit is {MAX_BODY_BYTES}")]
    BodyTooLarge(usize),
    #[error("send a JSON array or NDJSON of events")]
    Empty,
    #[error("body is not a JSON array or NDJSON")]
    Unparseable(#[source] serde_json::Error),
    #[error("{0} events; the limit is {MAX_EVENTS} per request")]
    TooManyEvents(usize),
}

/// The request's events in order, each exactly as sent, within the limits.
pub fn events(req: &Request) -> Result<Vec<&[u8]>, Refusal> {
    if let Some(encoding) = req
        .headers()
        .get(CONTENT_ENCODING)
        .and_then(|v| v.to_str().ok())
        && !encoding.trim().eq_ignore_ascii_case("identity")
    {
        return Err(Refusal::ContentEncoding(encoding.to_string()));
    }
    let body: &[u8] = req.body();
    if body.len() > MAX_BODY_BYTES {
        return Err(Refusal::BodyTooLarge(body.len()));
    }
    let events = split_events(body)?;
    if events.is_empty() {
        return Err(Refusal::Empty);
    }
    if events.len() > MAX_EVENTS {
        return Err(Refusal::TooManyEvents(events.len()));
    }
    Ok(events)
}

/// Splits a body into the raw bytes of each event: a JSON array (each element's
/// exact text) or NDJSON (each non-blank line). Nothing is re-serialised, so what
/// reaches Kinesis is what the camera sent.
pub fn split_events(body: &[u8]) -> Result<Vec<&[u8]>, Refusal> {
    let start = body.iter().position(|b| !b.is_ascii_whitespace());
    match start.map(|i| body[i]) {
        None => Err(Refusal::Empty),
        Some(b'[') => {
            let items: Vec<&RawValue> =
                serde_json::from_slice(body).map_err(Refusal::Unparseable)?;
            Ok(items.into_iter().map(|r| r.get().as_bytes()).collect())
        }
        Some(_) => Ok(body
            .split(|b| *b == b'\n')
            .map(|l| l.strip_suffix(b"\r").unwrap_or(l))
            .filter(|l| l.iter().any(|b| !b.is_ascii_whitespace()))
            .collect()),
    }
}
