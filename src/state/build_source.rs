//! The source of a `[build] git` app (docs/guides/builds.md): its repository fetched into
//! `sources/<user>/<app>/repo.git` beside the database, the ref resolved to a commit, and
//! that commit's files unpacked into `tree-<commit>/`, which the build reads. What was last
//! fetched is kept in `resolved` (url, ref, commit), and the last failure in `error`, so a
//! scan, pure of network, says which commit an app is built from, or why none is yet.
//!
//! A fetch runs only after the host passed `[policy] git_hosts` and, unless a pattern
//! there names it, resolved to no loopback, link-local or own address of this server. git
//! is held to the remote transports (`protocol.allow`), asks no password, and fetches one
//! commit (`--depth=1`) with no tags and no submodules.

use std::net::IpAddr;
use std::path::Path;

use serde::{Deserialize, Serialize};

use crate::model::config::Config;
use crate::model::git_source::GitSource;
use crate::model::names::AppKey;
use crate::model::policy::GitHost;
use crate::state::git::run_git_isolated;

/// What was last fetched for an app.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Resolved {
    pub url: String,
    pub reference: String,
    pub commit: String,
}

/// What a scan hands the desired state for `key`'s `source`: `git:<commit>` when the ref
/// fetched last is this one and its tree is unpacked; else why there is no commit yet.
pub fn resolved(config: &Config, key: &AppKey, source: &GitSource) -> Result<String, String> {
    let dir = config.source_dir(key);
    let same = |r: &Resolved| r.url == source.url && r.reference == source.reference;
    if let Some(r) = read_resolved(&dir).filter(same) {
        if config.source_tree(key, &r.commit).is_dir() {
            return Ok(format!("git:{}", r.commit));
        }
    }
    let at = format!("{} at {}", source.url, source.reference);
    match read_error(&dir).filter(|e| same(&e.fetch)) {
        Some(e) => Err(format!("fetching {at} failed: {}", e.error)),
        None => Err(format!("{at} is not fetched yet")),
    }
}

/// The commit last fetched for `key`, whatever the ref.
pub fn read_resolved(dir: &Path) -> Option<Resolved> {
    serde_json::from_slice(&std::fs::read(dir.join("resolved")).ok()?).ok()
}

/// The last failed fetch: which one, and why.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct FetchError {
    /// The fetch's URL and ref (its commit left empty).
    pub fetch: Resolved,
    pub error: String,
}

pub fn read_error(dir: &Path) -> Option<FetchError> {
    serde_json::from_slice(&std::fs::read(dir.join("error")).ok()?).ok()
}

/// Fetches `source` for `key` and unpacks its commit; answers the commit. A failure is kept
/// in `error` (what the app's status shows) and changes nothing else.
pub async fn fetch(config: &Config, key: &AppKey, source: &GitSource) -> Result<String, String> {
    let dir = config.source_dir(key);
    let fetched = fetch_into(config, key, source, &dir).await;
    match &fetched {
        Ok(_) => {
            let _ = std::fs::remove_file(dir.join("error"));
        }
        Err(why) => {
            let fetch = Resolved {
                url: source.url.clone(),
                reference: source.reference.clone(),
                commit: String::new(),
            };
            let error = serde_json::to_vec(&FetchError {
                fetch,
                error: why.clone(),
            });
            if private_dirs(&dir).is_ok() {
                let _ = write_atomic(&dir.join("error"), &error.expect("plain strings"));
            }
        }
    }
    fetched
}

async fn fetch_into(
    config: &Config,
    key: &AppKey,
    source: &GitSource,
    dir: &Path,
) -> Result<String, String> {
    let rules = config.policy.rules(&key.userid);
    match rules.git_host(&key.userid, &source.host) {
        GitHost::Refused => {
            return Err(format!(
                "host {} matches none of [policy] git_hosts",
                source.host
            ))
        }
        GitHost::Open => check_addresses(&source.host).await?,
        GitHost::Listed => {}
    }
    private_dirs(&dir.join("home")).map_err(|e| format!("{}: {e}", dir.display()))?;
    let repo = dir.join("repo.git");
    let home = dir.join("home");
    if !repo.join("HEAD").is_file() {
        run_git_isolated(Some(dir), &["init", "--bare", "-q", "repo.git"], &home)
            .await
            .map_err(|e| e.to_string())?;
    }
    let mut fetch: Vec<&str> = SAFE_CONFIG.to_vec();
    fetch.extend([
        "fetch",
        "--no-tags",
        "--no-recurse-submodules",
        "--depth=1",
        "--force",
        &source.url,
        &source.reference,
    ]);
    run_git_isolated(Some(&repo), &fetch, &home)
        .await
        .map_err(|e| e.to_string())?;
    let rev = ["rev-parse", "FETCH_HEAD^{commit}"];
    let (_, commit) = run_git_isolated(Some(&repo), &rev, &home)
        .await
        .map_err(|e| e.to_string())?;
    let tree = config.source_tree(key, &commit);
    if !tree.is_dir() {
        crate::state::source_tree::unpack(repo.clone(), commit.clone(), tree, home).await?;
    }
    let before = read_resolved(dir).map(|r| r.commit);
    let resolved = Resolved {
        url: source.url.clone(),
        reference: source.reference.clone(),
        commit: commit.clone(),
    };
    let text = serde_json::to_vec(&resolved).expect("plain strings");
    write_atomic(&dir.join("resolved"), &text).map_err(|e| format!("resolved: {e}"))?;
    // The commit before stays: a build of it may be reading it now.
    crate::state::source_tree::remove_others(dir, &[Some(&commit), before.as_deref()]);
    Ok(commit)
}

