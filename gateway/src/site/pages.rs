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
    detail: &'a str,
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
    error_page_with_detail(app, session, status, heading, message, "")
}

/// An error page whose technical `detail` is folded away under the
/// message for people.
pub fn error_page_with_detail(
    app: &AppState,
    session: &Session,
    status: StatusCode,
    heading: &str,
    message: &str,
    detail: &str,
) -> HttpResponse {
    let chrome = Chrome::new(app, session, heading);
    let body = ErrorPage {
        chrome: &chrome,
        heading,
        message,
        detail,
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
    deleted: Option<String>,
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
    error: String,
    context: String,
}

/// What a form posted without its script is told: nothing was sent.
const NO_SCRIPT: &str =
    "Nothing was sent: this page's script had not started yet (your password is \
     turned into your key in this browser, never sent). Wait a moment, then try again.";

async fn account_page(
    app: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<NextQuery>,
    signup: bool,
    posted: bool,
) -> Result<HttpResponse, ApiError> {
    let session = Session::load(&app, &req).await?;
    let next = safe_next(query.next.as_deref());
    if session.user.is_some() && query.username.is_none() && !posted {
        return Ok(see_other(&app, &session, &next));
    }
    let title = if signup {
        "Create an account"
    } else {
        "Log in"
    };
    let chrome = Chrome::new(&app, &session, title);
    let wanted = query
        .username
        .as_deref()
        .map(|u| u.trim().to_ascii_lowercase())
        .filter(|u| !u.is_empty());
    let notice = match (&session.user, &wanted) {
        (Some(me), Some(w)) if *w != me.username => format!(
            "This request is for the account “{w}”, but you are logged in as “{}”. Log in as {w} to answer it, or ignore it.",
            me.username
        ),
        _ if query.deleted.is_some() => "Your account is deleted: your exports, agreements and sessions are gone from this data bank, and the services you had agreed to were told to delete what they received. You can create a new account at any time.".to_owned(),
        _ if query.logged_out.is_some() => "You are logged out.".to_owned(),
        _ => String::new(),
    };
    let next_q: String = url::form_urlencoded::byte_serialize(next.as_bytes()).collect();
    let context = super::authorize::context_for_login(&app, &next).await;
    let body = LoginPage {
        chrome: &chrome,
        next_q,
        username: query.username.clone().unwrap_or_default(),
        signup,
        notice,
        error: if posted {
            NO_SCRIPT.to_owned()
        } else {
            String::new()
        },
        context,
        next,
    }
    .render();
    let status = if posted {
        StatusCode::BAD_REQUEST
    } else {
        StatusCode::OK
    };
    Ok(html(&app, &session, &chrome, status, body))
}

/// `GET /login?next=`: the login page.
pub async fn login_page(
    app: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, ApiError> {
    account_page(app, req, query, false, false).await
}

/// `GET /signup?next=`: the account creation page.
pub async fn signup_page(
    app: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, ApiError> {
    account_page(app, req, query, true, false).await
}

/// `POST /login` and `POST /signup`: where the forms lead when they are
/// submitted before their script runs (the script always prevents the
/// submission). The fields have no names, so the body is empty; it is not
/// read. The page comes back with the reason, and the password stayed in
/// the browser.
pub async fn form_without_script(
    app: web::Data<AppState>,
    req: HttpRequest,
    query: web::Query<NextQuery>,
) -> Result<HttpResponse, ApiError> {
    let signup = req.path() == "/signup";
    account_page(app, req, query, signup, true).await
}

#[derive(Template)]
#[template(path = "home.html")]
struct HomePage<'a> {
    chrome: &'a Chrome,
}

/// `GET /`: the dashboard, or (logged out) what this is, with the ways in.
pub async fn home(app: web::Data<AppState>, req: HttpRequest) -> Result<HttpResponse, ApiError> {
    let session = Session::load(&app, &req).await?;
    if session.user.is_some() {
        return Ok(see_other(&app, &session, "/dashboard"));
    }
    let chrome = Chrome::new(&app, &session, "Your data, given on your terms");
    let body = HomePage { chrome: &chrome }.render();
    Ok(html(&app, &session, &chrome, StatusCode::OK, body))
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
