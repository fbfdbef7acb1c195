//! The request log (`GET /_sandbox/requests`): every `/v1` request with its status, the
//! fault that fired and its body, secret-looking fields redacted. The `Authorization`
//! header is never kept.

use std::sync::{Arc, Mutex};

use axum::body::Body;
use axum::extract::{Request, State};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use serde::Serialize;
use serde_json::{Value, json};

use crate::clock::Clock;
use crate::error::ApiError;
use crate::lock;
use crate::rules::rfc3339;

/// One entry of the request log.
#[derive(Clone, Debug, Serialize)]
pub struct LoggedRequest {
    pub seq: u64,
    pub time: String,
    pub method: String,
    pub path: String,
    pub query: String,
    pub status: u16,
    pub body: Option<Value>,
    pub fault: Option<String>,
}

pub type RequestLog = Arc<Mutex<Vec<LoggedRequest>>>;

/// A request's entry, in the request's extensions: inner layers note the fault they
/// inject, and the status once the request is applied (0 until then), which may be
/// before its answer leaves or when nobody waits for it any more.
#[derive(Clone)]
pub struct Entry {
    log: RequestLog,
    seq: u64,
}

impl Entry {
    fn update(&self, change: impl FnOnce(&mut LoggedRequest)) {
        let mut log = lock(&self.log);
        if let Some(entry) = log.iter_mut().rev().find(|e| e.seq == self.seq) {
            change(entry);
        }
    }

    pub fn fault(&self, fault: &str) {
        self.update(|e| e.fault = Some(fault.to_string()));
    }

    pub fn status(&self, status: u16) {
        self.update(|e| e.status = status);
    }
}

/// Notes a fault on the request's log entry, if it has one.
pub fn note_fault(req: &Request, fault: &str) {
    if let Some(entry) = req.extensions().get::<Entry>() {
        entry.fault(fault);
    }
}

#[derive(Clone)]
pub struct Recorder {
    pub log: RequestLog,
    pub clock: Clock,
}

/// Reads the body (the log keeps it; inner layers and handlers get it back), logs the
/// request, and records the status of the answer.
pub async fn record(State(recorder): State<Recorder>, req: Request, next: Next) -> Response {
    let method = req.method().as_str().to_string();
    let uri = super::client_uri(&req);
    let path = uri.path().to_string();
    let query = uri.query().unwrap_or("").to_string();
    let (mut parts, body) = req.into_parts();
    let Ok(bytes) = axum::body::to_bytes(body, 16 << 20).await else {
        return ApiError::new(400, "Request body too large or unreadable").into_response();
    };
    let mut body = serde_json::from_slice::<Value>(&bytes).ok();
    body.iter_mut().for_each(redact);
    let seq = {
        let mut log = lock(&recorder.log);
        let seq = log.len() as u64 + 1;
        log.push(LoggedRequest {
            seq,
            time: rfc3339(recorder.clock.now()),
            method,
            path,
            query,
            status: 0,
            body,
            fault: None,
        });
        seq
    };
    let entry = Entry {
        log: recorder.log,
        seq,
    };
    parts.extensions.insert(entry.clone());
    let response = next
        .run(Request::from_parts(parts, Body::from(bytes)))
        .await;
    entry.status(response.status().as_u16());
    response
}

/// Replaces the values of secret-looking keys, at any depth.
fn redact(value: &mut Value) {
    match value {
        Value::Object(map) => {
            for (k, v) in map.iter_mut() {
                let k = k.to_ascii_lowercase();
                if ["password", "token", "access_key", "secret", "private_key"]
                    .iter()
                    .any(|s| k.contains(s))
                {
                    *v = json!(crate::render::REDACTED);
                } else {
                    redact(v);
                }
            }
        }
        Value::Array(items) => items.iter_mut().for_each(redact),
        _ => {}
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::http::StatusCode;
    use axum::middleware::from_fn_with_state;
    use axum::routing::post;
    use tower::ServiceExt;

    use super::*;

    fn logged(router: Router, log: &RequestLog) -> Router {
        let recorder = Recorder {
            log: log.clone(),
            clock: Clock::new(0, std::time::Duration::ZERO),
        };
        router.layer(from_fn_with_state(recorder, record))
    }

    fn post_json(uri: &str, body: Value) -> Request {
        Request::post(uri)
            .header("authorization", "aivenv1 secret-token")
            .body(Body::from(body.to_string()))
            .unwrap()
    }

    #[tokio::test]
    async fn logs_path_query_status_and_redacted_body() {
        let log = RequestLog::default();
        let body = json!({"username": "u", "new_password": "p", "nested": [{"access_key": "k"}]});
        let echo = post(|body: String| async move { (StatusCode::CREATED, body) });
        let response = logged(Router::new().route("/v1/echo", echo), &log)
            .oneshot(post_json("/v1/echo?x=1", body.clone()))
            .await
            .unwrap();
        assert_eq!(response.status(), StatusCode::CREATED);
        // The handler still gets the body as sent.
        let echoed = axum::body::to_bytes(response.into_body(), 1 << 10)
            .await
            .unwrap();
        assert_eq!(serde_json::from_slice::<Value>(&echoed).unwrap(), body);
        let log = lock(&log);
        let entry = &log[0];
        assert_eq!(
            (entry.seq, entry.method.as_str(), entry.path.as_str()),
            (1, "POST", "/v1/echo")
        );
        assert_eq!((entry.query.as_str(), entry.status), ("x=1", 201));
        assert_eq!(
            entry.body,
            Some(json!({"username": "u", "new_password": "<redacted>",
                        "nested": [{"access_key": "<redacted>"}]}))
        );
        assert!(!format!("{entry:?}").contains("secret-token"));
    }

    #[tokio::test]
    async fn inner_layers_note_faults_on_the_entry() {
        let log = RequestLog::default();
        let faulty = post(|req: Request| async move {
            note_fault(&req, "drop");
            StatusCode::OK
        });
        logged(Router::new().route("/v1/x", faulty), &log)
            .oneshot(post_json("/v1/x", json!({})))
            .await
            .unwrap();
        assert_eq!(lock(&log)[0].fault.as_deref(), Some("drop"));
    }
}
