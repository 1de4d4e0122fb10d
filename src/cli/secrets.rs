//! `berth secrets recipient` and `berth secrets encrypt NAME` (docs/guides/secrets.md): what a person needs
//! to commit an encrypted value without the server's private key.

use std::io::Read;
use std::process::ExitCode;

use crate::model::config::Config;
use crate::model::names::AppKey;
use crate::model::secrets::{
    check_secret_name, check_secret_value, parse_recipient, seal, Scope, SecretValue,
};
use crate::state::secrets_key::{ensure, load, Ensured};

/// Prints the server's public key, making the key first on a fresh root (as `serve` would).
pub fn recipient(config: &Config) -> anyhow::Result<ExitCode> {
    let found = crate::state::scan::scan(&config.apps_state_dir(), &config.root)?;
    let holds = found
        .manifests
        .values()
        .any(crate::state::scan::holds_secrets);
    if ensure(&config.secrets_key, holds).map_err(anyhow::Error::msg)? == Ensured::Made {
        eprintln!(
            "made the secrets key {} (0600)",
            config.secrets_key.display()
        );
    }
    let keyring = load(&config.secrets_key).map_err(anyhow::Error::msg)?;
    println!("{}", keyring.recipient());
    Ok(ExitCode::SUCCESS)
}

/// What `berth secrets encrypt` seals a value for.
pub struct Target<'a> {
    /// The `[secrets]` name, or with `value` the template value's name.
    pub name: &'a str,
    /// `userid/appname`.
    pub app: &'a str,
    /// A template's secret value (`[values]`), not a `[secrets]` entry.
    pub value: bool,
}

/// Reads a value on stdin (one trailing newline dropped) and prints `NAME = "age:..."`,
/// sealed for `target` and encrypted to `to` (a public key) or to this server's key.
pub fn encrypt(config: &Config, target: &Target, to: Option<&str>) -> anyhow::Result<ExitCode> {
    let name = target.name;
    let (user, app) = target
        .app
        .split_once('/')
        .ok_or_else(|| anyhow::anyhow!("--app {}: give <userid>/<appname>", target.app))?;
    let key = AppKey::new(user, app).map_err(|e| anyhow::anyhow!("--app {}: {e}", target.app))?;
    let scope = match target.value {
        true => {
            crate::model::values::check_name(name).map_err(anyhow::Error::msg)?;
            Scope::value(&key, name)
        }
        false => {
            check_secret_name(name).map_err(anyhow::Error::msg)?;
            Scope::secret(&key, name)
        }
    };
    let recipient = match to {
        Some(text) => parse_recipient(text).map_err(anyhow::Error::msg)?,
        None => load(&config.secrets_key)
            .map_err(anyhow::Error::msg)?
            .recipient(),
    };
    let mut value = String::new();
    std::io::stdin().read_to_string(&mut value)?;
    if value.ends_with('\n') {
        value.pop();
        if value.ends_with('\r') {
            value.pop();
        }
    }
    let value = SecretValue::new(value);
    check_secret_value(&value).map_err(anyhow::Error::msg)?;
    let sealed = seal(&recipient, &scope, &value);
    println!("{name} = \"{sealed}\"");
    Ok(ExitCode::SUCCESS)
}

/// `berth secrets rotate`: by the daemon when one runs (it holds the state lock and commits),
/// else here.
pub async fn rotate(config: Config, keep_old: bool) -> anyhow::Result<ExitCode> {
    let path = format!("/secrets/rotate?keep_old={keep_old}");
    let answer = crate::cli::admin::daemon(&config, hyper::Method::POST, &path, None).await?;
    let v = match answer {
        Some(Ok(v)) => v,
        Some(Err(e)) => anyhow::bail!("the daemon could not rotate: {e}"),
        None => {
            let rotated = crate::state::rotate::rotate_here(&std::sync::Arc::new(config), keep_old)
                .await
                .map_err(anyhow::Error::msg)?;
            serde_json::to_value(rotated)?
        }
    };
    println!(
        "rotated: {} manifests, {} values re-encrypted to the new key",
        v["manifests"], v["values"]
    );
    if v["backup_password"] == true {
        println!("rotated: the backup repository's password re-sealed to the new key");
    }
    let left: Vec<&str> = v["left"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str())
        .collect();
    for l in &left {
        println!("not re-encrypted: {l}");
    }
    println!("old key: {}", v["old_key"].as_str().unwrap_or_default());
    Ok(if left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}

/// `berth secrets forget-old`: removes the keys `rotate --keep-old` kept.
pub fn forget_old(config: &Config) -> anyhow::Result<ExitCode> {
    let retired = crate::state::secrets_key::retired_path(&config.secrets_key);
    match crate::state::secrets_key::forget_old(&config.secrets_key).map_err(anyhow::Error::msg)? {
        true => println!(
            "removed {}: values sealed to those keys no longer open",
            retired.display()
        ),
        false => println!("no retired keys ({} does not exist)", retired.display()),
    }
    Ok(ExitCode::SUCCESS)
}
