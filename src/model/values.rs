//! Template values (docs/guides/templates-and-values.md): `[values.<name>]` in template.toml declares what an app may or
//! must set (type, default, required, choices, bounds, pattern, a generated secret); a
//! manifest sets them under `[values]`; `{values.<name>}` in the template's image, command
//! and env is replaced by the app's value. A wrong or missing value is an error that names the
//! file, the value and the rule, and freezes the app. A `secret` value is an `age:` ciphertext
//! in the manifest; it may reach only the container's environment.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::names::AppKey;
use crate::model::secrets::{Keyring, Scope, SecretValue};

/// A value's type.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(rename_all = "lowercase")]
pub enum ValueKind {
    /// Any text (with `pattern`, one that matches it).
    String,
    /// A whole number (with `min`, `max`).
    Int,
    /// `true` or `false`.
    Bool,
    /// One of `choices`.
    Enum,
    /// Text kept encrypted in the manifest (`age:...`); reaches only the environment.
    Secret,
}

/// `[values.<name>]` as a template declares it.
#[derive(Debug, Clone, PartialEq, Deserialize, Serialize, schemars::JsonSchema)]
#[serde(deny_unknown_fields)]
#[schemars(extend("allOf" = crate::model::schema::value_kind_rules()))]
pub struct ValueDecl {
    /// Its type.
    #[serde(rename = "type")]
    pub kind: ValueKind,
    /// What the form shows.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub description: Option<String>,
    /// Used when the manifest does not set it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    #[schemars(with = "Option<serde_json::Value>")]
    pub default: Option<toml::Value>,
    /// The manifest must set it (a default or `generate` would make that moot).
    #[serde(default)]
    pub required: bool,
    /// The allowed values of an `enum`.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub choices: Vec<String>,
    /// Bounds of an `int`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub min: Option<i64>,
    /// See `min`.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub max: Option<i64>,
    /// A regular expression a `string` must match as a whole.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pattern: Option<String>,
    /// A `secret` berth generates once (32 random bytes) when an app is written through the
    /// API without it.
    #[serde(default)]
    pub generate: bool,
}

/// Every app's resolved values: plain ones as text, secret ones opened.
#[derive(Debug, Default)]
pub struct Resolved {
    /// `string`, `int`, `bool` and `enum` values as text.
    pub plain: BTreeMap<String, String>,
    /// `secret` values, decrypted.
    pub secret: BTreeMap<String, SecretValue>,
    /// The fingerprints a rotation carried in secret values' envelopes, by value name: what
    /// an `[env]` entry that is exactly that value shows in the spec.
    pub carried: BTreeMap<String, String>,
}

/// A value name: lower case, digits and `_`, starting with a letter.
pub fn check_name(name: &str) -> Result<(), String> {
    let ok = name.len() <= 64
        && name.starts_with(|c: char| c.is_ascii_lowercase())
        && name
            .chars()
            .all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '_');
    match ok {
        true => Ok(()),
        false => Err(format!(
            "value name {name:?}: use lower-case letters, digits and '_', starting with a letter"
        )),
    }
}

/// A template's declarations, checked against each other (read when the template loads).
pub fn check_decls(decls: &BTreeMap<String, ValueDecl>) -> Result<(), String> {
    for (name, d) in decls {
        check_name(name)?;
        let bad = |why: &str| Err(format!("[values.{name}]: {why}"));
        if d.kind == ValueKind::Enum && d.choices.is_empty() {
            return bad("an enum needs choices");
        }
        if d.kind != ValueKind::Enum && !d.choices.is_empty() {
            return bad("choices are for type = \"enum\"");
        }
        if d.kind != ValueKind::Int && (d.min.is_some() || d.max.is_some()) {
            return bad("min and max are for type = \"int\"");
        }
        if let (Some(lo), Some(hi)) = (d.min, d.max) {
            if lo > hi {
                return bad(&format!(
                    "min = {lo} is greater than max = {hi}: no value could ever be set"
                ));
            }
        }
        if d.required && d.default.is_some() {
            return bad("required = true with a default: the default would never be used (drop one of them)");
        }
        if d.generate && d.kind != ValueKind::Secret {
            return bad("generate is for type = \"secret\"");
        }
        if d.kind == ValueKind::Secret && d.default.is_some() {
            return bad("a secret has no default (a default in a template is no secret)");
        }
        if let Some(p) = &d.pattern {
            if d.kind != ValueKind::String {
                return bad("pattern is for type = \"string\"");
            }
            pattern_regex(p).map_err(|e| format!("[values.{name}] pattern: {e}"))?;
        }
        if let Some(v) = &d.default {
            check_plain(d, v).map_err(|why| format!("[values.{name}] default: {why}"))?;
        }
    }
    Ok(())
}

