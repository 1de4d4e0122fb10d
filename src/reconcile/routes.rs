//! The Caddy configuration berth owns (docs/guides/deploys-and-rollback.md), rendered from one pass's desired and observed
//! state: one server (two with TLS: HTTPS plus an HTTP redirect) whose routes send each domain
//! to its app's container, a 503 page for a domain whose app is not running, and with
//! `tls = "internal"` or `"acme"` a TLS automation policy for exactly those domains. An app
//! with a forwarder of berth's (`runtime::forward`, given here as [`Via`]) is routed to it
//! instead of its container, so moving the app to a new container changes nothing here. Pure:
//! the same inputs give the same JSON, so a pass whose result equals what Caddy has writes
//! nothing.

use std::collections::BTreeMap;

use serde_json::{json, Value};

use crate::model::desired::{DesiredState, Entry};
use crate::model::manifest::RunState;
use crate::model::names::AppKey;
use crate::model::observed::{rank, Observed};
use crate::model::proxy::{ProxyConfig, TlsMode};
use crate::model::spec::ContainerSpec;

/// Everything berth puts into Caddy.
#[derive(Debug, Clone, PartialEq)]
pub struct Rendered {
    /// Servers under `apps.http.servers`, by name.
    pub servers: BTreeMap<String, Value>,
    /// The TLS automation policy (`@id` and value); none without TLS or without domains.
    pub tls_policy: Option<(String, Value)>,
}

/// Where one domain goes.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Target<'a> {
    /// `address:port` of the app's running container, or of each live task of its service.
    Upstream(Vec<String>),
    /// berth's forwarder for the app, which sends on to its container.
    Forwarder(&'a str),
    /// The app is not running: a short 503 page.
    Stopped,
}

/// The names of berth's objects in Caddy for `instance`: the HTTPS (or only) server, the HTTP
/// redirect server and the TLS policy's `@id`.
pub fn names(instance: &str) -> (String, String, String) {
    let base = format!("berth-{instance}");
    (base.clone(), format!("{base}-http"), format!("{base}-tls"))
}

/// Upstreams (`address:port`) a rollout in flight has switched its app to: they win over
/// what the observed containers (or services) say until the rollout is over.
pub type Pins = BTreeMap<AppKey, Vec<String>>;

/// The loopback address (`127.0.0.1:port`) of berth's forwarder for an app: its route dials
/// that, whatever container the forwarder sends to.
pub type Via = BTreeMap<AppKey, String>;

/// Each domain app that has somewhere to send its traffic, with where (`address:port` each):
/// what a forwarder of berth's is pointed at.
pub fn upstreams(
    desired: &DesiredState,
    observed: &[Observed],
    pins: &Pins,
) -> BTreeMap<AppKey, Vec<String>> {
    (targets(desired, observed, pins).into_values())
        .filter_map(|(key, target)| match target {
            Target::Upstream(dials) => Some((key, dials)),
            Target::Forwarder(_) | Target::Stopped => None,
        })
        .collect()
}

/// Renders berth's Caddy objects.
pub fn render(
    instance: &str,
    proxy: &ProxyConfig,
    desired: &DesiredState,
    observed: &[Observed],
    pins: &Pins,
    via: &Via,
) -> Rendered {
    let targets = targets(desired, observed, pins);
    let routes: Vec<Value> = (targets.iter())
        .map(|(domain, (key, t))| match (t, via.get(key)) {
            (Target::Upstream(_), Some(forwarder)) => route(domain, &Target::Forwarder(forwarder)),
            _ => route(domain, t),
        })
        .collect();
    let (main, redirect, tls_id) = names(instance);
    let mut servers = BTreeMap::new();
    if proxy.tls == TlsMode::Off {
        servers.insert(
            main,
            server(proxy.http_port, routes, json!({"disable": true}), false),
        );
        return Rendered {
            servers,
            tls_policy: None,
        };
    }
    servers.insert(
        main,
        server(
            proxy.https_port,
            routes,
            json!({"disable_redirects": true}),
            true,
        ),
    );
    servers.insert(
        redirect,
        server(
            proxy.http_port,
            vec![to_https(proxy.https_port)],
            json!({"disable": true}),
            false,
        ),
    );
    let domains: Vec<&String> = targets.keys().collect();
    let tls_policy = (!domains.is_empty()).then(|| {
        let issuer = match (proxy.tls, &proxy.acme_email) {
            (TlsMode::Internal, _) => json!({"module": "internal"}),
            (_, Some(email)) => json!({"module": "acme", "email": email}),
            _ => json!({"module": "acme"}),
        };
        let policy = json!({"@id": tls_id, "subjects": domains, "issuers": [issuer]});
        (tls_id, policy)
    });
    Rendered {
        servers,
        tls_policy,
    }
}

