//! Daemon configuration: `berth.toml` (docs/reference/files-on-disk.md), every key optional, unknown keys rejected with
//! file:line:col. `Config` is the resolved form: absolute paths, parsed durations, checked names.

use std::collections::BTreeMap;
use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;

pub use crate::model::git_config::GitConfig;
use crate::model::http_limits::HttpLimits;
use crate::model::names::validate_instance;
use crate::model::policy::{Policy, PolicyFile, ReservedPort};
use crate::model::proxy::ProxyConfig;
use crate::model::registry_login::RegistryLoginFile;
use crate::model::resources::ResourceOverrides;
use crate::model::runtime_mode::{Runtime, RuntimeKind};
use crate::model::source_error::SourceError;

/// berth.toml as written. Defaults are filled by `Default` so a missing file and an empty file
/// mean the same thing.
/// The host's CA bundle on Debian.
const DEFAULT_CA_BUNDLE: &str = "/etc/ssl/certs/ca-certificates.crt";

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields, default)]
struct ConfigFile {
    root: Option<PathBuf>,
    state_dir: PathBuf,
    templates_dir: PathBuf,
    shared_dir: PathBuf,
    apps_dir: PathBuf,
    database: PathBuf,
    secrets_key: Option<PathBuf>,
    install_ca_bundle: PathBuf,
    listen: SocketAddr,
    instance: String,
    #[serde(with = "humantime_serde")]
    resync: Duration,
    #[serde(with = "humantime_serde")]
    relist: Duration,
    #[serde(with = "humantime_serde")]
    hook_timeout: Duration,
    #[serde(with = "humantime_serde")]
    stop_timeout: Duration,
    #[serde(with = "humantime_serde")]
    engine_timeout: Duration,
    #[serde(with = "humantime_serde")]
    confirm_ttl: Duration,
    max_parallel: usize,
    revisions_kept: usize,
    max_apps_per_user: usize,
    max_total_apps: usize,
    prune_guard: Option<usize>,
    trusted_proxies: Vec<std::net::IpAddr>,
    git: Option<GitConfig>,
    defaults: ResourceOverrides,
    templates: BTreeMap<String, TemplateOverride>,
    policy: PolicyFile,
    proxy: Option<ProxyConfig>,
    http: HttpLimits,
    builds: crate::model::build_limits::BuildLimits,
    audit_keep_days: u32,
    audit_max_entries: u64,
    runtime: RuntimeKind,
    registry: Option<String>,
    registry_login: Option<RegistryLoginFile>,
    swarm_publish_domain_ports: bool,
}

impl Default for ConfigFile {
    fn default() -> Self {
        ConfigFile {
            root: None,
            state_dir: "state".into(),
            templates_dir: "templates".into(),
            shared_dir: "shared".into(),
            apps_dir: "apps".into(),
            database: "berth.redb".into(),
            secrets_key: None,
            install_ca_bundle: DEFAULT_CA_BUNDLE.into(),
            listen: SocketAddr::from(([127, 0, 0, 1], 7070)),
            instance: "main".into(),
            resync: Duration::from_secs(30),
            relist: Duration::from_secs(300),
            hook_timeout: Duration::from_secs(300),
            stop_timeout: Duration::from_secs(10),
            engine_timeout: Duration::from_secs(60),
            confirm_ttl: Duration::from_secs(600),
            max_parallel: 4,
            revisions_kept: 20,
            max_apps_per_user: 5,
            max_total_apps: 20,
            prune_guard: None,
            trusted_proxies: Vec::new(),
            git: None,
            defaults: ResourceOverrides::default(),
            templates: BTreeMap::new(),
            policy: PolicyFile::default(),
            proxy: None,
            http: HttpLimits::default(),
            builds: Default::default(),
            audit_keep_days: 14,
            audit_max_entries: 100_000,
            runtime: RuntimeKind::Docker,
            registry: None,
            registry_login: None,
            swarm_publish_domain_ports: false,
        }
    }
}

/// Per-template settings in berth.toml, e.g. a locally built or mirrored image.
#[derive(Debug, Clone, Default, PartialEq, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct TemplateOverride {
    /// Replaces the template's `image` for every app of that template.
    pub image: Option<String>,
}

