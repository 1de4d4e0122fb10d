//! The forwarder over real loopback sockets: a switch moves new connections only.

use super::*;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// A server that answers each connection's every line with `name`, until it closes.
async fn server(name: &'static str) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap().to_string();
    tokio::spawn(async move {
        loop {
            let (mut s, _) = listener.accept().await.unwrap();
            tokio::spawn(async move {
                let mut buf = [0u8; 64];
                while matches!(s.read(&mut buf).await, Ok(n) if n > 0) {
                    s.write_all(name.as_bytes()).await.unwrap();
                }
            });
        }
    });
    addr
}

async fn ask(s: &mut TcpStream) -> String {
    s.write_all(b"?\n").await.unwrap();
    let mut buf = [0u8; 64];
    let n = s.read(&mut buf).await.unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

fn key() -> AppKey {
    AppKey::new("alice", "shop").unwrap()
}

#[tokio::test]
async fn a_switch_moves_new_connections_and_leaves_open_ones_where_they_are() {
    let (old, new) = (server("old").await, server("new").await);
    let fw = Forwarders::default();
    let addr = fw.point(&key(), &[old]).unwrap();
    let mut before = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut before).await, "old");
    assert_eq!(fw.point(&key(), &[new]).unwrap(), addr, "the same port");
    let mut after = TcpStream::connect(addr).await.unwrap();
    assert_eq!(ask(&mut after).await, "new");
    assert_eq!(ask(&mut before).await, "old", "an open connection drains");
}

#[tokio::test]
async fn a_target_that_does_not_accept_yet_is_tried_again() {
    let free = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let later = free.local_addr().unwrap();
    drop(free);
    let fw = Forwarders::default();
    let addr = fw.point(&key(), &[later.to_string()]).unwrap();
    let mut client = TcpStream::connect(addr).await.unwrap();
    client.write_all(b"?\n").await.unwrap();
    // The forwarder is retrying now; the target comes up and gets the waiting connection.
    let listener = TcpListener::bind(later).await.unwrap();
    let (mut s, _) = listener.accept().await.unwrap();
    let mut buf = [0u8; 2];
    s.read_exact(&mut buf).await.unwrap();
    assert_eq!(&buf, b"?\n");
}

#[tokio::test]
async fn a_retained_out_forwarder_stops_listening() {
    let fw = Forwarders::default();
    let addr = fw.point(&key(), &[server("x").await]).unwrap();
    fw.retain(|_| false);
    // The aborted accept task drops the listener once the runtime has run it.
    let mut refused = false;
    for _ in 0..1000 {
        if TcpStream::connect(addr).await.is_err() {
            refused = true;
            break;
        }
        tokio::task::yield_now().await;
    }
    assert!(refused, "{addr} still accepts");
}
