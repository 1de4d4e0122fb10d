//! The check every fault test ends with: converged (one running container per manifest, none
//! for an absent one, no rollout leftover, nothing under state/ but manifests), and no berth
//! process of the root left. `context` starts every failure message (a seed, a test's name).

use std::collections::BTreeSet;

use super::{TestRoot, BERTH};

/// One container per manifest, each running, none for an absent manifest, no rollout
/// leftover; nothing under state/ but manifests.
pub async fn assert_converged(root: &TestRoot, context: &str) {
    let mut wanted = BTreeSet::new();
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
            wanted.insert(format!(
                "/{}",
                root.container_name(&user, name.trim_end_matches(".toml"))
            ));
        }
    }
    let mut seen = BTreeSet::new();
    for c in root.instance_containers().await {
        let name = c.names.unwrap_or_default().join(",");
        assert!(seen.insert(name.clone()), "{context}: duplicate {name}");
        assert!(
            wanted.contains(&name),
            "{context}: orphan or leftover container {name}"
        );
        assert_eq!(
            c.state.map(|s| s.to_string()).as_deref(),
            Some("running"),
            "{context}: {name}"
        );
    }
    assert_eq!(seen, wanted, "{context}: containers vs manifests");
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
