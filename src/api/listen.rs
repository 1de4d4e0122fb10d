//! The API's HTTP server, guarded like a public endpoint (`[http]` in berth.toml): a client
//! gets `header_timeout` to send each request's head (so a kept-alive connection idles at most
//! that long), `body_timeout` to send the body, and no more than a cap of connections is
//! served at once; past the cap the listener stops accepting, so the loop, the watcher and the
//! database always keep their descriptors. `axum::serve` has none of these knobs.
//!
//! **Must not know about** routes: it serves whatever router it is given.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::serve::Listener;
use axum::Router;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::sync::Semaphore;
use tokio_util::sync::CancellationToken;

/// The limits one listener serves under.
#[derive(Debug, Clone, Copy)]
pub struct Guard {
    /// Time for a request's head, and the idle limit between requests.
    pub header_timeout: Duration,
    /// Time for a request's body, from its head.
    pub body_timeout: Duration,
    /// Connections served at once.
    pub max_connections: usize,
}

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(5);

/// Serves `app` on `listener` until `shutdown`; `tag` adds what a request should know of its
/// peer (the TCP address, for the failure limiter and the audit log).
pub async fn serve<L, T>(
    mut listener: L,
    app: Router,
    guard: Guard,
    tag: T,
    shutdown: CancellationToken,
) where
    L: Listener,
    T: Fn(&L::Addr) -> Option<ConnectInfo<std::net::SocketAddr>> + Send + 'static,
{
    let slots = Arc::new(Semaphore::new(guard.max_connections));
    let graceful = GracefulShutdown::new();
    let mut http = hyper::server::conn::http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(guard.header_timeout);
    loop {
        let slot = tokio::select! {
            slot = slots.clone().acquire_owned() => slot.expect("never closed"),
            () = shutdown.cancelled() => break,
        };
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let peer = tag(&addr);
        let app = app.clone();
        let body_timeout = guard.body_timeout;
        let service = hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
            let mut req = req.map(|body| Deadline::new(body, body_timeout));
            if let Some(peer) = peer {
                req.extensions_mut().insert(peer);
            }
            let mut app = app.clone();
            async move {
                let resp: Result<_, Infallible> = tower_service::Service::call(&mut app, req).await;
                resp
            }
        });
        let conn = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            // A client that hung up or timed out ends here; nothing to report.
            let _ = conn.await;
            drop(slot);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

/// A request body that fails once its deadline passes: a client that sends a body slowly
/// (or stalls in the middle) holds its connection and buffer for `body_timeout`, no longer.
pub struct Deadline {
    inner: Incoming,
    sleep: Pin<Box<tokio::time::Sleep>>,
}

impl Deadline {
    fn new(inner: Incoming, limit: Duration) -> Deadline {
        Deadline {
            inner,
            sleep: Box::pin(tokio::time::sleep(limit)),
        }
    }
}

/// The body was not sent in time.
#[derive(Debug, thiserror::Error)]
#[error("the request body was not sent within the body timeout")]
pub struct BodyTimedOut;

impl Body for Deadline {
    type Data = Bytes;
    type Error = axum::BoxError;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, Self::Error>>> {
        if let Poll::Ready(frame) = Pin::new(&mut self.inner).poll_frame(cx) {
            return Poll::Ready(frame.map(|f| f.map_err(Into::into)));
        }
        match self.sleep.as_mut().poll(cx) {
            Poll::Ready(()) => Poll::Ready(Some(Err(BodyTimedOut.into()))),
            Poll::Pending => Poll::Pending,
        }
    }

    fn is_end_stream(&self) -> bool {
        self.inner.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.inner.size_hint()
    }
}
