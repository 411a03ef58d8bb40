//! A fault-injecting HTTP proxy between the AWS SDK and moto.
//!
//! Calls are recognised by service and operation (`X-Amz-Target` for DynamoDB
//! and Firehose, method and path for S3). Rules say what to do, a given number
//! of times or with a probability drawn from a seeded generator; every injected
//! fault is counted.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_LENGTH, CONTENT_TYPE, HOST};
use hyper::{Request, Response, StatusCode};
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::{TokioExecutor, TokioIo};
use serde_json::{Value, json};
use tokio::net::TcpListener;

use aws_sdk_firehose::config::interceptors::{
    BeforeTransmitInterceptorContextRef, FinalizerInterceptorContextRef,
};
use aws_sdk_firehose::config::{ConfigBag, Intercept, RuntimeComponents};
use aws_sdk_firehose::error::BoxError;
use aws_smithy_types::config_bag::{Storable, StoreReplace};

/// What the proxy can do to a call.
#[derive(Debug, Clone, PartialEq)]
pub enum Fault {
    /// DynamoDB `ProvisionedThroughputExceededException` (400), not forwarded.
    DynamoThroughputExceeded,
    /// DynamoDB `ThrottlingException` (400), not forwarded.
    DynamoThrottling,
    /// DynamoDB `InternalServerError` (500), not forwarded.
    DynamoInternalError,
    /// A bare 503, not forwarded.
    Unavailable503,
    /// Firehose `ServiceUnavailableException`, not forwarded.
    FirehoseUnavailable,
    /// Firehose partial failure: forward only some entries, answer the others
    /// failed with `FailedPutCount > 0`, as Firehose does.
    FirehosePartial { fail_ratio: f64 },
    /// S3 `InternalError` (500), not forwarded.
    S3InternalError,
    /// S3 `SlowDown` (503), not forwarded.
    S3SlowDown,
    /// Close the connection without an answer, not forwarded.
    Reset,
    /// Hold the call this long, then forward it.
    Delay(Duration),
    /// Forward, let moto act, then drop the answer.
    LoseAnswer,
    /// Forward, and remove `Item` from a `ConditionalCheckFailedException`
    /// answer, as an emulator without `ReturnValuesOnConditionCheckFailure` would.
    StripConditionalItem,
}

impl Fault {
    pub fn name(&self) -> &'static str {
        match self {
            Fault::DynamoThroughputExceeded => "dynamodb_throughput_exceeded",
            Fault::DynamoThrottling => "dynamodb_throttling",
            Fault::DynamoInternalError => "dynamodb_500",
            Fault::Unavailable503 => "http_503",
            Fault::FirehoseUnavailable => "firehose_service_unavailable",
            Fault::FirehosePartial { .. } => "firehose_partial_failure",
            Fault::S3InternalError => "s3_500",
            Fault::S3SlowDown => "s3_slowdown",
            Fault::Reset => "connection_reset",
            Fault::Delay(_) => "delay",
            Fault::LoseAnswer => "answer_lost_after_write",
            Fault::StripConditionalItem => "conditional_item_stripped",
        }
    }
}

/// Which call a rule applies to, e.g. `DynamoDB.PutItem`, `Firehose.PutRecordBatch`,
/// `S3.PutObject`; a trailing `*` matches a prefix (`DynamoDB.*`).
#[derive(Debug, Clone)]
pub struct Rule {
    pub operation: String,
    pub fault: Fault,
    /// How many calls it applies to; `None` for no limit.
    pub times: Option<u32>,
    pub probability: f64,
    /// Only calls whose body contains this (e.g. `checkpoint#` for the done mark).
    pub body_contains: Option<String>,
}

impl Rule {
    pub fn once(operation: &str, fault: Fault) -> Rule {
        Rule {
            operation: operation.into(),
            fault,
            times: Some(1),
            probability: 1.0,
            body_contains: None,
        }
    }

    pub fn always(operation: &str, fault: Fault) -> Rule {
        Rule {
            times: None,
            ..Rule::once(operation, fault)
        }
    }

    pub fn when_body_contains(mut self, needle: &str) -> Rule {
        self.body_contains = Some(needle.into());
        self
    }

    pub fn sometimes(operation: &str, fault: Fault, probability: f64) -> Rule {
        Rule {
            operation: operation.into(),
            fault,
            times: None,
            probability,
            body_contains: None,
        }
    }

    fn matches(&self, op: &str, body: &[u8]) -> bool {
        let op_ok = match self.operation.strip_suffix('*') {
            Some(prefix) => op.starts_with(prefix),
            None => op == self.operation,
        };
        op_ok
            && self
                .body_contains
                .as_ref()
                .is_none_or(|needle| body.windows(needle.len()).any(|w| w == needle.as_bytes()))
    }
}

