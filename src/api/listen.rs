//! The API's HTTP server, guarded like a public endpoint (`[http]` in berth.toml): a client
//! gets `header_timeout` to send each request's head (so a kept-alive connection idles at most
//! that long), `body_timeout` to send the body, and `write_timeout` to take each part of a
//! response (a client that pipelines requests and never reads is cut, not held). At most
//! `max_connections` are served at once, `max_connections_per_address` from one address;
//! past the cap a reserve of connections answers only the probes (see [`super::slots`]).
//! Past the reserve a connection is accepted, told why in one write and closed at once, so
//! the loop, the watcher and the database always keep their descriptors, and the kernel's
//! accept queue never fills: a probe's connection is never queued behind an attacker's.
//! `axum::serve` has none of these knobs.
//!
//! **Must not know about** routes: it serves whatever router it is given, and in the reserve
//! only the paths it is told are probes.

use std::convert::Infallible;
use std::future::Future;
use std::pin::Pin;
use std::sync::Arc;
use std::task::{Context, Poll};
use std::time::Duration;

use axum::body::Bytes;
use axum::extract::ConnectInfo;
use axum::response::{IntoResponse, Response};
use axum::serve::Listener;
use axum::Router;
use futures_util::FutureExt;
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::server::conn::http1;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::server::graceful::GracefulShutdown;
use tokio::io::{AsyncRead, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio_util::sync::CancellationToken;

use super::slots::{Admit, Caps, Refusal, Slots};
use crate::metrics::Metrics;

/// The limits one listener serves under.
#[derive(Clone)]
pub struct Guard {
    /// Time for a request's head, and the idle limit between requests.
    pub header_timeout: Duration,
    /// Time for a request's body, from its head.
    pub body_timeout: Duration,
    /// Time a response may wait for the client to take any of it.
    pub write_timeout: Duration,
    /// Connection caps: in full, per address, and the probes' reserve.
    pub caps: Caps,
    /// The only paths a reserve connection answers.
    pub probes: &'static [&'static str],
    /// Where admissions, refusals and cut responses are counted.
    pub metrics: Arc<Metrics>,
}

/// How long shutdown waits for requests in flight.
const DRAIN: Duration = Duration::from_secs(5);
/// A reserve connection's time to send its one request head: a probe sends it at once.
const RESERVE_HEAD: Duration = Duration::from_secs(1);

/// Serves `app` on `listener` until `shutdown`; `tag` adds what a request should know of its
/// peer (the TCP address, for the per-address cap, the failure limiter and the audit log).
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
    let slots = Slots::new(guard.caps.clone());
    let graceful = GracefulShutdown::new();
    let full = builder(guard.header_timeout, true);
    let reserve = builder(guard.header_timeout.min(RESERVE_HEAD), false);
    loop {
        let (io, addr) = tokio::select! {
            accepted = listener.accept() => accepted,
            () = shutdown.cancelled() => break,
        };
        let peer = tag(&addr);
        let mut io = SendDeadline::new(io, guard.write_timeout, guard.metrics.clone());
        let (ticket, http, probes) = match slots.admit(peer.map(|p| p.0.ip())) {
            Admit::Full(t) => (t, &full, None),
            Admit::Reserve(t) => (t, &reserve, Some(guard.probes)),
            Admit::Refused(why) => {
                refuse(&mut io, why, &guard.metrics);
                continue;
            }
        };
        let outcome = if probes.is_some() { "reserve" } else { "full" };
        guard.metrics.connection(outcome);
        let service = service(app.clone(), peer, guard.body_timeout, probes);
        let conn = graceful.watch(http.serve_connection(TokioIo::new(io), service));
        tokio::spawn(async move {
            // A client that hung up or timed out ends here; nothing to report.
            let _ = conn.await;
            drop(ticket);
        });
    }
    drop(listener);
    let _ = tokio::time::timeout(DRAIN, graceful.shutdown()).await;
}

fn builder(header_timeout: Duration, keep_alive: bool) -> http1::Builder {
    let mut http = http1::Builder::new();
    http.timer(TokioTimer::new())
        .header_read_timeout(header_timeout)
        .keep_alive(keep_alive);
    http
}

/// The service one connection runs: `app`, or in the reserve (`probes`) only those paths.
fn service(
    app: Router,
    peer: Option<ConnectInfo<std::net::SocketAddr>>,
    body_timeout: Duration,
    probes: Option<&'static [&'static str]>,
) -> impl hyper::service::Service<
    hyper::Request<Incoming>,
    Response = Response,
    Error = Infallible,
    Future = impl Future<Output = Result<Response, Infallible>> + Send,
