//! The answer: a status and a JSON body, as docs/producing.md documents them.

use lambda_http::http::header::{CONTENT_TYPE, RETRY_AFTER};
use lambda_http::http::{HeaderValue, StatusCode};
use lambda_http::{Body, Response};
use serde_json::{Value, json};
use sightline_core::batch::chain;
use sightline_core::retry::ErrorClass;

use crate::RETRY_AFTER_SECS;
use crate::body::Refusal;
use crate::check::{Checked, Verdict};
use crate::forward::Forwarded;

/// `400`, `413` or `415` with an error code and a message.
pub fn refused(refusal: &Refusal) -> Response<Body> {
    let (status, error) = match refusal {
        Refusal::ContentEncoding(_) => (
            StatusCode::UNSUPPORTED_MEDIA_TYPE,
            "unsupported_content_encoding",
        ),
        Refusal::BodyTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "body_too_large"),
        Refusal::Empty => (StatusCode::BAD_REQUEST, "empty_body"),
        Refusal::Unparseable(_) => (StatusCode::BAD_REQUEST, "unparseable_body"),
        Refusal::TooManyEvents(_) => (StatusCode::PAYLOAD_TOO_LARGE, "too_many_events"),
    };
    // The chain carries the parser's own words (where the body broke).
    let message = chain(refusal).to_string();
    json_response(status, &json!({"error": error, "message": message}))
}

/// The per-event answer: `200`, `207` or `422` by what validation rejected;
/// `503` (with `Retry-After`) or `502` when the stream did not take everything.
pub fn results(checked: &Checked<'_>, forwarded: &Forwarded) -> Response<Body> {
    let mut not_forwarded = vec![false; checked.verdicts.len()];
    for (event, ok) in checked.valid.iter().zip(&forwarded.accepted) {
        not_forwarded[event.index] = !ok;
    }
    let results: Vec<Value> = checked
        .verdicts
        .iter()
        .zip(&not_forwarded)
        .enumerate()
        .map(|(index, (verdict, failed))| result(index, verdict, *failed))
        .collect();
    let failed = not_forwarded.iter().filter(|f| **f).count();
    let rejected = checked.verdicts.len() - checked.valid.len();
    let accepted = checked.valid.len() - failed;
    let summary = json!({
        "accepted": accepted,
        "rejected": rejected,
        "failed": failed,
        "throttled": forwarded.throttled,
        "results": results,
    });
    let status = match (forwarded.failure, accepted, rejected) {
        (Some(ErrorClass::Permanent), _, _) => StatusCode::BAD_GATEWAY,
        (Some(_), _, _) => StatusCode::SERVICE_UNAVAILABLE,
        (None, _, 0) => StatusCode::OK,
        (None, 0, _) => StatusCode::UNPROCESSABLE_ENTITY,
        (None, _, _) => StatusCode::MULTI_STATUS,
    };
    let mut resp = json_response(status, &summary);
    if status == StatusCode::SERVICE_UNAVAILABLE {
        resp.headers_mut()
            .insert(RETRY_AFTER, HeaderValue::from(RETRY_AFTER_SECS));
    }
    resp
}

fn result(index: usize, verdict: &Verdict, failed: bool) -> Value {
    match verdict {
        Verdict::Accepted { .. } if failed => json!({
            "index": index,
            "status": "failed",
            "message": "not accepted by the stream; send it again",
        }),
        Verdict::Accepted { detection_oid } => {
            json!({"index": index, "status": "accepted", "detection_oid": detection_oid})
        }
        Verdict::Rejected(why) => json!({
            "index": index,
            "status": "rejected",
            "reason": why.code(),
            "field": why.field().map(sightline_core::decode::Field::name),
            "message": why.to_string(),
        }),
    }
}

fn json_response(status: StatusCode, body: &Value) -> Response<Body> {
    let mut resp = Response::new(Body::Text(body.to_string()));
    *resp.status_mut() = status;
    resp.headers_mut()
        .insert(CONTENT_TYPE, HeaderValue::from_static("application/json"));
    resp
}
