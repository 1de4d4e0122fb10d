//! A rollout's health gate (SPEC §9): waits until a new container answers its health check,
//! or says why it did not. berth probes from the host, the way Caddy will reach the container:
//! an HTTP GET on `address:port` (2xx or 3xx is healthy), or for a domain app without
//! `[health]` a TCP connect. A container that stops fails the gate at once.

use std::time::Duration;

use bytes::Bytes;
use http_body_util::Empty;
use hyper::Request;
use tokio::net::TcpStream;
use tokio::time::Instant;

use crate::model::health::HealthCheck;
use crate::runtime::engine::{Engine, EngineError};
use crate::runtime::http1::handshake;

/// What a gate that never got any answer says.
const NO_ANSWER: &str = "no answer";

/// How long a container without a health check must keep running after its start.
const RUNNING_FOR: Duration = Duration::from_secs(1);

/// The pause between probes in a new container's first second.
const FIRST_PAUSE: Duration = Duration::from_millis(25);

/// What the new container must show before it replaces the old one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Gate {
    /// Answer `GET path` with 2xx/3xx.
    Http(HealthCheck),
    /// Accept a TCP connection on its port (domain apps without `[health]`).
    Tcp(HealthCheck),
    /// Still run a second after its start (apps with neither a domain nor `[health]`).
    Running,
}

/// Why the gate failed.
#[derive(Debug, thiserror::Error)]
pub enum GateError {
    /// Not healthy: the container exited, or never passed within the timeout.
    #[error("{0}")]
    Unhealthy(String),
    /// Docker could not be asked.
    #[error(transparent)]
    Engine(#[from] EngineError),
    /// Docker's wait for the container ended without saying how (a restarting engine).
    #[error("the engine stopped reporting on the new container")]
    Lost,
}

impl Gate {
    /// The gate of an app: its `[health]`, else a TCP check for an app that takes traffic
    /// through the proxy (`tcp`), else only "still running".
    pub fn of(health: Option<&HealthCheck>, tcp: bool) -> Gate {
        match (health, tcp) {
            (Some(h), _) => Gate::Http(h.clone()),
            (None, true) => Gate::Tcp(HealthCheck {
                path: String::new(),
                timeout: Duration::from_secs(30),
                interval: Duration::from_millis(500),
                probe: None,
            }),
            (None, false) => Gate::Running,
        }
    }
}

/// Waits until container `id` passes `gate` on `port`; returns the `address:port` it answered
/// on, for the proxy to dial. Docker reports an exit the moment it happens (one long-polled
/// wait), so a container that dies fails the gate at once without an inspect per probe.
pub async fn wait(engine: &Engine, id: &str, port: u16, gate: &Gate) -> Result<String, GateError> {
    let dial = running_address(engine, id, port).await?;
    let exited = async {
        match engine.exited(id).await? {
            Some(code) => Err(GateError::Unhealthy(format!("exited with code {code}"))),
            None => Err(GateError::Lost),
        }
    };
    let check = match gate {
        Gate::Http(c) | Gate::Tcp(c) => c,
        // Still running a moment after its start: an app that dies at once does not pass.
        Gate::Running => {
            return tokio::select! {
                failed = exited => failed,
                _ = tokio::time::sleep(RUNNING_FOR) => Ok(dial),
            }
        }
    };
    tokio::select! {
        failed = exited => failed,
        healthy = probe(&dial, gate, check, port) => healthy.map(|()| dial),
    }
}

/// One probe of `dial` as `gate` says, cut off after a second: whether it passed. For a task
/// on a swarm (`swarm_front`), which berth cannot watch exit as it does a container.
pub async fn answers(dial: &str, gate: &Gate) -> bool {
    let once = async {
        match gate {
            Gate::Http(c) => get(dial, &c.path).await,
            Gate::Tcp(_) | Gate::Running => connect(dial).await,
        }
    };
    matches!(
        tokio::time::timeout(Duration::from_secs(1), once).await,
        Ok(Ok(()))
    )
}

/// Probes `dial` until it passes or `check.timeout` is over.
async fn probe(dial: &str, gate: &Gate, check: &HealthCheck, port: u16) -> Result<(), GateError> {
    let deadline = Instant::now() + check.timeout;
    // Most apps answer within a second of their start: probes come every FIRST_PAUSE for
    // that second, then every `interval`, so a deploy does not wait out a whole interval.
    let quick_until = Instant::now() + Duration::from_secs(1);
    let mut last = NO_ANSWER.to_string();
    loop {
        let pause = match Instant::now() < quick_until {
            true => check.interval.min(FIRST_PAUSE),
            false => check.interval,
        };
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = check.interval.max(Duration::from_secs(1)).min(left);
        let answer = match gate {
            Gate::Http(c) => tokio::time::timeout(wait, get(dial, &c.path)).await,
            _ => tokio::time::timeout(wait, connect(dial)).await,
        };
        let full = check.interval.max(Duration::from_secs(1));
        match answer {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(e)) => last = e,
            // A probe cut short by the deadline says less than the one before it.
            Err(_) if wait < full && last != NO_ANSWER => {}
            Err(_) => last = format!("no answer within {wait:?}"),
        }
        if Instant::now() + pause >= deadline {
            let what = match gate {
                Gate::Http(c) => format!("GET {}", c.path),
                _ => format!("a connection to port {port}"),
            };
            return Err(GateError::Unhealthy(format!(
                "not healthy within {:?}: {what}: {last}",
                check.timeout
            )));
        }
        tokio::time::sleep(pause).await;
    }
}

/// `address:port` of a running container; a stopped one fails the gate with its exit code.
async fn running_address(engine: &Engine, id: &str, port: u16) -> Result<String, GateError> {
    let seen = engine.inspect(id).await?;
    if !seen.running {
        let code = seen.exit_code.map_or("?".into(), |c| c.to_string());
        return Err(GateError::Unhealthy(format!("exited with code {code}")));
    }
    match seen.address {
        Some(ip) => Ok(format!("{ip}:{port}")),
        None => Err(GateError::Unhealthy("has no network address".into())),
    }
}

async fn connect(dial: &str) -> Result<(), String> {
    TcpStream::connect(dial)
        .await
        .map(drop)
        .map_err(|e| e.to_string())
}

/// One `GET path` on `dial`: Ok for 2xx/3xx, else what came back.
async fn get(dial: &str, path: &str) -> Result<(), String> {
    let stream = TcpStream::connect(dial).await.map_err(|e| e.to_string())?;
    let mut send = handshake(stream).await.map_err(|e| e.to_string())?;
    let request = Request::get(path)
        .header(hyper::header::HOST, dial)
        .header(hyper::header::USER_AGENT, "berth-health")
        .body(Empty::<Bytes>::new())
        .map_err(|e| e.to_string())?;
    let status = send
        .send_request(request)
        .await
        .map_err(|e| e.to_string())?
        .status();
    if status.is_success() || status.is_redirection() {
        Ok(())
    } else {
        Err(format!("answered {status}"))
    }
}
