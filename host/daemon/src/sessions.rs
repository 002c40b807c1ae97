//! Web UI sessions: the daemon's token, given once to the login form
//! (`POST /v1/session`), exchanged for a random session id in an `HttpOnly`,
//! `SameSite=Strict` cookie, and a second random value, the session's
//! **write key**, in the answer's body. The page never holds the token, and
//! the token never travels in a URL.
//!
//! Requests authenticated by the cookie that change something (any method
//! but `GET`/`HEAD`) must carry the write key in the header [`UI_HEADER`].
//! A page of another site cannot add that header without the daemon's
//! consent (CORS), which it never gives; and since browsers send a host's
//! cookies to every port of that host, another web server on the same host
//! that receives the cookie still cannot change anything: the write key is
//! only in the daemon's page's storage, which browsers keep per origin
//! (port included). The cookie's name carries the port the browser used
//! (`plexus_session_7070`), so two daemons on one host keep their sessions
//! apart.
//!
//! A session ends when it is not used for [`IDLE`], [`ABSOLUTE`] after its
//! login, at logout (`DELETE /v1/session`), or when the daemon restarts
//! (sessions are kept in memory, per node). At most [`MAX_SESSIONS`] live at
//! once: past that, a login ends the session closest to its end.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name, before the port (`plexus_session_<port>`).
pub const COOKIE: &str = "plexus_session";

/// The header a cookie-authenticated request that changes something must
/// carry, with the session's write key.
pub const UI_HEADER: &str = "x-plexus-ui";

/// A session not used for this long ends (30 minutes).
pub const IDLE: Duration = Duration::from_secs(30 * 60);

/// A session ends this long after its login, used or not (12 hours).
pub const ABSOLUTE: Duration = Duration::from_secs(12 * 60 * 60);

/// Sessions alive at once, at most.
pub const MAX_SESSIONS: usize = 1024;

/// The live sessions, by the SHA-256 of their id (the ids themselves are
/// only in the browsers' cookies).
#[derive(Default)]
pub struct Sessions {
    live: Mutex<HashMap<[u8; 32], Session>>,
}

#[derive(Clone, Copy)]
struct Session {
    created: Instant,
    used: Instant,
    /// SHA-256 of the write key.
    write_key: [u8; 32],
}

impl Session {
    fn ends(&self) -> Instant {
        (self.used + IDLE).min(self.created + ABSOLUTE)
    }
}

fn digest(value: &str) -> [u8; 32] {
    Sha256::digest(value.as_bytes()).into()
}

/// 256 random bits as 64 hex digits.
fn random() -> Result<String, getrandom::Error> {
    let mut bytes = [0u8; 32];
    getrandom::fill(&mut bytes)?;
    Ok(bytes.iter().map(|b| format!("{b:02x}")).collect())
}

/// What a live session allows a request.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Access {
    /// Reading (`GET`, `HEAD`): the request had no write key, or a wrong one.
    Read,
    /// Everything: the request carried the session's write key.
    Write,
}

impl Sessions {
    fn live(&self) -> std::sync::MutexGuard<'_, HashMap<[u8; 32], Session>> {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner)
    }

    /// A new session; returns its id and its write key (64 hex digits each,
    /// 256 random bits).
    ///
    /// # Errors
    /// The system's random source failed.
    pub fn create(&self) -> Result<(String, String), getrandom::Error> {
        let (id, write_key) = (random()?, random()?);
        let now = Instant::now();
        let mut live = self.live();
        live.retain(|_, s| s.ends() > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, s)| s.ends()).map(|(k, _)| *k)
        {
            live.remove(&oldest);
        }
        live.insert(digest(&id), Session { created: now, used: now, write_key: digest(&write_key) });
        Ok((id, write_key))
    }

    /// What session `id` allows a request that carried `write_key` (if
    /// any); `None` when it is not alive. Using it keeps it alive for [`IDLE`] more.
    pub fn check(&self, id: &str, write_key: Option<&str>) -> Option<Access> {
        let now = Instant::now();
        let mut live = self.live();
        let k = digest(id);
        match live.get_mut(&k) {
            Some(s) if s.ends() > now => {
                s.used = now;
                // Digests compared: no timing tells how much of a wrong key was right.
                Some(if write_key.is_some_and(|w| digest(w) == s.write_key) { Access::Write } else { Access::Read })
            }
            Some(_) => {
                live.remove(&k);
                None
            }
            None => None,
        }
    }

    /// Whether session `id` is alive, without using it (an open event
    /// stream asks before each read: a logout or an expiry ends it).
    pub fn is_alive(&self, id: &str) -> bool {
        let live = self.live();
        live.get(&digest(id)).is_some_and(|s| s.ends() > Instant::now())
    }

    /// End session `id` (logout); nothing when it is not alive.
    pub fn end(&self, id: &str) {
        self.live().remove(&digest(id));
    }
}

