//! A cuttable path to the Docker engine: a unix socket that relays every connection to the
//! real engine's socket. A test points one berth at it (`DOCKER_HOST`) and cuts it to stage an
//! engine outage for that berth alone, leaving the engine (and every other test) untouched,
//! or holds it: connections stay open, new ones are accepted, and nothing is forwarded either
//! way, which is what a client of a stopped (SIGSTOP) or deadlocked dockerd meets. Or it
//! stalls one kind of request only (a container start, as moby#46661 hangs it while the ping
//! answers): such a request is never forwarded and never answered.

use std::path::PathBuf;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::{UnixListener, UnixStream};
use tokio::sync::watch;
use tokio::task::JoinHandle;

/// The engine's own socket.
const ENGINE: &str = "/var/run/docker.sock";

/// One relay; cut on drop.
pub struct DockerRelay {
    dir: tempfile::TempDir,
    accept: Option<JoinHandle<()>>,
    /// True while held: every byte waits.
    held: watch::Sender<bool>,
    /// While set: a request whose bytes contain it is swallowed, unanswered.
    stall: watch::Sender<Option<String>>,
}

impl DockerRelay {
    /// A relay, up.
    pub fn start() -> DockerRelay {
        let dir = tempfile::Builder::new()
            .prefix("berth-relay-")
            .tempdir()
            .unwrap();
        let mut relay = DockerRelay {
            dir,
            accept: None,
            held: watch::channel(false).0,
            stall: watch::channel(None).0,
        };
        relay.restore();
        relay
    }

    fn path(&self) -> PathBuf {
        self.dir.path().join("docker.sock")
    }

    /// `DOCKER_HOST` for a berth that should reach the engine through this relay.
    pub fn docker_host(&self) -> String {
        format!("unix://{}", self.path().display())
    }

    /// Every connection, open or new, fails until [`restore`](Self::restore).
    pub fn cut(&mut self) {
        if let Some(task) = self.accept.take() {
            task.abort();
        }
        let _ = std::fs::remove_file(self.path());
    }

    /// Holds every connection, open or new: nothing is answered, nothing fails, until
    /// [`release`](Self::release).
    pub fn hold(&self) {
        self.held.send_replace(true);
    }

    /// Forwards again what was held.
    pub fn release(&self) {
        self.held.send_replace(false);
    }

    /// Swallows every request containing `pattern` (e.g. `"/start "`), unanswered, its
    /// connection left open, until [`unstall`](Self::unstall); everything else is relayed.
    pub fn stall(&self, pattern: &str) {
        self.stall.send_replace(Some(pattern.to_string()));
    }

    /// Relays every request again (a stalled one is dropped with its connection).
    pub fn unstall(&self) {
        self.stall.send_replace(None);
    }

    /// Relays again.
    pub fn restore(&mut self) {
        self.cut();
        let listener = UnixListener::bind(self.path()).unwrap();
        let (held, stall) = (self.held.subscribe(), self.stall.subscribe());
        self.accept = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let (held, stall) = (held.clone(), stall.clone());
                conns.spawn(async move {
                    wait_released(&mut held.clone()).await;
                    if let Ok(engine) = UnixStream::connect(ENGINE).await {
                        let (cr, cw) = client.into_split();
                        let (er, ew) = engine.into_split();
                        let asked = pump(cr, ew, held.clone(), Some(stall));
                        tokio::join!(asked, pump(er, cw, held, None));
                    }
                });
            }
        }));
    }
}

async fn wait_released(held: &mut watch::Receiver<bool>) {
    let _ = held.wait_for(|h| !h).await;
}

/// Copies `from` to `to`, each chunk waiting while the relay is held; a chunk holding the
/// `stall` pattern is not copied, and the connection ends once the stall is lifted.
async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut held: watch::Receiver<bool>,
    mut stall: Option<watch::Receiver<Option<String>>>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
        if let Some(stall) = stall.as_mut() {
            let pattern = stall.borrow().clone();
            let chunk = String::from_utf8_lossy(&buf[..n]);
            if pattern.is_some_and(|p| chunk.contains(&p)) {
                let _ = stall.wait_for(Option::is_none).await;
                break;
            }
        }
        wait_released(&mut held).await;
        if to.write_all(&buf[..n]).await.is_err() {
            break;
        }
    }
    let _ = to.shutdown().await;
}

impl Drop for DockerRelay {
    fn drop(&mut self) {
        self.cut();
    }
}
