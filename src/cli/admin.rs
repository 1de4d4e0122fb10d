//! `berth users ...` and `berth status` (docs/reference/cli.md): through the daemon's unix socket when
//! `berth serve` runs (redb lets one process hold the database), otherwise on the database
//! directly. Both paths print the same thing.

use std::collections::BTreeMap;

use anyhow::Context;
use hyper::Method;
use serde_json::{json, Value};

use http_body_util::BodyExt;

use crate::api::BACKUP_ROWS;
use crate::cli::client::{error_message, json_of, request, send};
use crate::cli::new_file::NewFile;
use crate::model::config::Config;
use crate::model::names::AppKey;
use crate::reconcile::plan::Refusal;
use crate::store::{Role, Store};

/// What a command prints and how it exits.
pub struct Outcome {
    /// Lines for stdout.
    pub out: Vec<String>,
    /// Problem for stderr; exit 1 when set.
    pub error: Option<String>,
}

impl Outcome {
    /// Printed lines, exit 0.
    pub fn ok(out: Vec<String>) -> Outcome {
        Outcome { out, error: None }
    }

    /// A problem, exit 1.
    pub fn failed(msg: String) -> Outcome {
        Outcome {
            out: vec![],
            error: Some(msg),
        }
    }
}

fn ok(out: Vec<String>) -> Outcome {
    Outcome::ok(out)
}

fn failed(msg: String) -> Outcome {
    Outcome::failed(msg)
}

/// Asks the daemon; `None` when none runs.
pub async fn daemon(
    config: &Config,
    method: Method,
    path: &str,
    body: Option<Value>,
) -> anyhow::Result<Option<Result<Value, String>>> {
    Ok(request(&config.socket_path(), method, path, body)
        .await?
        .map(|(status, v)| {
            if status.is_success() {
                Ok(v)
            } else {
                Err(error_message(status, &v))
            }
        }))
}

/// The rollouts refused on record: the running daemon's, else the last saved status's. None
/// known (no daemon, no database) is an empty set.
pub async fn refusals(config: &Config) -> anyhow::Result<BTreeMap<AppKey, Refusal>> {
    match daemon(config, Method::GET, "/apps", None).await? {
        Some(Ok(v)) => Ok(v["apps"]
            .as_array()
            .into_iter()
            .flatten()
            .filter_map(|a| {
                let key = AppKey::new(a["userid"].as_str()?, a["appname"].as_str()?).ok()?;
                let hash = a["refused_hash"].as_str()?;
                let shown = a["last_error"].as_str().unwrap_or_default();
                Some((key, Refusal::from_shown(hash, shown)))
            })
            .collect()),
        Some(Err(e)) => anyhow::bail!("asking the daemon for refused rollouts: {e}"),
        None if config.database.exists() => Ok(open(config)?.refusals()?),
        None => Ok(BTreeMap::new()),
    }
}

fn open(config: &Config) -> anyhow::Result<Store> {
    Store::open(&config.database).context("opening the database")
}

/// `berth backup FILE`: a consistent copy of the database, from the daemon when one runs (it
/// holds the database and answers the copy over its socket), else made here. Either way the
/// file is written here, so it lands where the person asking sees it (the daemon may have a
/// /tmp of its own), whole or not at all, 0600, never over an existing file.
pub async fn backup(config: &Config, file: &std::path::Path) -> anyhow::Result<Outcome> {
    use std::io::ErrorKind::AlreadyExists;
    let file = std::path::absolute(file).context("resolving the backup path")?;
    let shown = file.display();
    let exists = || failed(format!("{shown} exists; berth does not write over a file"));
    let mut out = match NewFile::create(&file) {
        Ok(f) => f,
        Err(e) if e.kind() == AlreadyExists => return Ok(exists()),
        Err(e) => return Ok(failed(format!("cannot write {shown}: {e}"))),
    };
    let rows = match copy_into(config, &mut out).await {
        Ok(rows) => rows,
        Err(e) => return Ok(failed(format!("{e:#}"))),
    };
    match out.finish() {
        Ok(()) => {}
        Err(e) if e.kind() == AlreadyExists => return Ok(exists()),
        Err(e) => return Ok(failed(format!("cannot write {shown}: {e}"))),
    }
    Ok(ok(vec![format!(
        "wrote {shown} ({rows} records); restore by putting it in place of {} while berth is stopped",
        config.database.display()
    )]))
}

/// Writes a copy of the database into `out`: the daemon's, as it streams in, or one made here
/// when no daemon runs. Answers how many records it holds.
async fn copy_into(config: &Config, out: &mut NewFile) -> anyhow::Result<u64> {
    use std::io::Write;
    let Some(resp) = send(&config.socket_path(), Method::POST, "/backup", None).await? else {
        let mut snapshot = open(config)?.snapshot()?;
        let copied = std::io::copy(&mut snapshot.file, out).context("writing the backup")?;
        anyhow::ensure!(copied == snapshot.len, "the copy changed while it was read");
        return Ok(snapshot.rows);
    };
    let status = resp.status();
    if !status.is_success() {
        let body = json_of(resp).await?;
        anyhow::bail!("{}", error_message(status, &body));
    }
    let header = |name: &str| {
        let value = resp.headers().get(name)?.to_str().ok()?;
        value.parse::<u64>().ok()
    };
    let (rows, len) = (header(BACKUP_ROWS).unwrap_or(0), header("content-length"));
    let mut body = resp.into_body();
    let mut got = 0;
    while let Some(frame) = body.frame().await {
        let frame = frame.context("reading the copy from the daemon")?;
        if let Ok(data) = frame.into_data() {
            out.write_all(&data).context("writing the backup")?;
            got += data.len() as u64;
        }
    }
    anyhow::ensure!(
        len.is_none_or(|len| len == got),
        "the daemon's copy ended after {got} of {} bytes",
        len.unwrap_or(0)
    );
    Ok(rows)
}

