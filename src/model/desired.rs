//! Desired state: what should run, built from a manifest scan, the templates and the config.
//! Decides per app whether it is valid (with its container spec and hash), frozen (bad file or
//! template) or over quota (docs/reference/manifest.md limits, decided in path order).

use std::collections::BTreeMap;

use crate::model::config::Config;
use crate::model::health::HealthCheck;
use crate::model::manifest::Manifest;
use crate::model::manifest::RunState;
use crate::model::names::AppKey;
use crate::model::policy::{check_app, Violation};
use crate::model::secrets::{open_all, Keyring, Opened, SecretValue};
use crate::model::source_error::SourceError;
use crate::model::spec::ContainerSpec;
use crate::model::template::Template;
use crate::model::values::{resolve, Resolved};

/// Everything one scan of `state/apps` found.
#[derive(Debug, Clone, Default)]
pub struct Scan {
    /// One entry per manifest file with valid names: parsed (with the text it was parsed
    /// from), or the error that froze it.
    pub manifests: BTreeMap<AppKey, Result<(Manifest, String), SourceError>>,
    /// Users whose directory could not be listed: all their apps are frozen.
    pub frozen_users: BTreeMap<String, SourceError>,
    /// Files and directories with names berth can't use (reported, never acted on).
    pub stray: Vec<SourceError>,
    /// For each app with `[build]`: the digest of its build context, or why it could not be
    /// read (`state::build_context`).
    pub contexts: BTreeMap<AppKey, Result<String, String>>,
}

/// A valid app: everything the executor needs to converge it.
#[derive(Debug, Clone)]
pub struct DesiredApp {
    /// Which app.
    pub key: AppKey,
    /// The container it should have.
    pub spec: ContainerSpec,
    /// `spec.hash()`, computed once.
    pub hash: String,
    /// Whether it should run.
    pub run: RunState,
    /// Its template (for hooks).
    pub template: Template,
    /// The check its new containers must pass; none when neither template nor manifest has
    /// `[health]`.
    pub health: Option<HealthCheck>,
    /// The manifest text this pass read, for the revision history: `hash` was derived from
    /// exactly this text.
    pub text: String,
    /// `[secrets]`, decrypted: added to the container's environment and nowhere else.
    pub secret_env: BTreeMap<String, SecretValue>,
    /// `renamed_from`: the app this one takes over (its container, volumes, workspace and
    /// records) before it gets a container of its own.
    pub renamed_from: Option<AppKey>,
    /// `[[jobs]]`, resolved: run in one-off containers of `spec` by the scheduler.
    pub jobs: Vec<crate::model::jobs::Job>,
    /// `[backup]`: retention and target of this app's backups.
    pub backup: Option<crate::model::backup::BackupDecl>,
}

/// One valid manifest as a pass read it: its text and the spec hash derived from that text.
#[derive(Debug, Clone)]
pub struct TakenUp {
    /// Which app.
    pub key: AppKey,
    /// The manifest text.
    pub text: String,
    /// The spec hash the pass derived from `text`.
    pub hash: String,
}

/// What one pass saw of the state directory.
#[derive(Debug, Clone, Default)]
pub struct PassSeen {
    /// The valid manifests, as read.
    pub taken: Vec<TakenUp>,
    /// Every app with a manifest, valid or not.
    pub present: std::collections::BTreeSet<AppKey>,
    /// Users whose directory could not be read (their apps are neither present nor gone).
    pub frozen_users: std::collections::BTreeSet<String>,
    /// Renames under way, `(from, to)`: the records of `from` belong to `to`.
    pub renames: Vec<(AppKey, AppKey)>,
    /// The valid apps that have `[[jobs]]`, for the job scheduler.
    pub with_jobs: Vec<DesiredApp>,
}

