//! The CLI's way to a running daemon: one HTTP request over the unix socket beside the
//! database. `Ok(None)` means no daemon answers, and the caller opens the database itself.

use std::path::Path;

use anyhow::Context;
use bytes::Bytes;
use http_body_util::{BodyExt, Full};
use hyper::body::Incoming;
use hyper::header::{CONTENT_TYPE, HOST};
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use serde_json::Value;
use tokio::net::UnixStream;

/// Sends `method path` with an optional JSON body; returns the status and the JSON answer.
pub async fn request(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Option<(StatusCode, Value)>> {
    let Some(resp) = send(socket, method, path, body).await? else {
        return Ok(None);
    };
    let status = resp.status();
    Ok(Some((status, json_of(resp).await?)))
}

/// Sends `method path` with an optional JSON body; returns the answer with its body unread
/// (for one too big to hold, like a backup).
pub async fn send(
    socket: &Path,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Option<Response<Incoming>>> {
    let stream = match UnixStream::connect(socket).await {
        Ok(s) => s,
        Err(e)
            if matches!(
                e.kind(),
                std::io::ErrorKind::NotFound | std::io::ErrorKind::ConnectionRefused
            ) =>
        {
            return Ok(None)
        }
        Err(e) => return Err(e).with_context(|| format!("connecting to {}", socket.display())),
    };
    let (mut sender, conn) = hyper::client::conn::http1::handshake(TokioIo::new(stream))
        .await
        .context("talking to the daemon")?;
    tokio::spawn(conn);
    let bytes = body.map_or_else(Bytes::new, |b| Bytes::from(b.to_string()));
    let req = Request::builder()
        .method(method)
        .uri(path)
        .header(HOST, "localhost")
        .header(CONTENT_TYPE, "application/json")
        .body(Full::new(bytes))
        .context("building the request")?;
    let resp = sender
        .send_request(req)
        .await
        .context("talking to the daemon")?;
    Ok(Some(resp))
}

/// The JSON of an answer (`null` when it is not JSON).
pub async fn json_of(resp: Response<Incoming>) -> anyhow::Result<Value> {
    let body = resp
        .into_body()
        .collect()
        .await
        .context("reading the daemon's answer")?
        .to_bytes();
    Ok(serde_json::from_slice(&body).unwrap_or(Value::Null))
}

/// The message of an API error body, or the status when there is none.
pub fn error_message(status: StatusCode, body: &Value) -> String {
    body["error"]["message"]
        .as_str()
        .map_or_else(|| status.to_string(), str::to_string)
}
