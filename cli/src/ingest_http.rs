//! `sightline produce --url`: the ingest front door as a [`StreamPort`].
//!
//! One call is one POST of NDJSON (at most [`INGEST_MAX_EVENTS`] events and
//! [`INGEST_MAX_BODY_BYTES`]), signed with SigV4 for the `execute-api` service
//! unless signing is off. The front door answers per event:
//! - `accepted`: forwarded to Kinesis;
//! - `rejected`: invalid, never forwarded; counted here and not re-sent
//!   (sending it again cannot help);
//! - `failed` (with a `503` + `Retry-After`): Kinesis throttled it; reported as
//!   a throttled entry, so [`send_resending_failures`] re-sends only those.
//!
//! [`send_resending_failures`]: sightline_core::delivery::send_resending_failures

use std::sync::atomic::{AtomicU64, Ordering};
use std::time::SystemTime;

use aws_credential_types::Credentials;
use aws_credential_types::provider::error::CredentialsError;
use aws_credential_types::provider::{ProvideCredentials, SharedCredentialsProvider};
use aws_sigv4::http_request::{SignableBody, SignableRequest, SigningError, SigningSettings, sign};
use aws_sigv4::sign::v4;
use aws_smithy_runtime_api::client::identity::Identity;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Method, Request, StatusCode, Uri};
use hyper_rustls::HttpsConnector;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use serde::Deserialize;
use sightline_core::delivery::EntryFailure;
use sightline_core::ports::StreamPort;
use sightline_core::retry::{Classify, ErrorClass};
use thiserror::Error;

pub use sightline_core::model::{INGEST_MAX_BODY_BYTES, INGEST_MAX_EVENTS};

/// The service name API Gateway's IAM authorization expects in the signature.
pub const SIGNING_SERVICE: &str = "execute-api";
/// The entry code a throttled event is reported with (a throttling code, so the
/// retry counts it as a throttle).
pub const THROTTLED_CODE: &str = "ThrottlingException";

