//! The accept loop. Each connection carries a kill switch in its requests' extensions,
//! so that a fault can close the connection without any response: the "dropped
//! connection" and "response lost" faults that a real network produces.

use std::sync::Arc;

use axum::Router;
use hyper::body::Incoming;
use hyper_util::rt::TokioIo;
use tokio::net::TcpListener;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tower::ServiceExt;

/// Closes the connection it was taken from, unanswered.
#[derive(Clone)]
pub struct ConnKill(Arc<Notify>);

impl ConnKill {
    pub async fn kill(&self) -> ! {
        self.0.notify_one();
        std::future::pending().await
    }
}

/// Serves plain HTTP, or HTTPS with `tls` (a certificate from the sandbox's project CA).
pub async fn serve(
    listener: TcpListener,
    router: Router,
    tls: Option<Arc<rustls::ServerConfig>>,
    cancel: CancellationToken,
) {
    let acceptor = tls.map(tokio_rustls::TlsAcceptor::from);
    loop {
        let stream = tokio::select! {
            _ = cancel.cancelled() => return,
            accepted = listener.accept() => match accepted {
                Ok((stream, _)) => stream,
                Err(_) => continue,
            },
        };
        let router = router.clone();
        let cancel = cancel.clone();
        let acceptor = acceptor.clone();
        tokio::spawn(async move {
            match acceptor {
                Some(acceptor) => match acceptor.accept(stream).await {
                    Ok(tls) => serve_connection(tls, router, cancel).await,
                    Err(e) => tracing::debug!("sandbox: TLS handshake failed: {e}"),
                },
                None => serve_connection(stream, router, cancel).await,
            }
        });
    }
}

async fn serve_connection<S>(stream: S, router: Router, cancel: CancellationToken)
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    {
        {
            let kill = Arc::new(Notify::new());
            let conn_kill = ConnKill(kill.clone());
            let service = hyper::service::service_fn(move |mut req: hyper::Request<Incoming>| {
                req.extensions_mut().insert(conn_kill.clone());
                router.clone().oneshot(req.map(axum::body::Body::new))
            });
            let conn = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service);
            tokio::select! {
                _ = conn => {}
                _ = kill.notified() => {}
                _ = cancel.cancelled() => {}
            }
        }
    }
}
