//! Web UI sessions: the daemon's token, given once to the login form
//! (`POST /v1/session`), exchanged for a random session id in an `HttpOnly`,
//! `SameSite=Strict` cookie. The page never holds the token, and the token
//! never travels in a URL.
//!
//! A session ends when it is not used for [`IDLE`], [`ABSOLUTE`] after its
//! login, at logout (`DELETE /v1/session`), or when the daemon restarts
//! (sessions are kept in memory, per node). At most [`MAX_SESSIONS`] live at
//! once: past that, a login ends the session closest to its end.
//!
//! Requests authenticated by the cookie that change something (any method
//! but `GET`/`HEAD`) must also carry the header [`UI_HEADER`]: a page of
//! another site can make a browser send the cookie (if `SameSite` fails it),
//! but not that header without the daemon's consent (CORS), which it never
//! gives.

use sha2::{Digest, Sha256};
use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

/// The cookie's name.
pub const COOKIE: &str = "plexus_session";

/// The header a cookie-authenticated request that changes something must carry (any value).
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
}

impl Session {
    fn ends(&self) -> Instant {
        (self.used + IDLE).min(self.created + ABSOLUTE)
    }
}

fn key(id: &str) -> [u8; 32] {
    Sha256::digest(id.as_bytes()).into()
}

impl Sessions {
    /// A new session; returns its id (64 hex digits, 256 random bits).
    ///
    /// # Errors
    /// The system's random source failed.
    pub fn create(&self) -> Result<String, getrandom::Error> {
        let mut bytes = [0u8; 32];
        getrandom::fill(&mut bytes)?;
        let id: String = bytes.iter().map(|b| format!("{b:02x}")).collect();
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        live.retain(|_, s| s.ends() > now);
        if live.len() >= MAX_SESSIONS
            && let Some(oldest) = live.iter().min_by_key(|(_, s)| s.ends()).map(|(k, _)| *k)
        {
            live.remove(&oldest);
        }
        live.insert(key(&id), Session { created: now, used: now });
        Ok(id)
    }

    /// Whether session `id` is alive; using it keeps it alive for [`IDLE`] more.
    pub fn check(&self, id: &str) -> bool {
        let now = Instant::now();
        let mut live = self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        let k = key(id);
        match live.get_mut(&k) {
            Some(s) if s.ends() > now => {
                s.used = now;
                true
            }
            Some(_) => {
                live.remove(&k);
                false
            }
            None => false,
        }
    }

    /// End session `id` (logout); nothing when it is not alive.
    pub fn end(&self, id: &str) {
        self.live.lock().unwrap_or_else(std::sync::PoisonError::into_inner).remove(&key(id));
    }
}

/// The session id in a request's `Cookie` headers, if any.
pub fn from_headers(headers: &axum::http::HeaderMap) -> Option<&str> {
    headers
        .get_all(axum::http::header::COOKIE)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|v| v.split(';'))
        .filter_map(|pair| pair.trim().split_once('='))
        .find(|(name, _)| *name == COOKIE)
        .map(|(_, value)| value)
}

/// The `Set-Cookie` value that gives a browser session `id` (a session
/// cookie: the browser forgets it when it closes).
pub fn set_cookie(id: &str) -> String {
    format!("{COOKIE}={id}; Path=/; HttpOnly; SameSite=Strict")
}

/// The `Set-Cookie` value that removes the session cookie.
pub fn clear_cookie() -> String {
    format!("{COOKIE}=; Path=/; HttpOnly; SameSite=Strict; Max-Age=0")
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_session_is_alive_until_it_ends_and_ids_do_not_repeat() {
        let sessions = Sessions::default();
        let a = sessions.create().unwrap();
        let b = sessions.create().unwrap();
        assert_ne!(a, b);
        assert_eq!(a.len(), 64);
        assert!(sessions.check(&a));
        assert!(!sessions.check("0".repeat(64).as_str()));
        sessions.end(&a);
        assert!(!sessions.check(&a));
        assert!(sessions.check(&b));
    }

    #[test]
    fn past_the_ceiling_a_login_ends_the_session_closest_to_its_end() {
        let sessions = Sessions::default();
        let first = sessions.create().unwrap();
        let rest: Vec<String> = (1..MAX_SESSIONS).map(|_| sessions.create().unwrap()).collect();
        // Using every other session keeps it alive longer than `first`.
        for id in &rest {
            assert!(sessions.check(id));
        }
        let newest = sessions.create().unwrap();
        assert!(!sessions.check(&first), "the session closest to its end made room");
        assert!(sessions.check(&newest));
        assert_eq!(sessions.live.lock().unwrap().len(), MAX_SESSIONS);
    }

    #[test]
    fn the_cookie_is_found_among_others() {
        let mut headers = axum::http::HeaderMap::new();
        headers.append(axum::http::header::COOKIE, "a=1; plexus_session=abc; b=2".parse().unwrap());
        assert_eq!(from_headers(&headers), Some("abc"));
        headers.clear();
        headers.append(axum::http::header::COOKIE, "plexus_sessionX=1".parse().unwrap());
        assert_eq!(from_headers(&headers), None);
    }
}
