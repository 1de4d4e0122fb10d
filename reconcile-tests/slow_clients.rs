//! Slow, stalled and large anonymous clients against the real `serve` (issue 12, item 9):
//! connections that never finish a request's head or body are cut after `[http]`'s timeouts,
//! the connection cap keeps descriptors for the loop (which goes on converging), and webhook
//! bodies read before their signature is checked are bounded in total.

use std::time::{Duration, Instant};

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

use crate::support::api::add_user;
use crate::support::git::{GitRoot, Remote};
use crate::support::verdict::{assert_converged, assert_no_berth_left};
use crate::support::{wait_until, Api, Serve, TestRoot, MINIMAL};

const T: Duration = Duration::from_secs(30);
const LIMITS: &str =
    "[http]\nheader_timeout = \"1s\"\nbody_timeout = \"1s\"\nmax_connections = 16\n";

/// Opens a connection to `base` and sends `bytes`, then leaves it stalled.
async fn stall(base: &str, bytes: &[u8]) -> TcpStream {
    let mut s = TcpStream::connect(base.trim_start_matches("http://"))
        .await
        .expect("connect");
    s.write_all(bytes).await.expect("send");
    s
}

/// Reads until the server closes the connection (or answers and then closes); panics if it
/// is still open after `limit`. Returns what the server sent.
async fn closed_by_server(mut s: TcpStream, limit: Duration) -> String {
    let mut got = Vec::new();
    let read = tokio::time::timeout(limit, async {
        let mut buf = [0u8; 4096];
        loop {
            match s.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(
        read.is_ok(),
        "a stalled connection was still open after {limit:?}"
    );
    String::from_utf8_lossy(&got).into_owned()
}

fn rss_kib(pid: u32) -> u64 {
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap_or_default();
    status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.split_whitespace().next()?.parse().ok())
        .unwrap_or(0)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stalled_heads_and_bodies_are_cut_and_the_loop_keeps_converging() {
    let root = TestRoot::new("slowcli").await;
    root.config(&[], LIMITS);
    let admin = add_user(&root, "root", true).await;
    let mut serve = Serve::start(&root);
    let base = serve.api_base();
    let api = Api::new(base.clone());

    // Three times the connection cap: heads that never end, and bodies that never end.
    let mut stalled = Vec::new();
    for _ in 0..40 {
        stalled.push(stall(&base, b"GET /healthz HTTP/1.1\r\nHost: x\r\nX-Slow: ").await);
    }
    let head = format!(
        "POST /users HTTP/1.1\r\nHost: x\r\nAuthorization: Bearer {admin}\r\nContent-Type: application/json\r\nContent-Length: 100000\r\n\r\n{{\"name\":"
    );
    for _ in 0..8 {
        stalled.push(stall(&base, head.as_bytes()).await);
    }
    // The loop does not depend on the API's descriptors: a manifest still converges.
    root.write_manifest("alice", "web", MINIMAL);
    root.wait_running("alice", "web", T).await;

    let started = Instant::now();
    let mut answers = Vec::new();
    for s in stalled {
        answers.push(closed_by_server(s, T).await);
    }
    let cut_after = started.elapsed();
    // A cut body is answered (not a hang); a cut head is just closed.
    assert!(
        answers
            .iter()
            .filter(|a| a.starts_with("HTTP/1.1 4"))
            .count()
            >= 8,
        "{answers:?}"
    );
    assert_eq!(api.get("/healthz", "").await.status, 200);
    let users = api.get("/users", &admin).await.text;
    assert!(!users.contains("\"name\":\"\""), "{users}");
    eprintln!("48 stalled connections cut within {cut_after:?}");
    root.berth(&["apply"]).await.expect_code(0);
    assert_converged(&root, "after stalled clients").await;
    serve.stop(Duration::from_secs(10));
    assert_no_berth_left(&root, "after stalled clients");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn webhook_bodies_read_before_their_signature_is_checked_are_bounded() {
    let extra = "[http]\nbody_timeout = \"3s\"\n";
    let g = GitRoot::start_with("hookbytes", "1h", extra, |r: &Remote| {
        r.write("alice", "web", MINIMAL);
    })
    .await;
    let base = g.api.base.clone();
    let big = 10 * 1024 * 1024;
    let head = format!(
        "POST /hooks/git HTTP/1.1\r\nHost: x\r\nX-Hub-Signature-256: sha256=00\r\nContent-Length: {big}\r\n\r\n"
    );
    let mut body_start = head.into_bytes();
    body_start.extend(std::iter::repeat_n(b'x', big - 1));
    // Each sends all but the last byte of a 10 MiB body, then stalls.
    let mut held = Vec::new();
    for _ in 0..3 {
        held.push(stall(&base, &body_start).await);
    }
    let pid = g.serve.pid();
    // The budget (three bodies) is spent: a fourth is refused at once, unread.
    let fourth = stall(&base, &body_start[..200]).await;
    let answer = closed_by_server(fourth, T).await;
    assert!(answer.starts_with("HTTP/1.1 503"), "{answer}");
    let rss_mib = rss_kib(pid) / 1024;
    assert!(rss_mib < 200, "serve holds {rss_mib} MiB");
    // The stalled bodies are cut by the body timeout; then the budget is back.
    for s in held {
        closed_by_server(s, T).await;
    }
    wait_until(T, "a signed webhook to pass", || async {
        g.webhook().await == 202
    })
    .await;
    eprintln!("serve held {rss_mib} MiB with three 10 MiB bodies in flight");
}