impl DesiredApp {
    /// The app `m` (read as `text`) describes on template `t`: its spec and that spec's hash.
    /// Fails when the template's `{values.*}` cannot be filled (the error names them).
    pub fn new(
        key: &AppKey,
        m: &Manifest,
        template: Template,
        config: &Config,
        (text, secrets): (String, Opened),
        (values, keys): (&Resolved, &Result<Keyring, String>),
    ) -> Result<DesiredApp, String> {
        let mut spec = ContainerSpec::derive(key, m, &template, config);
        spec.secrets = secrets.fingerprints;
        crate::model::build::bind_secrets(&mut spec, key);
        let mut secret_env = secrets.values;
        secret_env.extend(crate::model::values::apply(
            &mut spec, &template, values, keys,
        )?);
        let hash = spec.hash();
        let health = HealthCheck::resolve(template.health.as_ref(), m.health.as_ref());
        let renamed_from = crate::model::rename::source(key, m)?;
        check_runtime(m, &template, config)?;
        let jobs = m.jobs.resolve()?;
        Ok(DesiredApp {
            jobs,
            key: key.clone(),
            spec,
            hash,
            run: m.state,
            health,
            template,
            text,
            secret_env,
            renamed_from,
            backup: m.backup.clone(),
        })
    }
}

pub use crate::model::runtime_mode::check_runtime;

/// What berth wants for one key.
#[derive(Debug, Clone)]
pub enum Entry {
    /// Converge it.
    Valid(Box<DesiredApp>),
    /// Its manifest or template is broken: touch nothing of it; the error says why.
    Frozen(String),
    /// Past a quota: nothing is created or started for it, and nothing of it is removed.
    OverQuota(String),
    /// Breaks a tenancy rule (docs/guides/tenancy.md): held like a frozen app; the violation names the rule.
    Refused(Violation),
}

/// The whole desired state of one pass.
#[derive(Debug, Default)]
pub struct DesiredState {
    /// Every manifest with a valid path, by key, in path order.
    pub apps: BTreeMap<AppKey, Entry>,
    /// Users whose directory could not be read: their containers are left alone.
    pub frozen_users: BTreeMap<String, String>,
    /// Files berth cannot use at all (bad names); reported only.
    pub stray: Vec<String>,
    /// Renames under way, old name → new (`model::rename`): the old name's containers are the
    /// new app's to take over, never an orphan's to remove.
    pub renames: BTreeMap<AppKey, AppKey>,
    /// The `[build] git` repository of each app that names one, valid or not, for the
    /// fetcher (`state::source_fetcher`).
    pub sources: BTreeMap<AppKey, crate::model::git_source::WantedSource>,
}

impl DesiredState {
    /// The desired state from what a scan `found`: `template` resolves a template id
    /// (`state::scan::load_desired` reads them from disk).
    /// `keys` is the server's secrets key, or why there is none.
    pub fn build(
        mut found: Scan,
        config: &Config,
        keys: &Result<Keyring, String>,
        template: &mut dyn FnMut(&str) -> Result<Template, SourceError>,
    ) -> DesiredState {
        let mut out = DesiredState {
            frozen_users: found
                .frozen_users
                .into_iter()
                .map(|(u, e)| (u, e.to_string()))
                .collect(),
            stray: found.stray.iter().map(|e| e.to_string()).collect(),
            ..DesiredState::default()
        };
        let (renames, conflicts) = crate::model::rename::find(&found.manifests);
        out.renames = renames;
        let mut counts = Counts::default();
        let mut contexts = std::mem::take(&mut found.contexts);
        out.sources = crate::model::git_source::wanted(&found.manifests, config);
        for (key, parsed) in found.manifests {
            let context = contexts.remove(&key);
            let entry = match counts.admit(&key, config) {
                Err(why) => Entry::OverQuota(why),
                Ok(()) => entry_for(&key, (parsed, context), config, keys, template),
            };
            out.apps.insert(key, entry);
        }
        for (key, why) in conflicts {
            out.apps.insert(key, Entry::Frozen(why));
        }
        out
    }

    /// True when berth must not touch this key's containers (frozen file, frozen user, quota).
    pub fn is_held(&self, key: &AppKey) -> bool {
        self.frozen_users.contains_key(&key.userid)
            || matches!(
                self.apps.get(key),
                Some(Entry::Frozen(_) | Entry::OverQuota(_) | Entry::Refused(_))
            )
    }

