//! App control: create, list, show, replace the manifest, start/stop/deploy, delete, logs.
//! Every change is a manifest write followed by a nudge of the reconcile loop.

use std::sync::Arc;
use std::time::SystemTime;

use axum::body::Body;
use axum::extract::State;
use axum::http::header::{CONTENT_TYPE, ETAG, IF_MATCH};
use axum::http::{HeaderMap, StatusCode};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post, put};
use axum::{Json, Router};
use futures_util::StreamExt;
use serde::Deserialize;
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::extract::{ApiJson, ApiQuery, AppPath, TextBody};
use super::list_cache::Made;
use super::AppState;
use crate::model::manifest::check_template_id;
use crate::model::names::AppKey;
use crate::model::observed::describe_own;
use crate::state::files::{Current, WriteError};

/// Most log lines one call returns.
pub const MAX_LOG_TAIL: u32 = 10_000;

pub fn router() -> Router<Arc<AppState>> {
    Router::new()
        .route("/apps", get(list).post(create))
        .route("/apps/{userid}/{appname}", get(show).delete(remove))
        .route("/apps/{userid}/{appname}/manifest", put(replace))
        .route("/apps/{userid}/{appname}/start", post(start))
        .route("/apps/{userid}/{appname}/stop", post(stop))
        .route("/apps/{userid}/{appname}/deploy", post(deploy))
        .route("/apps/{userid}/{appname}/logs", get(logs))
}

/// An app's status as the API shows it: phase from the reconcile loop, container state from
/// the (cached) engine list.
/// `containers` is none while the engine cannot be asked.
async fn status_view(
    s: &AppState,
    keys: &[AppKey],
    containers: Option<Arc<Vec<crate::model::observed::Observed>>>,
) -> Vec<Value> {
    let board = s.board.snapshot();
    // Each app's containers picked out once: one walk over the list, not one per app.
    let mut own: std::collections::HashMap<&AppKey, Vec<_>> = Default::default();
    for o in containers.iter().flat_map(|l| l.iter()) {
        own.entry(&o.key).or_default().push(o);
    }
    keys.iter()
        .map(|key| {
            let st = board.get(key);
            // While the engine cannot be asked, nobody knows: not the last pass's word.
            let container = match &containers {
                Some(_) => describe_own(own.get(key).map_or(&[][..], Vec::as_slice)).0,
                None => "unknown".to_string(),
            };
            json!({
                "userid": key.userid,
                "appname": key.appname,
                "phase": st.map_or_else(|| "pending".to_string(), |st| st.phase.to_string()),
                "container": container,
                "domain": s.board.wanted(key).and_then(|w| w.domain),
                "last_error": st.and_then(|st| st.last_error.clone()),
                "refused_hash": st.and_then(|st| st.refused_hash.clone()),
                "updated_at": st.map(|st| humantime::format_rfc3339_seconds(st.updated).to_string()),
            })
        })
        .collect()
}

