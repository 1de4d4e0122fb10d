//! Git mode endpoints: `POST /hooks/git` (a push happened: pull now; signed with HMAC-SHA256
//! of the body, the `X-Hub-Signature-256` convention) and `GET /git` (admins: what the last
//! sync found). Both are 404 when git mode is off.

use std::sync::Arc;
use std::time::Instant;

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Extension, Json, Router};
use hmac::{Hmac, KeyInit, Mac};
use serde_json::{json, Value};
use sha2::Sha256;

use super::auth::{AuditActor, Caller, ClientIp};
use super::error::ApiError;
use super::AppState;

/// Largest webhook body accepted (GitHub's own limit is 25 MB; pushes that big are rare).
const WEBHOOK_BODY_BYTES: usize = 10 * 1024 * 1024;

/// Webhook bodies are read before they are authenticated (the signature covers them): all
/// bodies being read at once hold at most this many bytes, whoever sends them.
static UNAUTHENTICATED_BYTES: tokio::sync::Semaphore =
    tokio::sync::Semaphore::const_new(3 * WEBHOOK_BODY_BYTES);

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        // Push payloads of big pushes are large (the signature needs the whole body): the
        // handler reads up to WEBHOOK_BODY_BYTES itself, and only once the request may pass.
        .route("/hooks/git", post(webhook))
        .route("/git", get(status))
}

/// True when `header` is `sha256=<hex>` of HMAC-SHA256(`secret`, `body`), compared in
/// constant time.
pub fn signature_ok(secret: &str, body: &[u8], header: Option<&str>) -> bool {
    let Some(hex_sig) = header.and_then(|h| h.trim().strip_prefix("sha256=")) else {
        return false;
    };
    let Ok(sig) = hex::decode(hex_sig) else {
        return false;
    };
    let Ok(mut mac) = Hmac::<Sha256>::new_from_slice(secret.as_bytes()) else {
        return false;
    };
    mac.update(body);
    mac.verify_slice(&sig).is_ok()
}

async fn webhook(
    State(s): State<Arc<AppState>>,
    Extension(actor): Extension<AuditActor>,
    ClientIp(ip): ClientIp,
    request: axum::extract::Request,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let Some(git) = &s.git else {
        return Err(ApiError::NotFound("git mode is off".into()));
    };
    let Some(secret) = &git.config.webhook_secret else {
        return Err(ApiError::NotFound(
            "the webhook is off: set [git] webhook_secret".into(),
        ));
    };
    if let Some(retry_after) = s.limiter.blocked(ip, Instant::now()) {
        return Err(ApiError::TooManyRequests { retry_after });
    }
    let header = request
        .headers()
        .get("x-hub-signature-256")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    // The body (up to 10 MiB) is read only for a request that may pass: git mode on, the
    // webhook set, the caller not blocked, a signature to check.
    let Some(header) = header.filter(|h| h.trim().starts_with("sha256=")) else {
        s.limiter.fail(ip, Instant::now());
        return Err(unsigned());
    };
    let _budget = body_budget(&request)?;
    let body = axum::body::to_bytes(request.into_body(), WEBHOOK_BODY_BYTES)
        .await
        .map_err(|_| {
            ApiError::PayloadTooLarge(format!(
                "a webhook body is at most {WEBHOOK_BODY_BYTES} bytes"
            ))
        })?;
    if !signature_ok(secret, &body, Some(&header)) {
        s.limiter.fail(ip, Instant::now());
        return Err(unsigned());
    }
    let _ = actor.0.set("webhook".into());
    git.wake.notify_one();
    Ok((StatusCode::ACCEPTED, Json(json!({ "pull": "started" }))))
}

/// Takes the request's share of [`UNAUTHENTICATED_BYTES`]: its declared length, or the
/// largest body when it declares none. Refused at once (503) when the budget is spent.
fn body_budget(
    request: &axum::extract::Request,
) -> Result<tokio::sync::SemaphorePermit<'static>, ApiError> {
    let declared = request
        .headers()
        .get(axum::http::header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok()?.parse::<usize>().ok());
    let need = match declared {
        Some(n) if n > WEBHOOK_BODY_BYTES => {
            return Err(ApiError::PayloadTooLarge(format!(
                "a webhook body is at most {WEBHOOK_BODY_BYTES} bytes"
            )))
        }
        Some(n) => n,
        None => WEBHOOK_BODY_BYTES,
    };
    let need = u32::try_from(need).expect("at most WEBHOOK_BODY_BYTES");
    UNAUTHENTICATED_BYTES.try_acquire_many(need).map_err(|_| {
        ApiError::Unavailable(
            "too many webhook bodies are being received at once; retry shortly".into(),
        )
    })
}

fn unsigned() -> ApiError {
    ApiError::Unauthorized(
        "missing or wrong X-Hub-Signature-256 (sha256=<hex HMAC-SHA256 of the body>)".into(),
    )
}

async fn status(State(s): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    caller.check_admin()?;
    let Some(git) = &s.git else {
        return Err(ApiError::NotFound("git mode is off".into()));
    };
    Ok(Json(json!(git.status())))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn signatures() {
        // From GitHub's documentation of X-Hub-Signature-256.
        let secret = "It's a Secret to Everybody";
        let body = b"Hello, World!";
        let good = "sha256=757107ea0eb2509fc211221cce984b8a37570b6d7586c22c46f4379c8b043e17";
        assert!(signature_ok(secret, body, Some(good)));
        assert!(!signature_ok(secret, b"Hello, World?", Some(good)));
        assert!(!signature_ok("other", body, Some(good)));
        for bad in [
            None,
            Some(""),
            Some("sha256="),
            Some("sha1=757107"),
            Some("sha256=zz"),
            Some(&good[..20]),
        ] {
            assert!(!signature_ok(secret, body, bad), "{bad:?}");
        }
    }
}
