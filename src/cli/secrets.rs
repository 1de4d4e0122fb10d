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
