//! Who is calling. `Caller` authenticates `Authorization: Bearer <token>` (or the unix socket,
//! whose callers are admins by file permission, as with docker.sock); `ClientKey`
//! authenticates `X-App-Key` for the bridge API. Both count failures per source address and
//! answer 429 once an address has failed too often, and both name the caller for the audit log.

use std::net::{IpAddr, Ipv4Addr, SocketAddr};
use std::sync::{Arc, OnceLock};
use std::time::Instant;

use axum::extract::{ConnectInfo, FromRequestParts};
use axum::http::header::AUTHORIZATION;
use axum::http::request::Parts;

use super::error::ApiError;
use super::AppState;
use crate::model::names::AppKey;
use crate::store::{unix_now, ClientKeyInfo, KeyCheck, Role, UserInfo};

/// Put into requests that arrived over the unix socket.
#[derive(Debug, Clone, Copy)]
pub struct LocalSocket;

/// Filled by the auth extractors with the caller's name; read by the audit middleware.
#[derive(Debug, Clone, Default)]
pub struct AuditActor(pub Arc<OnceLock<String>>, pub Arc<OnceLock<String>>);

impl AuditActor {
    /// The user whose share of the audit log the call counts against, when not the actor
    /// itself (a client key's owner).
    pub fn user(&self) -> Option<String> {
        self.1.get().cloned()
    }
}

/// An authenticated admin-API caller.
#[derive(Debug, Clone)]
pub enum Caller {
    /// Came over the unix socket.
    Local,
    /// Presented a valid token.
    User(UserInfo),
}

impl Caller {
    /// The name written to the audit log; `@socket` cannot be a user name.
    pub fn name(&self) -> &str {
        match self {
            Caller::Local => "@socket",
            Caller::User(u) => &u.name,
        }
    }

    /// Admins reach every app and manage users.
    pub fn is_admin(&self) -> bool {
        match self {
            Caller::Local => true,
            Caller::User(u) => u.role == Role::Admin,
        }
    }

    /// The userid whose apps this caller owns (none for the socket).
    pub fn userid(&self) -> Option<&str> {
        match self {
            Caller::Local => None,
            Caller::User(u) => Some(&u.name),
        }
    }

    /// 403 unless the caller may reach `key`.
    pub fn check_app(&self, key: &AppKey) -> Result<(), ApiError> {
        if self.is_admin() || self.userid() == Some(key.userid.as_str()) {
            Ok(())
        } else {
            Err(ApiError::Forbidden(format!(
                "{} may not reach apps of user {}",
                self.name(),
                key.userid
            )))
        }
    }

    /// 403 unless the caller is an admin.
    pub fn check_admin(&self) -> Result<(), ApiError> {
        if self.is_admin() {
            Ok(())
        } else {
            Err(ApiError::Forbidden("admin role required".into()))
        }
    }
}

/// The client's address: the peer, or, when the peer is a trusted proxy, the last address in
/// `X-Forwarded-For` (the one that proxy saw). Other peers' `X-Forwarded-For` is ignored, so a
/// client cannot pick its own address.
pub fn source_ip(parts: &Parts, state: &AppState) -> IpAddr {
    let peer = parts
        .extensions
        .get::<ConnectInfo<SocketAddr>>()
        .map_or(IpAddr::V4(Ipv4Addr::LOCALHOST), |c| c.0.ip());
    if !state.config.trusted_proxies.contains(&peer) {
        return peer;
    }
    parts
        .headers
        .get_all("x-forwarded-for")
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(','))
        .last()
        .and_then(|a| a.trim().parse().ok())
        .unwrap_or(peer)
}

fn set_actor(parts: &Parts, name: String) {
    if let Some(a) = parts.extensions.get::<AuditActor>() {
        let _ = a.0.set(name);
    }
}

/// 429 when `ip` has failed too often.
fn not_locked_out(state: &AppState, ip: IpAddr) -> Result<(), ApiError> {
    match state.limiter.blocked(ip, Instant::now()) {
        Some(retry_after) => Err(ApiError::TooManyRequests { retry_after }),
        None => Ok(()),
    }
}

impl FromRequestParts<Arc<AppState>> for Caller {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        if parts.extensions.get::<LocalSocket>().is_some() {
            set_actor(parts, Caller::Local.name().into());
            return Ok(Caller::Local);
        }
        let ip = source_ip(parts, state);
        not_locked_out(state, ip)?;
        let Some(value) = parts.headers.get(AUTHORIZATION) else {
            return Err(ApiError::Unauthorized(
                "missing Authorization: Bearer <token>".into(),
            ));
        };
        let token = value.to_str().ok().and_then(bearer_token);
        let user = match token {
            Some(t) => {
                let t = t.to_string();
                state.db(move |st| st.authenticate(&t)).await?
            }
            None => None,
        };
        match user {
            Some(u) => {
                within_write_limit(parts, state, &u.name, &u.name)?;
                set_actor(parts, u.name.clone());
                Ok(Caller::User(u))
            }
            None => {
                state.limiter.fail(ip, Instant::now());
                Err(ApiError::Unauthorized("invalid or unknown token".into()))
            }
        }
    }
}

