//! Tenancy policy (docs/guides/tenancy.md): what one user's manifest may ask for. `[policy]` in berth.toml
//! sets the rules for everyone and `[policy.users.<userid>]` overrides any of them for one
//! user. The rules are checked where desired state is computed (a file that breaks one is
//! frozen with an error naming the rule) and by the API before it writes (422 with the code).
//!
//! Each broken rule is a [`Violation`] with a stable code (`host_port_not_allowed`, ...), so
//! people, scripts and the portal can tell them apart.

use std::collections::BTreeMap;
use std::fmt;
use std::net::IpAddr;

use serde::{Deserialize, Deserializer};

use crate::model::names::{validate_userid, AppKey};
use crate::model::resources::{Cpus, Memory};
use crate::model::spec::ContainerSpec;

/// How user apps are networked.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "kebab-case")]
pub enum NetworkMode {
    /// Each user's apps share a Docker network of their own; users cannot reach each other.
    PerUser,
    /// Every app on Docker's default bridge (apps of different users can reach each other).
    Bridge,
}

/// An inclusive range of host ports, or none at all.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PortRange(pub Option<(u16, u16)>);

impl PortRange {
    fn parse(text: &str) -> Result<PortRange, String> {
        if text == "none" {
            return Ok(PortRange(None));
        }
        let bad = || format!("host_ports {text:?} must be \"LOW-HIGH\" (1-65535) or \"none\"");
        let (lo, hi) = text.split_once('-').ok_or_else(bad)?;
        let lo: u16 = lo.trim().parse().map_err(|_| bad())?;
        let hi: u16 = hi.trim().parse().map_err(|_| bad())?;
        if lo == 0 || lo > hi {
            return Err(bad());
        }
        Ok(PortRange(Some((lo, hi))))
    }

    fn contains(self, port: u16) -> bool {
        self.0.is_some_and(|(lo, hi)| (lo..=hi).contains(&port))
    }
}

impl fmt::Display for PortRange {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.0 {
            None => f.write_str("none"),
            Some((lo, hi)) => write!(f, "{lo}-{hi}"),
        }
    }
}

impl<'de> Deserialize<'de> for PortRange {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        PortRange::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// One port in `[policy] reserved_ports`: 1 to 65535, or an error naming the setting.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct ListedPort(pub u16);

impl<'de> Deserialize<'de> for ListedPort {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let n = i64::deserialize(d)?;
        match u16::try_from(n) {
            Ok(p) if p > 0 => Ok(ListedPort(p)),
            _ => Err(serde::de::Error::custom(format!(
                "reserved_ports: {n} is not a port (1-65535)"
            ))),
        }
    }
}

/// A host port a neighbour of berth's needs, and who (for the `port_reserved` message).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReservedPort {
    /// The port.
    pub port: u16,
    /// Who holds it, as the message names it: "berth's own API port (listen)".
    pub holder: String,
}

/// A domain pattern: a host name, optionally starting with `*.` (exactly one label), and
/// `{userid}` standing for the user's own id.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DomainPattern(String);

impl DomainPattern {
    fn parse(text: &str) -> Result<DomainPattern, String> {
        let body = text
            .strip_prefix("*.")
            .unwrap_or(text)
            .replace("{userid}", "u");
        let ok = !body.is_empty()
            && body.len() <= 253
            && body.split('.').all(|l| {
                !l.is_empty()
                    && !l.starts_with('-')
                    && !l.ends_with('-')
                    && l.bytes()
                        .all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'-')
            });
        if !ok {
            return Err(format!(
                "domain pattern {text:?} must be a lower-case host name, optionally starting with \"*.\" and using {{userid}}"
            ));
        }
        Ok(DomainPattern(text.to_string()))
    }

    /// Whether `user` may claim `domain` under this pattern.
    pub fn allows(&self, user: &str, domain: &str) -> bool {
        let pattern = self.0.replace("{userid}", user);
        match pattern.strip_prefix("*.") {
            Some(suffix) => domain
                .strip_suffix(suffix)
                .and_then(|head| head.strip_suffix('.'))
                .is_some_and(|label| !label.is_empty() && !label.contains('.')),
            None => domain == pattern,
        }
    }
}

