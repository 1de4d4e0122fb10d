//! Creating an app from the catalogue: the apps page's form names the app and its template;
//! when the template declares values (`GET /templates`), a second page asks for them with a
//! field per value (a list for an enum, a number with its bounds for an int, a box for a bool,
//! a password field for a secret, blank to generate one), and `POST /apps` gets them, so the
//! API checks every rule and seals a secret before anything is written.

use std::collections::BTreeMap;
use std::sync::Arc;

use axum::extract::State;
use axum::http::{Method, StatusCode};
use axum::response::Response;
use maud::{html, Markup};
use serde_json::{json, Value};

use super::client::Call;
use super::layout::{form_post, page, respond};
use super::session::Session;
use super::signin::{signed_out_by, Posted, SignedIn};
use super::Portal;

/// `POST /ui/apps`: asks for the template's values first when it has any, else creates.
pub async fn create(
    State(p): State<Arc<Portal>>,
    Posted(who, form): Posted<BTreeMap<String, String>>,
) -> Response {
    let field = |k: &str| {
        form.get(k)
            .map(|v| v.trim().to_string())
            .unwrap_or_default()
    };
    let (appname, template) = (field("appname"), field("template"));
    let decls = declared_values(&p, &who, &template).await;
    if !form.contains_key("values_done") && !decls.is_empty() {
        let body = values_form(&who.session, &appname, &template, &decls);
        return respond(
            StatusCode::OK,
            page("Create an app", Some(&who.session), None, body),
        );
    }
    let values = chosen_values(&decls, &form);
    let body = json!({ "appname": appname, "templateId": template, "values": values });
    let reply = Call::new(Method::POST, "/apps", &who)
        .json(&body)
        .send(&p.api)
        .await;
    if let Some(out) = signed_out_by(&p, &who, &reply) {
        return out;
    }
    let (notice, status) = reply.outcome(format!("created {appname}; it starts on the next pass"));
    super::apps_page::render(&p, &who, notice, status).await
}

/// The values `template` declares, by name, as `GET /templates` shows them.
async fn declared_values(p: &Portal, who: &SignedIn, template: &str) -> BTreeMap<String, Value> {
    let reply = Call::get("/templates", who).send(&p.api).await;
    let all = reply.json();
    let found = all["templates"].as_array().into_iter().flatten();
    let values = found
        .filter(|t| t["id"] == template)
        .map(|t| t["values"].clone())
        .next();
    match values {
        Some(Value::Object(m)) => m.into_iter().collect(),
        _ => BTreeMap::new(),
    }
}

/// The values the form set, typed as their declarations say (blank fields are left out, so
/// defaults apply and generated secrets are generated).
fn chosen_values(decls: &BTreeMap<String, Value>, form: &BTreeMap<String, String>) -> Value {
    let mut out = serde_json::Map::new();
    for (name, d) in decls {
        let raw = form.get(&format!("value.{name}")).map(|v| v.trim());
        let v = match (d["type"].as_str(), raw) {
            (Some("bool"), raw) => json!(raw == Some("true")),
            (_, None | Some("")) => continue,
            (Some("int"), Some(r)) => r.parse::<i64>().map_or_else(|_| json!(r), |n| json!(n)),
            (_, Some(r)) => json!(r),
        };
        out.insert(name.clone(), v);
    }
    Value::Object(out)
}

fn values_form(
    s: &Session,
    appname: &str,
    template: &str,
    decls: &BTreeMap<String, Value>,
) -> Markup {
    let fields = html! {
        input type="hidden" name="appname" value=(appname);
        input type="hidden" name="template" value=(template);
        input type="hidden" name="values_done" value="1";
        @for (name, d) in decls { (value_field(name, d)) }
    };
    html! {
        h1 { "Create " (appname) " from " (template) }
        p.hint { "Blank fields take the template's default; a blank generated secret is generated for you and kept encrypted." }
        div.values { (form_post("/ui/apps", s, fields, "Create")) }
    }
}

/// One labelled input for value `name` as its declaration `d` describes it.
fn value_field(name: &str, d: &Value) -> Markup {
    let id = format!("value-{name}");
    let field = format!("value.{name}");
    let default = d["default"]
        .as_str()
        .map(str::to_string)
        .or_else(|| (!d["default"].is_null()).then(|| d["default"].to_string()));
    let required = d["required"] == true;
    html! {
        label for=(id) {
            (name)
            @if let Some(text) = d["description"].as_str() { span.hint { " — " (text) } }
        }
        @match d["type"].as_str().unwrap_or("string") {
            "enum" => select id=(id) name=(field) {
                @for c in d["choices"].as_array().into_iter().flatten() {
                    @let c = c.as_str().unwrap_or("");
                    option value=(c) selected[default.as_deref() == Some(c)] { (c) }
                }
            },
            "bool" => input id=(id) name=(field) type="checkbox" value="true" checked[default.as_deref() == Some("true")];,
            "int" => input id=(id) name=(field) type="number" min=[d["min"].as_i64()] max=[d["max"].as_i64()] value=[default] required[required];,
            "secret" => input id=(id) name=(field) type="password" autocomplete="new-password" required[required && d["generate"] != true];,
            _ => input id=(id) name=(field) value=[default] pattern=[d["pattern"].as_str()] required[required];,
        }
    }
}
