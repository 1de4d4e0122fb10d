//! `GET /openapi.json`: the API described as OpenAPI 3.0, built from [`ROUTES`], one entry per
//! method and path with its caller, request body, success status and errors. Every error has
//! the one shape `{"error":{"code","message"}}`. A unit test reads every `.route(...)` in
//! `src/api/` and fails when a method and path there is missing here, or described here and
//! gone there, so the document cannot drift from the router.

use std::sync::Arc;

use axum::routing::get;
use axum::Router;
use serde_json::{json, Map, Value};

use super::AppState;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/openapi.json", get(|| async { served() }))
}

/// The document, built and serialized once: it never changes while berth runs, and an
/// anonymous client asking for it many times must not cost a build each time.
fn served() -> impl axum::response::IntoResponse {
    static TEXT: std::sync::OnceLock<axum::body::Bytes> = std::sync::OnceLock::new();
    let text = TEXT.get_or_init(|| document().to_string().into());
    let json = [(axum::http::header::CONTENT_TYPE, "application/json")];
    (json, text.clone())
}

/// Who may call a route.
#[derive(Clone, Copy)]
enum Auth {
    /// Anyone.
    Open,
    /// `Authorization: Bearer <token>` (a user or an admin), or the unix socket.
    Token,
    /// An admin token, or the unix socket.
    Admin,
    /// `X-App-Key: client.<id>.<secret>`.
    AppKey,
    /// The unix socket only.
    Socket,
    /// The git webhook's signature (`X-Hub-Signature-256`).
    Signed,
}

