//! berth's own isolation between users' bridge networks, in iptables' `DOCKER-USER` chain.
//!
//! Docker keeps its bridge networks apart with its `DOCKER-ISOLATION-*` chains, and rewrites
//! them (re-inserting its `FORWARD` jumps) whenever any network is made: a packet from one
//! user's container can pass in that moment. `DOCKER-USER` is the one chain Docker never
//! rewrites, and `FORWARD` enters it first. So berth keeps, per instance, a chain of its own
//! (`BERTH-<instance>`, [`chain_name`]) jumped to from `DOCKER-USER` for packets bound for a
//! user-defined bridge (`-o br-+`), holding one rule per berth user network:
//! `-i br-X ! -o br-X -j DROP`. One rule per network (not one per pair: a thousand users make
//! a thousand rules, not a million), and it matches only packets that leave one bridge for
//! another, so traffic inside a network, to the host or outside, published ports and their
//! replies never match it.
//!
//! Level-triggered: [`plan_steps`] compares the wanted set of bridges with what
//! `iptables -S` shows and answers the commands that make them agree (none when they do);
//! an empty set removes the jump and the chain. Only this instance's chain and its jump are
//! ever touched.

use std::collections::BTreeSet;

use tokio::sync::{Mutex, MutexGuard};

/// The chain Docker leaves to the host's operator, entered first from `FORWARD`.
pub const DOCKER_USER: &str = "DOCKER-USER";

/// iptables refuses chain names over 28 characters.
const MAX_CHAIN: usize = 28;