#[derive(Debug)]
struct State {
    upstream: String,
    rules: Vec<Rule>,
    rng: fastrand::Rng,
    injected: BTreeMap<String, u64>,
    calls: BTreeMap<String, u64>,
    /// detection_oids inside Firehose calls whose answer was lost.
    lost_firehose_events: Vec<i64>,
    /// detection_oids inside Firehose attempts the SDK gave up on (see
    /// [`UnansweredPuts`]).
    unanswered_firehose_events: Vec<i64>,
}

/// A running proxy; dropped with the test's runtime.
#[derive(Clone)]
pub struct FaultProxy {
    pub endpoint: String,
    state: Arc<Mutex<State>>,
}

fn lock(s: &Mutex<State>) -> std::sync::MutexGuard<'_, State> {
    s.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
}

impl FaultProxy {
    pub async fn start(upstream: &str, seed: u64) -> FaultProxy {
        let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind proxy");
        let addr: SocketAddr = listener.local_addr().expect("proxy address");
        let state = Arc::new(Mutex::new(State {
            upstream: upstream.trim_end_matches('/').to_string(),
            rules: Vec::new(),
            rng: fastrand::Rng::with_seed(seed),
            injected: BTreeMap::new(),
            calls: BTreeMap::new(),
            lost_firehose_events: Vec::new(),
            unanswered_firehose_events: Vec::new(),
        }));
        let client: Client<HttpConnector, Full<Bytes>> =
            Client::builder(TokioExecutor::new()).build_http();
        let shared = state.clone();
        tokio::spawn(async move {
            loop {
                let Ok((stream, _)) = listener.accept().await else {
                    continue;
                };
                let state = shared.clone();
                let client = client.clone();
                tokio::spawn(async move {
                    let service = hyper::service::service_fn(move |req| {
                        handle(state.clone(), client.clone(), req)
                    });
                    // An Err from the service closes the connection: that is the reset.
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(stream), service)
                        .await;
                });
            }
        });
        FaultProxy {
            endpoint: format!("http://{addr}"),
            state,
        }
    }

    pub fn add(&self, rule: Rule) {
        lock(&self.state).rules.push(rule);
    }

    pub fn clear(&self) {
        lock(&self.state).rules.clear();
    }

    /// Faults injected so far, by kind.
    pub fn injected(&self) -> BTreeMap<String, u64> {
        lock(&self.state).injected.clone()
    }

    /// Calls seen so far, by operation.
    pub fn calls(&self) -> BTreeMap<String, u64> {
        lock(&self.state).calls.clone()
    }

    pub fn lost_firehose_events(&self) -> Vec<i64> {
        lock(&self.state).lost_firehose_events.clone()
    }

    /// The events of Firehose attempts that got no answer at the client: cut by
    /// the SDK's attempt timeout (a slow moto, an injected delay) or a reset.
    /// Firehose may have taken them, so they may be in S3 twice, as with a lost
    /// answer; a reset was never forwarded, so this may over-count.
    pub fn unanswered_firehose_events(&self) -> Vec<i64> {
        lock(&self.state).unanswered_firehose_events.clone()
    }

    /// The Firehose client's interceptor that records those attempts.
    pub fn firehose_watch(&self) -> UnansweredPuts {
        UnansweredPuts {
            state: self.state.clone(),
        }
    }
}

/// Records the events of each Firehose attempt that ends without an HTTP
/// response, on the client's side, where a timeout is seen: a loaded machine
/// can make moto slower than the attempt timeout without any injected fault.
#[derive(Clone)]
pub struct UnansweredPuts {
    state: Arc<Mutex<State>>,
}

impl std::fmt::Debug for UnansweredPuts {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("UnansweredPuts")
    }
}

/// The events in the attempt being sent, kept in the call's config bag until
/// the attempt ends.
#[derive(Debug, Clone)]
struct SentEvents(Vec<i64>);

impl Storable for SentEvents {
    type Storer = StoreReplace<Self>;
}

impl Intercept for UnansweredPuts {
    fn name(&self) -> &'static str {
        "UnansweredPuts"
    }

    fn read_before_transmit(
        &self,
        context: &BeforeTransmitInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        let ids = context
            .request()
            .body()
            .bytes()
            .map(firehose_event_ids)
            .unwrap_or_default();
        cfg.interceptor_state().store_put(SentEvents(ids));
        Ok(())
    }

    fn read_after_attempt(
        &self,
        context: &FinalizerInterceptorContextRef<'_>,
        _components: &RuntimeComponents,
        cfg: &mut ConfigBag,
    ) -> Result<(), BoxError> {
        if context.response().is_none()
            && let Some(SentEvents(ids)) = cfg.load::<SentEvents>()
        {
            lock(&self.state)
                .unanswered_firehose_events
                .extend(ids.iter().copied());
        }
        Ok(())
    }
}

