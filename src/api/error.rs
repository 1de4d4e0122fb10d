//! The API's one error type. Every handler returns it; it renders as
//! `{"error":{"code","message"}}` with the matching status, and never shows internals: an
//! `Internal` error is logged and answered with a generic message.

use axum::http::{header, HeaderValue, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::Json;
use tracing::error;

use crate::state::files::WriteError;
use crate::store::StoreError;

/// Everything a request can fail with.
#[derive(Debug, thiserror::Error)]
pub enum ApiError {
    /// Malformed request: bad JSON, bad name, bad query.
    #[error("{0}")]
    BadRequest(String),
    /// No or bad credentials.
    #[error("{0}")]
    Unauthorized(String),
    /// Good credentials, wrong scope.
    #[error("{0}")]
    Forbidden(String),
    /// No such app, key or user.
    #[error("{0}")]
    NotFound(String),
    /// The path exists, not with this method.
    #[error("method not allowed on this endpoint")]
    MethodNotAllowed,
    /// Already exists.
    #[error("{0}")]
    Conflict(String),
    /// A quota would be exceeded; the message names the limit.
    #[error("{0}")]
    Quota(String),
    /// `If-Match` missing.
    #[error("{0}")]
    PreconditionRequired(String),
    /// `If-Match` stale.
    #[error("{0}")]
    PreconditionFailed(String),
    /// Body too large.
    #[error("{0}")]
    PayloadTooLarge(String),
    /// Not JSON where JSON is needed.
    #[error("{0}")]
    UnsupportedMediaType(String),
    /// Well-formed but invalid content: a manifest that does not validate, an unknown template.
    #[error("{message}")]
    Unprocessable {
        /// `invalid_manifest`, `unknown_template`, `invalid_body`.
        code: &'static str,
        /// What is wrong, with file:line:col for manifests.
        message: String,
    },
    /// A confirm token that is unknown, used, expired or for another call.
    #[error("{0}")]
    ConfirmRefused(String),
    /// Too many failed key attempts from this address.
    #[error("too many failed authentication attempts; retry in {retry_after} s")]
    TooManyRequests {
        /// Seconds until the address may try again.
        retry_after: u64,
    },
    /// The caller's writes are past `api_writes_per_minute`.
    #[error("too many writes: user {user} may make {per_minute} a minute (policy api_writes_per_minute); retry in {retry_after} s")]
    WriteLimited {
        /// Whose limit.
        user: String,
        /// The limit.
        per_minute: u32,
        /// Seconds until a write is allowed again.
        retry_after: u64,
    },
    /// Docker is unreachable (logs), or the database is gone or being reopened.
    #[error("{0}")]
    Unavailable(String),
    /// A disk is full: nothing was written.
    #[error("{0}")]
    InsufficientStorage(String),
    /// A request refused by a named rule with its own status (the files API's
    /// `invalid_path`, `symlink_refused`, `path_changed`, `not_a_file`, `no_workspace`, `file_too_large`).
    #[error("{message}")]
    Refused {
        /// The status it answers.
        status: StatusCode,
        /// The rule's code.
        code: &'static str,
        /// What is wrong, naming the path and the rule.
        message: String,
    },
    /// A bug or an I/O failure: logged, not shown.
    #[error("{0}")]
    Internal(String),
}

impl ApiError {
    /// The status this error answers with.
    pub fn status(&self) -> StatusCode {
        self.status_and_code().0
    }

    fn status_and_code(&self) -> (StatusCode, &'static str) {
        match self {
            ApiError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad_request"),
            ApiError::Unauthorized(_) => (StatusCode::UNAUTHORIZED, "unauthorized"),
            ApiError::Forbidden(_) => (StatusCode::FORBIDDEN, "forbidden"),
            ApiError::NotFound(_) => (StatusCode::NOT_FOUND, "not_found"),
            ApiError::MethodNotAllowed => (StatusCode::METHOD_NOT_ALLOWED, "method_not_allowed"),
            ApiError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            ApiError::Quota(_) => (StatusCode::CONFLICT, "quota_exceeded"),
            ApiError::PreconditionRequired(_) => {
                (StatusCode::PRECONDITION_REQUIRED, "precondition_required")
            }
            ApiError::PreconditionFailed(_) => {
                (StatusCode::PRECONDITION_FAILED, "precondition_failed")
            }
            ApiError::PayloadTooLarge(_) => (StatusCode::PAYLOAD_TOO_LARGE, "payload_too_large"),
            ApiError::UnsupportedMediaType(_) => {
                (StatusCode::UNSUPPORTED_MEDIA_TYPE, "unsupported_media_type")
            }
            ApiError::Unprocessable { code, .. } => (StatusCode::UNPROCESSABLE_ENTITY, code),
            ApiError::ConfirmRefused(_) => (StatusCode::CONFLICT, "confirm_refused"),
            ApiError::TooManyRequests { .. } => {
                (StatusCode::TOO_MANY_REQUESTS, "too_many_requests")
            }
            ApiError::WriteLimited { .. } => (StatusCode::TOO_MANY_REQUESTS, "rate_limited"),
            ApiError::Unavailable(_) => (StatusCode::SERVICE_UNAVAILABLE, "unavailable"),
            ApiError::InsufficientStorage(_) => {
                (StatusCode::INSUFFICIENT_STORAGE, "insufficient_storage")
            }
            ApiError::Refused { status, code, .. } => (*status, code),
            ApiError::Internal(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        let (status, code) = self.status_and_code();
        let message = match &self {
            ApiError::Internal(cause) => {
                error!(cause = %cause, "internal error answering a request");
                "internal error; the berth log has the details".to_string()
            }
            other => other.to_string(),
        };
        let body = serde_json::json!({ "error": { "code": code, "message": message } });
        let mut resp = (status, Json(body)).into_response();
        if let ApiError::TooManyRequests { retry_after }
        | ApiError::WriteLimited { retry_after, .. } = self
        {
            resp.headers_mut()
                .insert(header::RETRY_AFTER, HeaderValue::from(retry_after));
        }
        resp
    }
}

impl From<WriteError> for ApiError {
    fn from(e: WriteError) -> Self {
        let message = crate::error_chain::chain(&e);
        match e {
            WriteError::NotFound(_) => ApiError::NotFound(message),
            WriteError::Exists(_) | WriteError::Busy(_) => ApiError::Conflict(message),
            WriteError::Quota(_) => ApiError::Quota(message),
            WriteError::Invalid(_) => ApiError::Unprocessable {
                code: "invalid_manifest",
                message,
            },
            WriteError::UnknownTemplate(_) => ApiError::Unprocessable {
                code: "unknown_template",
                message,
            },
            WriteError::Policy(v) => ApiError::Unprocessable {
                code: v.code,
                message,
            },
            WriteError::Stale { .. } => ApiError::PreconditionFailed(message),
            WriteError::OddPath(_) => ApiError::Conflict(message),
            WriteError::SecretsKey(_) => ApiError::Unavailable(message),
            WriteError::Io { ref source, .. } if crate::store::is_full(source) => {
                ApiError::InsufficientStorage(message)
            }
            WriteError::Commit(ref e) if e.is_full() => ApiError::InsufficientStorage(message),
            WriteError::Io { .. }
            | WriteError::Commit(_)
            | WriteError::Scan(_)
            | WriteError::Task(_) => ApiError::Internal(message),
        }
    }
}

impl From<StoreError> for ApiError {
    fn from(e: StoreError) -> Self {
        let message = crate::error_chain::chain(&e);
        match e {
            StoreError::Exists(_) => ApiError::Conflict(message),
            StoreError::NotFound(_) => ApiError::NotFound(message),
            StoreError::Limit(_) => ApiError::Quota(message),
            StoreError::Name(_) => ApiError::BadRequest(message),
            StoreError::Gone { .. }
            | StoreError::Reopening { .. }
            | StoreError::Unwritable { .. } => ApiError::Unavailable(message),
            StoreError::Full(_) => ApiError::InsufficientStorage(message),
            StoreError::Busy { .. }
            | StoreError::Schema { .. }
            | StoreError::Foreign { .. }
            | StoreError::Db(_)
            | StoreError::Decode { .. } => ApiError::Internal(message),
        }
    }
}