/// Why the isolation rules could not be read or written.
#[derive(Debug, thiserror::Error)]
pub enum IsolationError {
    /// The `iptables` program could not be run.
    #[error("cannot run iptables, which keeps users' networks apart (install it, or set network = \"bridge\" in [policy])")]
    Spawn(#[source] std::io::Error),
    /// iptables ran and refused.
    #[error("`iptables {args}` failed ({status}): {stderr}")]
    Failed {
        /// The arguments, as one line.
        args: String,
        /// Its exit status.
        status: std::process::ExitStatus,
        /// What it said.
        stderr: String,
    },
    /// Docker does not manage iptables here (`"iptables": false`), so there is no
    /// `DOCKER-USER` chain to hang berth's rules from.
    #[error("iptables has no DOCKER-USER chain (is dockerd running with iptables disabled?); berth cannot keep users' networks apart")]
    NoDockerUser,
    /// The engine could not list berth's networks.
    #[error(transparent)]
    Engine(#[from] crate::runtime::engine::EngineError),
}

/// The name of `instance`'s chain: `BERTH-<instance>`, or, past iptables' limit, the
/// instance's first 13 characters and 8 hex digits of its hash (still one per instance).
pub fn chain_name(instance: &str) -> String {
    let full = format!("BERTH-{instance}");
    if full.len() <= MAX_CHAIN {
        return full;
    }
    let hash = blake3::hash(instance.as_bytes()).to_hex();
    let head = instance.get(..13).unwrap_or(instance);
    format!("BERTH-{head}-{}", &hash[..8])
}

/// The bridge interface Docker makes for the network `id` (berth sets no name of its own).
pub fn bridge_name(id: &str) -> String {
    format!("br-{}", id.get(..12).unwrap_or(id))
}

/// The rule that keeps `bridge`'s containers off every other bridge, as `iptables -S` shows
/// it after `-A <chain>`.
fn drop_rule(bridge: &str) -> String {
    format!("-i {bridge} ! -o {bridge} -j DROP")
}

/// The jump from `DOCKER-USER` into `chain`, as `iptables -S` shows it after `-A DOCKER-USER`.
fn jump(chain: &str) -> String {
    format!("-o br-+ -j {chain}")
}

/// The iptables commands (argument lists) that turn `listing` (`iptables -S` of the filter
/// table) into `chain` holding exactly one drop rule per bridge in `wanted`, jumped to once
/// from `DOCKER-USER`; or, with `wanted` empty, into neither the chain nor its jump.
pub fn plan_steps(
    listing: &str,
    chain: &str,
    wanted: &BTreeSet<String>,
) -> Result<Vec<Vec<String>>, IsolationError> {
    let lines: Vec<&str> = listing.lines().map(str::trim).collect();
    let has_chain = lines.contains(&format!("-N {chain}").as_str());
    let jump_line = format!("-A {DOCKER_USER} {}", jump(chain));
    let jumps = lines.iter().filter(|l| **l == jump_line).count();
    let prefix = format!("-A {chain} ");
    let current: BTreeSet<&str> = lines
        .iter()
        .filter_map(|l| l.strip_prefix(&prefix))
        .collect();
    let args = |head: &[&str], rule: &str| -> Vec<String> {
        let tail = rule.split_whitespace();
        head.iter().copied().chain(tail).map(String::from).collect()
    };
    let unjump = (0..jumps).map(|_| args(&["-D", DOCKER_USER], &jump(chain)));
    if wanted.is_empty() {
        let mut steps: Vec<Vec<String>> = unjump.collect();
        if has_chain {
            steps.push(args(&["-F", chain], ""));
            steps.push(args(&["-X", chain], ""));
        }
        return Ok(steps);
    }
    if !lines.contains(&format!("-N {DOCKER_USER}").as_str()) {
        return Err(IsolationError::NoDockerUser);
    }
    let mut steps = Vec::new();
    if !has_chain {
        steps.push(args(&["-N", chain], ""));
    }
    let wanted: BTreeSet<String> = wanted.iter().map(|b| drop_rule(b)).collect();
    for stale in current.iter().filter(|r| !wanted.contains(**r)) {
        steps.push(args(&["-D", chain], stale));
    }
    for missing in wanted.iter().filter(|r| !current.contains(r.as_str())) {
        steps.push(args(&["-A", chain], missing));
    }
    match jumps {
        0 => steps.push(args(&["-I", DOCKER_USER, "1"], &jump(chain))),
        n => steps.extend(unjump.take(n - 1)),
    }
    Ok(steps)
}

/// This instance's rules, applied one whole set at a time (the lock keeps two callers from
/// interleaving their reads and writes), with the set last applied remembered.
pub struct Isolation {
    /// `BERTH-<instance>`.
    chain: String,
    /// The bridges the rules were last made to cover; `None` until the first apply.
    applied: Mutex<Option<BTreeSet<String>>>,
}

/// The set last applied, held so nothing else applies meanwhile.
pub type Held<'a> = MutexGuard<'a, Option<BTreeSet<String>>>;

impl Isolation {
    /// The isolation of `instance`'s networks (nothing is read or written yet).
    pub fn new(instance: &str) -> Isolation {
        Isolation {
            chain: chain_name(instance),
            applied: Mutex::new(None),
        }
    }

    /// Holds the rules: what was last applied, and the right to apply.
    pub async fn hold(&self) -> Held<'_> {
        self.applied.lock().await
    }

    /// Makes the rules cover exactly `wanted` (bridge names), changing only what differs.
    /// An empty set asks iptables nothing once an apply left no rules, and a missing iptables
    /// is no error for it, so a host without user networks needs no iptables.
    pub async fn apply(
        &self,
        held: &mut Held<'_>,
        wanted: BTreeSet<String>,
    ) -> Result<(), IsolationError> {
        if wanted.is_empty() && held.as_ref().is_some_and(BTreeSet::is_empty) {
            return Ok(());
        }
        let listing = match iptables(&["-S".to_string()]).await {
            Err(IsolationError::Spawn(_)) if wanted.is_empty() => String::new(),
            listed => listed?,
        };
        let steps = plan_steps(&listing, &self.chain, &wanted)?;
        for step in &steps {
            iptables(step).await?;
        }
        if !steps.is_empty() {
            tracing::info!(chain = %self.chain, networks = wanted.len(), changes = steps.len(), "user network isolation rules brought in line");
        }
        **held = Some(wanted);
        Ok(())
    }
}

/// `iptables` from PATH, else where Debian puts it: `/usr/sbin` and `/sbin` are often missing
/// from the PATH of a process that is not a login shell of root's.
fn iptables_binary() -> &'static std::path::Path {
    static FOUND: std::sync::OnceLock<std::path::PathBuf> = std::sync::OnceLock::new();
    FOUND.get_or_init(|| {
        let on_path = std::env::var_os("PATH").and_then(|path| {
            std::env::split_paths(&path)
                .map(|dir| dir.join("iptables"))
                .find(|p| p.is_file())
        });
        on_path
            .or_else(|| {
                ["/usr/sbin/iptables", "/sbin/iptables"]
                    .map(std::path::PathBuf::from)
                    .into_iter()
                    .find(|p| p.is_file())
            })
            .unwrap_or_else(|| "iptables".into())
    })
}

/// Runs `iptables -w <args>` (waiting for the xtables lock) and answers what it printed.
async fn iptables(args: &[String]) -> Result<String, IsolationError> {
    let out = tokio::process::Command::new(iptables_binary())
        .arg("-w")
        .args(args)
        .kill_on_drop(true)
        .output()
        .await
        .map_err(IsolationError::Spawn)?;
    if !out.status.success() {
        return Err(IsolationError::Failed {
            args: args.join(" "),
            status: out.status,
            stderr: String::from_utf8_lossy(&out.stderr).trim().to_string(),
        });
    }
    Ok(String::from_utf8_lossy(&out.stdout).into_owned())
}

#[cfg(test)]
#[path = "isolation_tests.rs"]
mod tests;