/// The cookie's name for a request: [`COOKIE`], then `_` and the port of
/// its `Host` header, if it names one.
pub fn cookie_name(headers: &axum::http::HeaderMap) -> String {
    let port = headers
        .get(axum::http::header::HOST)
        .and_then(|v| v.to_str().ok())
        .and_then(|host| host.rsplit_once(':'))
        .map(|(_, port)| port)
        .filter(|port| !port.is_empty() && port.len() <= 5 && port.bytes().all(|b| b.is_ascii_digit()));
    match port {
        Some(port) => format!("{COOKIE}_{port}"),
        None => COOKIE.to_owned(),
    }
}

/// The session id in a request's `Cookie` headers, if any.
pub fn from_headers(headers: &axum::http::HeaderMap) -> Option<&str> {
    let name = cookie_name(headers);
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(n, _)| *n == name)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that gives the browser of a request (its `Host`
/// names the cookie) session `id`: a session cookie, forgotten when the
/// browser closes.
pub fn set_cookie(headers: &axum::http::HeaderMap, id: &str) -> String {
    format!("{}={id}; Path=/; HttpOnly; SameSite=Strict", cookie_name(headers))
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie(headers: &axum::http::HeaderMap) -> String {
    format!("{}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0", cookie_name(headers))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_reads_and_writes_with_its_key_until_it_ends_and_ids_do_not_repeat() {
        let sessions = Sessions::default();
        let (a, key_a) = sessions.create().unwrap();
        let (b, key_b) = sessions.create().unwrap();
        assert!(a != b && key_a != key_b && a != key_a);
        assert_eq!((a.len(), key_a.len()), (64, 64));
        assert_eq!(sessions.check(&a, None), Some(Access::Read));
        assert_eq!(sessions.check(&a, Some(&key_b)), Some(Access::Read), "another session's key");
        assert_eq!(sessions.check(&a, Some(&key_a)), Some(Access::Write));
        assert_eq!(sessions.check("0".repeat(64).as_str(), Some(&key_a)), None);
        assert!(sessions.is_alive(&a));
        sessions.end(&a);
        assert!(!sessions.is_alive(&a));
        assert_eq!(sessions.check(&a, Some(&key_a)), None);
        assert_eq!(sessions.check(&b, Some(&key_b)), Some(Access::Write));
    }

    #[test]
    fn past_the_ceiling_a_login_ends_the_session_closest_to_its_end() {
        let sessions = Sessions::default();
        let (first, _) = sessions.create().unwrap();
        let rest: Vec<String> = (1..MAX_SESSIONS).map(|_| sessions.create().unwrap().0).collect();
        // Using every other session keeps it alive longer than `first`.
        for id in &rest {
            assert!(sessions.check(id, None).is_some());
        }
        let (newest, _) = sessions.create().unwrap();
        assert!(!sessions.is_alive(&first), "the session closest to its end made room");
        assert!(sessions.is_alive(&newest));
        assert_eq!(sessions.live.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn the_cookie_is_named_by_the_port_and_found_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.insert(axum::http::header::HOST, "127.0.0.1:7070".parse().unwrap());
        headers.append(
            axum::http::header::COOKIE,
            "a=1; plexus_session_7071=other; plexus_session_7070=abc".parse().unwrap(),
        );
        assert_eq!(from_headers(&headers), Some("abc"));
        assert!(set_cookie(&headers, "x").starts_with("plexus_session_7070=x;"));
        headers.insert(axum::http::header::HOST, "[::1]:9".parse().unwrap());
        assert_eq!(cookie_name(&headers), "plexus_session_9");
        headers.insert(axum::http::header::HOST, "plexus.example".parse().unwrap());
        assert_eq!(cookie_name(&headers), "plexus_session");
        assert_eq!(from_headers(&headers), None);
    }
}