/// A request body.
#[derive(Clone, Copy)]
enum Body {
    /// JSON with these `(field, type, required)`.
    Json(&'static [(&'static str, &'static str, bool)]),
    /// Raw bytes of this media type.
    Raw(&'static str),
}

/// One method on one path.
struct Route {
    method: &'static str,
    path: &'static str,
    summary: &'static str,
    auth: Auth,
    body: Option<Body>,
    ok: u16,
    errors: &'static [u16],
}

const APP_ERRORS: &[u16] = &[400, 401, 403, 404, 429];
const WRITE_ERRORS: &[u16] = &[400, 401, 403, 404, 409, 412, 422, 428, 429, 507];

macro_rules! route {
    ($m:literal $p:literal, $s:literal, $a:ident, $b:expr, $ok:literal, $e:expr) => {
        Route {
            method: $m,
            path: $p,
            summary: $s,
            auth: Auth::$a,
            body: $b,
            ok: $ok,
            errors: $e,
        }
    };
}

/// Every route of the API.
const ROUTES: &[Route] = &[
    route!("get" "/apps", "The caller's apps (all for an admin) with phase, container, domain, last error", Token, None, 200, &[401, 429]),
    route!("post" "/apps", "Create an app: writes its manifest", Token, Some(Body::Json(&[("appname", "string", true), ("templateId", "string", true), ("userid", "string", false), ("values", "object", false)])), 201, WRITE_ERRORS),
    route!("get" "/apps/{userid}/{appname}", "One app: manifest, etag, status, newest revision", Token, None, 200, APP_ERRORS),
    route!("delete" "/apps/{userid}/{appname}", "Delete an app (?purge=true also drops its workspace and volumes, after a confirm token)", Token, None, 200, &[400, 401, 403, 404, 409, 429]),
    route!("put" "/apps/{userid}/{appname}/manifest", "Replace the manifest (If-Match required)", Token, Some(Body::Raw("application/toml")), 200, WRITE_ERRORS),
    route!("post" "/apps/{userid}/{appname}/start", "Set state = running", Token, None, 200, WRITE_ERRORS),
    route!("post" "/apps/{userid}/{appname}/stop", "Set state = stopped", Token, None, 200, WRITE_ERRORS),
    route!("post" "/apps/{userid}/{appname}/deploy", "Bump restart: recreates the container", Token, None, 200, WRITE_ERRORS),
    route!("post" "/apps/{userid}/{appname}/build", "Build the app now: fetch its [build] git ref again (a new commit is built), or read its workspace context again; the build runs in the loop", Token, None, 202, &[401, 403, 404, 409, 422, 429]),
    route!("post" "/apps/{userid}/{appname}/rename", "Rename the app (same user): keeps its workspace, volumes, secrets, client keys, revisions and domain; the container moves in the background", Token, Some(Body::Json(&[("appname", "string", true)])), 202, &[400, 401, 403, 404, 409, 422, 429, 503, 507]),
    route!("post" "/apps/{userid}/{appname}/backups", "Back the app's data up now (restic snapshot); a failed dump saves none and is recorded", Token, None, 201, &[401, 403, 404, 409, 422, 429, 500, 503]),
    route!("get" "/apps/{userid}/{appname}/backups", "The app's snapshots, newest first: id, time, size, reason", Token, None, 200, &[401, 403, 404, 429, 500, 503]),
    route!("post" "/apps/{userid}/{appname}/restore", "Restore the app in place from a snapshot (default the newest) after a safety snapshot", Token, Some(Body::Json(&[("snapshot", "string", false)])), 200, &[400, 401, 403, 404, 409, 422, 429, 500, 503]),
    route!("get" "/apps/{userid}/{appname}/logs", "The container's last lines (?tail=N)", Token, None, 200, &[400, 401, 403, 404, 429, 503]),
    route!("get" "/apps/{userid}/{appname}/revisions", "Kept manifest versions", Token, None, 200, APP_ERRORS),
    route!("post" "/apps/{userid}/{appname}/rollback", "Write an earlier revision back", Token, Some(Body::Json(&[("revision", "integer", true)])), 200, WRITE_ERRORS),
    route!("get" "/apps/{userid}/{appname}/jobs", "The app's scheduled jobs (next run, last result) and its newest runs", Token, None, 200, APP_ERRORS),
    route!("post" "/apps/{userid}/{appname}/jobs/{job}/run", "Start a run of the job now (its concurrency rule applies: 409 when forbid skips it)", Token, None, 202, &[400, 401, 403, 404, 409, 429, 503]),
    route!("get" "/apps/{userid}/{appname}/jobs/runs/{id}", "One run with its exit code, result and last 64 KiB of output", Token, None, 200, APP_ERRORS),
    route!("get" "/apps/{userid}/{appname}/client-keys", "The app's client keys (never their secrets)", Token, None, 200, APP_ERRORS),
    route!("post" "/apps/{userid}/{appname}/client-keys", "Issue a client key (shown once)", Token, None, 201, &[401, 403, 404, 409, 429]),
    route!("delete" "/apps/{userid}/{appname}/client-keys/{id}", "Revoke a client key", Token, None, 200, APP_ERRORS),
    route!("get" "/apps/{userid}/{appname}/secrets", "The app's secrets: names, fingerprints, when set", Token, None, 200, APP_ERRORS),
    route!("put" "/apps/{userid}/{appname}/secrets/{name}", "Set a secret (sealed to the server's key)", Token, Some(Body::Json(&[("value", "string", true)])), 200, WRITE_ERRORS),
    route!("delete" "/apps/{userid}/{appname}/secrets/{name}", "Delete a secret", Token, None, 200, WRITE_ERRORS),
    route!("get" "/apps/{userid}/{appname}/files", "The app's workspace files", Token, None, 200, &[401, 403, 404, 409, 429]),
    route!("get" "/apps/{userid}/{appname}/files/{path}", "One workspace file's bytes, with ETag", Token, None, 200, &[400, 401, 403, 404, 409, 429]),
    route!("put" "/apps/{userid}/{appname}/files/{path}", "Write one file (If-Match, or If-None-Match: * to create)", Token, Some(Body::Raw("application/octet-stream")), 200, &[400, 401, 403, 404, 409, 412, 413, 428, 429, 507]),
    route!("delete" "/apps/{userid}/{appname}/files/{path}", "Delete one file (If-Match)", Token, None, 200, &[400, 401, 403, 404, 409, 412, 428, 429]),
    route!("get" "/bridge/apps/{userid}/{appname}", "App info for its own clients", AppKey, None, 200, &[401, 403, 404, 429]),
    route!("post" "/bridge/apps/{userid}/{appname}/activate", "Start the app, for its own clients", AppKey, None, 200, &[401, 403, 404, 429]),
    route!("get" "/templates", "The catalogue with each template's values schema", Token, None, 200, &[401, 429]),
    route!("get" "/users", "Users", Admin, None, 200, &[401, 403, 429]),
    route!("post" "/users", "Add a user (its token shown once)", Admin, Some(Body::Json(&[("name", "string", true), ("admin", "boolean", false)])), 201, &[400, 401, 403, 409, 429]),
    route!("delete" "/users/{name}", "Remove a user", Admin, None, 200, &[400, 401, 403, 404, 429]),
    route!("get" "/audit", "The newest audit entries (?tail=N)", Admin, None, 200, &[400, 401, 403, 429]),
    route!("post" "/prune/release", "Release a held mass removal (confirm token)", Admin, None, 200, &[401, 403, 409, 429]),
    route!("post" "/backup", "A consistent copy of the database, as bytes", Socket, None, 200, &[400, 403, 503]),
    route!("post" "/secrets/rotate", "Re-encrypt every secret to a new server key", Admin, None, 200, &[401, 403, 429, 503]),
    route!("get" "/plan", "What a pass would change now", Admin, None, 200, &[401, 403, 503]),
    route!("post" "/apply", "Run a pass and wait for it", Admin, None, 200, &[401, 403, 503]),
    route!("get" "/git", "Git mode's sync status", Admin, None, 200, &[401, 403, 404]),
    route!("post" "/hooks/git", "Push webhook: fetch now", Signed, Some(Body::Raw("application/json")), 202, &[400, 401, 404, 413, 503]),
    route!("get" "/healthz", "Liveness", Open, None, 200, &[]),
    route!("get" "/readyz", "Readiness: engine, database, watcher", Open, None, 200, &[503]),
    route!("get" "/metrics", "Prometheus text (OpenMetrics on Accept)", Open, None, 200, &[]),
    route!("get" "/openapi.json", "This document", Open, None, 200, &[]),
];

/// The OpenAPI document.
pub fn document() -> Value {
    let mut paths = Map::new();
    for r in ROUTES {
        let entry = paths.entry(r.path).or_insert_with(|| json!({}));
        entry[r.method] = operation(r);
    }
    json!({
        "openapi": "3.0.3",
        "info": { "title": "berth", "version": env!("CARGO_PKG_VERSION"),
                  "description": "The berth node agent's HTTP API (docs/reference/http-api.md). Every error is {\"error\":{\"code\",\"message\"}}." },
        "paths": paths,
        "components": {
            "securitySchemes": {
                "token": { "type": "http", "scheme": "bearer" },
                "appKey": { "type": "apiKey", "in": "header", "name": "X-App-Key" },
                "signature": { "type": "apiKey", "in": "header", "name": "X-Hub-Signature-256" },
            },
            "schemas": { "Error": {
                "type": "object", "required": ["error"],
                "properties": { "error": { "type": "object", "required": ["code", "message"],
                    "properties": { "code": { "type": "string" }, "message": { "type": "string" } } } },
            } },
        },
    })
}

fn operation(r: &Route) -> Value {
    let mut responses = Map::new();
    responses.insert(r.ok.to_string(), json!({ "description": "success" }));
    for e in r.errors {
        let body =
            json!({ "application/json": { "schema": { "$ref": "#/components/schemas/Error" } } });
        responses.insert(
            e.to_string(),
            json!({ "description": reason(*e), "content": body }),
        );
    }
    let mut op = json!({
        "summary": r.summary,
        "parameters": path_parameters(r.path),
        "responses": responses,
    });
    let security = match r.auth {
        Auth::Open | Auth::Socket => json!([]),
        Auth::Token | Auth::Admin => json!([{ "token": [] }]),
        Auth::AppKey => json!([{ "appKey": [] }]),
        Auth::Signed => json!([{ "signature": [] }]),
    };
    op["security"] = security;
    if matches!(r.auth, Auth::Admin | Auth::Socket) {
        op["description"] = json!(match r.auth {
            Auth::Admin => "admins only (or the unix socket)",
            _ => "the unix socket only",
        });
    }
    if let Some(b) = r.body {
        op["requestBody"] = request_body(b);
    }
    op
}

fn request_body(b: Body) -> Value {
    match b {
        Body::Raw(media) => {
            json!({ "required": true, "content": { media: { "schema": { "type": "string", "format": "binary" } } } })
        }
        Body::Json(fields) => {
            let props: Map<String, Value> = fields
                .iter()
                .map(|(n, t, _)| (n.to_string(), json!({ "type": t })))
                .collect();
            let required: Vec<&str> = fields.iter().filter(|f| f.2).map(|f| f.0).collect();
            let schema = json!({ "type": "object", "additionalProperties": false, "properties": props, "required": required });
            json!({ "required": true, "content": { "application/json": { "schema": schema } } })
        }
    }
}

fn path_parameters(path: &str) -> Value {
    let names = path
        .split('/')
        .filter_map(|seg| seg.strip_prefix('{')?.strip_suffix('}'));
    let params: Vec<Value> = names
        .map(|n| json!({ "name": n, "in": "path", "required": true, "schema": { "type": "string" } }))
        .collect();
    Value::Array(params)
}

fn reason(status: u16) -> &'static str {
    axum::http::StatusCode::from_u16(status)
        .ok()
        .and_then(|s| s.canonical_reason())
        .unwrap_or("error")
}

#[cfg(test)]
#[path = "openapi_tests.rs"]
mod tests;
