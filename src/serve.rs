//! `berth serve`: wires the long-running parts together — the reconcile loop, the file
//! watcher, the Docker event subscription — behind one shutdown token that SIGINT/SIGTERM
//! cancel, and waits for every task before returning.

use std::sync::Arc;
use std::time::Duration;

use anyhow::Context;
use futures_util::StreamExt;
use tokio::sync::Notify;
use tokio_util::sync::CancellationToken;
use tracing::{info, warn};

use crate::config::Config;
use crate::engine::Engine;
use crate::executor::Executor;
use crate::reconciler::Reconciler;

/// Runs until SIGINT or SIGTERM.
pub async fn serve(config: Config) -> anyhow::Result<()> {
    let config = Arc::new(config);
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
    let trigger = Arc::new(Notify::new());
    let shutdown = CancellationToken::new();
    let _watcher = crate::watch::watch(&config, trigger.clone())
        .context("watching the state and templates directories")?;
    let events = tokio::spawn(forward_docker_events(
        engine.clone(),
        trigger.clone(),
        shutdown.clone(),
    ));
    let reconciler = Arc::new(Reconciler::new(
        config.clone(),
        Executor::new(config.clone(), engine),
    ));
    let main_loop = tokio::spawn(reconciler.serve(trigger, shutdown.clone()));
    info!(root = %config.root.display(), instance = %config.instance, "berth serving");
    wait_for_signal().await;
    info!("shutdown requested");
    shutdown.cancel();
    let _ = events.await;
    main_loop.await.context("reconcile loop panicked")?;
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

async fn wait_for_signal() {
    use tokio::signal::unix::{signal, SignalKind};
    let mut term = signal(SignalKind::terminate()).expect("installing SIGTERM handler");
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