/// A caller of the bridge API holding a valid client key.
#[derive(Debug, Clone)]
pub struct ClientKey(pub std::sync::Arc<ClientKeyInfo>);

impl ClientKey {
    /// 403 unless the key was issued for `key`.
    pub fn check_app(&self, key: &AppKey) -> Result<(), ApiError> {
        if self.0.userid == key.userid && self.0.appname == key.appname {
            Ok(())
        } else {
            Err(ApiError::Forbidden(
                "this client key belongs to another app".into(),
            ))
        }
    }
}

impl FromRequestParts<Arc<AppState>> for ClientKey {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        let ip = source_ip(parts, state);
        not_locked_out(state, ip)?;
        let Some(value) = parts.headers.get("x-app-key") else {
            return Err(ApiError::Unauthorized(
                "missing X-App-Key: client.<id>.<secret>".into(),
            ));
        };
        let check = match value.to_str() {
            Ok(text) => {
                let text = text.trim().to_string();
                // The hot path: a key the database vouched for since its last commit.
                match state.store.check_client_key_cached(&text, unix_now()) {
                    Some(check) => check,
                    None => {
                        state
                            .db(move |st| st.check_client_key(&text, unix_now()))
                            .await?
                    }
                }
            }
            Err(_) => KeyCheck::Invalid,
        };
        match check {
            KeyCheck::Valid(info) if is_read(parts) => Ok(ClientKey(info)),
            KeyCheck::Valid(info) => {
                // All of a user's keys share one bucket: more keys are not more writes.
                within_write_limit(parts, state, &format!("keys:{}", info.userid), &info.userid)?;
                set_actor(parts, format!("client:{}", info.id));
                if let Some(a) = parts.extensions.get::<AuditActor>() {
                    let _ = a.1.set(info.userid.clone());
                }
                Ok(ClientKey(info))
            }
            KeyCheck::Invalid => {
                state.limiter.fail(ip, Instant::now());
                Err(ApiError::Unauthorized(
                    "invalid, unknown or revoked client key".into(),
                ))
            }
        }
    }
}

/// Takes one write from `who`'s bucket for a mutating request, under the policy of `user`
/// (the owner). Checked before the caller is named for the audit log: a refused flood is
/// counted in metrics, not written to the log it would otherwise fill.
fn within_write_limit(
    parts: &Parts,
    state: &AppState,
    who: &str,
    user: &str,
) -> Result<(), ApiError> {
    if is_read(parts) {
        return Ok(());
    }
    let per_minute = state.config.policy.rules(user).api_writes_per_minute;
    state
        .writes
        .take(who, per_minute, Instant::now())
        .map_err(|wait| ApiError::WriteLimited {
            user: user.to_string(),
            per_minute,
            retry_after: wait.as_secs().max(1),
        })
}

/// A request that changes nothing: neither limited as a write nor audited (so the bridge's
/// hot path names no actor).
fn is_read(parts: &Parts) -> bool {
    is_read_method(&parts.method)
}

/// GET, HEAD and OPTIONS: the methods that change nothing, so are never audited or limited
/// as writes (the one list, for the extractors and the audit middleware).
pub(super) fn is_read_method(method: &axum::http::Method) -> bool {
    use axum::http::Method;
    matches!(*method, Method::GET | Method::HEAD | Method::OPTIONS)
}

/// The client's address as the failure limiter counts it (see `source_ip`).
pub struct ClientIp(pub IpAddr);

impl FromRequestParts<Arc<AppState>> for ClientIp {
    type Rejection = ApiError;

    async fn from_request_parts(
        parts: &mut Parts,
        state: &Arc<AppState>,
    ) -> Result<Self, ApiError> {
        Ok(ClientIp(source_ip(parts, state)))
    }
}

/// The token of an `Authorization: Bearer <token>` value; the scheme is case-insensitive
/// (RFC 7235 §2.1).
fn bearer_token(value: &str) -> Option<&str> {
    let (scheme, token) = value.trim_start().split_once(' ')?;
    scheme.eq_ignore_ascii_case("bearer").then(|| token.trim())
}

#[cfg(test)]
mod tests {
    use super::bearer_token;

    #[test]
    fn the_bearer_scheme_is_case_insensitive() {
        for v in ["Bearer t1", "bearer t1", "BEARER  t1 ", " bEaReR t1"] {
            assert_eq!(bearer_token(v), Some("t1"), "{v:?}");
        }
        for v in ["Basic t1", "Bearert1", "t1", ""] {
            assert_eq!(bearer_token(v), None, "{v:?}");
        }
    }
}