/// A declaration's pattern, anchored, with a small compile budget (a template's pattern is
/// compiled for every app on every pass).
fn pattern_regex(p: &str) -> Result<regex::Regex, regex::Error> {
    regex::RegexBuilder::new(&format!("^(?:{p})$"))
        .size_limit(1 << 18)
        .build()
}

/// A plain (non-secret) value against its declaration; the text it renders as.
fn check_plain(d: &ValueDecl, v: &toml::Value) -> Result<String, String> {
    match (d.kind, v) {
        (ValueKind::String, toml::Value::String(s)) => {
            let p = d.pattern.as_deref().unwrap_or(".*");
            let re = pattern_regex(p).map_err(|e| e.to_string())?;
            match re.is_match(s) && !s.contains('\0') {
                true => Ok(s.clone()),
                false => Err(format!("{s:?} does not match the pattern {p:?}")),
            }
        }
        (ValueKind::Int, toml::Value::Integer(n)) => {
            let (lo, hi) = (d.min.unwrap_or(i64::MIN), d.max.unwrap_or(i64::MAX));
            match (lo..=hi).contains(n) {
                true => Ok(n.to_string()),
                false => Err(format!("{n} is outside {lo}..={hi}")),
            }
        }
        (ValueKind::Bool, toml::Value::Boolean(b)) => Ok(b.to_string()),
        (ValueKind::Enum, toml::Value::String(s)) => match d.choices.contains(s) {
            true => Ok(s.clone()),
            false => Err(format!("{s:?} is not one of {:?}", d.choices)),
        },
        (kind, other) => Err(format!(
            "expected {}, found {}",
            kind_name(kind),
            other.type_str()
        )),
    }
}

fn kind_name(k: ValueKind) -> &'static str {
    match k {
        ValueKind::String | ValueKind::Enum => "a string",
        ValueKind::Int => "an integer",
        ValueKind::Bool => "true or false",
        ValueKind::Secret => "an encrypted string (age:...)",
    }
}

/// The app's values from its manifest's `[values]` and the template's declarations. `file`
/// and `template` name where each error is.
pub fn resolve(
    (file, app, renamed_from): (&str, &AppKey, Option<AppKey>),
    template: &str,
    decls: &BTreeMap<String, ValueDecl>,
    set: &BTreeMap<String, toml::Value>,
    keys: &Result<Keyring, String>,
) -> Result<Resolved, String> {
    if let Some(name) = set.keys().find(|n| !decls.contains_key(*n)) {
        let known: Vec<&str> = decls.keys().map(String::as_str).collect();
        return Err(format!(
            "{file}: [values] {name}: template {template} has no such value (it has: {})",
            if known.is_empty() {
                "none".into()
            } else {
                known.join(", ")
            }
        ));
    }
    let mut out = Resolved::default();
    for (name, d) in decls {
        let at = |why: String| format!("{file}: [values] {name}: {why} (template {template})");
        let Some(v) = set.get(name).or(d.default.as_ref()) else {
            if d.required || d.kind == ValueKind::Secret {
                let how = match d.generate {
                    true => "it is generated when the app is created or saved through the API or the portal",
                    false => "set it under [values]",
                };
                return Err(at(format!("missing, and required; {how}")));
            }
            continue;
        };
        if d.kind == ValueKind::Secret {
            let scope = Scope::value(app, name).taking_over(renamed_from.clone());
            let opened = open_secret(v, &scope, keys).map_err(at)?;
            if let Some(fp) = opened.fingerprint {
                out.carried.insert(name.clone(), fp);
            }
            out.secret.insert(name.clone(), opened.value);
        } else {
            out.plain
                .insert(name.clone(), check_plain(d, v).map_err(at)?);
        }
    }
    Ok(out)
}

fn open_secret(
    v: &toml::Value,
    scope: &Scope,
    keys: &Result<Keyring, String>,
) -> Result<crate::model::secrets::Envelope, String> {
    let Some(text) = v.as_str() else {
        return Err(format!("expected {}", kind_name(ValueKind::Secret)));
    };
    if !text.starts_with("age:") {
        return Err("a secret value must be encrypted (age:...): set it with PUT .../secrets or `berth secrets encrypt`, never as plain text".into());
    }
    let keyring = keys.as_ref().map_err(|e| format!("cannot decrypt: {e}"))?;
    keyring
        .open(text, scope)
        .map_err(|why| format!("does not decrypt: {why}"))
}

