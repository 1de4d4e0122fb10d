//! Where a built app's source comes from when it is not the workspace: `[build] git` and
//! `ref` (docs/guides/builds.md). Only remote transports are accepted (`https://`, `ssh://`,
//! `git://`, `user@host:path`): a local path or `file://` would read the server's own files,
//! another user's included, and git's `ext::` transport runs a command. Which hosts a user
//! may fetch from is `[policy] git_hosts`; the address checks need DNS and are the fetcher's
//! (`state::build_source`).

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::model::manifest::Manifest;
use crate::model::names::AppKey;
use crate::model::source_error::SourceError;

/// The longest URL or ref accepted.
const MAX_LEN: usize = 1024;

/// A repository and the ref to build, as the manifest gives them.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize, schemars::JsonSchema)]
pub struct GitSource {
    /// The URL as written.
    pub url: String,
    /// The host the URL names (lower case, no port, no user).
    pub host: String,
    /// A branch, tag or commit; `HEAD` (the remote's default branch) when none is given.
    pub reference: String,
}

impl GitSource {
    /// Reads `url` and `reference`, refusing what is not a remote repository or a plain ref.
    pub fn parse(url: &str, reference: Option<&str>) -> Result<GitSource, String> {
        let host = remote_host(url)?;
        let reference = reference.unwrap_or("HEAD");
        check_ref(reference)?;
        Ok(GitSource {
            url: url.to_string(),
            host,
            reference: reference.to_string(),
        })
    }
}

/// The host of a remote URL, or why the URL is refused.
pub fn remote_host(url: &str) -> Result<String, String> {
    let refuse = |why: &str| Err(format!("git URL {url:?}: {why}"));
    if url.is_empty() || url.len() > MAX_LEN {
        return refuse("must be 1 to 1024 bytes");
    }
    if url.chars().any(|c| c.is_whitespace() || c.is_control()) {
        return refuse("holds a space or a control character");
    }
    // `?`, `#`, `%` and `\` end or re-encode the host for curl where this parser would read
    // on: `https://127.0.0.1#@example.com/` connects to 127.0.0.1.
    if let Some(c) = url
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || "-._~:/@+[]".contains(*c)))
    {
        return refuse(&format!(
            "holds {c:?}; a repository URL uses letters, digits and - . _ ~ : / @ + [ ] only"
        ));
    }
    if url.starts_with('-') {
        return refuse("starts with '-' (git would read it as an option)");
    }
    let helper = url.split_once("::").is_some_and(|(transport, _)| {
        !transport.is_empty()
            && transport
                .bytes()
                .all(|b| b.is_ascii_alphanumeric() || b"+-.".contains(&b))
    });
    if helper {
        return refuse("names a git transport helper (\"<transport>::\"); only https://, ssh://, git:// and user@host:path are fetched");
    }
    let authority = match url.split_once("://") {
        Some(("https" | "ssh" | "git", rest)) => rest.split('/').next().unwrap_or(""),
        Some(("file", _)) => return refuse("file:// reads this server's own files; only remote repositories are fetched"),
        Some((scheme, _)) => return refuse(&format!("the scheme {scheme}:// is not fetched; use https://, ssh:// or git://")),
        None => match url.split_once(':') {
            Some((authority, _)) if !authority.contains('/') && !authority.is_empty() => authority,
            _ => return refuse("is a local path; only remote repositories are fetched (https://, ssh://, git:// or user@host:path)"),
        },
    };
    let (userinfo, host_port) = authority.rsplit_once('@').unwrap_or(("", authority));
    if userinfo.contains(':') || userinfo.contains('@') {
        return refuse("holds a password (or a second @): it would be kept in status and logs; berth fetches without credentials");
    }
    let host = match host_port.strip_prefix('[') {
        Some(v6) => v6.split(']').next().unwrap_or(""),
        None if url.contains("://") => host_port.split(':').next().unwrap_or(""),
        None => host_port,
    };
    let host_ok = !host.is_empty()
        && host
            .bytes()
            .all(|b| b.is_ascii_alphanumeric() || b"-.:".contains(&b));
    if !host_ok {
        return refuse("names no host");
    }
    Ok(host.to_ascii_lowercase())
}

