//! A rollout's health gate (docs/guides/deploys-and-rollback.md): waits until a new container answers its health check,
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

/// The pause between connection attempts while nothing listens yet, in a new container's
/// first second ([`pause`]).
const FIRST_PAUSE: Duration = Duration::from_millis(25);

/// How long the [`FIRST_PAUSE`] pace may last.
const FIRST_SECOND: Duration = Duration::from_secs(1);

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
            (Some(h), _) if h.tcp => Gate::Tcp(h.clone()),
            (Some(h), _) => Gate::Http(h.clone()),
            (None, true) => Gate::Tcp(HealthCheck {
                path: String::new(),
                timeout: Duration::from_secs(30),
                interval: Duration::from_millis(500),
                probe: None,
                tcp: true,
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

/// Why one probe did not pass.
#[derive(Debug, Clone, PartialEq, Eq)]
enum Miss {
    /// The connection was refused or failed: nothing of the app saw it.
    NotListening(String),
    /// The app took the connection but did not pass (an error status, a broken answer).
    Unhealthy(String),
}

impl Miss {
    fn text(self) -> String {
        match self {
            Miss::NotListening(t) | Miss::Unhealthy(t) => t,
        }
    }
}

/// The pause before the next probe. `[health] interval` (100ms at least) is the pace of every
/// probe the app can see. Only in a new container's first second, while nothing has ever
/// accepted a connection, berth tries again every [`FIRST_PAUSE`]: those are connection
/// attempts the kernel refuses (about 40), so a deploy does not wait out a whole interval
/// for an app that starts listening quickly, and the app's code is never probed faster.
fn pause(interval: Duration, since_start: Duration, ever_listened: bool) -> Duration {
    match !ever_listened && since_start < FIRST_SECOND {
        true => interval.min(FIRST_PAUSE),
        false => interval,
    }
}

/// Probes `dial` until it passes or `check.timeout` is over.
async fn probe(dial: &str, gate: &Gate, check: &HealthCheck, port: u16) -> Result<(), GateError> {
    let what = match gate {
        Gate::Http(c) => format!("GET {}", c.path),
        _ => format!("a connection to port {port}"),
    };
    probe_with(check, what, || async {
        match gate {
            Gate::Http(c) => get(dial, &c.path).await,
            _ => connect(dial).await,
        }
    })
    .await
}

/// The probe loop, over any one-probe `attempt` (a unit test drives it under a paused clock).
async fn probe_with<F, Fut>(
    check: &HealthCheck,
    what: String,
    mut attempt: F,
) -> Result<(), GateError>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Result<(), Miss>>,
{
    let started = Instant::now();
    let deadline = started + check.timeout;
    let full = check.interval.max(Duration::from_secs(1));
    let (mut last, mut ever_listened) = (NO_ANSWER.to_string(), false);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        let wait = full.min(left);
        match tokio::time::timeout(wait, attempt()).await {
            Ok(Ok(())) => return Ok(()),
            Ok(Err(miss)) => {
                ever_listened |= matches!(miss, Miss::Unhealthy(_));
                last = miss.text();
            }
            // A probe cut short by the deadline says less than the one before it.
            Err(_) if wait < full && last != NO_ANSWER => {}
            // The connection was taken (or the connect hangs): the app may be seeing it.
            Err(_) => (ever_listened, last) = (true, format!("no answer within {wait:?}")),
        }
        let pause = pause(check.interval, started.elapsed(), ever_listened);
        if Instant::now() + pause >= deadline {
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

async fn connect(dial: &str) -> Result<(), Miss> {
    TcpStream::connect(dial)
        .await
        .map(drop)
        .map_err(|e| Miss::NotListening(e.to_string()))
}

/// One `GET path` on `dial`: Ok for 2xx/3xx, else what came back.
async fn get(dial: &str, path: &str) -> Result<(), Miss> {
    let stream = TcpStream::connect(dial)
        .await
        .map_err(|e| Miss::NotListening(e.to_string()))?;
    get_on(stream, dial, path).await.map_err(Miss::Unhealthy)
}

/// The request of [`get`] on a connection the app took.
async fn get_on(stream: TcpStream, dial: &str, path: &str) -> Result<(), String> {
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

#[cfg(test)]
mod tests {
    use super::*;
    use std::sync::{Arc, Mutex};

    fn check(interval_ms: u64, timeout_ms: u64) -> HealthCheck {
        HealthCheck {
            path: "/".into(),
            timeout: Duration::from_millis(timeout_ms),
            interval: Duration::from_millis(interval_ms),
            probe: None,
            tcp: false,
        }
    }

    /// Runs the probe loop with `answer(n)` as the n-th probe's outcome; returns the times
    /// (from the start) at which each probe was made, and the verdict.
    async fn probe_times(
        check: &HealthCheck,
        answer: impl Fn(usize) -> Result<(), Miss>,
    ) -> (Vec<Duration>, Result<(), GateError>) {
        let start = Instant::now();
        let times = Arc::new(Mutex::new(Vec::new()));
        let verdict = probe_with(check, "GET /".into(), || {
            let mut t = times.lock().unwrap();
            t.push(start.elapsed());
            let outcome = answer(t.len() - 1);
            async move { outcome }
        })
        .await;
        let times = times.lock().unwrap().clone();
        (times, verdict)
    }

    // A real clock: a sleep never ends early, so a gap below the interval is the loop's own
    // doing, whatever the machine's load (no upper bound is asserted).
    #[tokio::test]
    async fn an_app_that_answers_is_never_probed_faster_than_its_interval() {
        // The documented minimum interval, and an app that answers 500 from its first probe.
        let c = check(100, 700);
        let (times, verdict) =
            probe_times(&c, |_| Err(Miss::Unhealthy("answered 500".into()))).await;
        assert!(verdict.is_err());
        assert!(times.len() >= 2, "{times:?}");
        for pair in times.windows(2) {
            assert!(
                pair[1] - pair[0] >= c.interval,
                "probes the app saw {:?} apart, under interval {:?}: {times:?}",
                pair[1] - pair[0],
                c.interval
            );
        }
    }

    #[test]
    fn quick_tries_only_while_nothing_listened_and_only_in_the_first_second() {
        let interval = Duration::from_millis(500);
        let ms = Duration::from_millis;
        assert_eq!(pause(interval, ms(0), false), FIRST_PAUSE);
        assert_eq!(pause(interval, ms(999), false), FIRST_PAUSE);
        assert_eq!(pause(interval, ms(1000), false), interval);
        assert_eq!(pause(interval, ms(10), true), interval, "the app took one");
        // An interval under the quick pace is never made slower.
        assert_eq!(pause(ms(10), ms(0), false), ms(10));
        // At most 40 quick tries: one at the start and one every 25 ms below a second.
        assert_eq!(FIRST_SECOND.as_millis() / FIRST_PAUSE.as_millis(), 40);
    }
}
