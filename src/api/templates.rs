//! `GET /templates`: the catalogue (docs/guides/volumes-and-rename.md): every template with its image, port, volumes
//! and the values an app may or must set (type, default, required, choices, bounds, pattern),
//! for the portal's create form and for editors. A template that does not load is listed with
//! its error, so a broken one is visible rather than missing.

use std::sync::Arc;

use axum::extract::State;
use axum::routing::get;
use axum::{Json, Router};
use serde_json::{json, Value};

use super::auth::Caller;
use super::error::ApiError;
use super::AppState;
use crate::model::template::Template;

pub fn router() -> Router<Arc<AppState>> {
    Router::new().route("/templates", get(list))
}

async fn list(State(s): State<Arc<AppState>>, caller: Caller) -> Result<Json<Value>, ApiError> {
    let (config, admin) = (s.config.clone(), caller.is_admin());
    let templates = tokio::task::spawn_blocking(move || catalogue(&config, admin))
        .await
        .map_err(|e| ApiError::Internal(format!("template listing failed: {e}")))?;
    Ok(Json(json!({ "templates": templates })))
}

/// Every directory under `templates_dir` with a `template.toml`, by name. Why a template
/// does not load (with server paths in it) is shown to admins only.
fn catalogue(config: &crate::model::config::Config, admin: bool) -> Vec<Value> {
    let mut ids: Vec<String> = std::fs::read_dir(&config.templates_dir)
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.path().join("template.toml").is_file())
        .filter_map(|e| e.file_name().into_string().ok())
        .collect();
    ids.sort();
    ids.iter()
        .map(|id| match Template::load(config, id) {
            Ok(t) => json!({
                "id": t.id,
                "image": t.image,
                "port": t.port,
                "values": t.values,
                "volumes": t.volumes,
                "health": t.health.is_some(),
                "install": t.install.as_ref().map(|i| json!({"inputs": i.inputs, "output": i.output})),
            }),
            Err(e) if admin => json!({ "id": id, "error": e.to_string() }),
            Err(_) => json!({ "id": id, "error": "this template does not load; an admin sees why" }),
        })
        .collect()
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_catalogue_lists_template_directories_not_the_schema_files_beside_them() {
        let root = std::path::Path::new(env!("CARGO_MANIFEST_DIR"));
        assert!(root.join("templates/manifest.schema.json").is_file());
        let config = crate::model::config::Config::load(None, Some(root)).unwrap();
        let listed = super::catalogue(&config, true);
        let ids: Vec<&str> = listed.iter().filter_map(|t| t["id"].as_str()).collect();
        assert!(ids.contains(&"node-lite-v1"), "{listed:?}");
        assert!(ids.iter().all(|id| !id.ends_with(".json")), "{ids:?}");
        assert!(
            listed.iter().all(|t| t.get("error").is_none()),
            "{listed:?}"
        );
    }
}
