//! `berth build <userid>/<appname>`: asks the running daemon to build an app now
//! (`POST /apps/{userid}/{appname}/build`, docs/guides/builds.md).

use anyhow::Context;
use hyper::Method;

use crate::cli::admin::{daemon, Outcome};
use crate::model::config::Config;
use crate::model::names::AppKey;

/// Asks the running daemon to build `app` now (`POST .../build`).
pub async fn build(config: &Config, app: &str) -> anyhow::Result<Outcome> {
    let (userid, appname) = app
        .split_once('/')
        .context("name the app as <userid>/<appname>")?;
    let key = AppKey::new(userid, appname)?;
    let path = format!("/apps/{}/{}/build", key.userid, key.appname);
    Ok(match daemon(config, Method::POST, &path, None).await? {
        Some(Ok(v)) if v["fetch"] == true => Outcome::ok(vec![format!(
            "fetching {key}'s [build] git ref again; a new commit is built and deployed (berth status shows it)"
        )]),
        Some(Ok(_)) => Outcome::ok(vec![format!(
            "reading {key}'s workspace again; a change is built and deployed (berth status shows it)"
        )]),
        Some(Err(e)) => Outcome::failed(e),
        None => Outcome::failed(
            "no berth serve answers on this root: `berth apply` fetches, builds and deploys in one pass".into(),
        ),
    })
}
