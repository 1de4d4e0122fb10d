//! JSON Schemas for a manifest and for template.toml, generated from the model's types, so a
//! TOML language server (Taplo, Even Better TOML) checks the files as people type. The
//! committed copies are `templates/manifest.schema.json` and `templates/template.schema.json`;
//! `berth schema manifest|template` prints them again.
//!
//! Types whose `Deserialize` checks a rule get their schema here, by hand, saying as much of
//! the rule as JSON Schema can (patterns, bounds, enums); what it cannot say (bytes rather
//! than characters, a duration's bounds, cross-field rules such as a `{values.*}` placeholder
//! naming a declared value) is in the description, and berth still checks it when it reads
//! the file. Draft 7, which Taplo's validator and most editors understand.

use std::borrow::Cow;

use schemars::generate::SchemaSettings;
use schemars::transform::RecursiveTransform;
use schemars::{json_schema, JsonSchema, Schema, SchemaGenerator};
use serde_json::{json, Value};

use crate::model::manifest::{AppName, Domain, EnvVars, Manifest, Port, RestartNonce, TemplateId};
use crate::model::resources::{Cpus, Memory};
use crate::model::secrets::SealedSecrets;

/// The manifest's schema (`state/apps/<userid>/<appname>.toml`).
pub fn manifest() -> Schema {
    generator().into_root_schema_for::<Manifest>()
}

/// template.toml's schema.
pub fn template() -> Schema {
    crate::model::template::file_schema(generator())
}

/// A schema as the committed file holds it: pretty JSON and a final newline.
pub fn to_text(schema: &Schema) -> String {
    let mut text = serde_json::to_string_pretty(schema).expect("a schema is JSON");
    text.push('\n');
    text
}

fn generator() -> SchemaGenerator {
    SchemaSettings::draft07()
        .with_transform(RecursiveTransform(no_null))
        .into_generator()
}

/// TOML has no null: drops it from a schema's types and alternatives, and a null default
/// (what an `Option` field says in JSON).
fn no_null(schema: &mut Schema) {
    let Some(obj) = schema.as_object_mut() else {
        return;
    };
    if obj.get("default") == Some(&Value::Null) {
        obj.remove("default");
    }
    if let Some(Value::Array(types)) = obj.get_mut("type") {
        types.retain(|t| t != "null");
        if types.len() == 1 {
            let one = types.remove(0);
            obj.insert("type".into(), one);
        }
    }
    if let Some(Value::Array(alternatives)) = obj.get_mut("anyOf") {
        alternatives.retain(|a| *a != json!({"type": "null"}));
        if alternatives.len() == 1 {
            let one = obj.remove("anyOf").expect("just seen");
            obj.insert("allOf".into(), one);
        }
    }
}

/// `impl JsonSchema` for types whose rule is written out here; named after the type.
macro_rules! by_hand {
    ($($ty:ident => $schema:expr;)*) => {$(
        impl JsonSchema for $ty {
            fn schema_name() -> Cow<'static, str> {
                stringify!($ty).into()
            }
            fn json_schema(_: &mut SchemaGenerator) -> Schema {
                Schema::try_from($schema).expect("an object")
            }
        }
    )*};
}

by_hand! {
    TemplateId => json!({
        "description": "A directory under templates/: 1-64 characters of a-z, 0-9 and '-', starting with a letter.",
        "type": "string",
        "pattern": "^[a-z][a-z0-9-]{0,63}$",
    });
    AppName => json!({
        "description": "An app name: 1-30 characters of a-z, 0-9 and '-', starting with a letter.",
        "type": "string",
        "pattern": "^[a-z][a-z0-9-]{0,29}$",
    });
    Domain => json!({
        "description": "A lower-case host name: labels of a-z, 0-9 and '-' (not first or last, at most 63 each), at most 253 characters.",
        "type": "string",
        "maxLength": 253,
        "pattern": "^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?(\\.[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?)*$",
    });
    Port => json!({
        "description": "A TCP port, 1-65535.",
        "type": "integer",
        "minimum": 1,
        "maximum": 65535,
    });
    RestartNonce => json!({
        "description": "Any value; changing it recreates the container (deploy). A string of at most 128 printable characters (bytes, for non-ASCII text), a TOML date-time, or a number.",
        "type": ["string", "integer"],
        "maxLength": 128,
        "pattern": "^[^\\u0000-\\u001f\\u007f-\\u009f]*$",
    });
    EnvVars => json!({
        "description": "At most 256 variables; a value is at most 32 KiB (bytes) with no NUL character.",
        "type": "object",
        "maxProperties": 256,
        "propertyNames": env_name(),
        "additionalProperties": {"type": "string", "maxLength": 32768, "pattern": "^[^\\u0000]*$"},
    });
    SealedSecrets => json!({
        "description": "At most 64 secrets, each `age:<base64>` as `berth secrets encrypt` or the API writes it (at most 48 KiB); plain values belong in [env].",
        "type": "object",
        "maxProperties": 64,
        "propertyNames": env_name(),
        "additionalProperties": {
            "type": "string",
            "maxLength": 49152,
            "pattern": "^age:([A-Za-z0-9+/]{4})*([A-Za-z0-9+/][AQgw]==|[A-Za-z0-9+/]{2}[AEIMQUYcgkosw048]=)?$",
        },
    });
    Memory => json!({
        "description": "Memory: a size such as \"256m\" or \"1g\" (units b, k, m, g, binary; kb, mb, gb too) or a byte count; at least 6m, at most 1 TiB.",
        "anyOf": [
            {"type": "string", "pattern": "^\\s*[0-9]+([bB]|[kKmMgG][bB]?)?\\s*$"},
            {"type": "integer", "minimum": 6291456, "maximum": 1099511627776u64},
        ],
    });
    Cpus => json!({
        "description": "CPUs: 0.5 is half a core.",
        "type": "number",
        "minimum": 0.01,
        "maximum": 1024,
    });
}