/// git settings for every network call: only remote transports (no `file`, no `ext`), no
/// hooks, no credential helper, no redirect.
const SAFE_CONFIG: [&str; 14] = [
    "-c",
    "protocol.allow=never",
    "-c",
    "protocol.https.allow=always",
    "-c",
    "protocol.ssh.allow=always",
    "-c",
    "protocol.git.allow=always",
    "-c",
    "core.hooksPath=/dev/null",
    "-c",
    "credential.helper=",
    // A redirect could lead past the address check to loopback or a metadata service.
    "-c",
    "http.followRedirects=false",
];

/// Refuses a host that resolves to loopback, link-local, unspecified or one of this
/// server's own addresses: a user's URL must not reach what only the server can.
async fn check_addresses(host: &str) -> Result<(), String> {
    let addrs = tokio::net::lookup_host((host, 0))
        .await
        .map_err(|e| format!("host {host} does not resolve: {e}"))?;
    let own = own_addresses();
    for addr in addrs {
        let ip = canonical(addr.ip());
        if let Some(kind) = forbidden(ip, &own) {
            return Err(format!(
                "host {host} resolves to {ip}, {kind}: only a [policy] git_hosts pattern that names it allows it"
            ));
        }
    }
    Ok(())
}

fn canonical(ip: IpAddr) -> IpAddr {
    match ip {
        IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(ip, IpAddr::V4),
        v4 => v4,
    }
}

/// Why a user's repository may not be fetched from `ip`, if it may not.
fn forbidden(ip: IpAddr, own: &[IpAddr]) -> Option<&'static str> {
    let link_local = match ip {
        IpAddr::V4(v4) => v4.is_link_local(),
        IpAddr::V6(v6) => v6.segments()[0] & 0xffc0 == 0xfe80,
    };
    if ip.is_loopback() {
        Some("a loopback address")
    } else if link_local {
        Some("a link-local address")
    } else if ip.is_unspecified() {
        Some("the unspecified address")
    } else if own.contains(&ip) {
        Some("an address of this server")
    } else {
        None
    }
}

/// Every address on this server's interfaces.
fn own_addresses() -> Vec<IpAddr> {
    let mut out = Vec::new();
    let mut list: *mut libc::ifaddrs = std::ptr::null_mut();
    // SAFETY: getifaddrs fills `list`, walked read-only and freed once below.
    unsafe {
        if libc::getifaddrs(&mut list) != 0 {
            return out;
        }
        let mut cur = list;
        while !cur.is_null() {
            let addr = (*cur).ifa_addr;
            if !addr.is_null() {
                match i32::from((*addr).sa_family) {
                    libc::AF_INET => {
                        let a = &*(addr as *const libc::sockaddr_in);
                        out.push(IpAddr::from(u32::from_be(a.sin_addr.s_addr).to_be_bytes()));
                    }
                    libc::AF_INET6 => {
                        let a = &*(addr as *const libc::sockaddr_in6);
                        out.push(IpAddr::from(a.sin6_addr.s6_addr));
                    }
                    _ => {}
                }
            }
            cur = (*cur).ifa_next;
        }
        libc::freeifaddrs(list);
    }
    out
}

pub(in crate::state) fn private_dirs(dir: &Path) -> std::io::Result<()> {
    use std::os::unix::fs::DirBuilderExt;
    std::fs::DirBuilder::new()
        .recursive(true)
        .mode(0o700)
        .create(dir)
}

fn write_atomic(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let tmp = path.with_extension("tmp");
    std::fs::write(&tmp, bytes)?;
    std::fs::rename(&tmp, path)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn loopback_link_local_and_own_addresses_are_forbidden() {
        let own = [IpAddr::from([10, 1, 2, 3])];
        let kind = |ip: &str| forbidden(canonical(ip.parse().unwrap()), &own);
        assert_eq!(kind("127.0.0.1"), Some("a loopback address"));
        assert_eq!(kind("::1"), Some("a loopback address"));
        assert_eq!(kind("::ffff:127.0.0.2"), Some("a loopback address"));
        assert_eq!(kind("169.254.169.254"), Some("a link-local address"));
        assert_eq!(kind("fe80::1"), Some("a link-local address"));
        assert_eq!(kind("0.0.0.0"), Some("the unspecified address"));
        assert_eq!(kind("10.1.2.3"), Some("an address of this server"));
        assert_eq!(kind("93.184.216.34"), None);
    }

    #[test]
    fn this_servers_loopback_is_among_its_own_addresses() {
        assert!(own_addresses().contains(&IpAddr::from([127, 0, 0, 1])));
    }
}
