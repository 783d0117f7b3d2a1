//! `POST {base}{id}/{file}` (a file is complete) and `POST {base}{id}` (the
//! transfer is complete): sizes and hashes checked against the bytes held.

use std::collections::BTreeSet;
use std::fs::OpenOptions;

use actix_web::web;
use actix_web::{HttpRequest, HttpResponse};
use protocol::wire::{FileFinish, TransferFinish, FINISH_ACTION};

use super::{begin, blocking, check_names, end, Reject, FINISH_LIMIT};
use crate::body::BodyReader;
use crate::store::{bump, hash_file, persist, Shared, TransferState};

/// `POST {base}{id}/{file}`: the file is complete; check size and hash.
pub(crate) async fn finish_file(
    req: HttpRequest,
    path: web::Path<(String, String)>,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (id, file) = path.into_inner();
    let (call, fault) = begin(&shared, &req);
    bump(&shared.counters.file_finishes);
    let mut reader = BodyReader::new(payload, &shared.settings.limits);
    let body = reader.read_all(FINISH_LIMIT).await;
    let response = match (fault, body) {
        (Some(r), _) => r,
        (None, Err(r)) => r.response(),
        // The reference client answers 200 and does nothing.
        (None, Ok(_)) if call.faults.reference_mode => HttpResponse::Ok().finish(),
        (None, Ok(body)) => match do_finish_file(&id, &file, &body, &shared).await {
            Ok(()) => HttpResponse::Ok().finish(),
            Err(r) => r.response(),
        },
    };
    end(&shared, call, reader.received, response, false).await
}

async fn do_finish_file(id: &str, file: &str, body: &[u8], shared: &Shared) -> Result<(), Reject> {
    check_names(id, Some(file))?;
    let msg: FileFinish = serde_json::from_slice(body).map_err(|_| {
        Reject::bad(
            "bad_body",
            r#"expected a JSON body {"action":"finish","size":N,"blake2b":"…"}"#,
        )
    })?;
    if msg.action.as_deref() != Some(FINISH_ACTION) {
        return Err(Reject::bad(
            "unknown_action",
            "unknown action: expected \"finish\"",
        ));
    }
    let slot = shared.slot(id).ok_or_else(|| {
        Reject::conflict(
            "no_transfer",
            "no transfer started: send the start request first",
        )
    })?;
    let _io = slot.io.lock().await;
    let (revoked, finished, total, new_file, files) = {
        let st = slot.state();
        let f = st.transfer.files.get(file);
        (
            st.transfer.revoked,
            st.transfer.finished,
            f.and_then(|f| f.total),
            f.is_none(),
            st.transfer.files.len(),
        )
    };
    if revoked {
        return Err(Reject::conflict(
            "revoked",
            "the grant of this transfer is revoked",
        ));
    }
    if finished {
        return Err(Reject::conflict(
            "transfer_finished",
            "the transfer is finished: nothing can change until a new start",
        ));
    }
    let max_files = shared.settings.limits.max_files;
    if new_file && files >= max_files {
        return Err(Reject::new(
            actix_web::http::StatusCode::PAYLOAD_TOO_LARGE,
            "too_many_files",
            format!("a transfer holds at most {max_files} files"),
        ));
    }
    let path = shared.data_dir(id).join(file);
    let hashed = path.clone();
    let (size, hash) = blocking(move || hash_file(&hashed))
        .await
        .map_err(Reject::io)?;
    if let Some(want) = msg.size {
        if want != size {
            return Err(Reject::bad(
                "size_mismatch",
                format!("size mismatch: {want} bytes announced, {size} received"),
            )
            .with_offset(size));
        }
    } else if let Some(total) = total.filter(|t| *t != size) {
        return Err(Reject::bad(
            "size_mismatch",
            format!("size mismatch: {total} bytes announced by Content-Range, {size} received"),
        )
        .with_offset(size));
    }
    if let Some(want) = &msg.blake2b {
        if *want != hash {
            return Err(Reject::bad(
                "blake2b_mismatch",
                format!("blake2b mismatch: the {size} bytes received hash to {hash}"),
            ));
        }
    }
    if size == 0 {
        // An empty file has no chunk: make it exist.
        blocking(move || {
            OpenOptions::new()
                .create(true)
                .append(true)
                .open(&path)
                .map(drop)
        })
        .await
        .map_err(Reject::io)?;
    }
    let state = {
        let mut st = slot.state();
        let entry = st.transfer.files.entry(file.to_owned()).or_default();
        entry.size = size;
        entry.complete = true;
        entry.blake2b = Some(hash);
        st.transfer.clone()
    };
    save(shared, id, state).await
}

