//! `berth backups run|list <userid>/<appname>` and `berth restore <userid>/<appname>
//! [--snapshot ID]` (docs/guides/backups-and-recovery.md): app backups, always through the
//! daemon's socket, which runs the work in containers and records the outcome. (`berth
//! backup`, singular, copies berth's own database: `admin::backup`.)

use anyhow::Context;
use hyper::Method;
use serde_json::{json, Value};

use crate::cli::admin::{daemon, Outcome};
use crate::model::config::Config;
use crate::model::names::AppKey;

/// `berth backups run`: one backup now.
pub async fn run(config: &Config, app: &str) -> anyhow::Result<Outcome> {
    let key = key_of(app)?;
    let path = format!("/apps/{}/{}/backups", key.userid, key.appname);
    Ok(match ask(config, Method::POST, &path, None).await? {
        Ok(v) => {
            let mut out = vec![format!("{key}: snapshot {} saved", text(&v["snapshot"]))];
            if let Some(e) = v["retention_error"].as_str() {
                out.push(format!("retention failed (the snapshot stands): {e}"));
            }
            Outcome::ok(out)
        }
        Err(e) => Outcome::failed(e),
    })
}

/// `berth backups list`: the app's snapshots, newest first.
pub async fn list(config: &Config, app: &str) -> anyhow::Result<Outcome> {
    let key = key_of(app)?;
    let path = format!("/apps/{}/{}/backups", key.userid, key.appname);
    let v = match ask(config, Method::GET, &path, None).await? {
        Ok(v) => v,
        Err(e) => return Ok(Outcome::failed(e)),
    };
    let mut out = vec![format!(
        "{:<10} {:<30} {:>14}  REASON",
        "ID", "TIME", "SIZE"
    )];
    for s in v["snapshots"].as_array().into_iter().flatten() {
        let size = s["size"].as_u64().map_or("-".into(), |n| n.to_string());
        out.push(format!(
            "{:<10} {:<30} {:>14}  {}",
            text(&s["id"]),
            text(&s["time"]),
            size,
            text(&s["reason"])
        ));
    }
    Ok(Outcome::ok(out))
}

/// `berth restore`: in place, after a safety snapshot.
pub async fn restore(
    config: &Config,
    app: &str,
    snapshot: Option<&str>,
) -> anyhow::Result<Outcome> {
    let key = key_of(app)?;
    let path = format!("/apps/{}/{}/restore", key.userid, key.appname);
    let body = json!({ "snapshot": snapshot });
    Ok(match ask(config, Method::POST, &path, Some(body)).await? {
        Ok(v) => Outcome::ok(vec![format!(
            "{key}: restored snapshot {}; the data it replaced is in snapshot {}",
            text(&v["restored"]),
            text(&v["safety_snapshot"])
        )]),
        Err(e) => Outcome::failed(e),
    })
}

async fn ask(
    config: &Config,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Result<Value, String>> {
    Ok(daemon(config, method, path, body)
        .await?
        .unwrap_or_else(|| {
            Err(
                "app backups run in `berth serve`: start it (no daemon answers on the socket)"
                    .into(),
            )
        }))
}

fn key_of(app: &str) -> anyhow::Result<AppKey> {
    let (userid, appname) = app
        .split_once('/')
        .context("name the app as <userid>/<appname>")?;
    Ok(AppKey::new(userid, appname)?)
}

fn text(v: &Value) -> &str {
    v.as_str().unwrap_or("-")
}
