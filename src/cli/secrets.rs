//! `berth secrets recipient` and `berth secrets encrypt NAME` (SPEC §10): what a person needs
//! to commit an encrypted value without the server's private key.

use std::io::Read;
use std::process::ExitCode;

use crate::model::config::Config;
use crate::model::secrets::{
    check_secret_name, check_secret_value, parse_recipient, seal, SecretValue,
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

/// Reads a value on stdin (one trailing newline dropped) and prints `NAME = "age:..."`,
/// encrypted to `to` (a public key) or to this server's key.
pub fn encrypt(config: &Config, name: &str, to: Option<&str>) -> anyhow::Result<ExitCode> {
    check_secret_name(name).map_err(anyhow::Error::msg)?;
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
    let sealed = seal(&recipient, &value);
    println!("{name} = \"{sealed}\"");
    Ok(ExitCode::SUCCESS)
}

/// `berth secrets rotate`: by the daemon when one runs (it holds the state lock and commits),
/// else here.
pub async fn rotate(config: Config) -> anyhow::Result<ExitCode> {
    let answer =
        crate::cli::admin::daemon(&config, hyper::Method::POST, "/secrets/rotate", None).await?;
    let v = match answer {
        Some(Ok(v)) => v,
        Some(Err(e)) => anyhow::bail!("the daemon could not rotate: {e}"),
        None => {
            let rotated = crate::state::rotate::rotate_here(&std::sync::Arc::new(config))
                .await
                .map_err(anyhow::Error::msg)?;
            serde_json::to_value(rotated)?
        }
    };
    println!(
        "rotated: {} manifests, {} values re-encrypted to the new key",
        v["manifests"], v["values"]
    );
    let left: Vec<&str> = v["left"]
        .as_array()
        .into_iter()
        .flatten()
        .filter_map(|l| l.as_str())
        .collect();
    for l in &left {
        println!("not re-encrypted: {l}");
    }
    Ok(if left.is_empty() {
        ExitCode::SUCCESS
    } else {
        ExitCode::from(1)
    })
}