/// The resolved configuration every other module reads.
#[derive(Debug, Clone)]
pub struct Config {
    /// Base directory; every relative path in berth.toml is under it.
    pub root: PathBuf,
    /// Where manifests live (`state/apps/<userid>/<appname>.toml`).
    pub state_dir: PathBuf,
    /// Where templates live (`templates/<id>/template.toml`).
    pub templates_dir: PathBuf,
    /// Runtime home of per-template shared data such as `node_modules`.
    pub shared_dir: PathBuf,
    /// Runtime home of app workspaces.
    pub apps_dir: PathBuf,
    /// The redb file: users, client keys, app status, audit log.
    pub database: PathBuf,
    /// The server's secrets key (`secrets_key`; default `berth.key` beside the database).
    pub secrets_key: PathBuf,
    /// The host's CA bundle, mounted read-only into install containers (with
    /// `NODE_EXTRA_CA_CERTS`, `SSL_CERT_FILE`, `PIP_CERT` pointing at it), so a template's
    /// install trusts what the host trusts (a corporate proxy's CA). `install_ca_bundle = ""`
    /// turns it off.
    pub install_ca_bundle: Option<PathBuf>,
    /// HTTP API address.
    pub listen: SocketAddr,
    /// Label `paas.instance`: berth sees and touches only containers carrying its own value.
    pub instance: String,
    /// How often a pass runs when nothing triggers one.
    pub resync: Duration,
    /// How old the container list kept from Docker's events may get before a pass lists again.
    pub relist: Duration,
    /// How long a hook may run before its whole process group is killed.
    pub hook_timeout: Duration,
    /// Grace period between SIGTERM and SIGKILL when stopping a container.
    pub stop_timeout: Duration,
    /// How long a container create, start or remove may take (a stop: `stop_timeout` more)
    /// before berth gives it up as hung and tries again later.
    pub engine_timeout: Duration,
    /// How long a confirm token for a destructive API call (purge, releasing a held mass
    /// removal) stays valid.
    pub confirm_ttl: Duration,
    /// Apps converged at once.
    pub max_parallel: usize,
    /// Manifest revisions kept per app in the database.
    pub revisions_kept: usize,
    /// Manifests per user that may run; later ones (path order) are over quota.
    pub max_apps_per_user: usize,
    /// Manifests in total that may run; later ones (path order) are over quota.
    pub max_total_apps: usize,
    /// Removals one pass may make before the mass-removal guard holds them all; `None` means
    /// the default rule (more than 3 and more than half of the running apps).
    pub prune_guard: Option<usize>,
    /// Reverse proxies whose `X-Forwarded-For` names the real client, so failed-key limits
    /// count per client rather than per proxy. Empty: the peer address is the client.
    pub trusted_proxies: Vec<std::net::IpAddr>,
    /// Git mode: `state/` is a clone of this remote, pulled and pushed by berth.
    pub git: Option<GitConfig>,
    /// Resource limits when a manifest sets none; `None` fields fall through to the template.
    pub defaults: ResourceOverrides,
    /// Per-template overrides, by template id.
    pub templates: BTreeMap<String, TemplateOverride>,
    /// What user manifests may ask for (docs/guides/tenancy.md).
    pub policy: Policy,
    /// `[proxy]`: Caddy routes domain apps (docs/guides/deploys-and-rollback.md); none without the table.
    pub proxy: Option<ProxyConfig>,
    /// `[http]`: timeouts and the connection cap of the API's server.
    pub http: HttpLimits,
    /// `[builds]`: how apps with `[build]` are built on this node.
    pub builds: crate::model::build_limits::BuildLimits,
    /// Audit entries younger than this many days are never dropped to make room.
    pub audit_keep_days: u32,
    /// Past this many audit entries, the oldest outside `audit_keep_days` are dropped.
    pub audit_max_entries: u64,
    /// `runtime` (docs/guides/swarm.md): containers on this engine, or services on its swarm.
    pub runtime: Runtime,
}

