//! Portal sessions: a sign-in with a token becomes a random session id in an `HttpOnly`,
//! `SameSite=Strict` cookie, and the token stays on the server, in memory. Sessions end on
//! sign-out, after [`IDLE`] without a request, or [`LIFETIME`] after sign-in, whichever comes
//! first; a restart of berth ends them all (signing in again is the whole cost). Each session
//! has its own CSRF token, which every form carries and every POST must match.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// A session unused this long is gone.
pub const IDLE: Duration = Duration::from_secs(30 * 60);
/// No session outlives this, however busy.
pub const LIFETIME: Duration = Duration::from_secs(12 * 3600);
/// Most sessions at once, and per user; the oldest go first beyond these.
const MAX_SESSIONS: usize = 10_000;
const MAX_PER_USER: usize = 20;

/// The cookie's name.
pub const COOKIE: &str = "berth_session";

/// One signed-in browser.
#[derive(Debug, Clone)]
pub struct Session {
    /// The token it signed in with: every API call of this session carries it, so a user
    /// removed or given a new token is signed out by the next call.
    pub token: String,
    /// The user's name.
    pub user: String,
    /// Whether the user is an admin (for the navigation only: the API decides).
    pub admin: bool,
    /// The anti-forgery token every form of this session carries.
    pub csrf: String,
    created: Instant,
    seen: Instant,
}

/// Live sessions, by the blake3 hash of their id (a lookup never compares the secret itself).
#[derive(Debug, Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
}

/// 32 random bytes, hex.
pub fn random_hex() -> String {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes).expect("the OS random source");
    hex::encode(bytes)
}

fn id_hash(id: &str) -> [u8; 32] {
    *blake3::hash(id.as_bytes()).as_bytes()
}

impl Sessions {
    /// A new session for `user`; returns its id (the cookie's value).
    pub fn start(&self, token: String, user: String, admin: bool, now: Instant) -> String {
        let id = random_hex();
        let session = Session {
            token,
            user,
            admin,
            csrf: random_hex(),
            created: now,
            seen: now,
        };
        let mut live = self.live.lock().expect("sessions");
        live.retain(|_, s| alive(s, now));
        evict_oldest(&mut live, |s| s.user == session.user, MAX_PER_USER - 1);
        evict_oldest(&mut live, |_| true, MAX_SESSIONS - 1);
        live.insert(id_hash(&id), session);
        id
    }

    /// The live session with this id, marked as seen now.
    pub fn get(&self, id: &str, now: Instant) -> Option<Session> {
        let mut live = self.live.lock().expect("sessions");
        let key = id_hash(id);
        let session = live.get_mut(&key)?;
        if !alive(session, now) {
            live.remove(&key);
            return None;
        }
        session.seen = now;
        Some(session.clone())
    }

    /// Ends the session with this id (sign-out, or a token the API no longer takes).
    pub fn end(&self, id: &str) {
        self.live.lock().expect("sessions").remove(&id_hash(id));
    }

    /// How many sessions are live (for tests and metrics).
    pub fn len(&self, now: Instant) -> usize {
        let live = self.live.lock().expect("sessions");
        live.values().filter(|s| alive(s, now)).count()
    }
}

fn alive(s: &Session, now: Instant) -> bool {
    now.duration_since(s.seen) < IDLE && now.duration_since(s.created) < LIFETIME
}

/// Drops the oldest sessions matching `which` until at most `keep` remain.
fn evict_oldest(
    live: &mut HashMap<[u8; 32], Session>,
    which: impl Fn(&Session) -> bool,
    keep: usize,
) {
    let mut mine: Vec<([u8; 32], Instant)> = live
        .iter()
        .filter(|(_, s)| which(s))
        .map(|(k, s)| (*k, s.created))
        .collect();
    if mine.len() <= keep {
        return;
    }
    mine.sort_by_key(|(_, created)| *created);
    for (k, _) in mine.iter().take(mine.len() - keep) {
        live.remove(k);
    }
}