impl<'de> Deserialize<'de> for DomainPattern {
    fn deserialize<D: Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let text = String::deserialize(d)?;
        DomainPattern::parse(&text).map_err(serde::de::Error::custom)
    }
}

/// The rules as written in one `[policy]` or `[policy.users.<userid>]` table: each may be
/// left out (a user's table falls back to `[policy]`, which falls back to the defaults).
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RulesFile {
    host_ports: Option<PortRange>,
    host_ips: Option<Vec<IpAddr>>,
    max_memory: Option<Memory>,
    max_cpus: Option<Cpus>,
    max_memory_per_user: Option<Memory>,
    domains: Option<Vec<DomainPattern>>,
    git_hosts: Option<Vec<DomainPattern>>,
    network: Option<NetworkMode>,
    api_writes_per_minute: Option<u32>,
    max_client_keys_per_app: Option<u32>,
    /// Only in `[policy]`: host ports no user app may publish on (the host's own services).
    reserved_ports: Option<Vec<ListedPort>>,
    /// Only in `[policy]`: the per-user tables.
    #[serde(default)]
    users: BTreeMap<String, RulesFile>,
}

/// `[policy]` as written: the rules for everyone, and `users.<userid>` tables.
pub type PolicyFile = RulesFile;

/// The rules for one user, every one decided.
#[derive(Debug, Clone, PartialEq)]
pub struct Rules {
    /// Host ports user apps may publish on.
    pub host_ports: PortRange,
    /// The only addresses they may publish on.
    pub host_ips: Vec<IpAddr>,
    /// Memory per app, bytes.
    pub max_memory: u64,
    /// CPUs per app, nano-CPUs.
    pub max_nano_cpus: i64,
    /// Memory summed over the user's apps, bytes.
    pub max_memory_per_user: u64,
    /// Domain patterns the user may claim.
    pub domains: Vec<DomainPattern>,
    /// Hosts the user's `[build] git` repositories may be fetched from; `None`: any host but
    /// loopback, link-local and the server's own addresses (which only a pattern here allows).
    pub git_hosts: Option<Vec<DomainPattern>>,
    /// How the user's apps are networked.
    pub network: NetworkMode,
    /// Mutating API calls per minute (token bucket); 0 = unlimited.
    pub api_writes_per_minute: u32,
    /// Client keys one app may have.
    pub max_client_keys_per_app: u32,
}

impl Default for Rules {
    fn default() -> Self {
        Rules {
            host_ports: PortRange(Some((1024, 65535))),
            host_ips: vec![IpAddr::from([127, 0, 0, 1])],
            max_memory: 1 << 30,
            max_nano_cpus: 1_000_000_000,
            max_memory_per_user: 2 << 30,
            domains: Vec::new(),
            git_hosts: None,
            network: NetworkMode::PerUser,
            api_writes_per_minute: 120,
            max_client_keys_per_app: 20,
        }
    }
}

impl Rules {
    /// These rules with every field `file` sets replaced.
    fn apply(&self, file: &RulesFile) -> Rules {
        let r = self.clone();
        Rules {
            host_ports: file.host_ports.unwrap_or(r.host_ports),
            host_ips: file.host_ips.clone().unwrap_or(r.host_ips),
            max_memory: file.max_memory.map_or(r.max_memory, |m| m.0),
            max_nano_cpus: file.max_cpus.map_or(r.max_nano_cpus, |c| c.0),
            max_memory_per_user: file
                .max_memory_per_user
                .map_or(r.max_memory_per_user, |m| m.0),
            domains: file.domains.clone().unwrap_or(r.domains),
            git_hosts: file.git_hosts.clone().or(r.git_hosts),
            network: file.network.unwrap_or(r.network),
            api_writes_per_minute: file
                .api_writes_per_minute
                .unwrap_or(r.api_writes_per_minute),
            max_client_keys_per_app: file
                .max_client_keys_per_app
                .unwrap_or(r.max_client_keys_per_app),
        }
    }
}