/// Config file name looked for under the root when `--config` is not given.
pub const CONFIG_FILE: &str = "berth.toml";

impl Config {
    /// Loads configuration. `config` is `--config` (must exist if given); otherwise
    /// `<root>/berth.toml` is read if present. `root` is `--root`, which wins over the file's
    /// `root` key; without either, the config file's directory (or the current directory).
    pub fn load(config: Option<&Path>, root: Option<&Path>) -> Result<Config, SourceError> {
        let cwd = std::env::current_dir()
            .map_err(|e| SourceError::whole_file(Path::new("."), e.to_string()))?;
        let root_flag = root.map(|r| absolute(&cwd, r));
        let (path, required) = match (config, &root_flag) {
            (Some(c), _) => (absolute(&cwd, c), true),
            (None, Some(r)) => (r.join(CONFIG_FILE), false),
            (None, None) => (cwd.join(CONFIG_FILE), false),
        };
        let file = match std::fs::read_to_string(&path) {
            Ok(text) => toml::from_str::<ConfigFile>(&text)
                .map_err(|e| SourceError::from_toml(&path, &text, &e))?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound && !required => {
                ConfigFile::default()
            }
            Err(e) => return Err(SourceError::whole_file(&path, format!("cannot read: {e}"))),
        };
        let config_dir = path.parent().unwrap_or(&cwd).to_path_buf();
        let root = match (root_flag, &file.root) {
            (Some(r), _) => r,
            (None, Some(r)) => absolute(&config_dir, r),
            (None, None) => config_dir,
        };
        Config::resolve(file, root, &path)
    }

    fn resolve(f: ConfigFile, root: PathBuf, path: &Path) -> Result<Config, SourceError> {
        let bad = |msg: String| SourceError::whole_file(path, msg);
        check_values(&f).map_err(bad)?;
        let mut f = f;
        if let Some(g) = &mut f.git {
            g.check().map_err(|e| bad(format!("[git] {e}")))?;
            // A local path is taken relative to the root, like every other path here, and
            // stored absolute: that is what the clone's origin will say.
            if g.is_local_path() {
                g.remote = normalized(&absolute(&root, Path::new(&g.remote)));
            }
        }
        let policy = Policy::resolve(&f.policy).map_err(bad)?;
        check_sections(&f).map_err(bad)?;
        let login = f.registry_login.as_ref().map(|l| l.resolve(&root));
        let login = login.transpose().map_err(bad)?;
        let runtime = Runtime::resolve(f.runtime, f.registry.as_deref(), login)
            .and_then(|r| r.with_domain_ports(f.swarm_publish_domain_ports))
            .map_err(bad)?;
        Ok(Config {
            runtime,
            policy,
            proxy: f.proxy,
            http: f.http,
            builds: f.builds,
            audit_keep_days: f.audit_keep_days,
            audit_max_entries: f.audit_max_entries,
            state_dir: absolute(&root, &f.state_dir),
            templates_dir: absolute(&root, &f.templates_dir),
            shared_dir: absolute(&root, &f.shared_dir),
            apps_dir: absolute(&root, &f.apps_dir),
            secrets_key: match &f.secrets_key {
                Some(p) => absolute(&root, p),
                None => absolute(&root, &f.database).with_file_name("berth.key"),
            },
            database: absolute(&root, &f.database),
            install_ca_bundle: (!f.install_ca_bundle.as_os_str().is_empty())
                .then(|| absolute(&root, &f.install_ca_bundle)),
            root,
            listen: f.listen,
            instance: f.instance,
            resync: f.resync,
            relist: f.relist,
            hook_timeout: f.hook_timeout,
            stop_timeout: f.stop_timeout,
            engine_timeout: f.engine_timeout,
            confirm_ttl: f.confirm_ttl,
            max_parallel: f.max_parallel,
            revisions_kept: f.revisions_kept,
            max_apps_per_user: f.max_apps_per_user,
            max_total_apps: f.max_total_apps,
            prune_guard: f.prune_guard,
            trusted_proxies: f.trusted_proxies,
            git: f.git,
            defaults: f.defaults,
            templates: f.templates,
        })
    }