/// Each domain with where it goes: valid apps from their desired spec; held apps (frozen,
/// over quota, refused) from what their container carries, since it keeps running.
fn targets(
    desired: &DesiredState,
    observed: &[Observed],
    pins: &Pins,
) -> BTreeMap<String, (AppKey, Target<'static>)> {
    let mut out = BTreeMap::new();
    for (key, entry) in &desired.apps {
        let want = match entry {
            Entry::Valid(app) => Some(app.hash.as_str()),
            _ => None,
        };
        // The container the planner keeps (`rank`), so a route never points at one it is
        // about to remove.
        let mine = observed.iter().filter(|o| &o.key == key).collect();
        let running = rank(mine, want)
            .into_iter()
            .next()
            .filter(|o| o.is_running());
        let (spec, run) = match entry {
            Entry::Valid(app) => (Some(&app.spec), app.run),
            _ => (running.and_then(|o| o.spec.as_ref()), RunState::Running),
        };
        let Some(spec) = spec.filter(|s| s.domain.is_some()) else {
            continue;
        };
        let target = match pins.get(key) {
            Some(dial) => Target::Upstream(dial.clone()),
            None => upstream(spec, running, run).unwrap_or(Target::Stopped),
        };
        out.entry(spec.domain.clone().unwrap_or_default())
            .or_insert((key.clone(), target));
    }
    out
}

fn upstream(
    spec: &ContainerSpec,
    running: Option<&Observed>,
    run: RunState,
) -> Option<Target<'static>> {
    let running = running.filter(|_| run == RunState::Running)?;
    let dials = match (&running.tasks, &running.address) {
        (Some(tasks), _) => tasks.dials.clone(),
        (None, Some(address)) => vec![format!("{address}:{}", spec.port)],
        (None, None) => vec![],
    };
    (!dials.is_empty()).then_some(Target::Upstream(dials))
}

fn route(domain: &str, target: &Target) -> Value {
    let handle = match target {
        Target::Upstream(dials) => {
            // A dial that fails (the app's accept queue full for a moment, a container
            // replaced under a crash-restarted berth) is tried again for a few seconds
            // rather than answered 502 at once.
            let upstreams: Vec<Value> = dials.iter().map(|d| json!({"dial": d})).collect();
            let mut proxy = json!({
                "handler": "reverse_proxy",
                "upstreams": upstreams,
                "load_balancing": {"try_duration": "5s", "try_interval": "100ms"},
            });
            if dials.len() > 1 {
                // A task being replaced refuses for a moment: the retry goes to another.
                proxy["health_checks"] = json!({"passive": {"fail_duration": "2s"}});
            }
            proxy
        }
        Target::Forwarder(address) => json!({
            "handler": "reverse_proxy",
            "upstreams": [{"dial": address}],
            // One connection per request: the forwarder picks the container when a
            // connection opens, so a kept-alive one would carry requests sent after a switch
            // to the old container.
            "transport": {"protocol": "http", "keep_alive": {"enabled": false}},
            "load_balancing": {"try_duration": "5s", "try_interval": "100ms"},
        }),
        Target::Stopped => json!({
            "handler": "static_response",
            "status_code": 503,
            "headers": {"Content-Type": ["text/plain; charset=utf-8"]},
            // Public: the page names no app, only that nothing serves this name right now.
            "body": "this site is not running\n",
        }),
    };
    json!({"match": [{"host": [domain]}], "handle": [handle], "terminal": true})
}

fn server(port: u16, routes: Vec<Value>, automatic_https: Value, tls: bool) -> Value {
    let mut s = json!({"listen": [format!(":{port}")], "routes": routes, "automatic_https": automatic_https});
    if tls {
        s["tls_connection_policies"] = json!([{}]);
    }
    s
}

/// The HTTP server's one route: everything to the same host over HTTPS.
fn to_https(https_port: u16) -> Value {
    let port = if https_port == 443 {
        String::new()
    } else {
        format!(":{https_port}")
    };
    json!({"handle": [{
        "handler": "static_response",
        "status_code": 308,
        "headers": {"Location": [format!("https://{{http.request.host}}{port}{{http.request.uri}}")]},
    }]})
}

#[cfg(test)]
#[path = "routes_tests.rs"]
mod tests;