/// A branch, tag or commit name git would take as one, and nothing it would read as an
/// option or a revision expression.
pub fn check_ref(r: &str) -> Result<(), String> {
    let bad = r.is_empty()
        || r.len() > 255
        || r.starts_with(['-', '/', '.'])
        || r.ends_with(['/', '.'])
        || r.ends_with(".lock")
        || r.contains("..")
        || r.contains("@{")
        || r.contains("//")
        || r.chars()
            .any(|c| c.is_whitespace() || c.is_control() || "~^:?*[\\".contains(c));
    match bad {
        true => Err(format!(
            "git ref {r:?} is not a branch, tag or commit name git accepts"
        )),
        false => Ok(()),
    }
}

/// A repository a manifest asks to build from, and how often to fetch it again.
#[derive(Debug, Clone, PartialEq)]
pub struct WantedSource {
    pub source: GitSource,
    pub poll: Option<std::time::Duration>,
}

/// The repositories the parsed manifests build from, of the apps that could be built: builds
/// on, not swarm mode, a valid `[build]`, a host `[policy] git_hosts` does not refuse.
pub fn wanted(
    manifests: &BTreeMap<AppKey, Result<(Manifest, String), SourceError>>,
    config: &crate::model::config::Config,
) -> BTreeMap<AppKey, WantedSource> {
    if !config.builds.enabled || config.runtime.is_swarm() {
        return BTreeMap::new();
    }
    // Only what could be built: a refused table or host is frozen, not fetched.
    let wanted = manifests.iter().filter_map(|(key, parsed)| {
        let decl = parsed.as_ref().ok()?.0.build.as_ref()?;
        crate::model::build::check_decl(decl).ok()?;
        let source = decl.source()?;
        let host = config
            .policy
            .rules(&key.userid)
            .git_host(&key.userid, &source.host);
        if host == crate::model::policy::GitHost::Refused {
            return None;
        }
        let poll = decl.poll;
        Some((key.clone(), WantedSource { source, poll }))
    });
    wanted.collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn host(url: &str) -> Result<String, String> {
        GitSource::parse(url, None).map(|s| s.host)
    }

    #[test]
    fn remote_urls_name_their_host() {
        assert_eq!(
            host("https://git.example.com/alice/api.git").unwrap(),
            "git.example.com"
        );
        assert_eq!(
            host("https://u@Git.Example.com:8443/a.git").unwrap(),
            "git.example.com"
        );
        assert_eq!(
            host("ssh://git@example.com:2222/a.git").unwrap(),
            "example.com"
        );
        assert_eq!(host("git://127.0.0.1:9418/a.git").unwrap(), "127.0.0.1");
        assert_eq!(
            host("git@example.com:alice/api.git").unwrap(),
            "example.com"
        );
        assert_eq!(host("ssh://[::1]:22/a.git").unwrap(), "::1");
    }

    #[test]
    fn local_paths_file_urls_and_helpers_are_refused() {
        for (url, why) in [
            ("/srv/git/other-user.git", "is a local path"),
            ("./repo", "is a local path"),
            ("file:///etc", "file:// reads this server's own files"),
            ("ext::sh -c touch% /tmp/pwned", "holds a space"),
            ("ext::sh", "transport helper"),
            ("-uhttps://x", "starts with '-'"),
            (
                "http://example.com/a.git",
                "the scheme http:// is not fetched",
            ),
            ("https:///a.git", "names no host"),
            ("", "must be 1 to 1024 bytes"),
            ("https://127.0.0.1:9#@example.com/x", "holds '#'"),
            ("https://169.254.169.254?@git.example.com/", "holds '?'"),
            ("https://h%2e/x", "holds '%'"),
            ("https://u:token@example.com/a.git", "holds a password"),
        ] {
            let err = host(url).unwrap_err();
            assert!(err.contains(why), "{url}: {err}");
        }
    }

    #[test]
    fn refs_are_plain_names() {
        let parse = |r| GitSource::parse("https://h/a.git", Some(r));
        assert_eq!(parse("main").unwrap().reference, "main");
        assert!(parse("v1.2.0").is_ok() && parse("feature/x").is_ok());
        assert!(parse("0123456789abcdef0123456789abcdef01234567").is_ok());
        for bad in [
            "--upload-pack=x",
            "a..b",
            "HEAD~1",
            "main^",
            "a b",
            "x.lock",
            "@{-1}",
        ] {
            assert!(parse(bad).unwrap_err().contains("is not a branch"), "{bad}");
        }
        assert_eq!(
            GitSource::parse("https://h/a", None).unwrap().reference,
            "HEAD"
        );
    }
}
