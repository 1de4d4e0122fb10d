//! The check every fault test ends with: converged (one running container per manifest, none
//! for an absent one, no rollout leftover, nothing under state/ but manifests, each container
//! of its manifest's version: berth's own plan has no change left, and every `[env]` entry of
//! the file is in the container), and no berth process of the root left. `context` starts
//! every failure message (a seed, a test's name).

use std::collections::{BTreeMap, BTreeSet};

use super::{TestRoot, BERTH};

/// One container per manifest, each running and of the manifest's version, none for an
/// absent manifest, no rollout leftover; nothing under state/ but manifests.
pub async fn assert_converged(root: &TestRoot, context: &str) {
    let wanted = manifests(root, context);
    let mut seen = BTreeSet::new();
    for c in root.instance_containers().await {
        let name = c.names.unwrap_or_default().join(",");
        assert!(seen.insert(name.clone()), "{context}: duplicate {name}");
        assert!(
            wanted.contains_key(&name),
            "{context}: orphan or leftover container {name}"
        );
        assert_eq!(
            c.state.map(|s| s.to_string()).as_deref(),
            Some("running"),
            "{context}: {name}"
        );
    }
    let names: BTreeSet<String> = wanted.keys().cloned().collect();
    assert_eq!(seen, names, "{context}: containers vs manifests");
    for (user, app) in wanted.values() {
        assert_version(root, user, app, context).await;
    }
    let plan = root.berth(&["plan", "--exit-code"]).await;
    assert_eq!(plan.code, Some(0), "{context}: changes left\n{plan}");
}

/// Container name -> (user, app) for every manifest under state/apps.
fn manifests(root: &TestRoot, context: &str) -> BTreeMap<String, (String, String)> {
    let mut wanted = BTreeMap::new();
    for user in std::fs::read_dir(root.path().join("state/apps"))
        .unwrap()
        .flatten()
    {
        for f in std::fs::read_dir(user.path()).unwrap().flatten() {
            let name = f.file_name().into_string().unwrap();
            assert!(
                name.ends_with(".toml") && !name.starts_with('.'),
                "{context}: leftover {name}"
            );
            let user = user.file_name().into_string().unwrap();
            let app = name.trim_end_matches(".toml").to_string();
            wanted.insert(
                format!("/{}", root.container_name(&user, &app)),
                (user, app),
            );
        }
    }
    wanted
}

/// Every `[env]` entry of the manifest is in the container: it runs the file's version.
async fn assert_version(root: &TestRoot, user: &str, app: &str, context: &str) {
    let text = std::fs::read_to_string(root.manifest_path(user, app)).unwrap();
    let manifest: toml::Table = text.parse().unwrap();
    let c = root.container(user, app).await.expect("listed just now");
    let env = c.config.and_then(|c| c.env).unwrap_or_default();
    let table = manifest.get("env").and_then(|e| e.as_table());
    for (k, v) in table.into_iter().flatten() {
        let entry = format!("{k}={}", v.as_str().unwrap_or_default());
        assert!(
            env.contains(&entry),
            "{context}: {user}/{app} runs an older version: no {entry} in {env:?}"
        );
    }
}

/// No berth process of this root is left.
pub fn assert_no_berth_left(root: &TestRoot, context: &str) {
    let needle = root.path().to_string_lossy().into_owned();
    for p in std::fs::read_dir("/proc").unwrap().flatten() {
        let cmd = std::fs::read(p.path().join("cmdline")).unwrap_or_default();
        let cmd = String::from_utf8_lossy(&cmd).replace('\0', " ");
        assert!(
            !(cmd.contains(BERTH) && cmd.contains(&needle)),
            "{context}: left running: {cmd}"
        );
    }
}
