//! Request-level faults (`faults:` in the config, `/_sandbox/faults`): answers the
//! request never got, delays, and connections closed before or after it is applied.
//!
//! A request that got this far is applied (after its latency) even when the client goes
//! away meanwhile, by a timeout or a killed process: the API does not know that nobody
//! waits for the answer, so a write a client gave up on can still land.

use std::sync::{Arc, Mutex};

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use super::log::{Entry, note_fault};
use crate::error::ApiError;
use crate::faults::{Fault, FaultBook};
use crate::lock;
use crate::server::ConnKill;

pub async fn faults(
    State(book): State<Arc<Mutex<FaultBook>>>,
    req: Request,
    next: Next,
) -> Response {
    let path = super::client_uri(&req).path().to_string();
    let method = req.method().as_str().to_string();
    let fired = lock(&book).on_request(&method, &path);
    let kill = req.extensions().get::<ConnKill>().cloned();
    let mut lost_response = false;
    let mut slow_answer = None;
    let mut body = None;
    let mut latency = std::time::Duration::ZERO;
    for fault in fired {
        match fault {
            Fault::Latency { delay } => latency += delay,
            Fault::Hold { until } => {
                note_fault(&req, "hold");
                let deadline = tokio::time::Instant::now() + std::time::Duration::from_secs(60);
                while !lock(&book).released(&method, &path, until)
                    && tokio::time::Instant::now() < deadline
                {
                    tokio::time::sleep(std::time::Duration::from_millis(10)).await;
                }
            }
            Fault::RateLimit {
                seconds,
                retry_after_header,
            } => {
                note_fault(&req, "rate_limit");
                // The real API's limit, whatever the sandbox's own is.
                return super::rate::limited(120, seconds, retry_after_header);
            }
            Fault::Status {
                status,
                message,
                error_code,
                retry_after,
            } => {
                note_fault(&req, &format!("status {status}"));
                return status_response(status, message, error_code, retry_after);
            }
            Fault::Drop => {
                note_fault(&req, "drop");
                if let Some(kill) = &kill {
                    kill.kill().await;
                }
            }
            Fault::LostResponse => lost_response = true,
            Fault::SlowAnswer { delay } => slow_answer = Some(delay),
            Fault::Body { body: b } => body = Some(b),
        }
    }
    let entry = req.extensions().get::<Entry>().cloned();
    let noted = entry.clone();
    let applied = tokio::spawn(async move {
        tokio::time::sleep(latency).await;
        let response = next.run(req).await;
        // Logged once applied, even when nobody waits for the answer any more: the
        // log tells a test when a late write has landed.
        if let Some(entry) = noted {
            entry.status(response.status().as_u16());
        }
        response
    });
    let mut response = match applied.await {
        Ok(response) => response,
        Err(e) => ApiError::new(500, format!("the sandbox failed: {e}")).into_response(),
    };
    if let Some(body) = body {
        if let Some(entry) = &entry {
            entry.fault("body");
        }
        response = (response.status(), axum::Json(body)).into_response();
    }
    if lost_response {
        // The connection closes before the log layer sees the answer: note it here.
        if let Some(entry) = &entry {
            entry.status(response.status().as_u16());
            entry.fault("lost_response");
        }
        if let Some(kill) = &kill {
            kill.kill().await;
        }
    }
    if let Some(delay) = slow_answer {
        tokio::time::sleep(delay).await;
    }
    response
}

fn status_response(
    status: u16,
    message: Option<String>,
    error_code: Option<String>,
    retry_after: Option<u64>,
) -> Response {
    let message = message.unwrap_or_else(|| default_message(status).to_string());
    let mut error = ApiError::new(status, message);
    error.error_code = error_code;
    let mut response = error.into_response();
    if let Some(secs) = retry_after {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(secs));
    }
    response
}

