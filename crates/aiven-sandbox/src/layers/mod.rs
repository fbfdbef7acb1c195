//! The middleware every `/v1` request passes, outermost first: the request log, injected
//! faults, authentication, the rate limit, persistence and the `Date` header. Each is an
//! axum `from_fn` middleware over its own small state, tested on its own.

pub mod auth;
pub mod date;
pub mod inject;
pub mod log;
pub mod persist;
pub mod rate;

use std::sync::Arc;

use axum::Router;
use axum::extract::{OriginalUri, Request};
use axum::http::Uri;
use axum::middleware::from_fn_with_state;

use crate::Shared;

/// Wraps the `/v1` router in the middleware, in the order above.
pub fn wrap(router: Router<Arc<Shared>>, shared: &Arc<Shared>) -> Router<Arc<Shared>> {
    let (config, clock) = {
        let world = crate::lock(&shared.world);
        (world.config.clone(), world.clock.clone())
    };
    let persisted = shared.clone();
    // `layer` puts each new layer outside the previous ones: innermost first.
    router
        .layer(from_fn_with_state(clock.clone(), date::stamp))
        .layer(from_fn_with_state(
            persist::Save::new(move || persisted.persist()),
            persist::save,
        ))
        .layer(from_fn_with_state(
            Arc::new(rate::Limiter::new(config.rate_limit, clock.clone())),
            rate::limit,
        ))
        .layer(from_fn_with_state(
            Arc::new(auth::Token(config.token)),
            auth::check,
        ))
        .layer(from_fn_with_state(shared.faults.clone(), inject::faults))
        .layer(from_fn_with_state(
            log::Recorder {
                log: shared.log.clone(),
                clock,
            },
            log::record,
        ))
}

/// The URI the client sent: nesting strips `/v1`, but faults, authentication and the
/// log match the full path.
fn client_uri(req: &Request) -> Uri {
    req.extensions()
        .get::<OriginalUri>()
        .map_or_else(|| req.uri().clone(), |u| u.0.clone())
}
