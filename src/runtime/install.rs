//! A template's shared dependency install (docs/guides/templates-and-values.md), run in a one-off container of the
//! template's own image, so the server needs only Docker: no node, npm or pip on the host.
//! Layout under `shared/<templateId>/`:
//!
//! ```text
//! <output>  -> .installs/<version>/<output>   (a symlink, swapped atomically)
//! .installs/<version>/                        (one complete install per version of the inputs)
//! .installs/staging.<pid>.<n>/                (an install under way; leftovers are removed)
//! ```
//!
//! The inputs are copied into a fresh staging directory, which is mounted at `/install`; only
//! a run that exits 0 and leaves `<output>` is renamed into place, and only then is the link
//! swapped, so no container ever mounts a half-made tree. A failed run leaves the previous
//! version in place and fails the change with the job's last lines. Apps mount their
//! version's own directory (the spec names it), so a version stays while any container mounts
//! it; the link is for people and older containers.
//! Runs under the template's hook lock: it writes the same tree the hooks do.

use std::path::Path;

use crate::model::config::Config;
use crate::model::install::{InstallDecl, WORKDIR};
use crate::model::template::Template;
use crate::runtime::engine::{Engine, Job};

/// Why an install failed.
#[derive(Debug, thiserror::Error)]
pub enum InstallError {
    /// The shared directory could not be prepared or updated.
    #[error("install for template {template}: {what}: {source}")]
    Io {
        /// Which template.
        template: String,
        /// What was being done.
        what: String,
        /// The OS error.
        #[source]
        source: std::io::Error,
    },
    /// The inputs could not be read.
    #[error("install for template {template}: {why}")]
    Inputs {
        /// Which template.
        template: String,
        /// What is wrong.
        why: String,
    },
    /// Docker refused.
    #[error("install for template {template}: {source}")]
    Engine {
        /// Which template.
        template: String,
        /// The engine's error.
        #[source]
        source: crate::runtime::engine::EngineError,
    },
    /// The same version failed moments ago: not run again yet (one failure would otherwise
    /// repeat for every app of the template, one after another, on every pass).
    #[error("install for template {template} (version {version}) failed {secs} s ago and is tried again after {} s: {why}", RETRY_AFTER.as_secs())]
    Recent {
        /// Which template.
        template: String,
        /// Which version of the inputs.
        version: String,
        /// How long ago.
        secs: u64,
        /// What that failure said.
        why: String,
    },
    /// The command failed, timed out, or left no output.
    #[error("install for template {template} (version {version}) {how}; its last lines:\n{tail}")]
    Failed {
        /// Which template.
        template: String,
        /// Which version of the inputs.
        version: String,
        /// "exited with 1", "timed out after 5m", "left no node_modules".
        how: String,
        /// The job's last lines.
        tail: String,
    },
}

/// How long a failed version is not run again.
pub const RETRY_AFTER: std::time::Duration = std::time::Duration::from_secs(60);

/// Recent failures by (template, version).
#[derive(Debug, Default)]
pub struct Failures(
    std::sync::Mutex<std::collections::HashMap<(String, String), (std::time::Instant, String)>>,
);

impl Failures {
    /// The failure of this version within [`RETRY_AFTER`], if any.
    fn recent(&self, template: &str, version: &str) -> Option<InstallError> {
        let map = self.0.lock().expect("install failures");
        let (at, why) = map.get(&(template.to_string(), version.to_string()))?;
        (at.elapsed() < RETRY_AFTER).then(|| InstallError::Recent {
            template: template.into(),
            version: version.into(),
            secs: at.elapsed().as_secs(),
            why: why.clone(),
        })
    }

    fn note(&self, template: &str, version: &str, e: &InstallError) {
        let mut map = self.0.lock().expect("install failures");
        map.retain(|_, (at, _)| at.elapsed() < RETRY_AFTER);
        map.insert(
            (template.into(), version.into()),
            (std::time::Instant::now(), e.to_string()),
        );
    }
}

/// Makes `shared/<id>/<output>` the install of the current inputs of `t`'s `[install]`
/// (nothing to do when it already is). The caller holds the template's lock.
pub async fn ensure(
    engine: &Engine,
    config: &Config,
    t: &Template,
    failures: &Failures,
) -> Result<(), InstallError> {
    let Some(decl) = &t.install else {
        return Ok(());
    };
    let inputs = |why: String| InstallError::Inputs {
        template: t.id.clone(),
        why,
    };
    let (version, files) = decl.version(&t.dir, &t.image).map_err(inputs)?;
    let shared = config.shared_dir.join(&t.id);
    let installs = shared.join(".installs");
    let link = shared.join(&decl.output);
    let want = format!(".installs/{version}/{}", decl.output);
    if std::fs::read_link(&link).is_ok_and(|l| l == Path::new(&want))
        && installs.join(&version).is_dir()
    {
        return Ok(());
    }
    let io = |what: &str| {
        let (template, what) = (t.id.clone(), what.to_string());
        move |source| InstallError::Io {
            template,
            what,
            source,
        }
    };
    std::fs::create_dir_all(&installs).map_err(io("make .installs"))?;
    if !installs.join(&version).is_dir() {
        if let Some(recent) = failures.recent(&t.id, &version) {
            return Err(recent);
        }
        remove_staging(&installs);
        let staging = installs.join(format!("staging.{}", std::process::id()));
        std::fs::create_dir_all(&staging).map_err(io("make the staging directory"))?;
        for (name, bytes) in &files {
            std::fs::write(staging.join(name), bytes).map_err(io("copy the inputs"))?;
        }
        if let Err(e) = run(engine, config, t, decl, &staging, &version).await {
            failures.note(&t.id, &version, &e);
            return Err(e);
        }
        std::fs::rename(&staging, installs.join(&version))
            .map_err(io("move the install into place"))?;
    }
    swap_link(&shared, &link, &want).map_err(io("point the link at the new install"))?;
    tracing::info!(template = %t.id, version = %version, "shared install in place");
    // Containers mount their version's own directory: any version one still mounts stays.
    match engine.mount_sources().await {
        Ok(mounted) => prune(&installs, &version, &mounted),
        Err(e) => {
            tracing::warn!(template = %t.id, cause = %e, "old installs kept: cannot list what containers mount")
        }
    }
    Ok(())
}