/// The `{values.<name>}` placeholders of `text` filled; the second part is true when a secret
/// was used (the result then belongs in the environment only). Unknown names are errors.
pub fn render(text: &str, values: &Resolved) -> Result<(String, bool), String> {
    let (mut out, mut rest, mut secret) = (String::new(), text, false);
    while let Some(at) = rest.find("{values.") {
        out.push_str(&rest[..at]);
        let after = &rest[at + "{values.".len()..];
        let end = after
            .find('}')
            .ok_or_else(|| format!("{text:?}: an unclosed {{values."))?;
        let name = &after[..end];
        if let Some(v) = values.plain.get(name) {
            out.push_str(v);
        } else if let Some(v) = values.secret.get(name) {
            out.push_str(v.expose());
            secret = true;
        } else {
            return Err(format!("{text:?}: {{values.{name}}} has no value (not declared, or not set and without a default)"));
        }
        rest = &after[end + 1..];
    }
    out.push_str(rest);
    Ok((out, secret))
}

/// The template's `[env]`, image and command with `key`'s values filled into `spec`; returns
/// the environment that carries a secret (it goes to the container only, and into `spec` as a
/// fingerprint). A manifest's own `[env]` and `[secrets]` win over the template's `[env]`.
pub fn apply(
    spec: &mut crate::model::spec::ContainerSpec,
    t: &crate::model::template::Template,
    values: &Resolved,
    keys: &Result<Keyring, String>,
) -> Result<BTreeMap<String, SecretValue>, String> {
    let at = |e: String| format!("template {}: {e}", t.id);
    spec.image = render(&t.image, values).map_err(at)?.0;
    spec.command = t
        .command
        .iter()
        .map(|c| render(c, values).map(|r| r.0))
        .collect::<Result<_, _>>()
        .map_err(at)?;
    for m in &mut spec.mounts {
        m.source = render(&m.source, values).map_err(at)?.0;
        m.target = render(&m.target, values).map_err(at)?.0;
    }
    let mut secret_env = BTreeMap::new();
    for (name, text) in &t.env {
        if spec.env.contains_key(name) || spec.secrets.contains_key(name) {
            continue;
        }
        match render(text, values).map_err(at)? {
            (v, false) => {
                spec.env.insert(name.clone(), v);
            }
            (v, true) => {
                let value = SecretValue::new(v);
                let keyring = keys.as_ref().map_err(|e| at(e.clone()))?;
                let whole = text
                    .strip_prefix("{values.")
                    .and_then(|r| r.strip_suffix('}'));
                let fp = match whole.and_then(|n| values.carried.get(n)) {
                    Some(carried) => carried.clone(),
                    None => keyring.fingerprint(name, &value),
                };
                spec.secrets.insert(name.clone(), fp);
                secret_env.insert(name.clone(), value);
            }
        }
    }
    Ok(secret_env)
}

/// Values used in a mount's source or target (`texts`) must come from a closed set of
/// path-safe words: an int, a bool, or an enum whose every choice is a plain name (letters,
/// digits, `.`, `_`, `-`, and not `.` or `..`). A free string could climb out of the app's
/// directory or name another mount's path.
pub fn check_path_values(
    decls: &BTreeMap<String, ValueDecl>,
    texts: &[&str],
) -> Result<(), String> {
    let plain = |c: &str| {
        !c.is_empty()
            && c != "."
            && c != ".."
            && c.bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"._-".contains(&b))
    };
    for (name, d) in decls {
        if !texts
            .iter()
            .any(|t| t.contains(&format!("{{values.{name}}}")))
        {
            continue;
        }
        match d.kind {
            ValueKind::Int | ValueKind::Bool => {}
            ValueKind::Enum if d.choices.iter().all(|c| plain(c)) => {}
            ValueKind::Enum => {
                return Err(format!("{{values.{name}}}: every choice must be a plain name (a-z, 0-9, '.', '_', '-') to be used in a path"))
            }
            _ => {
                return Err(format!("{{values.{name}}}: only int, bool and enum values may be used in a mount"))
            }
        }
    }
    Ok(())
}

/// A new random secret: 32 bytes, URL-safe base64 without padding (43 characters).
pub fn generate_secret() -> SecretValue {
    use base64::Engine as _;
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source");
    SecretValue::new(base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(bytes))
}

#[cfg(test)]
#[path = "values_tests.rs"]
mod tests;
