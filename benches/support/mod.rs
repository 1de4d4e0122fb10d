//! What the benches share: removing everything a bench's berth instance made, the way the
//! tests' support does, so a bench leaves no container, volume or network behind.

use std::process::Command;
use std::time::Duration;

/// The ids `docker <what> -q --filter label=paas.instance=<instance>` lists.
fn listed(what: &[&str], instance: &str) -> Vec<String> {
    let filter = format!("label=paas.instance={instance}");
    let out = Command::new("docker")
        .args(what)
        .args(["-q", "--filter", &filter])
        .output();
    let text = out
        .map(|o| String::from_utf8_lossy(&o.stdout).to_string())
        .unwrap_or_default();
    text.split_whitespace().map(str::to_string).collect()
}

/// Removes `instance`'s containers, volumes and networks (a network is tried again for a few
/// seconds: Docker may still count a just-removed container's endpoint).
pub fn remove_instance(instance: &str) {
    let ids = listed(&["ps", "-a"], instance);
    if !ids.is_empty() {
        let _ = Command::new("docker")
            .args(["rm", "-f"])
            .args(&ids)
            .output();
    }
    let vols = listed(&["volume", "ls"], instance);
    if !vols.is_empty() {
        let _ = Command::new("docker")
            .args(["volume", "rm", "-f"])
            .args(&vols)
            .output();
    }
    for net in listed(&["network", "ls"], instance) {
        for _ in 0..10 {
            let out = Command::new("docker")
                .args(["network", "rm", &net])
                .output();
            if out.is_ok_and(|o| o.status.success()) {
                break;
            }
            std::thread::sleep(Duration::from_millis(300));
        }
    }
}
