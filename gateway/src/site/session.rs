//! Web sessions: a signed, HttpOnly, SameSite=Lax cookie holding a random
//! session id; the session record (who is logged in) lives in the state
//! store under `web:session:{id}` with the session's lifetime. Every
//! visitor has an id (anonymous until login); the CSRF token of a page is a
//! keyed hash of that id, so it changes whenever the id does. Login and
//! logout always start a new id (no session fixation).

use crate::error::ApiError;
use crate::AppState;
use actix_web::cookie::{time, Cookie, CookieJar, Key, SameSite};
use actix_web::http::StatusCode;
use actix_web::{HttpRequest, HttpResponseBuilder};
use protocol::anychain::b64u_encode;
use runtime::state::{WebKey, WebList};
use serde::{Deserialize, Serialize};
use subtle::ConstantTimeEq;

/// The session cookie's name.
pub const COOKIE: &str = "alias_session";
/// The sessions of a user the index keeps (the newest; more live sessions
/// than this within a session's lifetime are not a person's).
pub const SESSIONS_KEPT: usize = 1000;
/// The header (JSON requests) or form field (forms) carrying the CSRF token.
pub const CSRF_HEADER: &str = "x-csrf-token";

/// The secrets of the web side, derived from `ALIAS_SESSION_KEY` (or
/// random per process).
pub struct WebKeys {
    cookie: Key,
    secret: [u8; 32],
}

impl WebKeys {
    /// Derives the keys from the configured secret, or makes random ones.
    pub fn new(config: &runtime::config::Config) -> anyhow::Result<WebKeys> {
        let master = match &config.session_key {
            Some(k) => k.clone(),
            None => random_bytes(64)?,
        };
        let derive = |context: &[u8], len: usize| {
            blake2b_simd::Params::new()
                .hash_length(len)
                .key(&blake2b_simd::blake2b(&master).as_bytes()[..32])
                .personal(b"alias-bank-web")
                .hash(context)
        };
        let cookie = Key::derive_from(derive(b"cookie", 64).as_bytes());
        let mut secret = [0u8; 32];
        secret.copy_from_slice(derive(b"secret", 32).as_bytes());
        Ok(WebKeys { cookie, secret })
    }

    /// A keyed hash of `parts` (CSRF tokens, fake salts), URL-safe base64.
    pub fn mac(&self, context: &str, data: &str, len: usize) -> Vec<u8> {
        let mut state = blake2b_simd::Params::new()
            .hash_length(len)
            .key(&self.secret)
            .to_state();
        state.update(context.as_bytes());
        state.update(&[0]);
        state.update(data.as_bytes());
        state.finalize().as_bytes().to_vec()
    }

    fn sign(&self, id: &str) -> Option<String> {
        let mut jar = CookieJar::new();
        jar.signed_mut(&self.cookie)
            .add(Cookie::new(COOKIE, id.to_owned()));
        jar.get(COOKIE).map(|c| c.value().to_owned())
    }

    fn verify(&self, raw: &str) -> Option<String> {
        let mut jar = CookieJar::new();
        jar.add_original(Cookie::new(COOKIE, raw.to_owned()));
        jar.signed(&self.cookie)
            .get(COOKIE)
            .map(|c| c.value().to_owned())
    }
}

/// Random bytes from the operating system.
pub fn random_bytes(n: usize) -> anyhow::Result<Vec<u8>> {
    let mut buf = vec![0u8; n];
    getrandom::getrandom(&mut buf).map_err(|e| anyhow::anyhow!("no randomness: {e}"))?;
    Ok(buf)
}

/// A new random id (32 bytes, URL-safe base64).
pub fn new_id() -> Result<String, ApiError> {
    random_bytes(32)
        .map(|b| b64u_encode(&b))
        .map_err(|e| ApiError::unavailable("randomness", e))
}

/// Equality of secrets in constant time (for equal lengths; the length is
/// not secret).
pub fn ct_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && bool::from(a.ct_eq(b))
}

/// Who is logged in.
#[derive(Debug, Clone, Serialize, Deserialize, PartialEq, Eq)]
pub struct User {
    /// The account name.
    pub username: String,
    /// The user's public key (URL-safe base64).
    pub pk: String,
    /// When the session started (ms since the epoch).
    pub since_ms: u64,
}

/// The session of a request.
#[derive(Debug, Clone)]
pub struct Session {
    /// The session id.
    pub id: String,
    /// Whether the cookie must be (re)sent.
    pub fresh: bool,
    /// The logged-in user, if any.
    pub user: Option<User>,
}

fn session_key(id: &str) -> WebKey<'_> {
    WebKey::Session(id)
}

impl Session {
    /// The session of a JSON POST from the pages: loaded, with its CSRF
    /// header checked.
    pub async fn load_checked(app: &AppState, req: &HttpRequest) -> Result<Session, ApiError> {
        let session = Self::load(app, req).await?;
        session.check_csrf_header(app, req)?;
        Ok(session)
    }

    /// The session of `req`: the one its valid cookie names, or a new
    /// anonymous one.
    pub async fn load(app: &AppState, req: &HttpRequest) -> Result<Session, ApiError> {
        let id = req
            .cookie(COOKIE)
            .and_then(|c| app.web.verify(c.value()))
            .filter(|id| id.len() == 43);
        if let Some(id) = id {
            let user = match app.state.kv_get(&session_key(&id)).await? {
                Some(json) => serde_json::from_str::<User>(&json).ok(),
                None => None,
            };
            return Ok(Session {
                id,
                fresh: false,
                user,
            });
        }
        Ok(Session {
            id: new_id()?,
            fresh: true,
            user: None,
        })
    }

