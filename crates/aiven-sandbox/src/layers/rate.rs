//! The sandbox's own rate limit (`rate_limit:` in the config): a fixed window per token,
//! announced in `X-RateLimit-*` headers on every answer (429s too), answered with the
//! API's 429 and its "try again in Ns" text when exceeded. Aiven documents no limit; the
//! text is the one observed from the real API (terraform-provider-aiven#575).

use std::sync::{Arc, Mutex};
use std::time::Duration;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use time::OffsetDateTime;

use super::log::note_fault;
use crate::clock::Clock;
use crate::config::RateLimit;
use crate::error::ApiError;
use crate::lock;

/// Windows pass by the sandbox's clock: moving it forward ends the current one.
pub struct Limiter {
    limit: Option<RateLimit>,
    clock: Clock,
    window: Mutex<Window>,
}

struct Window {
    started: OffsetDateTime,
    count: u32,
}

impl Limiter {
    pub fn new(limit: Option<RateLimit>, clock: Clock) -> Self {
        Self {
            limit,
            window: Mutex::new(Window {
                started: clock.now(),
                count: 0,
            }),
            clock,
        }
    }

    /// Counts a request: `Ok(remaining)` within the limit, `Err(())` over it; with the
    /// seconds until the window resets either way.
    fn count(&self, limit: &RateLimit) -> (Result<u32, ()>, u64) {
        let mut window = lock(&self.window);
        let now = self.clock.now();
        let elapsed = |w: &Window| Duration::try_from(now - w.started).unwrap_or_default();
        if elapsed(&window) >= limit.per {
            *window = Window {
                started: now,
                count: 0,
            };
        }
        window.count += 1;
        let reset = limit.per.saturating_sub(elapsed(&window)).as_secs().max(1);
        let remaining = limit.requests.checked_sub(window.count).ok_or(());
        (remaining, reset)
    }
}

pub async fn limit(State(limiter): State<Arc<Limiter>>, req: Request, next: Next) -> Response {
    let Some(limit) = &limiter.limit else {
        return next.run(req).await;
    };
    let (remaining, reset) = limiter.count(limit);
    let mut response = match remaining {
        Ok(_) => next.run(req).await,
        Err(()) => {
            note_fault(&req, "rate_limit");
            limited(limit.requests, reset, limit.retry_after_header)
        }
    };
    let remaining = remaining.unwrap_or(0);
    let headers = response.headers_mut();
    headers.insert("x-ratelimit-limit", HeaderValue::from(limit.requests));
    headers.insert("x-ratelimit-remaining", HeaderValue::from(remaining));
    headers.insert("x-ratelimit-reset", HeaderValue::from(reset));
    response
}

/// The API's 429, with `Retry-After` when `header`; the text as
/// terraform-provider-aiven#575 quotes it.
pub fn limited(limit: u32, seconds: u64, header: bool) -> Response {
    let message = format!(
        "Too many requests in a given amount of time: Rate limit {limit} exceeded - try again in {seconds}s"
    );
    let mut response = ApiError::new(429, message).into_response();
    if header {
        response
            .headers_mut()
            .insert(header::RETRY_AFTER, HeaderValue::from(seconds));
    }
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    fn app(limit: Option<RateLimit>, clock: &Clock) -> Router {
        Router::new()
            .route("/v1/x", get(|| async { "ok" }))
            .layer(from_fn_with_state(
                Arc::new(Limiter::new(limit, clock.clone())),
                super::limit,
            ))
    }

    async fn call(app: &Router) -> Response {
        let request = Request::get("/v1/x").body(Body::empty()).unwrap();
        app.clone().oneshot(request).await.unwrap()
    }

    #[tokio::test]
    async fn counts_down_then_refuses_until_the_window_ends() {
        let clock = Clock::new(0, Duration::ZERO);
        let app = app(
            Some(RateLimit {
                requests: 2,
                per: Duration::from_millis(300),
                retry_after_header: true,
            }),
            &clock,
        );
        for remaining in ["1", "0"] {
            let response = call(&app).await;
            assert_eq!(response.status(), StatusCode::OK);
            assert_eq!(response.headers()["x-ratelimit-limit"], "2");
            assert_eq!(response.headers()["x-ratelimit-remaining"], remaining);
            assert_eq!(response.headers()["x-ratelimit-reset"], "1");
        }
        let refused = call(&app).await;
        assert_eq!(refused.status(), StatusCode::TOO_MANY_REQUESTS);
        assert_eq!(refused.headers()[header::RETRY_AFTER], "1");
        // The budget is announced on the refusal too: a client that was not counting
        // learns it from its first 429.
        assert_eq!(refused.headers()["x-ratelimit-remaining"], "0");
        assert_eq!(refused.headers()["x-ratelimit-reset"], "1");
        clock.advance(Duration::from_millis(300));
        assert_eq!(call(&app).await.status(), StatusCode::OK);
    }

    #[tokio::test]
    async fn without_a_limit_nothing_is_announced() {
        let response = call(&app(None, &Clock::new(0, Duration::ZERO))).await;
        assert_eq!(response.status(), StatusCode::OK);
        assert!(response.headers().get("x-ratelimit-limit").is_none());
    }
}
