//! `berth serve`: wires the long-running parts together — the reconcile loop, the file
//! watcher, the Docker event subscription, the HTTP API on TCP and on the unix socket, and the
//! status saver — behind one shutdown token that SIGINT/SIGTERM cancel, and waits for every
//! task before returning.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use tokio::net::{TcpListener, UnixListener};
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::api::AppState;
use crate::config::Config;
use crate::engine::Engine;
use crate::executor::Executor;
use crate::gitsync::GitSync;
use crate::history::History;
use crate::manifest_files::ManifestFiles;
use crate::metrics::Metrics;
use crate::reconciler::Reconciler;
use crate::status::StatusBoard;
use crate::store::Store;

/// How long shutdown waits for open API requests.
const API_DRAIN: Duration = Duration::from_secs(10);

/// Runs until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
    // The database first: a daemon that cannot keep users and keys must not start.
    let store = Arc::new(Store::open(&config.database)?);
    let metrics = Arc::new(Metrics::default());
    let state_lock = Arc::new(tokio::sync::Mutex::new(()));
    let history = Arc::new(History::new(store.clone(), config.revisions_kept));
    // In git mode the clone comes before anything creates directories under state/.
    let git = match &config.git {
        Some(g) => Some(Arc::new(
            GitSync::prepare(
                &config,
                g,
                state_lock.clone(),
                history.clone(),
                metrics.clone(),
            )
            .await
            .context("preparing the state repository ([git])")?,
        )),
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
    let engine = Engine::connect(&config.instance)
        .await
        .context("connecting to the Docker engine")?;
    let tcp = TcpListener::bind(config.listen)
        .await
        .with_context(|| format!("listening on {}", config.listen))?;
    let socket = bind_socket(&config.socket_path())?;
    let trigger = Arc::new(Notify::new());
    let shutdown = CancellationToken::new();
    let _watcher = crate::watch::watch(&config, trigger.clone())
        .context("watching the state and templates directories")?;
    let events = tokio::spawn(forward_docker_events(
        engine.clone(),
        trigger.clone(),
        shutdown.clone(),
    ));
    let mut reconciler = Reconciler::new(config.clone(), Executor::new(config.clone(), engine));
    reconciler.metrics = metrics;
    reconciler.state_lock = Some(state_lock.clone());
    let recorder = history.clone();
    reconciler.on_pass = Some(Arc::new(move |pass, taken| recorder.record(pass, &taken)));
    let keys = store.clone();
    reconciler.on_removed = Some(Arc::new(move |app, planned_ms| {
        match keys.revoke_app_keys_before(&app, planned_ms) {
            Ok(0) => {}
            Ok(n) => info!(app = %app, revoked = n, "app removed: revoked its client keys"),
            Err(e) => {
                warn!(app = %app, cause = %e, "cannot revoke the client keys of a removed app")
            }
        }
    }));
    let reconciler = Arc::new(reconciler);
    let state = Arc::new(AppState {
        config: config.clone(),
        store: store.clone(),
        files: ManifestFiles::new(config.clone()),
        board: reconciler.status.clone(),
        executor: reconciler.executor().clone(),
        trigger: trigger.clone(),
        metrics: reconciler.metrics.clone(),
        limiter: Default::default(),
        containers: Default::default(),
        confirmations: crate::api::confirm::Confirmations::new(config.confirm_ttl),
        prune_release: reconciler.prune_release.clone(),
        history,
        git: git.clone(),
        state_lock,
    });
    let git_task = git.map(|g| tokio::spawn(follow_remote(g, trigger.clone(), shutdown.clone())));
    let main_loop = tokio::spawn(reconciler.clone().serve(trigger.clone(), shutdown.clone()));
    let saver = tokio::spawn(save_status(
        reconciler.status.clone(),
        store.clone(),
        shutdown.clone(),
    ));
    let api_addr = tcp.local_addr().context("reading the API address")?;
    let api_tcp = tokio::spawn(crate::api::serve_tcp(tcp, state.clone(), shutdown.clone()));
    let api_unix = tokio::spawn(crate::api::serve_unix(socket, state, shutdown.clone()));
    info!(root = %config.root.display(), instance = %config.instance, api = %api_addr, socket = %config.socket_path().display(), "berth serving");
    wait_for_signal().await;
    info!("shutdown requested");
    shutdown.cancel();
    let _ = events.await;
    for (name, mut task) in [("API", api_tcp), ("socket API", api_unix)] {
        // Graceful shutdown waits for open requests; a client that never finishes its request
        // must not keep berth from stopping.
        match tokio::time::timeout(API_DRAIN, &mut task).await {
            Ok(Ok(Err(e))) => warn!(cause = %e, "{name} stopped with an error"),
            Ok(_) => {}
            Err(_) => {
                warn!("{name}: requests still open after {API_DRAIN:?}; closing them");
                task.abort();
            }
        }
    }
    if let Some(t) = git_task {
        let _ = t.await;
    }
    main_loop.await.context("reconcile loop panicked")?;
    let _ = saver.await;
    // The loop's last pass may end after the saver stopped: save its final word here.
    if reconciler.status.is_filled() {
        if let Err(e) = store.replace_statuses(&reconciler.status.snapshot()) {
            warn!(cause = %e, "cannot save app status to the database");
        }
    }
    let _ = std::fs::remove_file(config.socket_path());
    info!("berth stopped");
    Ok(())
}