    /// `state/apps`: the only directory whose files are manifests.
    pub fn apps_state_dir(&self) -> PathBuf {
        self.state_dir.join("apps")
    }

    /// The daemon's unix socket, beside the database (`berth.redb.sock`), through which
    /// `berth status` and `berth users` reach a running daemon.
    pub fn socket_path(&self) -> PathBuf {
        let mut name = self.database.clone().into_os_string();
        name.push(".sock");
        PathBuf::from(name)
    }

    /// The host ports no app may publish on, each with who needs it: berth's API (`listen`),
    /// with `[proxy]` Caddy's admin API (on TCP), `http_port` and `https_port`, and every port
    /// in `[policy] reserved_ports`.
    pub fn reserved_ports(&self) -> Vec<ReservedPort> {
        let mut out = vec![ReservedPort {
            port: self.listen.port(),
            holder: "berth's own API port (listen)".into(),
        }];
        out.extend(self.proxy.iter().flat_map(ProxyConfig::reserved_ports));
        out.extend(
            self.policy
                .reserved_ports()
                .iter()
                .map(|&port| ReservedPort {
                    port,
                    holder: "listed in [policy] reserved_ports".into(),
                }),
        );
        out
    }

    /// `key`'s workspace: `apps_dir/<userid>/<appname>`.
    pub fn app_dir(&self, key: &crate::model::names::AppKey) -> PathBuf {
        self.apps_dir.join(&key.userid).join(&key.appname)
    }

    /// Where `key`'s `[build] git` repository is fetched and its trees are unpacked: beside
    /// the database, never in the workspace the user's container sees.
    pub fn source_dir(&self, key: &crate::model::names::AppKey) -> PathBuf {
        self.sources_dir().join(&key.userid).join(&key.appname)
    }

    /// Every app's `source_dir` is under this one.
    pub fn sources_dir(&self) -> PathBuf {
        self.database.with_file_name("sources")
    }

    /// The files of `commit` of `key`'s repository, as a build reads them.
    pub fn source_tree(&self, key: &crate::model::names::AppKey, commit: &str) -> PathBuf {
        self.source_dir(key).join(format!("tree-{commit}"))
    }
}

/// The tables that check themselves, each error prefixed with its table.
fn check_sections(f: &ConfigFile) -> Result<(), String> {
    if let Some(p) = &f.proxy {
        p.check().map_err(|e| format!("[proxy] {e}"))?;
    }
    f.http.check().map_err(|e| format!("[http] {e}"))?;
    f.builds.check().map_err(|e| format!("[builds] {e}"))
}

/// Refuses values no berth can run with.
fn check_values(f: &ConfigFile) -> Result<(), String> {
    validate_instance(&f.instance).map_err(|e| e.to_string())?;
    if f.max_parallel == 0 {
        return Err("max_parallel must be at least 1".into());
    }
    for (key, d) in [("resync", f.resync), ("relist", f.relist)] {
        if d.is_zero() {
            return Err(format!("{key} must be longer than 0s"));
        }
    }
    for (key, d) in [
        ("hook_timeout", f.hook_timeout),
        ("engine_timeout", f.engine_timeout),
    ] {
        if d.is_zero() {
            return Err(format!("{key} must be longer than 0s"));
        }
    }
    if f.stop_timeout > Duration::from_secs(i32::MAX as u64) {
        return Err("stop_timeout is too long".into());
    }
    Ok(())
}

/// `path` with `..` components resolved lexically.
fn normalized(path: &Path) -> String {
    let mut clean = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                clean.pop();
            }
            other => clean.push(other),
        }
    }
    clean.to_string_lossy().into_owned()
}

/// Joins `p` onto `base` unless absolute, dropping `.` components so paths print cleanly.
fn absolute(base: &Path, p: &Path) -> PathBuf {
    let joined = if p.is_absolute() {
        p.to_path_buf()
    } else {
        base.join(p)
    };
    joined
        .components()
        .filter(|c| !matches!(c, std::path::Component::CurDir))
        .collect()
}

#[cfg(test)]
#[path = "config_tests.rs"]
mod tests;