fn default_message(status: u16) -> &'static str {
    match status {
        408 => "Request Timeout",
        429 => "Too Many Requests",
        500 => "Internal Server Error",
        501 => "Not ready, retry",
        502 => "Bad Gateway",
        503 => "Service Unavailable",
        504 => "Gateway Timeout",
        _ => "Error",
    }
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;
    use serde_json::Value;
    use tower::ServiceExt;

    use super::*;
    use crate::faults::FaultRule;

    /// A router whose handler counts the requests it applied.
    fn app(fault: Fault, applied: &Arc<AtomicUsize>) -> Router {
        let rule = FaultRule {
            method: None,
            path: "/v1/**".into(),
            nth: vec![],
            probability: None,
            times: None,
            fault,
        };
        let book = Arc::new(Mutex::new(FaultBook::new(vec![rule], 0)));
        let applied = applied.clone();
        Router::new()
            .route(
                "/v1/x",
                get(move || async move {
                    applied.fetch_add(1, Ordering::SeqCst);
                    "ok"
                }),
            )
            .layer(from_fn_with_state(book, faults))
    }

    async fn call(fault: Fault) -> (Response, usize) {
        let applied = Arc::new(AtomicUsize::new(0));
        let request = Request::get("/v1/x").body(Body::empty()).unwrap();
        let response = app(fault, &applied).oneshot(request).await.unwrap();
        (response, applied.load(Ordering::SeqCst))
    }

    async fn body(response: Response) -> Value {
        let bytes = axum::body::to_bytes(response.into_body(), 1 << 16)
            .await
            .unwrap();
        serde_json::from_slice(&bytes).unwrap()
    }

    #[tokio::test]
    async fn a_status_fault_answers_in_the_api_shape_without_applying() {
        let (response, applied) = call(Fault::Status {
            status: 503,
            message: None,
            error_code: Some("busy".into()),
            retry_after: Some(2),
        })
        .await;
        assert_eq!(applied, 0);
        assert_eq!(response.status(), StatusCode::SERVICE_UNAVAILABLE);
        assert_eq!(response.headers()[header::RETRY_AFTER], "2");
        let body = body(response).await;
        assert_eq!(body["message"], "Service Unavailable");
        assert_eq!(body["errors"][0]["error_code"], "busy");
    }

    #[tokio::test]
    async fn a_rate_limit_fault_names_the_api_limit() {
        let (response, applied) = call(Fault::RateLimit {
            seconds: 3,
            retry_after_header: false,
        })
        .await;
        assert_eq!(
            (response.status(), applied),
            (StatusCode::TOO_MANY_REQUESTS, 0)
        );
        assert!(response.headers().get(header::RETRY_AFTER).is_none());
        let message = body(response).await["message"]
            .as_str()
            .unwrap()
            .to_string();
        assert!(
            message.contains("Rate limit 120 exceeded - try again in 3s"),
            "{message}"
        );
    }

    #[tokio::test]
    async fn a_request_is_applied_after_its_latency_when_the_client_went_away() {
        let applied = Arc::new(AtomicUsize::new(0));
        let request = Request::get("/v1/x").body(Body::empty()).unwrap();
        let log = super::super::log::RequestLog::default();
        let recorder = super::super::log::Recorder {
            log: log.clone(),
            clock: crate::clock::Clock::new(0, Duration::ZERO),
        };
        let answer = app(
            Fault::Latency {
                delay: Duration::from_millis(100),
            },
            &applied,
        )
        .layer(from_fn_with_state(recorder, super::super::log::record))
        .oneshot(request);
        // The client gives up before the answer: its request future is dropped.
        assert!(
            tokio::time::timeout(Duration::from_millis(10), answer)
                .await
                .is_err()
        );
        assert_eq!(
            applied.load(Ordering::SeqCst),
            0,
            "applied before its latency"
        );
        assert_eq!(lock(&log)[0].status, 0, "logged as answered before it was");
        let landed = async {
            while applied.load(Ordering::SeqCst) == 0 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), landed)
            .await
            .expect("never applied");
        // The log says when it landed, though nobody got the answer.
        let logged = async {
            while lock(&log)[0].status != 200 {
                tokio::time::sleep(Duration::from_millis(5)).await;
            }
        };
        tokio::time::timeout(Duration::from_secs(5), logged)
            .await
            .expect("the log never said it was applied");
        assert_eq!(applied.load(Ordering::SeqCst), 1);
    }

    #[tokio::test]
    async fn latency_and_slow_answers_apply_the_request() {
        let delay = Duration::from_millis(50);
        for fault in [Fault::Latency { delay }, Fault::SlowAnswer { delay }] {
            let start = std::time::Instant::now();
            let (response, applied) = call(fault).await;
            assert_eq!((response.status(), applied), (StatusCode::OK, 1));
            assert!(start.elapsed() >= delay);
        }
    }
}
