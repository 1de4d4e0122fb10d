//! `berth mv <userid>/<appname> <new-name>`: a rename (docs/guides/volumes-and-rename.md) through the daemon's socket
//! when `berth serve` runs (the API's rename, audited as the socket's admin), else on the
//! files and the database directly; either way the next pass moves the container, workspace
//! and volumes.

use anyhow::Context;
use hyper::Method;
use serde_json::json;

use crate::cli::admin::{daemon, Outcome};
use crate::model::config::Config;
use crate::model::names::AppKey;
use crate::state::root_lock::acquire_without_daemon;
use crate::store::Store;

/// Renames `app` (`userid/appname`) to `new_name`.
pub async fn mv(config: &Config, app: &str, new_name: &str) -> anyhow::Result<Outcome> {
    let (userid, appname) = app
        .split_once('/')
        .context("name the app as <userid>/<appname>")?;
    let old = AppKey::new(userid, appname)?;
    let new = AppKey::new(userid, new_name)?;
    let path = format!("/apps/{}/{}/rename", old.userid, old.appname);
    let body = json!({ "appname": new.appname });
    let done = match daemon(config, Method::POST, &path, Some(body)).await? {
        Some(answer) => answer,
        None => offline(config, &old, &new).await,
    };
    Ok(match done {
        Ok(_) => Outcome::ok(vec![format!(
            "renamed {old} to {new}; the next pass moves its container, workspace and volumes (berth status shows it)"
        )]),
        Err(e) => Outcome::failed(e),
    })
}

/// Without a daemon: the files, then the records. Git mode needs the daemon's commit.
async fn offline(config: &Config, old: &AppKey, new: &AppKey) -> Result<serde_json::Value, String> {
    if config.git.is_some() {
        return Err("git mode: start `berth serve` (it commits the rename), or rename by hand: move the file and put `renamed_from = \"<old name>\"` first in it".into());
    }
    let _decides = acquire_without_daemon(&config.root, "berth mv")?;
    let workspace = config.apps_dir.join(&new.userid).join(&new.appname);
    if std::fs::symlink_metadata(&workspace).is_ok() {
        return Err(format!(
            "{} exists (an earlier app of that name left it); purge it or choose another name",
            workspace.display()
        ));
    }
    let config = std::sync::Arc::new(config.clone());
    crate::state::rename::rename_offline(config.clone(), old, new)
        .await
        .map_err(|e| crate::error_chain::chain(&e))?;
    let store = Store::open(&config.database).map_err(|e| crate::error_chain::chain(&e))?;
    store
        .adopt(old, new)
        .map_err(|e| crate::error_chain::chain(&e))?;
    Ok(json!({}))
}