/// Whether a form's CSRF field matches the session's, in constant time.
pub fn csrf_matches(session: &Session, presented: &str) -> bool {
    let (a, b) = (session.csrf.as_bytes(), presented.as_bytes());
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The session cookie's `Set-Cookie` value; `secure` when the browser reached us over TLS.
pub fn cookie(id: &str, secure: bool) -> String {
    let secure = if secure { "; Secure" } else { "" };
    format!(
        "{COOKIE}={id}; Path=/ui; HttpOnly; SameSite=Strict; Max-Age={}{secure}",
        LIFETIME.as_secs()
    )
}

/// A `Set-Cookie` value that deletes the cookie.
pub fn cleared_cookie() -> String {
    format!("{COOKIE}=; Path=/ui; HttpOnly; SameSite=Strict; Max-Age=0")
}

/// Every session id in a `Cookie` header, in order.
pub fn ids_from_cookies(header: &str) -> impl Iterator<Item = &str> {
    header
        .split(';')
        .filter_map(|pair| pair.trim().split_once('='))
        .filter(|(name, _)| *name == COOKIE)
        .map(|(_, v)| v.trim())
        .filter(|v| !v.is_empty())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn start(s: &Sessions, user: &str, now: Instant) -> String {
        s.start("t".into(), user.into(), false, now)
    }

    #[test]
    fn a_session_ends_on_sign_out_idle_and_lifetime() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let id = start(&s, "alice", t0);
        assert_eq!(s.get(&id, t0).unwrap().user, "alice");
        s.end(&id);
        assert!(s.get(&id, t0).is_none(), "signed out");

        let id = start(&s, "alice", t0);
        assert!(s.get(&id, t0 + IDLE - Duration::from_secs(1)).is_some());
        assert!(s.get(&id, t0 + IDLE * 2).is_none(), "idle too long");

        let id = start(&s, "alice", t0);
        let mut t = t0;
        while t + IDLE / 2 < t0 + LIFETIME {
            t += IDLE / 2;
            assert!(s.get(&id, t).is_some());
        }
        assert!(s.get(&id, t0 + LIFETIME).is_none(), "past its lifetime");
        assert!(s.get("nonsense", t0).is_none());
    }

    #[test]
    fn one_user_cannot_hold_unbounded_sessions() {
        let s = Sessions::default();
        let t0 = Instant::now();
        let first = start(&s, "alice", t0);
        let bob = start(&s, "bob", t0);
        for i in 1..=MAX_PER_USER as u64 {
            start(&s, "alice", t0 + Duration::from_millis(i));
        }
        let now = t0 + Duration::from_secs(1);
        assert_eq!(s.len(now), MAX_PER_USER + 1);
        assert!(s.get(&first, now).is_none(), "alice's oldest went");
        assert!(s.get(&bob, now).is_some(), "bob's stayed");
    }

    #[test]
    fn csrf_and_cookies() {
        let s = Sessions::default();
        let id = start(&s, "alice", Instant::now());
        let session = s.get(&id, Instant::now()).unwrap();
        assert!(csrf_matches(&session, &session.csrf.clone()));
        assert!(!csrf_matches(&session, ""));
        assert!(!csrf_matches(&session, &session.csrf[1..]));
        let c = cookie(&id, true);
        assert!(c.contains("HttpOnly") && c.contains("SameSite=Strict") && c.contains("Secure"));
        assert!(!cookie(&id, false).contains("Secure"));
        let header = format!("a=b; {COOKIE}=planted; {COOKIE}={id}; c=d");
        let ids: Vec<&str> = ids_from_cookies(&header).collect();
        assert_eq!(ids, ["planted", id.as_str()]);
        assert_eq!(ids_from_cookies("a=b").count(), 0);
        assert_eq!(ids_from_cookies(&format!("{COOKIE}=")).count(), 0);
    }
}