    /// Starts a logged-in session for `user` under a new id, ending the
    /// current one (the id changes at login: no fixation).
    pub async fn login(app: &AppState, old: &Session, user: User) -> Result<Session, ApiError> {
        let _ = app.state.kv_delete(&session_key(&old.id)).await?;
        let id = new_id()?;
        let json = serde_json::to_string(&user)
            .map_err(|e| ApiError::unavailable("session encoding", e))?;
        app.state
            .kv_set(&session_key(&id), &json, Some(app.config.session_ttl))
            .await?;
        // Indexed per user, so that deleting the account ends them all.
        app.state
            .list_push(&WebList::Sessions(&user.pk), &id, SESSIONS_KEPT)
            .await?;
        Ok(Session {
            id,
            fresh: true,
            user: Some(user),
        })
    }

    /// Ends every session of user `pk` (the account is deleted): their
    /// records and the index go.
    pub async fn end_all(app: &AppState, pk: &str) -> Result<(), ApiError> {
        let list = WebList::Sessions(pk);
        for id in app.state.list_range(&list, SESSIONS_KEPT).await? {
            let _existed = app.state.kv_delete(&session_key(&id)).await?;
        }
        let _existed = app.state.list_delete(&list).await?;
        Ok(())
    }

    /// Ends the session: forgets its record, gives a new anonymous id.
    pub async fn logout(app: &AppState, old: &Session) -> Result<Session, ApiError> {
        let _ = app.state.kv_delete(&session_key(&old.id)).await?;
        Ok(Session {
            id: new_id()?,
            fresh: true,
            user: None,
        })
    }

    /// The CSRF token of this session's pages.
    pub fn csrf(&self, app: &AppState) -> String {
        b64u_encode(&app.web.mac("csrf", &self.id, 32))
    }

    /// Checks a CSRF token sent back (constant time).
    pub fn check_csrf(&self, app: &AppState, sent: Option<&str>) -> Result<(), ApiError> {
        let want = self.csrf(app);
        match sent {
            Some(s) if ct_eq(s.as_bytes(), want.as_bytes()) => Ok(()),
            _ => Err(ApiError::forbidden(
                "csrf",
                "missing or wrong CSRF token: reload the page",
            )),
        }
    }

    /// Checks the CSRF header of a JSON request.
    pub fn check_csrf_header(&self, app: &AppState, req: &HttpRequest) -> Result<(), ApiError> {
        let sent = req.headers().get(CSRF_HEADER).and_then(|v| v.to_str().ok());
        self.check_csrf(app, sent)
    }

    /// The logged-in user, or 401.
    pub fn require_user(&self) -> Result<&User, ApiError> {
        self.user
            .as_ref()
            .ok_or_else(|| ApiError::new(StatusCode::UNAUTHORIZED, "not_logged_in", "log in first"))
    }

    /// Adds the cookie to a response when it must be sent.
    pub fn apply(&self, app: &AppState, resp: &mut HttpResponseBuilder) {
        if !self.fresh {
            return;
        }
        let Some(value) = app.web.sign(&self.id) else {
            return;
        };
        let secure = app.config.public_origin.starts_with("https:");
        let ttl = i64::try_from(app.config.session_ttl.as_secs()).unwrap_or(3600);
        let cookie = Cookie::build(COOKIE, value)
            .path("/")
            .http_only(true)
            .secure(secure)
            .same_site(SameSite::Lax)
            .max_age(time::Duration::seconds(ttl))
            .finish();
        resp.cookie(cookie);
    }
}

/// Parses the JSON body of a POST from the pages.
pub(crate) fn json_body<T: for<'de> serde::Deserialize<'de>>(body: &[u8]) -> Result<T, ApiError> {
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request("bad_body", format!("bad request body: {e}")))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn constant_time_equality() {
        assert!(ct_eq(b"abc", b"abc"));
        assert!(!ct_eq(b"abc", b"abd"));
        assert!(!ct_eq(b"abc", b"ab"));
        assert!(ct_eq(b"", b""));
    }

    #[test]
    fn cookies_are_signed() {
        let config = runtime::config::Config::from_pairs(&[]).unwrap();
        let keys = WebKeys::new(&config).unwrap();
        let other = WebKeys::new(&config).unwrap();
        let signed = keys.sign("abc").unwrap();
        assert_ne!(signed, "abc");
        assert_eq!(keys.verify(&signed).as_deref(), Some("abc"));
        assert_eq!(other.verify(&signed), None, "random keys differ");
        assert_eq!(keys.verify("abc"), None);
        let mut forged = signed.clone();
        forged.pop();
        forged.push('x');
        assert_eq!(keys.verify(&forged), None);
        // The same configured secret gives the same keys on every gateway.
        let hex = "cd".repeat(32);
        let config = runtime::config::Config::from_pairs(&[("ALIAS_SESSION_KEY", &hex)]).unwrap();
        let a = WebKeys::new(&config).unwrap();
        let b = WebKeys::new(&config).unwrap();
        assert_eq!(b.verify(&a.sign("s").unwrap()).as_deref(), Some("s"));
        assert_eq!(a.mac("csrf", "x", 32), b.mac("csrf", "x", 32));
        assert_ne!(a.mac("csrf", "x", 32), a.mac("salt", "x", 32));
    }
}
