//! Rendering pages: the askama templates of `gateway/templates/`, the
//! headers every page carries (no framing, a nonce-based script policy, no
//! caching), the login and signup pages, and the error page.

use super::session::{random_bytes, Session};
use crate::error::ApiError;
use crate::AppState;
use actix_web::http::{header, StatusCode};
use actix_web::{web, HttpRequest, HttpResponse};
use askama::Template;
use protocol::anychain::b64u_encode;
use serde::Deserialize;

/// What every page needs.
pub struct Chrome {
    /// The page title.
    pub title: String,
    /// The session's CSRF token.
    pub csrf: String,
    /// The nonce of this response's scripts.
    pub nonce: String,
    /// The user's alias (`name@host`).
    pub alias: Option<String>,
    /// The data bank's origin.
    pub origin: String,
    /// Its host (and port): the domain of aliases.
    pub host: String,
    /// Another origin forms may lead to (the client's, on the consent page,
    /// whose deny form redirects there).
    pub form_target: Option<String>,
}

impl Chrome {
    /// The chrome of a page for `session`.
    pub fn new(app: &AppState, session: &Session, title: &str) -> Chrome {
        let nonce = random_bytes(16)
            .map(|b| b64u_encode(&b))
            .unwrap_or_else(|_| "n".into());
        Chrome {
            title: title.to_owned(),
            csrf: session.csrf(app),
            nonce,
            alias: session.user.as_ref().map(|u| alias_of(app, &u.username)),
            origin: app.config.public_origin.clone(),
            host: alias_of(app, "").trim_start_matches('@').to_owned(),
            form_target: None,
        }
    }
}

/// `username@<host of ALIAS_PUBLIC_ORIGIN>`.
pub fn alias_of(app: &AppState, username: &str) -> String {
    let host = url::Url::parse(&app.config.public_origin)
        .ok()
        .and_then(|u| {
            u.host_str().map(|h| {
                u.port()
                    .map_or_else(|| h.to_owned(), |p| format!("{h}:{p}"))
            })
        })
        .unwrap_or_default();
    format!("{username}@{host}")
}

/// A rendered page with its security headers and the session cookie.
pub fn html(
    app: &AppState,
    session: &Session,
    chrome: &Chrome,
    status: StatusCode,
    body: Result<String, askama::Error>,
) -> HttpResponse {
    let body = match body {
        Ok(b) => b,
        Err(e) => {
            tracing::error!(error = %e, "template");
            return HttpResponse::InternalServerError().body("page rendering failed");
        }
    };
    let mut resp = HttpResponse::build(status);
    session.apply(app, &mut resp);
    let csp = format!(
        "default-src 'self'; script-src 'self' 'nonce-{}' 'wasm-unsafe-eval'; style-src 'self'; \
         img-src 'self' data:; connect-src 'self'; form-action 'self'{}; frame-ancestors 'none'; \
         base-uri 'none'; object-src 'none'",
        chrome.nonce,
        chrome
            .form_target
            .as_deref()
            .map(|o| format!(" {o}"))
            .unwrap_or_default()
    );
    resp.insert_header((header::CONTENT_TYPE, "text/html; charset=utf-8"))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .insert_header(("X-Frame-Options", "DENY"))
        .insert_header(("X-Content-Type-Options", "nosniff"))
        .insert_header(("Referrer-Policy", "no-referrer"))
        .insert_header(("Content-Security-Policy", csp))
        .body(body)
}

/// A redirect that keeps the session cookie.
pub fn see_other(app: &AppState, session: &Session, location: &str) -> HttpResponse {
    let mut resp = HttpResponse::SeeOther();
    session.apply(app, &mut resp);
    resp.insert_header((header::LOCATION, location.to_owned()))
        .insert_header((header::CACHE_CONTROL, "no-store"))
        .finish()
}

#[derive(Template)]
#[template(path = "error.html")]
struct ErrorPage<'a> {
    chrome: &'a Chrome,
    heading: &'a str,
    message: &'a str,
}

/// An error page (never a redirect: a request that failed validation must
/// not send the user anywhere).
pub fn error_page(
    app: &AppState,
    session: &Session,
    status: StatusCode,
    heading: &str,
    message: &str,
) -> HttpResponse {
    let chrome = Chrome::new(app, session, heading);
    let body = ErrorPage {
        chrome: &chrome,
        heading,
        message,
    }
    .render();
    html(app, session, &chrome, status, body)
}

/// Only local paths may follow a login (`/…` but not `//…` or `/\…`).
pub fn safe_next(next: Option<&str>) -> String {
    match next {
        Some(n)
            if n.starts_with('/')
                && !n.starts_with("//")
                && !n.starts_with("/\\")
                && !n.chars().any(|c| c.is_control() || c == '\\') =>
        {
            n.to_owned()
        }
        _ => "/dashboard".to_owned(),
    }
}

#[derive(Deserialize)]
pub struct NextQuery {
    next: Option<String>,
    username: Option<String>,
    logged_out: Option<String>,
}

#[derive(Template)]
#[template(path = "login.html")]
struct LoginPage<'a> {
    chrome: &'a Chrome,
    next: String,
    next_q: String,
    username: String,
    signup: bool,
    notice: String,
}

async fn account_page(
    app: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<NextQuery>,
    signup: bool,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load(&app, &req).await?;
    let next = safe_next(query.next.as_deref());
    if session.user.is_some() && query.username.is_none() {
        return Ok(see_other(&app, &session, &next));
    }
    let title = if signup {
        "Create an account"
    } else {
        "Log in"
    };
    let chrome = Chrome::new(&app, &session, title);
    let notice = if query.logged_out.is_some() {
        "You are logged out.".to_owned()
    } else {
        String::new()
    };
    let next_q: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    let body = LoginPage {
        chrome: &chrome,
        next,
        next_q,
        username: query.username.clone().unwrap_or_default(),
        signup,
        notice,
    }
    .render();
    Ok(html(&app, &session, &chrome, StatusCode::OK, body))
}

/// `GET /login?next=`: the login page.
pub async fn login_page(
    app: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, ApiError> {
    account_page(app, req, query, false).await
}

/// `GET /signup?next=`: the account creation page.
pub async fn signup_page(
    app: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, ApiError> {
    account_page(app, req, query, true).await
}

/// `GET /`: the dashboard, or the login page.
pub async fn home(app: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let session = Session::load(&app, &req).await?;
    let to = if session.user.is_some() {
        "/dashboard"
    } else {
        "/login"
    };
    Ok(see_other(&app, &session, to))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn next_stays_local() {
        assert_eq!(safe_next(Some("/request?x=1")), "/request?x=1");
        assert_eq!(safe_next(Some("//evil.example/")), "/dashboard");
        assert_eq!(safe_next(Some("/\\evil.example")), "/dashboard");
        assert_eq!(safe_next(Some("https://evil.example/")), "/dashboard");
        assert_eq!(safe_next(Some("/a\nb")), "/dashboard");
        assert_eq!(safe_next(None), "/dashboard");
    }
}
