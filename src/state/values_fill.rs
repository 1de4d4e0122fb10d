//! The write path's part of template values (docs/guides/templates-and-values.md): a `generate = true` secret the
//! manifest does not set yet is generated once, sealed to the server's key and written into
//! its `[values]`, so it is stable from then on; and every value is checked against the
//! template before anything is written (422 naming the file, the value and the rule).

use std::path::Path;

use crate::model::config::Config;
use crate::model::manifest::Manifest;
use crate::model::names::AppKey;
use crate::model::secrets::{seal, Scope, SecretValue};
use crate::model::template::Template;
use crate::model::values::{generate_secret, resolve, ValueKind};
use crate::state::secrets_key;

/// `text` with the generated secrets `template` declares and it lacks added (unchanged when
/// none are missing). Fails when one is needed and the server has no secrets key.
pub fn fill_generated(
    config: &Config,
    key: &AppKey,
    template: &Template,
    text: &str,
) -> Result<String, String> {
    let missing: Vec<&String> = template
        .values
        .iter()
        .filter(|(_, d)| d.generate && d.kind == ValueKind::Secret)
        .map(|(n, _)| n)
        .collect();
    if missing.is_empty() {
        return Ok(text.to_string());
    }
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    let values = doc
        .entry("values")
        .or_insert_with(|| toml_edit::Item::Table(toml_edit::Table::new()))
        .as_table_like_mut()
        .ok_or("[values] must be a table")?;
    let missing: Vec<&String> = missing
        .into_iter()
        .filter(|n| !values.contains_key(n))
        .collect();
    if missing.is_empty() {
        return Ok(text.to_string());
    }
    let keyring = secrets_key::load(&config.secrets_key).map_err(|e| {
        format!(
            "template {} generates the secret value {}, which needs the server's secrets key: {e}",
            template.id, missing[0]
        )
    })?;
    for name in missing {
        let scope = Scope::value(key, name);
        let sealed = seal(&keyring.recipient(), &scope, &generate_secret());
        values.insert(name, toml_edit::value(sealed));
    }
    Ok(doc.to_string())
}

/// `m`'s `[values]` against `template`'s declarations (the loop's own check, run before a
/// write); the error names the file (`shown`), the value and the rule.
pub fn check(
    config: &Config,
    (key, shown): (&AppKey, &Path),
    template: &Template,
    m: &Manifest,
) -> Result<(), String> {
    let secret_set = m.values.keys().any(|n| {
        template
            .values
            .get(n)
            .is_some_and(|d| d.kind == ValueKind::Secret)
    });
    let keys = match secret_set {
        true => secrets_key::load(&config.secrets_key),
        false => Err("no secret value is set".into()),
    };
    let file = shown.display().to_string();
    let renamed_from = m
        .renamed_from
        .as_ref()
        .and_then(|old| AppKey::new(&key.userid, &old.0).ok());
    let at = (file.as_str(), key, renamed_from);
    resolve(at, &template.id, &template.values, &m.values, &keys).map(drop)
}

/// A new app's manifest: `template`, and `values` as given to `POST /apps` (JSON strings,
/// integers and booleans; a secret value sealed to the server's key before it is written).
pub fn initial_text(
    config: &Config,
    key: &AppKey,
    template: &str,
    values: &std::collections::BTreeMap<String, serde_json::Value>,
) -> Result<String, String> {
    let text = format!("# created through the berth API\ntemplate = \"{template}\"\n");
    if values.is_empty() {
        return Ok(text);
    }
    let t = Template::load(config, template).map_err(|e| e.to_string())?;
    let mut table = toml_edit::Table::new();
    let mut keyring = None;
    for (name, v) in values {
        let decl = t
            .values
            .get(name)
            .ok_or_else(|| format!("[values] {name}: template {} has no such value", t.id))?;
        let item = match (decl.kind, v) {
            (ValueKind::Secret, serde_json::Value::String(plain)) => {
                if keyring.is_none() {
                    keyring = Some(secrets_key::load(&config.secrets_key)?);
                }
                let recipient = keyring
                    .as_ref()
                    .map(|k| k.recipient())
                    .expect("just loaded");
                let scope = Scope::value(key, name);
                let value = SecretValue::new(plain.clone());
                toml_edit::value(seal(&recipient, &scope, &value))
            }
            (_, serde_json::Value::String(s)) => toml_edit::value(s.clone()),
            (_, serde_json::Value::Bool(b)) => toml_edit::value(*b),
            (_, serde_json::Value::Number(n)) if n.is_i64() => {
                toml_edit::value(n.as_i64().unwrap_or(0))
            }
            _ => {
                return Err(format!(
                    "[values] {name}: give a string, an integer or true/false"
                ))
            }
        };
        table.insert(name, item);
    }
    let mut doc: toml_edit::DocumentMut = text.parse().map_err(|e| format!("{e}"))?;
    doc.insert("values", toml_edit::Item::Table(table));
    Ok(doc.to_string())
}