    /// What this pass saw, for the daemon's records (revisions, incarnations).
    pub fn seen(&self) -> PassSeen {
        PassSeen {
            taken: self.taken_up(),
            present: self.apps.keys().cloned().collect(),
            frozen_users: self.frozen_users.keys().cloned().collect(),
            renames: crate::model::rename::under_way(self),
            with_jobs: crate::model::jobs::apps_with_jobs(self),
        }
    }

    /// The valid manifests as this pass read them, for the revision history.
    pub fn taken_up(&self) -> Vec<TakenUp> {
        let valid = self.apps.values().filter_map(|e| match e {
            Entry::Valid(app) => Some(app),
            _ => None,
        });
        valid
            .map(|app| TakenUp {
                key: app.key.clone(),
                text: app.text.clone(),
                hash: app.hash.clone(),
            })
            .collect()
    }

    /// Errors a user must fix: frozen and over-quota apps, frozen users, stray files.
    pub fn problems(&self) -> Vec<String> {
        let frozen = self.apps.iter().filter_map(|(k, e)| match e {
            Entry::Frozen(why) => Some(format!("{k}: frozen: {why}")),
            Entry::OverQuota(why) => Some(format!("{k}: not started: {why}")),
            Entry::Refused(v) => Some(format!("{k}: frozen: {v}")),
            Entry::Valid(_) => None,
        });
        let users = self
            .frozen_users
            .iter()
            .map(|(u, why)| format!("user {u}: frozen: {why}"));
        frozen
            .chain(users)
            .chain(self.stray.iter().map(|s| format!("ignored: {s}")))
            .collect()
    }
}

/// What the quotas have counted so far, in path order.
#[derive(Default)]
struct Counts {
    per_user: BTreeMap<String, usize>,
    admitted: usize,
}

impl Counts {
    /// Counts `key` against `max_apps_per_user` and `max_total_apps` (frozen apps count too).
    fn admit(&mut self, key: &AppKey, config: &Config) -> Result<(), String> {
        let n = self.per_user.entry(key.userid.clone()).or_default();
        *n += 1;
        if *n > config.max_apps_per_user {
            return Err(format!(
                "over quota: user {} has more than max_apps_per_user = {} apps (by path order this is #{})",
                key.userid, config.max_apps_per_user, n
            ));
        }
        if self.admitted >= config.max_total_apps {
            return Err(format!(
                "over quota: more than max_total_apps = {} apps (by path order)",
                config.max_total_apps
            ));
        }
        self.admitted += 1;
        Ok(())
    }
}

/// A scanned manifest: parsed, with the text it was parsed from, or why not.
type Parsed = Result<(Manifest, String), SourceError>;