/// Any event on this instance's containers (a crash, a hand-made `docker rm`) triggers a
/// pass, and a second one `SETTLE` after the last event of a burst: Docker 20.10's container
/// list can still say `running` just after a `die` event, so the first pass may see stale
/// state. The subscription is re-made after errors, with a pass each time since events may have
/// been missed.
async fn forward_docker_events(engine: Engine, trigger: Arc<Notify>, shutdown: CancellationToken) {
    const SETTLE: Duration = Duration::from_secs(1);
    let far = || tokio::time::Instant::now() + Duration::from_secs(86_400);
    let mut follow_up = far();
    loop {
        let mut events = Box::pin(engine.events());
        loop {
            tokio::select! {
                _ = shutdown.cancelled() => return,
                _ = tokio::time::sleep_until(follow_up) => {
                    trigger.notify_one();
                    follow_up = far();
                }
                ev = events.next() => match ev {
                    Some(Ok(())) => {
                        trigger.notify_one();
                        follow_up = tokio::time::Instant::now() + SETTLE;
                    }
                    Some(Err(e)) => { warn!(cause = %e, "docker event stream broke; resubscribing"); break }
                    None => break,
                }
            }
        }
        trigger.notify_one();
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(Duration::from_secs(1)) => {}
        }
    }
}

/// Git mode: syncs with the remote every `interval` and whenever the webhook asks, and wakes
/// the loop when the checkout changed (the watcher would too; this is sooner).
async fn follow_remote(git: Arc<GitSync>, trigger: Arc<Notify>, shutdown: CancellationToken) {
    loop {
        if git.sync(&shutdown).await {
            trigger.notify_one();
        }
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = tokio::time::sleep(git.config.interval) => {}
            _ = git.wake.notified() => {}
        }
    }
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

/// Saves the status board to the database when it changes, and at least every minute so
/// `last_reconcile` stays fresh. (`serve` saves once more after the loop has stopped.)
async fn save_status(board: Arc<StatusBoard>, store: Arc<Store>, shutdown: CancellationToken) {
    const EVERY: Duration = Duration::from_secs(60);
    loop {
        tokio::select! {
            _ = shutdown.cancelled() => return,
            _ = board.changed.notified() => {}
            _ = tokio::time::sleep(EVERY) => {}
        }
        if !board.is_filled() {
            continue;
        }
        let (board2, store2) = (board.clone(), store.clone());
        let saved =
            tokio::task::spawn_blocking(move || store2.replace_statuses(&board2.snapshot())).await;
        if let Ok(Err(e)) = saved {
            warn!(cause = %e, "cannot save app status to the database");
        }
    }
}

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
