//! The `Date` header, from the sandbox's clock (shifted by `clock_offset_secs`), so
//! that clients can notice a clock that disagrees with theirs.

use std::time::SystemTime;

use axum::extract::{Request, State};
use axum::http::{HeaderValue, header};
use axum::middleware::Next;
use axum::response::Response;

pub async fn stamp(State(offset_secs): State<i64>, req: Request, next: Next) -> Response {
    let mut response = next.run(req).await;
    let now = SystemTime::from(crate::clock::now(offset_secs));
    if let Ok(value) = HeaderValue::from_str(&httpdate::fmt_http_date(now)) {
        response.headers_mut().insert(header::DATE, value);
    }
    response
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn the_date_is_shifted_by_the_offset() {
        let app = Router::new()
            .route("/v1/x", get(|| async { "ok" }))
            .layer(from_fn_with_state(-3600_i64, stamp));
        let request = Request::get("/v1/x").body(Body::empty()).unwrap();
        let response = app.oneshot(request).await.unwrap();
        let date =
            httpdate::parse_http_date(response.headers()[header::DATE].to_str().unwrap()).unwrap();
        let behind = SystemTime::now().duration_since(date).unwrap().as_secs();
        assert!((3599..=3601).contains(&behind), "{behind}");
    }
}