/// One admitted manifest's entry: frozen when it or its template is broken, refused when it
/// breaks a per-app policy rule, else valid with its spec and hash. (Rules shared between
/// apps, host ports, domains and a user's memory, are decided with the containers in view:
/// `model::claims`.)
fn entry_for(
    key: &AppKey,
    (parsed, context): (Parsed, Option<Result<String, String>>),
    config: &Config,
    keys: &Result<Keyring, String>,
    template: &mut dyn FnMut(&str) -> Result<Template, SourceError>,
) -> Entry {
    let (m, text) = match parsed {
        Err(e) => return Entry::Frozen(e.to_string()),
        Ok(found) => found,
    };
    let file = format!("state/apps/{}/{}.toml", key.userid, key.appname);
    let t = match crate::model::build::made_from(key, &m, config, context, template) {
        Err(e) => return Entry::Frozen(e),
        Ok(t) => t,
    };
    let renamed_from = m
        .renamed_from
        .as_ref()
        .and_then(|old| AppKey::new(&key.userid, &old.0).ok());
    let at = (file.as_str(), key, renamed_from);
    let secrets = match open_all(at.clone(), &m.secrets, &m.env.0, keys) {
        Err(e) => return Entry::Frozen(e),
        Ok(opened) => opened,
    };
    let values = match resolve(at, &t.id, &t.values, &m.values, keys) {
        Err(e) => return Entry::Frozen(e),
        Ok(v) => v,
    };
    let app = match DesiredApp::new(key, &m, t, config, (text, secrets), (&values, keys)) {
        Err(e) => return Entry::Frozen(format!("{file}: {e}")),
        Ok(app) => app,
    };
    let rules = config.policy.rules(&key.userid);
    let publishing = config.runtime.publishing();
    match check_app(key, &app.spec, rules, &config.reserved_ports(), publishing) {
        Err(v) => Entry::Refused(v),
        Ok(()) => Entry::Valid(Box::new(app)),
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::model::fixtures::template;
    use crate::model::manifest::Manifest;
    use std::path::Path;

    fn no_key() -> Result<Keyring, String> {
        Err("no key in this test".into())
    }

    fn scan_of(items: &[(&str, &str, &str)]) -> Scan {
        let mut s = Scan::default();
        for (u, a, text) in items {
            let m = Manifest::parse(Path::new("m.toml"), text).map(|m| (m, text.to_string()));
            s.manifests.insert(AppKey::new(u, a).unwrap(), m);
        }
        s
    }

    fn config(per_user: usize, total: usize) -> Config {
        let mut c = Config::load(None, Some(Path::new("/r"))).unwrap();
        c.max_apps_per_user = per_user;
        c.max_total_apps = total;
        c
    }

    fn kinds(d: &DesiredState) -> Vec<String> {
        d.apps
            .iter()
            .map(|(k, e)| {
                let kind = match e {
                    Entry::Valid(_) => "ok",
                    Entry::Frozen(_) => "frozen",
                    Entry::OverQuota(_) => "quota",
                    Entry::Refused(_) => "refused",
                };
                format!("{k}={kind}")
            })
            .collect()
    }

    #[test]
    fn quotas_are_decided_in_path_order_and_frozen_apps_count() {
        let good = "template = \"web-v1\"";
        let s = scan_of(&[
            ("bob", "z", good),
            ("alice", "c", good),
            ("alice", "a", "template = "),
            ("alice", "b", good),
            ("carol", "a", good),
        ]);
        let d = DesiredState::build(s, &config(2, 3), &no_key(), &mut |_| Ok(template()));
        assert_eq!(
            kinds(&d),
            [
                "alice/a=frozen",
                "alice/b=ok",
                "alice/c=quota",
                "bob/z=ok",
                "carol/a=quota"
            ]
        );
        assert!(d.is_held(&AppKey::new("alice", "c").unwrap()));
        let problems = d.problems().join("\n");
        assert!(
            problems.contains("alice/c: not started: over quota: user alice"),
            "{problems}"
        );
        assert!(
            problems.contains("carol/a: not started: over quota: more than max_total_apps = 3"),
            "{problems}"
        );
    }

    #[test]
    fn unknown_template_freezes_only_that_app() {
        let s = scan_of(&[
            ("alice", "a", "template = \"nope\""),
            ("alice", "b", "template = \"web-v1\""),
        ]);
        let d = DesiredState::build(s, &config(5, 20), &no_key(), &mut |id| {
            if id == "web-v1" {
                Ok(template())
            } else {
                Err(SourceError::whole_file(
                    Path::new("templates/nope/template.toml"),
                    "not found",
                ))
            }
        });
        assert_eq!(kinds(&d), ["alice/a=frozen", "alice/b=ok"]);
        assert!(
            d.problems()[0].contains("templates/nope/template.toml"),
            "{:?}",
            d.problems()
        );
    }

    #[test]
    fn frozen_user_holds_every_key_of_that_user() {
        let mut s = Scan::default();
        s.frozen_users.insert(
            "eve".into(),
            SourceError::whole_file(Path::new("state/apps/eve"), "cannot list"),
        );
        let d = DesiredState::build(s, &config(5, 20), &no_key(), &mut |_| Ok(template()));
        assert!(d.is_held(&AppKey::new("eve", "anything").unwrap()));
        assert!(!d.is_held(&AppKey::new("bob", "anything").unwrap()));
    }
}
