#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)] // test code
//! `sightline rollup --state-machine`: the backfill in AWS, through aws-sdk-sfn, against
//! a local stand-in for the Step Functions API (moto stores executions but never ends
//! them). The stand-in speaks the service's JSON protocol over HTTP, records every call
//! and ends each execution on its second `DescribeExecution`.

use std::collections::HashMap;
use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::process::{Command, Output};
use std::sync::{Arc, Mutex};

use serde_json::{Value, json};

const STATE_MACHINE: &str =
    "arn:aws:states:us-east-1:123456789012:stateMachine:sightline-test-rollup";

#[derive(Default)]
struct Calls {
    /// (X-Amz-Target operation, request body).
    seen: Vec<(String, Value)>,
    describes: HashMap<String, u32>,
}

/// Serves the Step Functions JSON protocol; executions whose input names `fail_hour`
/// end FAILED, the others SUCCEEDED.
fn stand_in(fail_hour: Option<&'static str>) -> (String, Arc<Mutex<Calls>>) {
    let listener = TcpListener::bind("127.0.0.1:0").expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let calls = Arc::new(Mutex::new(Calls::default()));
    let shared = Arc::clone(&calls);
    std::thread::spawn(move || {
        for stream in listener.incoming().flatten() {
            let calls = Arc::clone(&shared);
            std::thread::spawn(move || serve(stream, &calls, fail_hour));
        }
    });
    (url, calls)
}

fn serve(stream: TcpStream, calls: &Mutex<Calls>, fail_hour: Option<&str>) {
    let mut reader = BufReader::new(stream.try_clone().expect("clone"));
    let mut writer = stream;
    loop {
        let mut target = String::new();
        let mut length = 0usize;
        let mut line = String::new();
        // Request line and headers.
        if reader.read_line(&mut line).unwrap_or(0) == 0 {
            return;
        }
        loop {
            line.clear();
            if reader.read_line(&mut line).unwrap_or(0) == 0 {
                return;
            }
            let header = line.trim_end();
            if header.is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                match name.to_ascii_lowercase().as_str() {
                    "x-amz-target" => target = value.trim().to_string(),
                    "content-length" => length = value.trim().parse().unwrap_or(0),
                    _ => {}
                }
            }
        }
        let mut body = vec![0; length];
        if reader.read_exact(&mut body).is_err() {
            return;
        }
        let request: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        let operation = target.rsplit('.').next().unwrap_or_default().to_string();
        let response = answer(&operation, &request, calls, fail_hour);
        let text = response.to_string();
        let head = format!(
            "HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\nx-amzn-RequestId: test\r\nContent-Length: {}\r\n\r\n",
            text.len()
        );
        if writer.write_all(head.as_bytes()).is_err() || writer.write_all(text.as_bytes()).is_err()
        {
            return;
        }
    }
}

fn answer(
    operation: &str,
    request: &Value,
    calls: &Mutex<Calls>,
    fail_hour: Option<&str>,
) -> Value {
    let mut calls = calls.lock().expect("lock");
    calls.seen.push((operation.to_string(), request.clone()));
    match operation {
        "StartExecution" => {
            let name = request["name"].as_str().unwrap_or_default();
            let arn = format!(
                "arn:aws:states:us-east-1:123456789012:execution:sightline-test-rollup:{name}"
            );
            json!({"executionArn": arn, "startDate": 1.7e9})
        }
        "DescribeExecution" => {
            let arn = request["executionArn"]
                .as_str()
                .unwrap_or_default()
                .to_string();
            let seen = calls.describes.entry(arn.clone()).or_default();
            *seen += 1;
            let fails = fail_hour.is_some_and(|h| arn.contains(&format!("backfill-{h}-")));
            let status = match (*seen, fails) {
                (1, _) => "RUNNING",
                (_, true) => "FAILED",
                _ => "SUCCEEDED",
            };
            let mut out = json!({
                "executionArn": arn,
                "stateMachineArn": STATE_MACHINE,
                "status": status,
                "startDate": 1.7e9,
            });
            if status == "FAILED" {
                out["error"] = json!("Athena.InvalidRequestException");
                out["cause"] = json!("Bytes scanned limit was exceeded");
            }
            out
        }
        _ => json!({}),
    }
}

