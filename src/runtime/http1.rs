//! The HTTP/1 client connection berth's own clients share (Caddy's admin API, the registry's
//! API, the health gate's probes): one request or a few on a fresh connection, which hyper
//! drives in a task of its own until the sender is dropped.

use hyper::body::Body;
use hyper::client::conn::http1::SendRequest;
use hyper_util::rt::TokioIo;

/// An HTTP/1 connection over `stream`, driven in its own task.
pub(in crate::runtime) async fn handshake<S, B>(stream: S) -> hyper::Result<SendRequest<B>>
where
    S: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
    B: Body + Send + 'static,
    B::Data: Send,
    B::Error: Into<Box<dyn std::error::Error + Send + Sync>>,
{
    let (sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(conn);
    Ok(sender)
}