> + Clone {
    hyper::service::service_fn(move |req: hyper::Request<Incoming>| {
        let refused = probes.is_some_and(|p| !p.contains(&req.uri().path()));
        let mut req = req.map(|body| Deadline::new(body, body_timeout));
        if let Some(peer) = peer {
            req.extensions_mut().insert(peer);
        }
        let mut app = app.clone();
        async move {
            if refused {
                return Ok(busy(Refusal::Full));
            }
            tower_service::Service::call(&mut app, req).await
        }
    })
}

/// What a connection past the caps is told: the rule it met, in the API's error shape.
fn refusal(why: Refusal) -> (axum::http::StatusCode, String) {
    use axum::http::StatusCode;
    let (status, code, message) = match why {
        Refusal::PerAddress => (
            StatusCode::TOO_MANY_REQUESTS,
            "too_many_connections",
            "this address holds [http] max_connections_per_address connections already",
        ),
        Refusal::Full => (
            StatusCode::SERVICE_UNAVAILABLE,
            "connection_limit",
            "the API serves [http] max_connections connections already; only /healthz and /readyz are answered now",
        ),
    };
    let body = serde_json::json!({ "error": { "code": code, "message": message } });
    (status, body.to_string())
}

/// A reserve connection's answer to anything but a probe.
fn busy(why: Refusal) -> Response {
    let (status, body) = refusal(why);
    let headers = [
        (axum::http::header::CONNECTION, "close"),
        (axum::http::header::CONTENT_TYPE, "application/json"),
    ];
    (status, headers, body).into_response()
}

/// Answers a refused connection in one write if the socket takes it at once (a fresh
/// socket's buffer always does), then closes it: a refusal never waits on the client.
fn refuse<I: AsyncWrite + Unpin>(io: &mut I, why: Refusal, metrics: &Metrics) {
    metrics.connection(match why {
        Refusal::PerAddress => "refused_per_address",
        Refusal::Full => "refused_full",
    });
    let (status, body) = refusal(why);
    let text = format!(
        "HTTP/1.1 {} {}\r\nconnection: close\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        status.as_u16(),
        status.canonical_reason().unwrap_or(""),
        body.len()
    );
    let _ = io.write_all(text.as_bytes()).now_or_never();
}

/// A connection whose writes fail once the client has taken nothing for `limit`: the clock
/// starts when a write finds the socket full and restarts at each write that goes through.
pub struct SendDeadline<I> {
    inner: I,
    limit: Duration,
    stalled: Option<Pin<Box<tokio::time::Sleep>>>,
    metrics: Arc<Metrics>,
}

impl<I> SendDeadline<I> {
    fn new(inner: I, limit: Duration, metrics: Arc<Metrics>) -> SendDeadline<I> {
        SendDeadline {
            inner,
            limit,
            stalled: None,
            metrics,
        }
    }

    /// After a write's `poll`: progress clears the clock; a full socket starts it (once) and
    /// fails the write when it runs out.
    fn watch<R>(
        &mut self,
        cx: &mut Context<'_>,
        polled: Poll<std::io::Result<R>>,
    ) -> Poll<std::io::Result<R>> {
        if polled.is_ready() {
            self.stalled = None;
            return polled;
        }
        let limit = self.limit;
        let sleep = self
            .stalled
            .get_or_insert_with(|| Box::pin(tokio::time::sleep(limit)));
        match sleep.as_mut().poll(cx) {
            Poll::Pending => Poll::Pending,
            Poll::Ready(()) => {
                self.metrics.connection("write_timeout");
                Poll::Ready(Err(std::io::Error::new(
                    std::io::ErrorKind::TimedOut,
                    "the client took none of the response within [http] write_timeout",
                )))
            }
        }
    }
}

impl<I: AsyncRead + Unpin> AsyncRead for SendDeadline<I> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

impl<I: AsyncWrite + Unpin> AsyncWrite for SendDeadline<I> {
    fn poll_write(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write(cx, buf);
        self.watch(cx, polled)
    }

    fn poll_write_vectored(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[std::io::IoSlice<'_>],
    ) -> Poll<std::io::Result<usize>> {
        let polled = Pin::new(&mut self.inner).poll_write_vectored(cx, bufs);
        self.watch(cx, polled)
    }

    fn is_write_vectored(&self) -> bool {
        self.inner.is_write_vectored()
    }

    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_flush(cx);
        self.watch(cx, polled)
    }

    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        let polled = Pin::new(&mut self.inner).poll_shutdown(cx);
        self.watch(cx, polled)
    }
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