#[derive(Debug)]
struct Dropped;

impl std::fmt::Display for Dropped {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("connection dropped by the fault proxy")
    }
}

impl std::error::Error for Dropped {}

fn operation(req: &hyper::http::request::Parts) -> String {
    if let Some(target) = req
        .headers
        .get("x-amz-target")
        .and_then(|v| v.to_str().ok())
    {
        let (service, op) = target.split_once('.').unwrap_or(("", target));
        let service = if service.starts_with("DynamoDB") {
            "DynamoDB"
        } else if service.starts_with("Firehose") {
            "Firehose"
        } else if service.starts_with("Kinesis") {
            "Kinesis"
        } else {
            service
        };
        return format!("{service}.{op}");
    }
    let segments = req.uri.path().trim_matches('/').split('/').count();
    match (req.method.as_str(), segments) {
        ("PUT", n) if n >= 2 => "S3.PutObject".into(),
        ("GET", n) if n >= 2 => "S3.GetObject".into(),
        (m, _) => format!("S3.{m}"),
    }
}

fn respond(status: u16, content_type: &str, body: String) -> Response<Full<Bytes>> {
    let mut r = Response::new(Full::new(Bytes::from(body)));
    *r.status_mut() = StatusCode::from_u16(status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    if let Ok(v) = content_type.parse() {
        r.headers_mut().insert(CONTENT_TYPE, v);
    }
    r
}

fn aws_json_error(status: u16, kind: &str) -> Response<Full<Bytes>> {
    respond(
        status,
        "application/x-amz-json-1.0",
        json!({"__type": kind, "message": "injected by the Sightline fault proxy"}).to_string(),
    )
}

fn s3_error(status: u16, code: &str) -> Response<Full<Bytes>> {
    respond(
        status,
        "application/xml",
        format!(
            "<?xml version=\"1.0\" encoding=\"UTF-8\"?><Error><Code>{code}</Code><Message>injected by the Sightline fault proxy</Message><RequestId>fault</RequestId></Error>"
        ),
    )
}

async fn forward(
    upstream: &str,
    client: &Client<HttpConnector, Full<Bytes>>,
    parts: &hyper::http::request::Parts,
    body: Bytes,
) -> Result<(hyper::http::response::Parts, Bytes), Box<dyn std::error::Error + Send + Sync>> {
    let path = parts.uri.path_and_query().map_or("/", |p| p.as_str());
    let mut req = Request::builder()
        .method(parts.method.clone())
        .uri(format!("{upstream}{path}"));
    for (k, v) in &parts.headers {
        if k != HOST && k != CONTENT_LENGTH {
            req = req.header(k, v);
        }
    }
    let resp = client.request(req.body(Full::new(body))?).await?;
    let (rp, rb) = resp.into_parts();
    Ok((rp, rb.collect().await?.to_bytes()))
}

fn firehose_event_ids(body: &[u8]) -> Vec<i64> {
    let b64 = base64::engine::general_purpose::STANDARD;
    let Ok(v) = serde_json::from_slice::<Value>(body) else {
        return Vec::new();
    };
    let mut ids = Vec::new();
    for r in v["Records"].as_array().into_iter().flatten() {
        let data = b64
            .decode(r["Data"].as_str().unwrap_or_default())
            .unwrap_or_default();
        for line in data.split(|b| *b == b'\n').filter(|l| !l.is_empty()) {
            if let Ok(e) = serde_json::from_slice::<Value>(line)
                && let Some(id) = e["detection_oid"].as_i64()
            {
                ids.push(id);
            }
        }
    }
    ids
}

async fn handle(
    state: Arc<Mutex<State>>,
    client: Client<HttpConnector, Full<Bytes>>,
    req: Request<Incoming>,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let (parts, body) = req.into_parts();
    let body = body.collect().await?.to_bytes();
    let op = operation(&parts);
    let (fault, upstream, draw) = {
        let mut s = lock(&state);
        *s.calls.entry(op.clone()).or_default() += 1;
        let mut chosen = None;
        let mut i = 0;
        while i < s.rules.len() {
            if s.rules[i].matches(&op, &body) && s.rules[i].times != Some(0) {
                let p = s.rules[i].probability;
                if p >= 1.0 || s.rng.f64() < p {
                    if let Some(t) = s.rules[i].times.as_mut() {
                        *t -= 1;
                    }
                    chosen = Some(s.rules[i].fault.clone());
                    break;
                }
            }
            i += 1;
        }
        if let Some(f) = &chosen {
            *s.injected.entry(f.name().to_string()).or_default() += 1;
        }
        let draw = s.rng.u64(..);
        (chosen, s.upstream.clone(), draw)
    };
    let Some(fault) = fault else {
        let (rp, rb) = forward(&upstream, &client, &parts, body).await?;
        return Ok(Response::from_parts(rp, Full::new(rb)));
    };
    match fault {
        Fault::DynamoThroughputExceeded => Ok(aws_json_error(
            400,
            "com.amazonaws.dynamodb.v20120810#ProvisionedThroughputExceededException",
        )),
        Fault::DynamoThrottling => Ok(aws_json_error(
            400,
            "com.amazon.coral.availability#ThrottlingException",
        )),
        Fault::DynamoInternalError => Ok(aws_json_error(
            500,
            "com.amazonaws.dynamodb.v20120810#InternalServerError",
        )),
        Fault::Unavailable503 => Ok(respond(503, "application/json", "{}".into())),
        Fault::FirehoseUnavailable => Ok(aws_json_error(400, "ServiceUnavailableException")),
        Fault::S3InternalError => Ok(s3_error(500, "InternalError")),
        Fault::S3SlowDown => Ok(s3_error(503, "SlowDown")),
        Fault::Reset => Err(Box::new(Dropped)),
        Fault::Delay(d) => {
            tokio::time::sleep(d).await;
            let (rp, rb) = forward(&upstream, &client, &parts, body).await?;
            Ok(Response::from_parts(rp, Full::new(rb)))
        }
        Fault::LoseAnswer => {
            if op == "Firehose.PutRecordBatch" {
                let ids = firehose_event_ids(&body);
                lock(&state).lost_firehose_events.extend(ids);
            }
            forward(&upstream, &client, &parts, body).await?;
            Err(Box::new(Dropped))
        }
        Fault::StripConditionalItem => {
            let (rp, rb) = forward(&upstream, &client, &parts, body).await?;
            let stripped = match serde_json::from_slice::<Value>(&rb) {
                Ok(Value::Object(mut m))
                    if m.get("__type")
                        .and_then(Value::as_str)
                        .is_some_and(|t| t.ends_with("ConditionalCheckFailedException")) =>
                {
                    m.remove("Item");
                    Bytes::from(Value::Object(m).to_string())
                }
                _ => rb,
            };
            let mut rp = rp;
            rp.headers.remove(CONTENT_LENGTH);
            Ok(Response::from_parts(rp, Full::new(stripped)))
        }
        Fault::FirehosePartial { fail_ratio } => {
            firehose_partial(&upstream, &client, &parts, body, fail_ratio, draw).await
        }
    }
}

async fn firehose_partial(
    upstream: &str,
    client: &Client<HttpConnector, Full<Bytes>>,
    parts: &hyper::http::request::Parts,
    body: Bytes,
    fail_ratio: f64,
    seed: u64,
) -> Result<Response<Full<Bytes>>, Box<dyn std::error::Error + Send + Sync>> {
    let mut request: Value = serde_json::from_slice(&body)?;
    let records = request["Records"].as_array().cloned().unwrap_or_default();
    let mut rng = fastrand::Rng::with_seed(seed);
    let mut failed: Vec<bool> = records.iter().map(|_| rng.f64() < fail_ratio).collect();
    if !failed.contains(&true)
        && let Some(f) = failed.first_mut()
    {
        *f = true; // a partial failure fails at least one entry
    }
    let kept: Vec<Value> = records
        .iter()
        .zip(&failed)
        .filter(|(_, f)| !**f)
        .map(|(r, _)| r.clone())
        .collect();
    let mut accepted = Vec::new().into_iter();
    if !kept.is_empty() {
        request["Records"] = Value::Array(kept);
        let (_, rb) = forward(upstream, client, parts, Bytes::from(request.to_string())).await?;
        let answer: Value = serde_json::from_slice(&rb)?;
        accepted = answer["RequestResponses"]
            .as_array()
            .cloned()
            .unwrap_or_default()
            .into_iter();
    }
    let mut responses = Vec::new();
    for f in &failed {
        if *f {
            responses.push(json!({"ErrorCode": "ServiceUnavailableException", "ErrorMessage": "injected partial failure"}));
        } else {
            responses.push(
                accepted
                    .next()
                    .unwrap_or_else(|| json!({"RecordId": "unknown"})),
            );
        }
    }
    let failed_count = failed.iter().filter(|f| **f).count();
    Ok(respond(
        200,
        "application/x-amz-json-1.1",
        json!({"FailedPutCount": failed_count, "Encrypted": false, "RequestResponses": responses})
            .to_string(),
    ))
}
