//! Persistence: after a successful change (any method but GET), the world is saved to
//! `state_file`, before the answer leaves (a lost response still finds it saved).

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::Method;
use axum::middleware::Next;
use axum::response::Response;

/// What saves the world.
#[derive(Clone)]
pub struct Save(Arc<dyn Fn() + Send + Sync>);

impl Save {
    pub fn new(save: impl Fn() + Send + Sync + 'static) -> Self {
        Self(Arc::new(save))
    }
}

pub async fn save(State(save): State<Save>, req: Request, next: Next) -> Response {
    let change = req.method() != Method::GET;
    let response = next.run(req).await;
    if change && response.status().is_success() {
        (save.0)();
    }
    response
}

#[cfg(test)]
mod tests {
    use std::sync::atomic::{AtomicUsize, Ordering};

    use axum::Router;
    use axum::body::Body;
    use axum::http::StatusCode;
    use axum::middleware::from_fn_with_state;
    use axum::routing::get;
    use tower::ServiceExt;

    use super::*;

    #[tokio::test]
    async fn only_successful_changes_are_saved() {
        let saves = Arc::new(AtomicUsize::new(0));
        let counter = saves.clone();
        let app = Router::new()
            .route("/ok", get(|| async { "read" }).post(|| async { "changed" }))
            .route(
                "/bad",
                axum::routing::post(|| async { StatusCode::CONFLICT }),
            )
            .layer(from_fn_with_state(
                Save::new(move || {
                    counter.fetch_add(1, Ordering::SeqCst);
                }),
                save,
            ));
        for (method, path) in [("GET", "/ok"), ("POST", "/bad"), ("POST", "/ok")] {
            let request = Request::builder()
                .method(method)
                .uri(path)
                .body(Body::empty())
                .unwrap();
            app.clone().oneshot(request).await.unwrap();
        }
        assert_eq!(saves.load(Ordering::SeqCst), 1);
    }
}
