//! A cuttable path to the Docker engine: a unix socket that relays every connection to the
//! real engine's socket. A test points one berth at it (`DOCKER_HOST`) and cuts it to stage an
//! engine outage for that berth alone, leaving the engine (and every other test) untouched,
//! or holds it: connections stay open, new ones are accepted, and nothing is forwarded either
//! way, which is what a client of a stopped (SIGSTOP) or deadlocked dockerd meets.

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

    /// Relays again.
    pub fn restore(&mut self) {
        self.cut();
        let listener = UnixListener::bind(self.path()).unwrap();
        let held = self.held.subscribe();
        self.accept = Some(tokio::spawn(async move {
            let mut conns = tokio::task::JoinSet::new();
            while let Ok((client, _)) = listener.accept().await {
                let held = held.clone();
                conns.spawn(async move {
                    wait_released(&mut held.clone()).await;
                    if let Ok(engine) = UnixStream::connect(ENGINE).await {
                        let (cr, cw) = client.into_split();
                        let (er, ew) = engine.into_split();
                        tokio::join!(pump(cr, ew, held.clone()), pump(er, cw, held));
                    }
                });
            }
        }));
    }
}

async fn wait_released(held: &mut watch::Receiver<bool>) {
    let _ = held.wait_for(|h| !h).await;
}

/// Copies `from` to `to`, each chunk waiting while the relay is held.
async fn pump(
    mut from: impl AsyncReadExt + Unpin,
    mut to: impl AsyncWriteExt + Unpin,
    mut held: watch::Receiver<bool>,
) {
    let mut buf = vec![0u8; 64 << 10];
    loop {
        let n = match from.read(&mut buf).await {
            Ok(0) | Err(_) => break,
            Ok(n) => n,
        };
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