/// What `[policy] git_hosts` says of a repository's host.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum GitHost {
    /// A pattern names it: fetched whatever its addresses are (loopback included).
    Listed,
    /// No list is set: fetched unless it resolves to loopback, link-local or this server.
    Open,
    /// A list is set and names it not.
    Refused,
}

impl Rules {
    /// Whether `user` may fetch a `[build] git` repository from `host`.
    pub fn git_host(&self, user: &str, host: &str) -> GitHost {
        match &self.git_hosts {
            None => GitHost::Open,
            Some(list) if list.iter().any(|p| p.allows(user, host)) => GitHost::Listed,
            Some(_) => GitHost::Refused,
        }
    }
}

/// The resolved policy: rules for everyone and per-user overrides.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Policy {
    base: Rules,
    users: BTreeMap<String, Rules>,
    /// `reserved_ports`, as listed.
    reserved: Vec<u16>,
}

impl Policy {
    /// Resolves `[policy]`; a user table with a bad userid is an error.
    pub fn resolve(file: &PolicyFile) -> Result<Policy, String> {
        let base = Rules::default().apply(file);
        let mut users = BTreeMap::new();
        for (user, rules) in &file.users {
            validate_userid(user).map_err(|e| format!("[policy.users.{user}]: {e}"))?;
            if !rules.users.is_empty() {
                return Err(format!(
                    "[policy.users.{user}] cannot have users of its own"
                ));
            }
            // A port is reserved for the host, not for a user: one list for everyone.
            if rules.reserved_ports.is_some() {
                return Err(format!(
                    "[policy.users.{user}] reserved_ports: only [policy] may reserve ports (they are the host's, not one user's)"
                ));
            }
            users.insert(user.clone(), base.apply(rules));
        }
        let reserved = file.reserved_ports.iter().flatten().map(|p| p.0).collect();
        Ok(Policy {
            base,
            users,
            reserved,
        })
    }

    /// The ports the operator listed in `reserved_ports`.
    pub fn reserved_ports(&self) -> &[u16] {
        &self.reserved
    }

    /// The rules `user` is held to.
    pub fn rules(&self, user: &str) -> &Rules {
        self.users.get(user).unwrap_or(&self.base)
    }
}

/// A broken rule: a stable code and a message naming the value and the limit.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Violation {
    /// `host_port_not_allowed`, `host_ip_not_allowed`, `port_reserved`, `memory_over_limit`,
    /// `cpus_over_limit`, `user_memory_over_limit`, `domain_not_allowed`, `port_taken`,
    /// `domain_conflict`, `swarm_port_unconfined`.
    pub code: &'static str,
    /// What is wrong and which setting allows it.
    pub message: String,
}

impl fmt::Display for Violation {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "policy {}: {}", self.code, self.message)
    }
}

fn violation(code: &'static str, message: String) -> Violation {
    Violation { code, message }
}

/// Where the runtime publishes an app's ports (docs/guides/swarm.md), which decides what a
/// manifest may ask for beyond its user's rules.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Publishing {
    /// One engine: a host port on the address the manifest names; a domain app publishes none.
    Confined,
    /// Swarm: a published port listens on every address of each node a task runs on (a
    /// service has no host address). `domain_ports` is berth.toml's
    /// `swarm_publish_domain_ports`: the operator's consent to a domain app's engine-picked
    /// port being open there too.
    EveryAddress {
        /// Domain apps may publish their port on every address.
        domain_ports: bool,
    },
}

