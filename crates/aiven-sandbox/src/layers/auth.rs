//! Authentication: `Authorization: aivenv1 <token>` or `Bearer <token>`, except on the
//! public catalogue paths; otherwise the API's 403.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{HeaderMap, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

use crate::error::ApiError;

/// Paths the API answers without a token.
const PUBLIC: &[&str] = &["/v1/clouds", "/v1/service_types", "/v1/service_versions"];

/// The token clients must send.
pub struct Token(pub String);

pub async fn check(State(token): State<Arc<Token>>, req: Request, next: Next) -> Response {
    let path = super::client_uri(&req);
    if PUBLIC.contains(&path.path()) || token.accepts(req.headers()) {
        return next.run(req).await;
    }
    // The spec's example of a failed response (its description, "Failed responses").
    ApiError::new(403, "Authentication failed")
        .code("authentication_failed")
        .into_response()
}

impl Token {
    fn accepts(&self, headers: &HeaderMap) -> bool {
        headers
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.split_once(' '))
            .is_some_and(|(scheme, value)| {
                (scheme.eq_ignore_ascii_case("aivenv1") || scheme.eq_ignore_ascii_case("bearer"))
                    && value == self.0
            })
    }
}

#[cfg(test)]
mod tests {
    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    async fn status(path: &str, authorization: Option<&str>) -> StatusCode {
        let app = Router::new()
            .route("/v1/me", get(|| async { "me" }))
            .route("/v1/clouds", get(|| async { "clouds" }))
            .layer(from_fn_with_state(Arc::new(Token("t0k".into())), check));
        let mut request = Request::get(path);
        if let Some(value) = authorization {
            request = request.header(header::AUTHORIZATION, value);
        }
        let request = request.body(Body::empty()).unwrap();
        app.oneshot(request).await.unwrap().status()
    }

    #[tokio::test]
    async fn either_scheme_with_the_token_passes() {
        for value in ["aivenv1 t0k", "Bearer t0k", "AIVENV1 t0k", "bearer t0k"] {
            assert_eq!(
                status("/v1/me", Some(value)).await,
                StatusCode::OK,
                "{value}"
            );
        }
    }

    #[tokio::test]
    async fn anything_else_is_refused_except_on_public_paths() {
        for value in [None, Some("aivenv1 wrong"), Some("Basic t0k"), Some("t0k")] {
            assert_eq!(
                status("/v1/me", value).await,
                StatusCode::FORBIDDEN,
                "{value:?}"
            );
        }
        assert_eq!(status("/v1/clouds", None).await, StatusCode::OK);
    }
}
