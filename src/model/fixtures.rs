//! Test fixtures for the pure layer: desired apps from manifest text, observed containers.

use std::path::Path;

use crate::model::config::Config;
use crate::model::desired::{DesiredApp, DesiredState, Entry};
use crate::model::manifest::Manifest;
use crate::model::names::AppKey;
use crate::model::observed::{ContainerState, Observed};
use crate::model::template::Template;

pub(crate) fn key(s: &str) -> AppKey {
    let (u, a) = s.split_once('/').unwrap();
    AppKey::new(u, a).unwrap()
}

/// The template every fixture app is on: `web-v1`, port 3000.
pub(crate) fn template() -> Template {
    Template {
        id: "web-v1".into(),
        dir: "/t/web-v1".into(),
        image: "img".into(),
        command: vec![],
        workdir: None,
        port: 3000,
        defaults: Default::default(),
        mounts: vec![],
        hooks: Default::default(),
        spec_files: Default::default(),
        health: None,
        env: Default::default(),
        values: Default::default(),
        volumes: vec![],
        install: None,
        install_version: None,
        build: None,
        backup: None,
    }
}

pub(crate) fn app(k: &str, manifest: &str) -> (AppKey, Entry) {
    let config = Config::load(None, Some(Path::new("/r"))).unwrap();
    let m = Manifest::parse(Path::new("m.toml"), manifest).unwrap();
    let app = DesiredApp::new(
        &key(k),
        &m,
        template(),
        &config,
        (manifest.to_string(), Default::default()),
        (&Default::default(), &Err("no key".into())),
    )
    .unwrap();
    (key(k), Entry::Valid(Box::new(app)))
}

pub(crate) fn desired(entries: Vec<(AppKey, Entry)>) -> DesiredState {
    let renames = entries
        .iter()
        .filter_map(|(k, e)| match e {
            Entry::Valid(app) => Some((app.renamed_from.clone()?, k.clone())),
            _ => None,
        })
        .collect();
    DesiredState {
        apps: entries.into_iter().collect(),
        renames,
        ..Default::default()
    }
}

pub(crate) fn hash_of(d: &DesiredState, k: &str) -> String {
    match &d.apps[&key(k)] {
        Entry::Valid(a) => a.hash.clone(),
        _ => panic!("not valid"),
    }
}

pub(crate) fn container(k: &str, id: &str, hash: &str, state: ContainerState) -> Observed {
    Observed {
        id: id.into(),
        name: format!("c-{id}"),
        key: key(k),
        hash: Some(hash.into()),
        spec: None,
        template: Some("web-v1".into()),
        state,
        created: 0,
        address: Some(format!("10.0.0.{}", id.len())),
        next: false,
        old: false,
        tasks: None,
    }
}

pub(crate) const RUN: &str = "template = \"web-v1\"";
pub(crate) const STOP: &str = "template = \"web-v1\"\nstate = \"stopped\"";

/// The container `d` wants for `k`: its hash and spec as labels carry them.
pub(crate) fn wanted_container(
    d: &DesiredState,
    k: &str,
    id: &str,
    state: ContainerState,
) -> Observed {
    let Entry::Valid(a) = &d.apps[&key(k)] else {
        panic!("{k} is not valid")
    };
    let mut c = container(k, id, &a.hash, state);
    c.spec = Some(a.spec.clone());
    c
}
