//! `/apps/{userid}/{appname}/secrets` (docs/guides/secrets.md): set, list and delete `[secrets]` entries.
//! A value is encrypted to the server's key in memory, under the state lock (so never to a
//! key a rotation is deleting), and only the ciphertext is written, through the same write path (roles, etag, audit, git commit) as every manifest change.
//! Answers name secrets and show fingerprints and when each was set (from the revision
//! history: null until a pass has recorded it); no answer carries a value.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::{get, post, put};
use axum::{Json, Router};
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiJson, ApiPath, AppPath};
use super::AppState;
use crate::model::manifest::Manifest;
use crate::model::names::AppKey;
use crate::model::secrets::{
    check_secret_name, check_secret_value, seal, Keyring, Scope, SecretValue,
};
use crate::state::secrets_key;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/apps/{userid}/{appname}/secrets", get(list))
        .route(
            "/apps/{userid}/{appname}/secrets/{name}",
            put(set).delete(remove),
        )
        .route("/secrets/rotate", post(rotate))
}

/// `POST /secrets/rotate?keep_old=true`.
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RotateQuery {
    #[serde(default)]
    keep_old: bool,
}

/// `berth secrets rotate` (admins): every manifest re-encrypted to a new server key; the old
/// key removed once every value is, or kept in `berth.key.old` with `keep_old`.
async fn rotate(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    axum::extract::Query(q): axum::extract::Query<RotateQuery>,
) -> Result<Json<Value>, ApiError> {
    caller.check_admin()?;
    let rotated = s
        .writer
        .rotate_secrets(caller.name(), s.config.clone(), q.keep_old)
        .await
        .map_err(ApiError::Unavailable)?;
    Ok(Json(json!(rotated)))
}

/// A new value, or `copy_from`: a value of another app the caller may manage
/// (`userid/appname/NAME` or `userid/appname/values.NAME`), opened for its own scope and
/// sealed again for this one (a sealed value opens only where it was sealed for).
#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct SetSecret {
    value: Option<String>,
    copy_from: Option<String>,
}

/// The plaintext `body` names, never shown.
fn value_of(s: &AppState, caller: &Caller, body: SetSecret) -> Result<SecretValue, ApiError> {
    let from = match (body.value, body.copy_from) {
        (Some(v), None) => return Ok(SecretValue::new(v)),
        (None, Some(from)) => from,
        _ => {
            return Err(ApiError::BadRequest(
                "give one of value and copy_from".into(),
            ))
        }
    };
    let scope = Scope::parse(&from).map_err(|e| ApiError::BadRequest(format!("copy_from: {e}")))?;
    caller.check_app(scope.app())?;
    let m = manifest(s, scope.app())?;
    let sealed = match scope.name().strip_prefix("values.") {
        Some(v) => m.values.get(v).and_then(|v| v.as_str()).map(str::to_string),
        None => m.secrets.0.get(scope.name()).cloned(),
    };
    let sealed = sealed
        .ok_or_else(|| ApiError::NotFound(format!("{} has no {}", scope.app(), scope.name())))?;
    keyring(s)?
        .open(&sealed, &scope)
        .map(|opened| opened.value)
        .map_err(|why| ApiError::Conflict(format!("copy_from {scope}: does not decrypt: {why}")))
}

fn secret_name(name: &str) -> Result<(), ApiError> {
    check_secret_name(name).map_err(ApiError::BadRequest)
}

fn keyring(s: &AppState) -> Result<crate::model::secrets::Keyring, ApiError> {
    secrets_key::load(&s.config.secrets_key).map_err(ApiError::Unavailable)
}

/// The app's manifest, parsed (404 when there is none).
fn manifest(s: &AppState, key: &AppKey) -> Result<Manifest, ApiError> {
    let c = s.manifest(key)?;
    let shown = format!("state/apps/{}/{}.toml", key.userid, key.appname);
    Manifest::parse(std::path::Path::new(&shown), &c.text)
        .map_err(|e| ApiError::Conflict(e.to_string()))
}

async fn set(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    ApiPath((_, _, name)): ApiPath<(String, String, String)>,
    ApiJson(body): ApiJson<SetSecret>,
) -> Result<Json<Value>, ApiError> {
    caller.check_app(&key)?;
    secret_name(&name)?;
    let value = value_of(&s, &caller, body)?;
    check_secret_value(&value).map_err(ApiError::BadRequest)?;
    if manifest(&s, &key)?.env.0.contains_key(&name) {
        return Err(ApiError::Conflict(format!(
            "{name} is set in [env]; remove it there first (a name is in one or the other)"
        )));
    }
    // Sealed under the state lock, not here: a rotation between here and the write would
    // leave a value sealed to the key it deletes.
    let (n, scope) = (name.clone(), Scope::secret(&key, &name));
    let change = move |doc: &mut toml_edit::DocumentMut, keys: &Keyring| {
        let sealed = seal(&keys.recipient(), &scope, &value);
        let table = doc
            .entry("secrets")
            .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()));
        table[&n] = toml_edit::value(sealed);
    };
    let action = format!("set secret {name}");
    let c = s
        .writer
        .edit_sealing(&key, caller.name(), &action, change)
        .await?;
    Ok(Json(json!({ "secret": name, "set": true, "etag": c.etag })))
}

async fn list(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
) -> Result<Json<Value>, ApiError> {
    caller.check_app(&key)?;
    let m = manifest(&s, &key)?;
    let keys = keyring(&s);
    let renamed_from = m
        .renamed_from
        .as_ref()
        .and_then(|old| AppKey::new(&key.userid, &old.0).ok());
    let k = key.clone();
    let revisions = s.db(move |st| st.revisions(&k)).await?;
    // Ciphertexts are random: the first revision holding this exact one is when it was set.
    let set_at = |sealed: &str| {
        let first = revisions.iter().find(|r| r.content.contains(sealed));
        first.map(|r| r.at)
    };
    let secrets: Vec<Value> = m
        .secrets
        .0
        .iter()
        .map(|(name, sealed)| {
            let opened = keys.as_ref().map_err(ToString::to_string).and_then(|k| {
                let scope = Scope::secret(&key, name).taking_over(renamed_from.clone());
                k.open(sealed, &scope)
                    .map(|opened| k.fingerprint_of(name, &opened))
                    .map_err(|e| e.to_string())
            });
            let at = set_at(sealed);
            match opened {
                Ok(fp) => json!({ "name": name, "fingerprint": fp, "set_at": at }),
                Err(why) => json!({ "name": name, "error": why, "set_at": at }),
            }
        })
        .collect();
    Ok(Json(json!({ "secrets": secrets })))
}

async fn remove(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    ApiPath((_, _, name)): ApiPath<(String, String, String)>,
) -> Result<Json<Value>, ApiError> {
    caller.check_app(&key)?;
    secret_name(&name)?;
    if !manifest(&s, &key)?.secrets.0.contains_key(&name) {
        return Err(ApiError::NotFound(format!("{key} has no secret {name}")));
    }
    let n = name.clone();
    let change = move |doc: &mut toml_edit::DocumentMut| {
        if let Some(t) = doc.get_mut("secrets").and_then(|t| t.as_table_like_mut()) {
            t.remove(&n);
            if t.is_empty() {
                doc.remove("secrets");
            }
        }
    };
    let action = format!("delete secret {name}");
    let c = s.writer.edit(&key, caller.name(), &action, change).await?;
    Ok(Json(
        json!({ "secret": name, "deleted": true, "etag": c.etag }),
    ))
}
