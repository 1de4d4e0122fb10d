//! `berth serve`: wires the long-running parts together — the reconcile loop, the file
//! watcher, the Docker event subscription, the HTTP API on TCP and on the unix socket, and the
//! status saver — behind one shutdown token that SIGINT/SIGTERM cancel, and waits for every
//! task before returning.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Mutex;
use tokio::task::JoinHandle;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::AppState;
use crate::daemon::events::{follow_remote, watch_engine};
use crate::daemon::pass::Reconciler;
use crate::daemon::serve_loop::ServeLoop;
use crate::error_chain::chain;
use crate::metrics::Metrics;
use crate::model::config::Config;
use crate::reconcile::trigger::Wake;
use crate::runtime::engine::{CallCounter, Engine};
use crate::runtime::executor::Executor;
use crate::runtime::reader::ContainerReader;
use crate::state::files::ManifestFiles;
use crate::state::git::GitSync;
use crate::state::history::History;
use crate::state::workspace_files::WorkspaceFiles;
use crate::state::writer::ManifestWriter;
use crate::store::Store;

/// How long shutdown waits for open API requests.
const API_DRAIN: Duration = Duration::from_secs(10);

/// What `serve` shares between its parts.
struct Shared {
    config: Arc<Config>,
    store: Arc<Store>,
    metrics: Arc<Metrics>,
    state_lock: Arc<Mutex<()>>,
    history: Arc<History>,
    git: Option<Arc<GitSync>>,
    wake: Wake,
    /// The valid apps with `[[jobs]]` after each pass, for the job scheduler.
    jobs: Arc<crate::daemon::jobs::Feed>,
}

