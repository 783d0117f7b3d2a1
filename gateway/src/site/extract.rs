//! The preamble of the pages' requests as actix extractors, written once:
//! load the session (checking the CSRF header of a POST), require a
//! logged-in user, parse the JSON body. The errors are those of the steps
//! in that order: 403 `csrf`, 401 `not_logged_in`, 400 `bad_body`, each in
//! the usual envelope.
//!
//! - [`LoggedIn`]: a GET of a logged-in user (no CSRF check: GETs change
//!   nothing);
//! - [`PageJson`]: a JSON POST from the pages, CSRF checked, anyone
//!   (signup and login);
//! - [`UserJson`]: a JSON POST of a logged-in user, CSRF checked.

use super::session::{json_body, Session, User};
use crate::error::ApiError;
use crate::AppState;
use actix_web::dev::Payload;
use actix_web::{web, FromRequest, HttpRequest};
use serde::de::DeserializeOwned;
use std::future::Future;
use std::pin::Pin;

type Extracted<T> = Pin<Box<dyn Future<Output = Result<T, actix_web::Error>>>>;

/// The gateway's state of a request (registered on every server).
fn app_of(req: &HttpRequest) -> Result<web::Data<AppState>, ApiError> {
    req.app_data::<web::Data<AppState>>()
        .cloned()
        .ok_or_else(|| ApiError::unavailable("the gateway's state", "not registered"))
}

/// A request of a logged-in user, without a body.
pub struct LoggedIn {
    /// The gateway's state.
    pub app: web::Data<AppState>,
    /// The session (cookie to send back, if any).
    pub session: Session,
    /// Who is logged in.
    pub user: User,
}

impl FromRequest for LoggedIn {
    type Error = actix_web::Error;
    type Future = Extracted<LoggedIn>;

    fn from_request(req: &HttpRequest, _: &mut Payload) -> Self::Future {
        let req = req.clone();
        Box::pin(async move {
            let app = app_of(&req)?;
            let session = Session::load(&app, &req).await?;
            let user = session.require_user()?.clone();
            Ok(LoggedIn { app, session, user })
        })
    }
}

/// A JSON POST from the pages, its CSRF header checked, by anyone.
pub struct PageJson<T> {
    /// The gateway's state.
    pub app: web::Data<AppState>,
    /// The session (anonymous or not).
    pub session: Session,
    /// The parsed body.
    pub body: T,
}

/// Reads the whole body (within the server's `PayloadConfig`) and parses it.
async fn body_of<T: DeserializeOwned>(
    req: &HttpRequest,
    mut payload: Payload,
) -> Result<T, actix_web::Error> {
    let bytes = web::Bytes::from_request(req, &mut payload).await?;
    Ok(json_body(&bytes)?)
}

impl<T: DeserializeOwned + 'static> FromRequest for PageJson<T> {
    type Error = actix_web::Error;
    type Future = Extracted<PageJson<T>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let app = app_of(&req)?;
            let session = Session::load_checked(&app, &req).await?;
            let body = body_of(&req, payload).await?;
            Ok(PageJson { app, session, body })
        })
    }
}

/// A JSON POST of a logged-in user, its CSRF header checked.
pub struct UserJson<T> {
    /// The gateway's state.
    pub app: web::Data<AppState>,
    /// The session.
    pub session: Session,
    /// Who is logged in.
    pub user: User,
    /// The parsed body.
    pub body: T,
}

impl<T: DeserializeOwned + 'static> FromRequest for UserJson<T> {
    type Error = actix_web::Error;
    type Future = Extracted<UserJson<T>>;

    fn from_request(req: &HttpRequest, payload: &mut Payload) -> Self::Future {
        let req = req.clone();
        let payload = payload.take();
        Box::pin(async move {
            let app = app_of(&req)?;
            let session = Session::load_checked(&app, &req).await?;
            let user = session.require_user()?.clone();
            let body = body_of(&req, payload).await?;
            Ok(UserJson {
                app,
                session,
                user,
                body,
            })
        })
    }
}