async fn save(shared: &Shared, id: &str, state: TransferState) -> Result<(), Reject> {
    let dir = shared.transfer_dir(id);
    blocking(move || persist(&dir, &state, None))
        .await
        .map_err(Reject::io)
}

/// `POST {base}{id}`: the transfer is complete; check every listed file.
pub(crate) async fn finish_transfer(
    req: HttpRequest,
    id: web::Path<String>,
    payload: web::Payload,
    shared: web::Data<Shared>,
) -> HttpResponse {
    let (call, fault) = begin(&shared, &req);
    bump(&shared.counters.transfer_finishes);
    let mut reader = BodyReader::new(payload, &shared.settings.limits);
    let body = reader.read_all(FINISH_LIMIT).await;
    let response = match (fault, body) {
        (Some(r), _) => r,
        (None, Err(r)) => r.response(),
        (None, Ok(body)) => {
            match do_finish_transfer(&id, &body, &shared, call.faults.reference_mode).await {
                Ok(()) => HttpResponse::Ok().finish(),
                Err(r) => r.response(),
            }
        }
    };
    end(&shared, call, reader.received, response, false).await
}

async fn do_finish_transfer(
    id: &str,
    body: &[u8],
    shared: &Shared,
    reference: bool,
) -> Result<(), Reject> {
    check_names(id, None)?;
    // The reference sends `String({finished: true})`.
    let files = if body.trim_ascii() == b"[object Object]" || reference {
        None
    } else {
        let msg: TransferFinish = serde_json::from_slice(body).map_err(|_| {
            Reject::bad(
                "bad_body",
                r#"expected a JSON body {"finished":true,"files":[…]}"#,
            )
        })?;
        if msg.finished != Some(true) {
            return Err(Reject::bad("not_finished", "expected \"finished\": true"));
        }
        msg.files
    };
    let Some(slot) = shared.slot(id) else {
        return if reference {
            Ok(())
        } else {
            Err(Reject::conflict(
                "no_transfer",
                "no transfer started: send the start request first",
            ))
        };
    };
    let _io = slot.io.lock().await;
    let state = {
        let mut st = slot.state();
        if let Some(listed) = &files {
            check_listed(&st.transfer, listed)?;
        }
        if st.transfer.finished && !reference {
            // Nothing changed since (chunks and file finishes are refused):
            // a repeated finish is answered, never changes the verdict.
            return Ok(());
        }
        st.transfer.finished = true;
        st.transfer.finish_verified = files.is_some();
        st.transfer.clone()
    };
    save(shared, id, state).await?;
    tracing::info!(id, verified = files.is_some(), "transfer finished");
    Ok(())
}

fn check_listed(
    transfer: &TransferState,
    listed: &[protocol::wire::FileSummary],
) -> Result<(), Reject> {
    let mut seen = BTreeSet::new();
    for f in listed {
        if !seen.insert(f.name.as_str()) {
            return Err(Reject::bad(
                "duplicate_file",
                format!("file {:?} listed twice", f.name),
            ));
        }
        let Some(held) = transfer.files.get(&f.name) else {
            return Err(Reject::bad(
                "missing_file",
                format!("file {:?} was not received", f.name),
            ));
        };
        if !held.complete {
            return Err(Reject::bad(
                "incomplete_file",
                format!("file {:?} is not finished", f.name),
            ));
        }
        if held.size != f.size {
            return Err(Reject::bad(
                "size_mismatch",
                format!(
                    "file {:?}: {} bytes listed, {} received",
                    f.name, f.size, held.size
                ),
            ));
        }
        if held.blake2b.as_deref() != Some(f.blake2b.as_str()) {
            return Err(Reject::bad(
                "blake2b_mismatch",
                format!("file {:?}: blake2b differs from the bytes received", f.name),
            ));
        }
    }
    if let Some(extra) = transfer.files.keys().find(|k| !seen.contains(k.as_str())) {
        return Err(Reject::bad(
            "unlisted_file",
            format!("file {extra:?} was received but is not listed"),
        ));
    }
    Ok(())
}