#[derive(Debug, Error)]
pub enum IngestHttpError {
    #[error("the ingest URL `{url}` is not a valid http(s) URL")]
    BadUrl {
        url: String,
        #[source]
        source: hyper::http::uri::InvalidUri,
    },
    #[error("no TLS roots for https")]
    Tls(#[source] std::io::Error),
    #[error("could not build the request")]
    Request(#[source] hyper::http::Error),
    #[error("request to the ingest URL failed")]
    Transport(#[source] hyper_util::client::legacy::Error),
    #[error("reading the ingest answer failed")]
    Body(#[source] hyper::Error),
    #[error("no AWS credentials to sign the request with (or pass --no-sign)")]
    Credentials(#[source] CredentialsError),
    #[error("no AWS credentials provider to sign the request with (or pass --no-sign)")]
    NoCredentialsProvider,
    #[error("signing the request failed")]
    Sign(#[source] SigningError),
    #[error("signing parameters are incomplete")]
    SigningParams(#[source] aws_sigv4::sign::v4::signing_params::BuildError),
    #[error("the front door answered {status}: {body}")]
    Status { status: u16, body: String },
    #[error("the front door's answer is not the expected JSON")]
    Answer(#[source] serde_json::Error),
    #[error("the front door answered {got} results for {sent} events")]
    ResultCount { sent: usize, got: usize },
}

impl Classify for IngestHttpError {
    fn class(&self) -> ErrorClass {
        match self {
            IngestHttpError::Transport(_) | IngestHttpError::Body(_) => ErrorClass::Transient,
            IngestHttpError::Status { status, .. } => match *status {
                429 | 503 => ErrorClass::Throttled,
                s if s >= 500 => ErrorClass::Transient,
                _ => ErrorClass::Permanent,
            },
            // A short or garbled answer from a proxy in between: try again.
            IngestHttpError::ResultCount { .. } => ErrorClass::Transient,
            _ => ErrorClass::Permanent,
        }
    }
}

/// How requests are signed.
#[derive(Debug, Clone)]
pub enum Signing {
    /// SigV4 for `execute-api` (the template's default IAM authorization).
    SigV4 {
        credentials: SharedCredentialsProvider,
        region: String,
    },
    /// No signature (a front door with another authorizer, or a local one).
    None,
}

#[derive(Debug, Deserialize)]
struct Answer {
    results: Vec<EventResult>,
}

#[derive(Debug, Deserialize)]
struct EventResult {
    status: String,
    #[serde(default)]
    reason: Option<String>,
    #[serde(default)]
    message: Option<String>,
}

/// The front door at `url`.
pub struct IngestHttp {
    client: Client<HttpsConnector<HttpConnector>, Full<Bytes>>,
    url: Uri,
    signing: Signing,
    rejected: AtomicU64,
    first_rejection: std::sync::Mutex<Option<String>>,
}

impl IngestHttp {
    pub fn new(url: &str, signing: Signing) -> Result<Self, IngestHttpError> {
        let parsed: Uri = url.parse().map_err(|source| IngestHttpError::BadUrl {
            url: url.to_string(),
            source,
        })?;
        let https = hyper_rustls::HttpsConnectorBuilder::new()
            .with_native_roots()
            .map_err(IngestHttpError::Tls)?
            .https_or_http()
            .enable_http1()
            .build();
        Ok(IngestHttp {
            client: Client::builder(TokioExecutor::new()).build(https),
            url: parsed,
            signing,
            rejected: AtomicU64::new(0),
            first_rejection: std::sync::Mutex::new(None),
        })
    }

    /// Events the front door rejected as invalid (never forwarded, not re-sent).
    pub fn rejected(&self) -> u64 {
        self.rejected.load(Ordering::Relaxed)
    }

    /// The first rejection's reason and message, to show the operator.
    pub fn first_rejection(&self) -> Option<String> {
        self.first_rejection.lock().ok().and_then(|g| g.clone())
    }

    async fn post(&self, body: Vec<u8>) -> Result<(StatusCode, Bytes), IngestHttpError> {
        let host = self
            .url
            .authority()
            .map(|a| a.as_str().to_string())
            .unwrap_or_default();
        let mut req = Request::builder()
            .method(Method::POST)
            .uri(self.url.clone())
            .header("host", host)
            .header("content-type", "application/x-ndjson")
            .body(())
            .map_err(IngestHttpError::Request)?;
        if let Signing::SigV4 {
            credentials,
            region,
        } = &self.signing
        {
            let creds: Credentials = credentials
                .provide_credentials()
                .await
                .map_err(IngestHttpError::Credentials)?;
            let identity: Identity = creds.into();
            let params = v4::SigningParams::builder()
                .identity(&identity)
                .region(region)
                .name(SIGNING_SERVICE)
                .time(SystemTime::now())
                .settings(SigningSettings::default())
                .build()
                .map_err(IngestHttpError::SigningParams)?
                .into();
            let uri = self.url.to_string();
            let headers = req
                .headers()
                .iter()
                .filter_map(|(k, v)| v.to_str().ok().map(|v| (k.as_str(), v)));
            let signable = SignableRequest::new("POST", &uri, headers, SignableBody::Bytes(&body))
                .map_err(IngestHttpError::Sign)?;
            let (instructions, _) = sign(signable, &params)
                .map_err(IngestHttpError::Sign)?
                .into_parts();
            instructions.apply_to_request_http1x(&mut req);
        }
        let (parts, ()) = req.into_parts();
        let req = Request::from_parts(parts, Full::new(Bytes::from(body)));
        let resp = self
            .client
            .request(req)
            .await
            .map_err(IngestHttpError::Transport)?;
        let status = resp.status();
        let bytes = resp
            .into_body()
            .collect()
            .await
            .map_err(IngestHttpError::Body)?
            .to_bytes();
        Ok((status, bytes))
    }
}

impl StreamPort for IngestHttp {
    type Error = IngestHttpError;

    /// Posts the entries' data as NDJSON; the partition keys are the front
    /// door's business (it keys by `detection_oid`).
    async fn put_records<'a>(
        &'a self,
        entries: &'a [(&'a str, &'a [u8])],
    ) -> Result<Vec<Option<EntryFailure>>, IngestHttpError> {
        let mut body = Vec::with_capacity(entries.iter().map(|(_, d)| d.len() + 1).sum());
        for (_, data) in entries {
            body.extend_from_slice(data);
            body.push(b'\n');
        }
        let (status, bytes) = self.post(body).await?;
        let unexpected = |status: u16| IngestHttpError::Status {
            status,
            body: String::from_utf8_lossy(&bytes).chars().take(500).collect(),
        };
        // 200/207/422 answer every event; 503 answers which ones Kinesis throttled.
        if !matches!(status.as_u16(), 200 | 207 | 422 | 503) {
            return Err(unexpected(status.as_u16()));
        }
        let answer: Answer = match serde_json::from_slice(&bytes) {
            Ok(a) => a,
            Err(_) if status == StatusCode::SERVICE_UNAVAILABLE => {
                // A 503 without per-event results (the gateway's own): retry all.
                return Err(unexpected(503));
            }
            Err(e) => return Err(IngestHttpError::Answer(e)),
        };
        if answer.results.len() != entries.len() {
            return Err(IngestHttpError::ResultCount {
                sent: entries.len(),
                got: answer.results.len(),
            });
        }
        let mut out = Vec::with_capacity(entries.len());
        for r in answer.results {
            match r.status.as_str() {
                "accepted" => out.push(None),
                "rejected" => {
                    self.rejected.fetch_add(1, Ordering::Relaxed);
                    if let Ok(mut first) = self.first_rejection.lock()
                        && first.is_none()
                    {
                        *first = Some(format!(
                            "{}: {}",
                            r.reason.as_deref().unwrap_or("rejected"),
                            r.message.as_deref().unwrap_or("")
                        ));
                    }
                    // Answered for good: not an entry to send again.
                    out.push(None);
                }
                _ => out.push(Some(EntryFailure {
                    code: THROTTLED_CODE.to_string(),
                    message: r
                        .message
                        .unwrap_or_else(|| "not accepted by the stream".to_string()),
                })),
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn throttling_answers_are_retried_and_client_errors_are_not() {
        let status = |s: u16| IngestHttpError::Status {
            status: s,
            body: String::new(),
        };
        assert_eq!(status(503).class(), ErrorClass::Throttled);
        assert_eq!(status(429).class(), ErrorClass::Throttled);
        assert_eq!(status(502).class(), ErrorClass::Transient);
        assert_eq!(status(403).class(), ErrorClass::Permanent);
        assert_eq!(status(413).class(), ErrorClass::Permanent);
    }

    #[test]
    fn a_url_that_is_not_one_is_a_clear_error() {
        let err = IngestHttp::new("http://exa mple", Signing::None)
            .err()
            .map(|e| e.to_string());
        assert!(err.is_some_and(|e| e.contains("not a valid")));
    }
}