/// An environment variable's name: what a shell accepts, and not PORT (berth sets it).
fn env_name() -> Value {
    json!({"pattern": "^[A-Za-z_][A-Za-z0-9_]{0,127}$", "not": {"enum": ["PORT"]}})
}

/// A `{values.<name>}` value name.
fn value_name() -> Value {
    json!({"pattern": "^[a-z][a-z0-9_]{0,63}$"})
}

/// Rejects a `..` path component.
fn no_dotdot() -> Value {
    json!({"not": {"pattern": "(^|/)\\.\\.(/|$)"}})
}

/// An absolute path inside a container, without ':' or a '..' component.
pub(crate) fn container_path(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "pattern": "^/[^:]*$", "allOf": [no_dotdot()]})
}

/// Relative paths inside the template directory: no leading '/', no empty or '..' component.
pub(crate) fn template_paths(_: &mut SchemaGenerator) -> Schema {
    let path = json!({"type": "string", "pattern": "^[^/]+(/[^/]+)*$", "allOf": [no_dotdot()]});
    json_schema!({"type": "array", "items": path})
}

/// A path inside an app's workspace (`[build]`'s `context` and `dockerfile`): `.`, or relative
/// parts without an empty, `.` or `..` one, no backslash.
pub(crate) fn relative_path(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "string",
        "maxLength": 255,
        "pattern": "^(\\.|[^/\\\\]+(/[^/\\\\]+)*)$",
        "allOf": [no_dotdot(), {"not": {"pattern": "^\\./|/\\.(/|$)"}}],
    })
}

/// A mount's host path: absolute or starting with a placeholder, the only `{...}` allowed.
pub(crate) fn mount_source(_: &mut SchemaGenerator) -> Schema {
    let p = "\\{(app_dir|shared_dir|template_dir)\\}";
    json_schema!({
        "type": "string",
        "pattern": format!("^(/|{p})([^{{}}:]|{p})*$"),
        "allOf": [no_dotdot()],
    })
}

/// A humantime duration such as "30s", "500ms" or "1m 30s".
pub(crate) fn duration(_: &mut SchemaGenerator) -> Schema {
    let unit = "nanos|nsec|ns|usec|us|µs|millis|msec|ms|seconds|second|secs|sec|s|minutes|minute|mins|min|m|hours|hour|hrs|hr|h|days|day|d|weeks|week|wks|wk|w|months|month|M|years|year|yrs|yr|y";
    json_schema!({
        "type": "string",
        "pattern": format!("^\\s*([0-9]+(\\.[0-9]+)?\\s*({unit})\\s*)+$"),
    })
}

/// An IP address to publish on.
pub(crate) fn ip(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "string", "anyOf": [{"format": "ipv4"}, {"format": "ipv6"}]})
}

/// Environment variables by name (template.toml's `[env]`; values may use `{values.*}`).
pub(crate) fn env_map(_: &mut SchemaGenerator) -> Schema {
    json_schema!({"type": "object", "propertyNames": env_name(), "additionalProperties": {"type": "string"}})
}

/// A manifest's `[values]`: by value name, a string (an `age:` one for a secret), an integer
/// or a boolean.
pub(crate) fn manifest_values(_: &mut SchemaGenerator) -> Schema {
    json_schema!({
        "type": "object",
        "propertyNames": value_name(),
        "additionalProperties": {"type": ["string", "integer", "boolean"]},
    })
}

/// template.toml's `[values.<name>]` declarations by value name.
pub(crate) fn value_decls(generator: &mut SchemaGenerator) -> Schema {
    let decl = generator.subschema_for::<crate::model::values::ValueDecl>();
    json_schema!({"type": "object", "propertyNames": value_name(), "additionalProperties": decl})
}

/// Which field goes with which `type` in a value declaration: the default's type, and the
/// fields only one type may have.
pub(crate) fn value_kind_rules() -> Value {
    let when = |kind: &str, then: Value, otherwise: Value| json!({"if": {"properties": {"type": {"const": kind}}}, "then": then, "else": otherwise});
    let default_is = |t: &str| json!({"properties": {"default": {"type": t}}});
    json!([
        when(
            "string",
            default_is("string"),
            json!({"properties": {"pattern": false}})
        ),
        when(
            "int",
            default_is("integer"),
            json!({"properties": {"min": false, "max": false}})
        ),
        when("bool", default_is("boolean"), json!({})),
        when(
            "enum",
            json!({"required": ["choices"], "properties": {"default": {"type": "string"}, "choices": {"minItems": 1}}}),
            json!({"properties": {"choices": {"maxItems": 0}}}),
        ),
        when(
            "secret",
            json!({"properties": {"default": false}}),
            json!({"properties": {"generate": {"const": false}}}),
        ),
    ])
}

#[cfg(test)]
#[path = "schema_tests.rs"]
mod tests;