/// `berth users add <name> [--admin]`: the token alone on the last line.
pub async fn users_add(config: &Config, name: &str, admin: bool) -> anyhow::Result<Outcome> {
    let token = match daemon(
        config,
        Method::POST,
        "/users",
        Some(json!({ "name": name, "admin": admin })),
    )
    .await?
    {
        Some(Ok(v)) => v["token"].as_str().unwrap_or_default().to_string(),
        Some(Err(e)) => return Ok(failed(e)),
        None => match open(config)?.add_user(name, if admin { Role::Admin } else { Role::User }) {
            Ok(t) => t,
            Err(e) => return Ok(failed(crate::error_chain::chain(&e))),
        },
    };
    let role = if admin { "admin" } else { "user" };
    Ok(ok(vec![
        format!("added {role} {name}; the token below is shown once and not stored:"),
        token,
    ]))
}

/// `berth users list`.
pub async fn users_list(config: &Config) -> anyhow::Result<Outcome> {
    let users: Vec<Value> = match daemon(config, Method::GET, "/users", None).await? {
        Some(Ok(v)) => v["users"].as_array().cloned().unwrap_or_default(),
        Some(Err(e)) => return Ok(failed(e)),
        None => open(config)?
            .list_users()?
            .into_iter()
            .map(|u| serde_json::to_value(u).expect("serializes"))
            .collect(),
    };
    let mut out = vec![format!("{:<31} {:<6} CREATED", "NAME", "ROLE")];
    for u in users {
        let created = u["created_at"].as_u64().map_or(String::new(), |t| {
            humantime::format_rfc3339_seconds(
                std::time::UNIX_EPOCH + std::time::Duration::from_secs(t),
            )
            .to_string()
        });
        out.push(format!(
            "{:<31} {:<6} {created}",
            u["name"].as_str().unwrap_or("?"),
            u["role"].as_str().unwrap_or("?")
        ));
    }
    Ok(ok(out))
}

/// `berth users remove <name>`.
pub async fn users_remove(config: &Config, name: &str) -> anyhow::Result<Outcome> {
    if let Err(e) = crate::model::names::validate_userid(name) {
        return Ok(failed(crate::error_chain::chain(&e)));
    }
    match daemon(config, Method::DELETE, &format!("/users/{name}"), None).await? {
        Some(Ok(_)) => {}
        Some(Err(e)) => return Ok(failed(e)),
        None => {
            if let Err(e) = open(config)?.remove_user(name) {
                return Ok(failed(crate::error_chain::chain(&e)));
            }
        }
    }
    Ok(ok(vec![format!(
        "removed user {name}; its token no longer works"
    )]))
}

/// `berth status`: every app with phase, container and last error.
pub async fn status(config: &Config) -> anyhow::Result<Outcome> {
    let mut out = vec![format!(
        "{:<40} {:<14} {:<12} ERROR",
        "APP", "PHASE", "CONTAINER"
    )];
    match daemon(config, Method::GET, "/apps", None).await? {
        Some(Ok(v)) => {
            for a in v["apps"].as_array().cloned().unwrap_or_default() {
                out.push(row(
                    &format!(
                        "{}/{}",
                        a["userid"].as_str().unwrap_or("?"),
                        a["appname"].as_str().unwrap_or("?")
                    ),
                    a["phase"].as_str().unwrap_or("?"),
                    a["container"].as_str().unwrap_or("?"),
                    a["last_error"].as_str(),
                ));
            }
        }
        Some(Err(e)) => return Ok(failed(e)),
        None => {
            out.extend(status_without_daemon(config).await?);
            return Ok(ok(out));
        }
    }
    if let Some(Ok(g)) = daemon(config, Method::GET, "/git", None).await? {
        out.push(format!(
            "git: {} at {} ({} {}){}",
            g["last_sync"].as_str().unwrap_or("?"),
            g["head"].as_str().map_or("?", |h| &h[..h.len().min(12)]),
            g["remote"].as_str().unwrap_or("?"),
            g["branch"].as_str().unwrap_or("?"),
            g["last_error"]
                .as_str()
                .map_or(String::new(), |e| format!(": {e}"))
        ));
    }
    Ok(ok(out))
}

/// Status rows read live (the files and the engine), or the last saved status when the
/// engine cannot be asked; the last line says which.
async fn status_without_daemon(config: &Config) -> anyhow::Result<Vec<String>> {
    let mut out = Vec::new();
    match crate::cli::oneshot::live_status(config).await {
        Ok(live) => {
            for (key, s) in live {
                let (app, phase) = (key.to_string(), s.phase.to_string());
                out.push(row(&app, &phase, &s.container, s.last_error.as_deref()));
            }
            out.push("(berth serve is not running: read from the files and the engine now)".into());
        }
        Err(e) => {
            for (key, s) in open(config)?.statuses()? {
                out.push(row(&key, &s.phase, &s.container, s.last_error.as_deref()));
            }
            let why = crate::error_chain::chain(e.as_ref());
            out.push(format!("(berth serve is not running and the engine cannot be asked ({why}): this is the last saved status)"));
        }
    }
    Ok(out)
}

fn row(app: &str, phase: &str, container: &str, error: Option<&str>) -> String {
    let shown = super::colour::phase(&format!("{phase:<14}"), phase, super::colour::enabled());
    format!("{app:<40} {shown} {container:<12} {}", error.unwrap_or("-"))
}

/// Exit status for an outcome.
pub fn exit_status(o: &Outcome) -> u8 {
    u8::from(o.error.is_some())
}
