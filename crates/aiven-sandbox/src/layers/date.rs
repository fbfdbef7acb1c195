//! The `Date` header, from the sandbox's clock (shifted by `clock_offset_secs`, moved by
//! `POST /_sandbox/clock`), so that clients can notice a clock that disagrees with theirs.

use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

use crate::clock::Clock;

pub async fn stamp(State(clock): State<Clock>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let now = SystemTime::from(clock.now());
    if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
        response.headers_mut().insert(header::DATE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use axum::Router;
    use axum::body::Body;
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    /// Seconds the `Date` of an answer is ahead of this machine's clock.
    async fn ahead(app: &Router) -> i64 {
        let request = Request::get("/v1/x").body(Body::empty()).unwrap();
        let response = app.clone().oneshot(request).await.unwrap();
        let date =
            httpdate::parse_http_date(response.headers()[header::DATE].to_str().unwrap()).unwrap();
        let date = time::OffsetDateTime::from(date);
        (date - time::OffsetDateTime::now_utc()).whole_seconds()
    }

    #[tokio::test]
    async fn the_date_is_the_shared_clock_shifted_and_moved_forward() {
        let clock = Clock::new(-3600, Duration::ZERO);
        let app = Router::new()
            .route("/v1/x", get(|| async { "ok" }))
            .layer(from_fn_with_state(clock.clone(), stamp));
        assert!((-3601..=-3599).contains(&ahead(&app).await));
        clock.advance(Duration::from_secs(7200));
        assert!((3599..=3601).contains(&ahead(&app).await));
    }
}