/// The apps the last pass saw (and those created through the API since), from the status
/// board: no file is read, so a list costs the same at 2 apps or 200.
/// An answer is kept while the board and the container list it was made from stand.
async fn list(State(s): State<Arc<AppState>>, caller: Caller) -> Result<Response, ApiError> {
    let scope = (!caller.is_admin()).then(|| caller.userid().unwrap_or_default().to_string());
    let board = s.board.generation();
    let containers = s.containers.list().await.ok();
    let made = containers.as_ref().map(|c| Made {
        board,
        containers: Arc::as_ptr(c) as usize,
    });
    if let Some(body) = made.and_then(|m| s.list_cache.get(&scope, m)) {
        return Ok(([(CONTENT_TYPE, "application/json")], body).into_response());
    }
    let keys: Vec<AppKey> = s
        .board
        .snapshot()
        .into_keys()
        .filter(|k| caller.check_app(k).is_ok())
        .collect();
    let apps = status_view(&s, &keys, containers.clone()).await;
    let body = axum::body::Bytes::from(json!({ "apps": apps }).to_string());
    if let (Some(m), Some(list)) = (made, containers) {
        s.list_cache.put(scope, m, list, body.clone());
    }
    Ok(([(CONTENT_TYPE, "application/json")], body).into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct NewApp {
    appname: String,
    #[serde(rename = "templateId")]
    template_id: String,
    /// Admins (and the unix socket) may create apps for another user.
    userid: Option<String>,
    /// The template's values to set (docs/guides/templates-and-values.md); a secret one is sealed before it is written.
    #[serde(default)]
    values: std::collections::BTreeMap<String, Value>,
}

fn with_etag(status: StatusCode, c: &Current, body: Value) -> Response {
    (status, [(ETAG, format!("\"{}\"", c.etag))], Json(body)).into_response()
}

async fn create(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    ApiJson(body): ApiJson<NewApp>,
) -> Result<Response, ApiError> {
    let userid = match (&body.userid, caller.userid()) {
        (Some(u), _) => u.clone(),
        (None, Some(me)) => me.to_string(),
        (None, None) => {
            return Err(ApiError::BadRequest(
                "userid is required over the unix socket".into(),
            ))
        }
    };
    let key =
        AppKey::new(&userid, &body.appname).map_err(|e| ApiError::BadRequest(e.to_string()))?;
    caller.check_app(&key)?;
    check_template_id(&body.template_id).map_err(|message| ApiError::Unprocessable {
        code: "unknown_template",
        message,
    })?;
    let (k, template, values) = (key.clone(), body.template_id.clone(), body.values);
    let store = s.store.clone();
    let c = s
        .writer
        .write_file(&key, caller.name(), "create", move |held| async move {
            let created = held.create_with_values(&k, &template, &values).await?;
            // A new app is a new incarnation: nothing of an earlier app of that name (whose
            // removal no pass has seen yet) carries over.
            let (store, k2) = (store.clone(), k.clone());
            let ended = tokio::task::spawn_blocking(move || store.end_incarnation(&k2)).await;
            if let Ok(Err(e)) = ended {
                tracing::error!(app = %k, cause = %crate::error_chain::chain(&e), "cannot start a new incarnation");
            }
            Ok::<_, WriteError>(created)
        })
        .await?;
    s.board.note_created(&key, SystemTime::now());
    Ok(with_etag(
        StatusCode::CREATED,
        &c,
        json!({ "userid": key.userid, "appname": key.appname, "manifest": c.text, "etag": c.etag }),
    ))
}

async fn show(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
) -> Result<Response, ApiError> {
    caller.check_app(&key)?;
    let c = s.manifest(&key)?;
    let containers = s.containers.list().await.ok();
    let mut view = status_view(&s, std::slice::from_ref(&key), containers)
        .await
        .remove(0);
    view["manifest"] = json!(c.text);
    view["etag"] = json!(c.etag);
    // The newest recorded revision: the version the loop last took up (it may trail a write
    // by one pass).
    let k = key.clone();
    let revisions = s.db(move |st| st.revisions(&k)).await?;
    view["revision"] = json!(revisions.last().map(|r| r.revision));
    let k = key.clone();
    view["backup"] = json!(s.db(move |st| st.backup_status(&k)).await?);
    Ok(with_etag(StatusCode::OK, &c, view))
}

/// The etag in `If-Match`, without quotes or a weak marker.
fn if_match(headers: &HeaderMap) -> Result<String, ApiError> {
    let v = headers.get(IF_MATCH).ok_or_else(|| {
        ApiError::PreconditionRequired(
            "If-Match: <etag> is required; GET the app to learn its etag".into(),
        )
    })?;
    let v = v
        .to_str()
        .map_err(|_| ApiError::BadRequest("If-Match is not ASCII".into()))?
        .trim();
    Ok(v.trim_start_matches("W/").trim_matches('"').to_string())
}

async fn replace(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    headers: HeaderMap,
    TextBody(text): TextBody,
) -> Result<Response, ApiError> {
    caller.check_app(&key)?;
    let expected = if_match(&headers)?;
    let k = key.clone();
    let c = s
        .writer
        .write_file(
            &key,
            caller.name(),
            "replace the manifest of",
            move |held| async move { held.replace(&k, &text, &expected).await },
        )
        .await?;
    Ok(with_etag(StatusCode::OK, &c, json!({ "etag": c.etag })))
}

async fn set_state(
    s: &Arc<AppState>,
    caller: &Caller,
    key: &AppKey,
    state: &'static str,
) -> Result<Response, ApiError> {
    let action = if state == "running" { "start" } else { "stop" };
    let c = s
        .writer
        .set_field(key, caller.name(), action, "state", state.into())
        .await?;
    Ok(with_etag(
        StatusCode::OK,
        &c,
        json!({ "state": state, "etag": c.etag }),
    ))
}

async fn start(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
) -> Result<Response, ApiError> {
    caller.check_app(&key)?;
    set_state(&s, &caller, &key, "running").await
}

async fn stop(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
) -> Result<Response, ApiError> {
    caller.check_app(&key)?;
    set_state(&s, &caller, &key, "stopped").await
}

/// Bumps `restart`, which changes the spec hash, so the loop recreates the container
/// (running the template's pre-deploy hook first).
async fn deploy(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
) -> Result<Response, ApiError> {
    caller.check_app(&key)?;
    let nonce = humantime::format_rfc3339_nanos(SystemTime::now()).to_string();
    let c = s
        .writer
        .set_field(&key, caller.name(), "deploy", "restart", nonce.clone())
        .await?;
    Ok(with_etag(
        StatusCode::OK,
        &c,
        json!({ "restart": nonce, "etag": c.etag }),
    ))
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct DeleteQuery {
    #[serde(default)]
    purge: bool,
    /// The token from the 202 answer to the same purge.
    confirm: Option<String>,
}

/// A purge's confirmation: the 202 that asks for it, or the etag it was confirmed for.
enum Confirmed {
    Ask(Response),
    Etag(String),
}

/// Binds a purge to the manifest as it is now: a token cannot purge an app that was deleted
/// and made again (or changed) since the warning.
fn confirm_purge(
    s: &AppState,
    caller: &Caller,
    key: &AppKey,
    token: Option<&str>,
) -> Result<Confirmed, ApiError> {
    let current = s.manifest(key)?;
    let action = format!("purge {key}@{}", current.etag);
    let warning = format!(
        "this deletes {key} and its workspace apps/{}/{}, which cannot be undone; nothing was changed. Repeat the call with &confirm=<token> within {{ttl}} to go ahead",
        key.userid, key.appname
    );
    let asked = s
        .confirmations
        .confirm(token, &action, caller.name(), &warning, json!({}))?;
    Ok(asked.map_or(Confirmed::Etag(current.etag), Confirmed::Ask))
}

async fn remove(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    ApiQuery(q): ApiQuery<DeleteQuery>,
) -> Result<Response, ApiError> {
    caller.check_app(&key)?;
    let mut confirmed_etag = None;
    if q.purge {
        match confirm_purge(&s, &caller, &key, q.confirm.as_deref())? {
            Confirmed::Ask(ask) => return Ok(ask),
            Confirmed::Etag(etag) => confirmed_etag = Some(etag),
        }
    }
    let action = if q.purge { "delete (purge)" } else { "delete" };
    let (k, purge) = (key.clone(), q.purge);
    let revoked = s
        .write(&key, caller.name(), action, move |s, held| async move {
            // The purge was confirmed for the manifest as it was: not for whatever is there now.
            if let Some(etag) = confirmed_etag {
                if s.files().read(&k)?.map(|c| c.etag) != Some(etag) {
                    return Err(ApiError::Conflict(format!(
                        "{k} changed since the purge was confirmed; nothing was deleted"
                    )));
                }
            }
            held.delete(&k).await?;
            // Asked before the loop is woken, so the pass that removes the container sees it
            // (and lets it past the mass-removal guard: this one was asked for).
            s.removals.request(&k, purge);
            let k2 = k.clone();
            // The file is gone whatever happens here: a failure is logged, not returned, so
            // the delete is still committed.
            let revoked = match s.db(move |st| st.end_incarnation(&k2)).await {
                Ok(n) => n,
                Err(e) => {
                    tracing::error!(app = %k, cause = %crate::error_chain::chain(&e), "cannot revoke the client keys of a deleted app");
                    0
                }
            };
            Ok((revoked, None))
        })
        .await?;
    Ok(Json(json!({
        "deleted": key.to_string(),
        "purge": q.purge,
        "revoked_client_keys": revoked,
    }))
    .into_response())
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct LogsQuery {
    tail: Option<u32>,
}

/// The container's last lines, streamed as Docker sends them.
async fn logs(
    State(s): State<Arc<AppState>>,
    caller: Caller,
    AppPath(key): AppPath,
    ApiQuery(q): ApiQuery<LogsQuery>,
) -> Result<Response, ApiError> {
    caller.check_app(&key)?;
    let tail = q.tail.unwrap_or(100);
    if tail == 0 || tail > MAX_LOG_TAIL {
        return Err(ApiError::BadRequest(format!(
            "tail must be 1..={MAX_LOG_TAIL}"
        )));
    }
    let name = key.container_name(&s.config.instance);
    let mut stream = Box::pin(s.containers.logs(&name, tail));
    // Look at the first chunk so a missing container is a 404, not a broken stream.
    let first = stream.next().await;
    let first = match first {
        None => None,
        Some(Ok(b)) => Some(b),
        Some(Err(e)) if e.is_not_found() => {
            return Err(ApiError::NotFound(format!("app {key} has no container")))
        }
        Some(Err(e)) => return Err(ApiError::Unavailable(format!("cannot read logs: {e}"))),
    };
    let body = futures_util::stream::iter(first.map(Ok))
        .chain(stream.map(|r| r.map_err(std::io::Error::other)));
    Ok((
        [(CONTENT_TYPE, "text/plain; charset=utf-8")],
        Body::from_stream(body),
    )
        .into_response())
}
