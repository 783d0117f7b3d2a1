//! The user's side of the data bank, served by the gateway: accounts whose
//! key never leaves the browser, the authorization request (consent page),
//! the dashboard (dumps, clients, history, revocation, re-export) and the
//! static scripts those pages load.
//!
//! The pages are rendered on the server (askama templates in
//! `gateway/templates/`); the browser only signs (web/src/*.js, loaded from
//! `/static/`).
//!
//! What the pages keep in the state is named by `runtime::state::WebKey`,
//! `WebList` and `WebCounter` (the account record by username, its username
//! by public key, sessions, single-use challenges, pending authorization
//! requests, the contract a client last showed a user, the re-export
//! switches, the delivered records, known devices, the history): the
//! gateway passes what an entry is about and never formats a key.

mod accounts;
mod assets;
mod authorize;
pub(crate) mod catalog;
mod dashboard;
mod extract;
mod pages;
pub(crate) mod reexport;
pub(crate) mod session;

pub use session::WebKeys;

use actix_web::web;

/// Registers the routes of the user's side.
pub fn routes(cfg: &mut web::ServiceConfig) {
    cfg.service(web::resource("/").route(web::get().to(pages::home)))
        .service(
            web::resource("/login")
                .route(web::get().to(pages::login_page))
                .route(web::post().to(pages::form_without_script)),
        )
        .service(
            web::resource("/signup")
                .route(web::get().to(pages::signup_page))
                .route(web::post().to(pages::form_without_script)),
        )
        .service(web::resource("/logout").route(web::post().to(accounts::logout)))
        .service(web::resource("/web/account/params").route(web::get().to(accounts::params)))
        .service(web::resource("/web/signup/begin").route(web::post().to(accounts::signup_begin)))
        .service(web::resource("/web/signup").route(web::post().to(accounts::signup)))
        .service(web::resource("/web/login/begin").route(web::post().to(accounts::login_begin)))
        .service(web::resource("/web/login/finish").route(web::post().to(accounts::login_finish)))
        .service(web::resource("/web/me").route(web::get().to(accounts::me)))
        .service(
            web::resource("/web/account/password/begin")
                .route(web::post().to(accounts::password_begin)),
        )
        .service(
            web::resource("/web/account/password").route(web::post().to(accounts::password_change)),
        )
        .service(
            web::resource("/web/account/delete").route(web::post().to(accounts::delete_account)),
        )
        .service(web::resource("/request").route(web::get().to(authorize::request_page)))
        .service(web::resource("/request/").route(web::get().to(authorize::request_page)))
        .service(web::resource("/request/{id}/agree").route(web::post().to(authorize::agree)))
        .service(web::resource("/request/{id}/deny").route(web::post().to(authorize::deny)))
        .service(
            web::resource("/web/preview")
                .route(web::get().to(authorize::get_preview))
                .route(web::post().to(authorize::start_preview)),
        )
        .service(
            web::resource("/dashboard")
                .route(web::get().to(dashboard::page))
                .route(web::post().to(dashboard::form_without_script)),
        )
        .service(web::resource("/web/transfers").route(web::get().to(dashboard::transfers)))
        .service(web::resource("/web/transfers/retry").route(web::post().to(dashboard::retry)))
        .service(web::resource("/web/grants").route(web::post().to(dashboard::post_grant)))
        .service(web::resource("/web/reexport").route(web::post().to(dashboard::set_reexport)))
        .service(web::resource("/static/{path:.*}").route(web::get().to(assets::serve)));
}