/// Runs the install command in a container with the staging directory at `/install`.
async fn run(
    engine: &Engine,
    config: &Config,
    t: &Template,
    decl: &InstallDecl,
    staging: &Path,
    version: &str,
) -> Result<(), InstallError> {
    let image = decl.image.clone().unwrap_or_else(|| t.image.clone());
    let engine_err = |source| InstallError::Engine {
        template: t.id.clone(),
        source,
    };
    engine.ensure_image(&image).await.map_err(engine_err)?;
    let (binds, mut env) = ca_bundle(config);
    let binds = std::iter::once(format!("{}:{WORKDIR}", staging.display()))
        .chain(binds)
        .collect();
    env.push("HOME=/tmp".into());
    let job = Job {
        name: format!("berth-{}-install-{}-{version}", config.instance, t.id),
        image: &image,
        command: &decl.command,
        workdir: WORKDIR,
        binds,
        env,
        timeout: config.hook_timeout,
        cap_add: vec![],
        as_root: false,
        stdin: None,
        tail: 30,
    };
    let ended = engine.run_once(job).await.map_err(engine_err)?;
    let how = match ended.code {
        // A real directory, not a link: a link planted by the install (to `/`, say) would be
        // mounted into every app as what it points at on the host.
        Some(0) if is_real_dir(&staging.join(&decl.output)) => return Ok(()),
        Some(0) => format!("left no {} directory (a link is refused)", decl.output),
        Some(code) => format!("exited with {code}"),
        None => format!(
            "timed out after {}",
            humantime::format_duration(config.hook_timeout)
        ),
    };
    let _ = std::fs::remove_dir_all(staging);
    Err(InstallError::Failed {
        template: t.id.clone(),
        version: version.into(),
        how,
        tail: ended.tail,
    })
}

/// The host's CA bundle as a read-only mount and the variables common tools read it from
/// (none when turned off or absent).
fn ca_bundle(config: &Config) -> (Vec<String>, Vec<String>) {
    const IN_CONTAINER: &str = "/etc/ssl/certs/ca-certificates.crt";
    match &config.install_ca_bundle {
        Some(host) if host.is_file() => (
            vec![format!("{}:{IN_CONTAINER}:ro", host.display())],
            [
                "NODE_EXTRA_CA_CERTS",
                "SSL_CERT_FILE",
                "PIP_CERT",
                "REQUESTS_CA_BUNDLE",
                "CURL_CA_BUNDLE",
            ]
            .iter()
            .map(|v| format!("{v}={IN_CONTAINER}"))
            .collect(),
        ),
        _ => (vec![], vec![]),
    }
}

/// Points `link` at `want` with a rename (atomic); a real directory there (an older layout)
/// is moved aside, never deleted.
fn swap_link(shared: &Path, link: &Path, want: &str) -> std::io::Result<()> {
    if link.is_dir() && !link.is_symlink() {
        let aside = shared.join(format!(".preexisting.{}", std::process::id()));
        std::fs::rename(link, aside)?;
    }
    let tmp = shared.join(".link.new");
    let _ = std::fs::remove_file(&tmp);
    std::os::unix::fs::symlink(want, &tmp)?;
    std::fs::rename(&tmp, link)
}

fn is_real_dir(path: &Path) -> bool {
    std::fs::symlink_metadata(path).is_ok_and(|m| m.is_dir())
}

/// Removes every version but `keep` and those a container mounts (`mounted`: the host
/// sources of every mount of this instance's containers), and leftovers of cut installs.
fn prune(installs: &Path, keep: &str, mounted: &std::collections::HashSet<String>) {
    let entries = std::fs::read_dir(installs).into_iter().flatten().flatten();
    for e in entries {
        let name = e.file_name().to_string_lossy().into_owned();
        let dir = e.path().to_string_lossy().into_owned();
        let in_use = mounted
            .iter()
            .any(|m| m == &dir || m.starts_with(&format!("{dir}/")));
        if name != keep && !in_use {
            let _ = std::fs::remove_dir_all(e.path());
        }
    }
}

/// Removes staging directories an earlier, cut install left.
fn remove_staging(installs: &Path) {
    let entries = std::fs::read_dir(installs).into_iter().flatten().flatten();
    for e in entries.filter(|e| e.file_name().to_string_lossy().starts_with("staging.")) {
        let _ = std::fs::remove_dir_all(e.path());
    }
}