/// The running tasks, stopped in order by [`stop`].
struct Tasks {
    events: JoinHandle<()>,
    api: Vec<(&'static str, JoinHandle<()>)>,
    git: Option<JoinHandle<()>>,
    main_loop: JoinHandle<()>,
    saver: JoinHandle<()>,
}

/// Runs until SIGINT or SIGTERM.
pub async fn serve(mut config: Config) -> anyhow::Result<()> {
    let (from, to) = crate::daemon::process::raise_descriptor_limit();
    if to > from {
        info!(from, to, "raised the open-file limit to its hard limit");
    }
    // One decider per root, whatever database or socket a second one's config names.
    let _decides = crate::state::root_lock::RootLock::acquire(&config.root, "berth serve")?;
    // The database first: a daemon that cannot keep users and keys must not start.
    let store = Arc::new(open_store(&config.database).await?);
    let tcp = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let api_addr = tcp.local_addr().context("reading the API address")?;
    // The port actually bound (`listen` may say 0) is the one no app may publish on.
    config.listen = api_addr;
    let shared = prepare(Arc::new(config), store).await?;
    let config = shared.config.clone();
    let engine = connect(&config, &shared.metrics).await?;
    let socket = bind_socket(&config.socket_path())?;
    let shutdown = CancellationToken::new();
    let watcher = crate::daemon::watch::watch(&config, shared.wake.clone())
        .context("watching the state and templates directories")?;
    let metrics = shared.metrics.clone();
    let rearm = crate::daemon::watch::keep_armed(
        watcher,
        config.clone(),
        shared.wake.clone(),
        move |armed| metrics.watcher(armed),
        shutdown.clone(),
    );
    tokio::spawn(rearm);
    let writer = Arc::new(manifest_writer(&shared));
    let serve_loop = Arc::new(serve_loop(&shared, engine.clone(), &writer));
    // Before any pass: a hook a killed berth left running must not overlap a new one.
    let reaped = serve_loop.executor().reap_left_over_hooks();
    if reaped > 0 {
        warn!(
            groups = reaped,
            "killed hooks left running by an earlier berth"
        );
    }
    let api = Arc::new(api_state(&shared, &serve_loop, (engine, &shutdown), writer));
    let (tcp_cap, socket_cap) = connection_caps(to, &config.http);
    let listeners = ((tcp, tcp_cap), (socket, socket_cap));
    let tasks = spawn(&shared, &serve_loop, api, listeners, &shutdown);
    info!(root = %config.root.display(), instance = %config.instance, api = %api_addr, socket = %config.socket_path().display(), "berth serving");
    wait_for_signal().await;
    info!("shutdown requested");
    shutdown.cancel();
    stop(tasks).await?;
    // The loop's last pass may end after the saver stopped: save its final word here.
    if serve_loop.status.is_filled() {
        if let Err(e) = shared.store.replace_statuses(&serve_loop.status.snapshot()) {
            warn!(cause = %chain(&e), "cannot save app status to the database");
        }
    }
    let _ = std::fs::remove_file(config.socket_path());
    info!("berth stopped");
    Ok(())
}

/// The engine, every call to it counted in `metrics` (`berth_engine_calls_total{op}`), its
/// container writes bounded by `engine_timeout` (`berth_engine_timeouts_total{op}`).
async fn connect(config: &Config, metrics: &Arc<Metrics>) -> anyhow::Result<Engine> {
    let calls = metrics.clone();
    let counter: CallCounter = Arc::new(move |op| calls.engine_call(op));
    let engine = Engine::connect_counted(&config.instance, counter).await;
    let timeouts = metrics.clone();
    let timeouts: CallCounter = Arc::new(move |op| timeouts.engine_timeout(op));
    let engine = engine.context("connecting to the Docker engine")?;
    let engine = engine.bounding_writes(config.engine_timeout, timeouts);
    let login = engine.logged_in(&config.runtime);
    login.map_err(anyhow::Error::msg)
}

/// Starts every long-running task.
fn spawn(
    shared: &Shared,
    serve_loop: &Arc<ServeLoop>,
    api: Arc<AppState>,
    ((tcp, tcp_cap), (socket, socket_cap)): ((TcpListener, usize), (UnixListener, usize)),
    shutdown: &CancellationToken,
) -> Tasks {
    let (wake, stop) = (shared.wake.clone(), shutdown.clone());
    let git = shared.git.clone();
    let informer = serve_loop.executor().informer().clone();
    Tasks {
        events: tokio::spawn(watch_engine(informer, wake.clone(), stop.clone())),
        api: vec![
            (
                "API",
                tokio::spawn(crate::api::serve_tcp(
                    tcp,
                    api.clone(),
                    crate::portal::router(api.clone()),
                    tcp_cap,
                    stop.clone(),
                )),
            ),
            (
                "socket API",
                tokio::spawn(crate::api::serve_unix(
                    socket,
                    api,
                    socket_cap,
                    stop.clone(),
                )),
            ),
        ],
        git: git.map(|g| tokio::spawn(follow_remote(g, wake.clone(), stop.clone()))),
        main_loop: tokio::spawn(serve_loop.clone().run(wake, stop.clone())),
        saver: tokio::spawn(crate::daemon::status_saver::save_status(
            serve_loop.status.clone(),
            shared.store.clone(),
            stop,
        )),
    }
}

/// Prepares git mode (the clone comes before anything creates directories under `state/`),
/// then makes the directories berth works in, private.
async fn prepare(config: Arc<Config>, store: Arc<Store>) -> anyhow::Result<Shared> {
    let metrics = Arc::new(Metrics::default());
    let state_lock = Arc::new(Mutex::new(()));
    let history = Arc::new(History::new(store.clone(), config.revisions_kept));
    let git = match &config.git {
        Some(g) => {
            let lock = state_lock.clone();
            let prepared = GitSync::prepare(&config, g, lock, history.clone(), metrics.clone());
            Some(Arc::new(
                prepared
                    .await
                    .context("preparing the state repository ([git])")?,
            ))
        }
        None => None,
    };
    for dir in [
        config.apps_state_dir(),
        config.templates_dir.clone(),
        config.shared_dir.clone(),
        config.apps_dir.clone(),
    ] {
        std::fs::create_dir_all(&dir).with_context(|| format!("creating {}", dir.display()))?;
    }
    // Nothing writes yet: what a killed write left behind can only be a leftover.
    let cleaned = crate::state::leftovers::clean(&config.apps_state_dir());
    if cleaned != Default::default() {
        info!(
            temp_files = cleaned.temp_files,
            empty_dirs = cleaned.empty_dirs,
            cut_renames = cleaned.cut_renames,
            "removed what cut writes left under state/apps"
        );
    }
    secrets_key(&config)?;
    let tightened = crate::state::modes::tighten(&config.apps_state_dir());
    if tightened != Default::default() {
        info!(
            files = tightened.files,
            dirs = tightened.dirs,
            "made state/apps readable by berth's user only (0600 files, 0700 directories)"
        );
    }
    let wake = Wake::default();
    Ok(Shared {
        config,
        store,
        metrics,
        state_lock,
        history,
        git,
        wake,
        jobs: Default::default(),
    })
}

/// The reconcile loop, recording after each pass the revisions it took up and which apps
/// exist (a gone app's client keys stop working).
fn serve_loop(shared: &Shared, engine: Engine, writer: &Arc<ManifestWriter>) -> ServeLoop {
    let config = shared.config.clone();
    let mut pass = Reconciler::new(config.clone(), Executor::serving(config, engine));
    let (writer, store) = (writer.clone(), shared.store.clone());
    pass.finish_rename = Arc::new(move |old, new| {
        let (writer, store) = (writer.clone(), store.clone());
        Box::pin(async move {
            let (from, to) = (old.clone(), new.clone());
            let adopted = tokio::task::spawn_blocking(move || store.adopt(&from, &to)).await;
            adopted.map_err(|e| e.to_string())?.map_err(|e| chain(&e))?;
            writer
                .finish_rename(&old, &new)
                .await
                .map(drop)
                .map_err(|e| chain(&e))
        })
    });
    let mut serve_loop = ServeLoop::new(pass, shared.state_lock.clone());
    serve_loop.metrics = shared.metrics.clone();
    serve_loop.sources = Some(crate::state::source_fetcher::SourceFetcher::new(
        shared.config.clone(),
        shared.wake.clone(),
    ));
    serve_loop.refused_at_start = shared.store.refusals().unwrap_or_else(|e| {
        tracing::warn!(cause = %crate::error_chain::chain(&e), "cannot read refused rollouts; they are tried again");
        Default::default()
    });
    let (recorder, store) = (shared.history.clone(), shared.store.clone());
    let jobs = shared.jobs.clone();
    let newest = std::sync::Mutex::new(0u64);
    serve_loop.on_pass = Some(Arc::new(move |pass, began, mut seen| {
        // Runs go one at a time, and a late run for an older pass changes nothing.
        let mut newest = newest.lock().unwrap_or_else(|e| e.into_inner());
        let late = pass < *newest;
        if !late {
            adopt_renamed(&store, &seen.renames);
        }
        recorder.record(pass, &seen.taken);
        if late {
            return;
        }
        *newest = pass;
        jobs.send_replace(Some(Arc::new(crate::daemon::jobs::Published::of(
            &mut seen,
        ))));
        match store.sync_incarnations(&seen.present, &seen.frozen_users, began) {
            Ok(s) if s.ended > 0 || s.keys_revoked > 0 => {
                info!(
                    apps_gone = s.ended,
                    keys_revoked = s.keys_revoked,
                    "apps gone: their client keys no longer work"
                )
            }
            Ok(_) => {}
            Err(e) => warn!(cause = %chain(&e), "cannot record which apps exist"),
        }
    }));
    serve_loop
}

/// Moves the records of each renamed app's old name to its new one (the API did, unless it
/// was cut short or the file was renamed by hand): before the pass's incarnations are synced,
/// so the old name's keys are moved, not ended.
fn adopt_renamed(
    store: &Store,
    renames: &[(crate::model::names::AppKey, crate::model::names::AppKey)],
) {
    for (old, new) in renames {
        match store.adopt(old, new) {
            Ok(moved) if moved != Default::default() => {
                info!(app = %new, from = %old, keys = moved.keys, revisions = moved.revisions, "renamed app's records moved")
            }
            Ok(_) => {}
            Err(e) => {
                warn!(app = %new, from = %old, cause = %chain(&e), "cannot move a renamed app's records")
            }
        }
    }
}

/// The one manifest writer: the API's, and the loop's for finishing renames.
fn manifest_writer(shared: &Shared) -> ManifestWriter {
    ManifestWriter::new(
        ManifestFiles::new(shared.config.clone()),
        shared.history.clone(),
        shared.git.clone(),
        shared.state_lock.clone(),
        shared.wake.clone(),
    )
}

/// The API's view: read-only containers, purge requests, the manifest writer.
fn api_state(
    shared: &Shared,
    serve_loop: &Arc<ServeLoop>,
    (engine, shutdown): (Engine, &CancellationToken),
    writer: Arc<ManifestWriter>,
) -> AppState {
    let both = (shared.store.clone(), shared.metrics.clone());
    let exec = serve_loop.executor().clone();
    let jobs = crate::daemon::jobs::spawn(exec, both, &shared.jobs, shutdown.clone());
    let config = shared.config.clone();
    AppState {
        config: config.clone(),
        store: shared.store.clone(),
        writer,
        board: serve_loop.status.clone(),
        containers: ContainerReader::new(engine, serve_loop.executor().informer().clone()),
        removals: serve_loop.executor().removals().clone(),
        wake: shared.wake.clone(),
        metrics: shared.metrics.clone(),
        limiter: Default::default(),
        writes: Default::default(),
        confirmations: crate::api::confirm::Confirmations::new(config.confirm_ttl),
        prune_release: serve_loop.prune_release.clone(),
        history: shared.history.clone(),
        git: shared.git.clone(),
        planner: Some(serve_loop.clone()),
        progress: serve_loop.progress.clone(),
        list_cache: Default::default(),
        workspaces: Arc::new(WorkspaceFiles::new(config.apps_dir.clone())),
        sources: serve_loop.sources.clone(),
        jobs,
        backups: crate::daemon::backups::service(
            config.clone(),
            shared.store.clone(),
            shared.metrics.clone(),
            shared.state_lock.clone(),
            serve_loop.executor(),
        ),
    }
}

/// Waits for every task after shutdown was signalled. Graceful shutdown waits for open
/// requests; a client that never finishes its request must not keep berth from stopping.
async fn stop(tasks: Tasks) -> anyhow::Result<()> {
    let _ = tasks.events.await;
    for (name, mut task) in tasks.api {
        match tokio::time::timeout(API_DRAIN, &mut task).await {
            Ok(_) => {}
            Err(_) => {
                warn!("{name}: requests still open after {API_DRAIN:?}; closing them");
                task.abort();
            }
        }
    }
    if let Some(t) = tasks.git {
        let _ = t.await;
    }
    tasks.main_loop.await.context("reconcile loop panicked")?;
    let _ = tasks.saver.await;
    Ok(())
}

/// Opens the database, waiting up to 5 s while another process has it: `berth status` or
/// `users` read it for a moment when no daemon answers, and a daemon starting just then
/// must not give up. Another `serve` holds it for good, and is reported.
async fn open_store(path: &Path) -> Result<Store, crate::store::StoreError> {
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(5);
    loop {
        match Store::open(path) {
            Err(crate::store::StoreError::Busy { .. }) if std::time::Instant::now() < deadline => {
                tokio::time::sleep(std::time::Duration::from_millis(50)).await
            }
            other => return other,
        }
    }
}

/// Makes the secrets key on a first start; refuses to start on a key others can read.
fn secrets_key(config: &Config) -> anyhow::Result<()> {
    use crate::state::secrets_key::{ensure, Ensured};
    let found = crate::state::scan::scan(&config.apps_state_dir(), &config.root)?;
    let holds = found
        .manifests
        .values()
        .any(crate::state::scan::holds_secrets);
    let path = config.secrets_key.display();
    match ensure(&config.secrets_key, holds).map_err(anyhow::Error::msg)? {
        Ensured::Present => {}
        Ensured::Made => {
            info!(key = %path, "made the secrets key (0600); back it up with the database")
        }
        Ensured::MissingWithSecrets => {
            warn!(key = %path, "the secrets key is missing and manifests hold secrets: their apps stay frozen, nothing is removed; restore the key")
        }
    }
    Ok(())
}

/// Descriptors kept back from clients: the loop, the watcher, the database, Docker, hooks.
const RESERVED_DESCRIPTORS: u64 = 256;
/// Connections the unix socket (local admins, `berth` commands) serves at once.
const SOCKET_CONNECTIONS: usize = 32;

/// (TCP cap, socket cap): `max_connections` lowered to leave [`RESERVED_DESCRIPTORS`] free.
fn connection_caps(nofile: u64, http: &crate::model::http_limits::HttpLimits) -> (usize, usize) {
    let (max_connections, reserves) = (http.max_connections, 2 * http.reserved_connections);
    if nofile == 0 {
        return (max_connections, SOCKET_CONNECTIONS); // the limit could not be read
    }
    let room = nofile.saturating_sub(RESERVED_DESCRIPTORS + (SOCKET_CONNECTIONS + reserves) as u64);
    let tcp = max_connections
        .min(usize::try_from(room).unwrap_or(usize::MAX))
        .max(1);
    if tcp < max_connections {
        warn!(max_connections, serving = tcp, nofile, "the open-file limit is low: the API serves fewer connections at once than [http] max_connections");
    }
    (tcp, SOCKET_CONNECTIONS)
}

/// Binds the unix socket with mode 0600: whoever can open it is an admin. A socket file left
/// by a crashed daemon is replaced; holding the database proves no other daemon uses it.
fn bind_socket(path: &Path) -> anyhow::Result<UnixListener> {
    match std::fs::remove_file(path) {
        Err(e) if e.kind() != std::io::ErrorKind::NotFound => {
            return Err(e).with_context(|| format!("removing stale socket {}", path.display()))
        }
        _ => {}
    }
    // The socket is created 0600 (umask 077 around the bind), so no one else can connect
    // in the moment before the chmod; the chmod makes the mode exact whatever the umask was.
    // SAFETY: umask(2) only swaps the process's file mode mask; no other thread creates files
    // during startup.
    let old = unsafe { libc::umask(0o077) };
    let bound = UnixListener::bind(path);
    unsafe { libc::umask(old) };
    let listener = bound.with_context(|| format!("binding {}", path.display()))?;
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600))
        .with_context(|| format!("chmod 0600 {}", path.display()))?;
    Ok(listener)
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
