//! `POST /alias/process`, grants, bindings, transfers and operations.

mod accept;
mod binding;
mod lifecycle;
mod limits;

use crate::fixtures::*;
use crate::{Bank, ORIGIN};
use reqwest::StatusCode;
use runtime::jobs::{self, ProcessJob};
use runtime::mq::Route;
use runtime::state::{FileRecord, TransferState};
use serde_json::Value as Json;

async fn bind_user(bank: &Bank, n: u8) {
    let resp = bank
        .http
        .post(bank.url("/alias/bind"))
        .json(&serde_json::json!({"bind": bind(&user_key(n), ORIGIN)}))
        .send()
        .await
        .unwrap();
    assert_eq!(
        resp.status(),
        StatusCode::OK,
        "{}",
        resp.text().await.unwrap()
    );
}

async fn process_async(bank: &Bank, grant: &str) -> (StatusCode, Json, Option<String>) {
    let resp = bank
        .http
        .post(bank.url("/alias/process"))
        .header("Prefer", "respond-async")
        .json(&serde_json::json!({ "grant": grant }))
        .send()
        .await
        .unwrap();
    let status = resp.status();
    let location = resp
        .headers()
        .get("location")
        .map(|v| v.to_str().unwrap().to_owned());
    (status, resp.json().await.unwrap(), location)
}

async fn refused(bank: &Bank, body: Json) -> (StatusCode, Json) {
    let resp = bank
        .http
        .post(bank.url("/alias/process"))
        .header("Prefer", "respond-async")
        .json(&body)
        .send()
        .await
        .unwrap();
    let status = resp.status();
    (status, resp.json().await.unwrap_or(Json::Null))
}

/// Plays the workers' part through RabbitMQ and Redis: takes the process
/// job, records one archive and walks the state machine to `done`.
async fn fake_workers(bank: &Bank, fail: Option<&str>) {
    let mut consumer = bank
        .app
        .broker
        .consume(Route::Process, 1, "fake")
        .await
        .unwrap();
    let delivery = consumer.next().await.unwrap().unwrap();
    let job: ProcessJob = jobs::decode(delivery.body()).unwrap();
    let state = &bank.app.state;
    let (id, g) = (job.transfer.as_str(), job.generation);
    assert!(state
        .transition(
            id,
            g,
            &[TransferState::Accepted],
            TransferState::Processing,
            None
        )
        .await
        .unwrap());
    let file = FileRecord {
        name: "google.my_activity.search.zip".into(),
        scope: "google.my_activity.search".into(),
        storage_key: format!("transfers/{id}/{g}/google.my_activity.search.zip"),
        size: 10,
        blake2b: "HASH".into(),
        offset: 0,
        finished: false,
    };
    state.set_files(id, g, &[file]).await.unwrap();
    assert!(state
        .transition(
            id,
            g,
            &[TransferState::Processing],
            TransferState::Pushing,
            None
        )
        .await
        .unwrap());
    state
        .commit_offset(id, g, "google.my_activity.search.zip", 10)
        .await
        .unwrap();
    state
        .finish_file(id, g, "google.my_activity.search.zip")
        .await
        .unwrap();
    let (to, err) = match fail {
        Some(reason) => (TransferState::Failed, Some(reason)),
        None => (TransferState::Done, None),
    };
    assert!(state
        .transition(id, g, &[TransferState::Pushing], to, err)
        .await
        .unwrap());
    delivery.ack().await.unwrap();
}