/// Checks one app's spec against its user's rules, the ports berth and its neighbours need
/// (`Config::reserved_ports`) and what the runtime can confine a port to. The first broken
/// rule is reported.
pub fn check_app(
    key: &AppKey,
    spec: &ContainerSpec,
    rules: &Rules,
    reserved: &[ReservedPort],
    publishing: Publishing,
) -> Result<(), Violation> {
    if let Some(port) = spec.host_port {
        check_host_port(key, port, &spec.host_ip, rules, reserved)?;
    }
    check_limits(key, spec, rules)?;
    check_confinable(spec, publishing)
}

fn check_host_port(
    key: &AppKey,
    port: u16,
    host_ip: &str,
    rules: &Rules,
    reserved: &[ReservedPort],
) -> Result<(), Violation> {
    if let Some(r) = reserved.iter().find(|r| r.port == port) {
        return Err(violation(
            "port_reserved",
            format!("host port {port} is reserved: {}", r.holder),
        ));
    }
    if !rules.host_ports.contains(port) {
        let msg = format!(
            "host port {port} is outside host_ports = \"{}\" for user {}",
            rules.host_ports, key.userid
        );
        return Err(violation("host_port_not_allowed", msg));
    }
    let ip_ok = host_ip
        .parse::<IpAddr>()
        .is_ok_and(|ip| rules.host_ips.contains(&ip));
    if !ip_ok {
        let allowed: Vec<String> = rules.host_ips.iter().map(|i| i.to_string()).collect();
        let msg = format!("host_ip {host_ip} is not one of host_ips = {allowed:?}");
        return Err(violation("host_ip_not_allowed", msg));
    }
    Ok(())
}

/// `swarm_port_unconfined`: in swarm mode a published port is open on every address of its
/// node, so a host port must say so (`host_ip = "0.0.0.0"`, which `host_ips` must allow), and
/// a domain app (whose port the engine picks) runs only with the operator's consent.
fn check_confinable(spec: &ContainerSpec, publishing: Publishing) -> Result<(), Violation> {
    let Publishing::EveryAddress { domain_ports } = publishing else {
        return Ok(());
    };
    let every = spec
        .host_ip
        .parse::<IpAddr>()
        .is_ok_and(|ip| ip.is_unspecified());
    if let (Some(port), false) = (spec.host_port, every) {
        let msg = format!(
            "in swarm mode host port {port} would listen on every address of every node its tasks run on, not only on host_ip {}: set host_ip = \"0.0.0.0\" (and allow it in host_ips) to publish it there",
            spec.host_ip
        );
        return Err(violation("swarm_port_unconfined", msg));
    }
    if let (None, Some(domain), false) = (spec.host_port, &spec.domain, domain_ports) {
        let msg = format!(
            "in swarm mode domain {domain} is reached through a port the engine picks, open on every address of every node its tasks run on, past Caddy; berth.toml's swarm_publish_domain_ports = true allows it"
        );
        return Err(violation("swarm_port_unconfined", msg));
    }
    Ok(())
}

/// Memory, CPUs and the domain against the user's rules.
fn check_limits(key: &AppKey, spec: &ContainerSpec, rules: &Rules) -> Result<(), Violation> {
    if spec.memory > rules.max_memory {
        let msg = format!(
            "memory {} is over max_memory = {}",
            Memory(spec.memory),
            Memory(rules.max_memory)
        );
        return Err(violation("memory_over_limit", msg));
    }
    if spec.nano_cpus > rules.max_nano_cpus {
        let msg = format!(
            "cpus {} is over max_cpus = {}",
            Cpus(spec.nano_cpus),
            Cpus(rules.max_nano_cpus)
        );
        return Err(violation("cpus_over_limit", msg));
    }
    if let Some(domain) = &spec.domain {
        if !rules.domains.iter().any(|p| p.allows(&key.userid, domain)) {
            let msg = format!(
                "domain {domain} matches none of user {}'s domain patterns (policy domains)",
                key.userid
            );
            return Err(violation("domain_not_allowed", msg));
        }
    }
    Ok(())
}

#[cfg(test)]
#[path = "policy_tests.rs"]
mod tests;
