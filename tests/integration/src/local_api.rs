//! A stand-in for API Gateway's HTTP API in front of the ingest function: real
//! HTTP on loopback, each request turned into what `lambda_http` hands
//! `ingest::handle` for a payload-v2 event, and its answer turned back into HTTP.
//!
//! Like the template's IAM authorization it refuses, with a `403`, a request
//! without a SigV4 `Authorization` header for `execute-api` in the expected
//! region (it checks the header's shape, not the signature: moto cannot tell
//! real credentials from test ones either).

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::{Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use ingest::{Body, Ingest, Request as LambdaRequest, handle};
use sightline_aws::kinesis::KinesisPutRecords;
use sightline_core::SystemClock;
use tokio::net::TcpListener;

pub struct LocalApi {
    /// `http://127.0.0.1:PORT/events`
    pub url: String,
    requests: Arc<AtomicU64>,
    refused: Arc<AtomicU64>,
}

impl LocalApi {
    /// Serves `app` until the test's runtime ends. `region`: what a signature's
    /// credential scope must name; `None` accepts unsigned requests.
    pub async fn start(
        app: Ingest<KinesisPutRecords, SystemClock>,
        region: Option<&str>,
    ) -> LocalApi {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind api");
        let addr: SocketAddr = listener.local_addr().expect("api address");
        let app = Arc::new(app);
        let requests = Arc::new(AtomicU64::new(0));
        let refused = Arc::new(AtomicU64::new(0));
        let scope = region.map(|r| format!("/{r}/execute-api/aws4_request"));
        let (req_count, refused_count) = (requests.clone(), refused.clone());
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let (app, scope) = (app.clone(), scope.clone());
                let (req_count, refused_count) = (req_count.clone(), refused_count.clone());
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        let (app, scope) = (app.clone(), scope.clone());
                        let (req_count, refused_count) = (req_count.clone(), refused_count.clone());
                        async move {
                            req_count.fetch_add(1, Ordering::Relaxed);
                            let resp = serve(&app, scope.as_deref(), req).await;
                            if resp.status() == StatusCode::FORBIDDEN {
                                refused_count.fetch_add(1, Ordering::Relaxed);
                            }
                            Ok::<_, std::convert::Infallible>(resp)
                        }
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        LocalApi {
            url: format!("http://{addr}/events"),
            requests,
            refused,
        }
    }

    pub fn requests(&self) -> u64 {
        self.requests.load(Ordering::Relaxed)
    }

    /// Requests refused for a missing or malformed signature.
    pub fn refused(&self) -> u64 {
        self.refused.load(Ordering::Relaxed)
    }
}

fn text(status: u16, body: String) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(body)));
    *resp.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::BAD_GATEWAY);
    resp
}

/// Does the `Authorization` header look like SigV4 for `execute-api` in the scope?
fn signed_for(req: &Request<hyper::body::Incoming>, scope: &str) -> bool {
    let Some(auth) = req
        .headers()
        .get("authorization")
        .and_then(|v| v.to_str().ok())
    else {
        return false;
    };
    auth.starts_with("AWS4-HMAC-SHA256 Credential=")
        && auth.contains(scope)
        && auth.contains("SignedHeaders=")
        && auth.contains("Signature=")
        && req.headers().contains_key("x-amz-date")
}

async fn serve(
    app: &Ingest<KinesisPutRecords, SystemClock>,
    scope: Option<&str>,
    req: Request<hyper::body::Incoming>,
) -> Response<Full<Bytes>> {
    if let Some(scope) = scope
        && !signed_for(&req, scope)
    {
        return text(403, r#"{"message":"Forbidden"}"#.to_string());
    }
    let (parts, body) = req.into_parts();
    let Ok(bytes) = body
        .collect()
        .await
        .map(http_body_util::Collected::to_bytes)
    else {
        return text(400, r#"{"message":"body could not be read"}"#.to_string());
    };
    // API Gateway passes a body that is not UTF-8 text as base64, which
    // lambda_http decodes to binary.
    let body = match String::from_utf8(bytes.to_vec()) {
        Ok(t) => Body::Text(t),
        Err(e) => Body::Binary(e.into_bytes()),
    };
    let answer = handle(app, LambdaRequest::from_parts(parts, body)).await;
    let (parts, body) = answer.into_parts();
    Response::from_parts(parts, Full::new(Bytes::copy_from_slice(&body)))
}