fn backfill(url: &str, from: &str, to: &str) -> Output {
    Command::new(env!("CARGO_BIN_EXE_sightline"))
        .args([
            "rollup",
            "--state-machine",
            STATE_MACHINE,
            "--from",
            from,
            "--to",
            to,
            "--poll-secs",
            "1",
            "--endpoint-url",
            url,
        ])
        .env("AWS_ACCESS_KEY_ID", "test")
        .env("AWS_SECRET_ACCESS_KEY", "test")
        .env("AWS_REGION", "us-east-1")
        .env_remove("AWS_PROFILE")
        .env_remove("AWS_ENDPOINT_URL")
        .output()
        .expect("runs sightline")
}

fn started(calls: &Mutex<Calls>) -> Vec<Value> {
    calls
        .lock()
        .expect("lock")
        .seen
        .iter()
        .filter(|(op, _)| op == "StartExecution")
        .map(|(_, body)| body.clone())
        .collect()
}

#[test]
fn backfill_starts_one_execution_per_hour_in_order_and_waits_for_each() {
    let (url, calls) = stand_in(None);
    let out = backfill(&url, "2025-06-01T22", "2025-06-02T01");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let starts = started(&calls);
    let hours: Vec<Value> = starts
        .iter()
        .map(|s| serde_json::from_str(s["input"].as_str().expect("input")).expect("json"))
        .collect();
    assert_eq!(
        hours,
        [
            json!({"hours": [{"event_date": "2025-06-01", "event_hour": "22"}]}),
            json!({"hours": [{"event_date": "2025-06-01", "event_hour": "23"}]}),
            json!({"hours": [{"event_date": "2025-06-02", "event_hour": "00"}]}),
            json!({"hours": [{"event_date": "2025-06-02", "event_hour": "01"}]}),
        ]
    );
    for (start, hour) in starts.iter().zip([
        "2025-06-01T22",
        "2025-06-01T23",
        "2025-06-02T00",
        "2025-06-02T01",
    ]) {
        assert_eq!(start["stateMachineArn"], STATE_MACHINE);
        assert!(
            start["name"]
                .as_str()
                .is_some_and(|n| n.starts_with(&format!("backfill-{hour}-"))),
            "{start}"
        );
    }
    // Each execution was awaited (RUNNING, then SUCCEEDED) before the next started.
    let seen = calls.lock().expect("lock").seen.clone();
    let order: Vec<&str> = seen.iter().map(|(op, _)| op.as_str()).collect();
    assert_eq!(
        order,
        ["StartExecution", "DescribeExecution", "DescribeExecution"].repeat(4)
    );
    assert!(stdout.contains("rebuilt 4 hour(s)"), "{stdout}");
}

#[test]
fn backfill_stops_at_the_first_failed_hour_and_says_how_to_resume() {
    let (url, calls) = stand_in(Some("2025-06-01T23"));
    let out = backfill(&url, "2025-06-01T22", "2025-06-02T01");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(!out.status.success());
    assert!(
        stderr.contains("the rollup of 2025-06-01T23 ended FAILED")
            && stderr.contains("Bytes scanned limit was exceeded")
            && stderr.contains("--from 2025-06-01T23"),
        "{stderr}"
    );
    // The hours after the failed one were never started.
    assert_eq!(started(&calls).len(), 2);
}

#[test]
fn backfill_leaves_hours_that_are_not_closed_to_the_schedule() {
    let (url, calls) = stand_in(None);
    let out = backfill(&url, "2099-01-01T00", "2099-01-01T01");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}");
    assert!(
        stdout.contains("2 hour(s) of the range are not closed yet"),
        "{stdout}"
    );
    assert!(started(&calls).is_empty());
}
