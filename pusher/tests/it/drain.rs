//! A push job that holds its client's slot pushes the generation's other
//! unfinished files too (`Pusher::drain`), so they do not each wait in the
//! retry queue for the slot the file before them held. It is answerable
//! for every file recorded when it started (one job is queued per
//! announcement of archives): a file another worker holds is left to it,
//! and the job comes back until it saw that file counted; a job whose
//! files were all pushed elsewhere ends without sending anything. Then it
//! pushes the transfers of the same client that found the slot taken
//! (`Pusher::serve_waiting`), and only those.

use std::time::Duration;

use runtime::jobs::{self, PushJob};
use runtime::state::{Added, Lease, LeaseGuard, Mark, State, TransferState};
use runtime::worker::{Disposition, JobHandler};
use sink::{Sink, SinkConfig, SinkHandle};

use crate::{example, stored_archive};

struct Setup {
    _dirs: (tempfile::TempDir, tempfile::TempDir),
    sink: SinkHandle,
    state: State,
    pusher: pusher::worker::Pusher,
    id: String,
    names: Vec<String>,
}

/// A sink in `dirs.0` receiving for the client of `grant`, and a push
/// worker (archives in `dirs.1`, namespace `{label}-…`) allowed one push
/// at a time per client, in 64 KiB chunks.
fn sink_and_worker(
    dirs: &(tempfile::TempDir, tempfile::TempDir),
    grant: &str,
    label: &str,
) -> (
    SinkHandle,
    State,
    runtime::storage::Storage,
    pusher::worker::Pusher,
) {
    let sink_config =
        SinkConfig::new(dirs.0.path()).with_client_key(&sink::client_key_of(grant).unwrap());
    let (_, sink) = Sink::start(sink_config).unwrap();
    let (state, _, storage, pusher) = crate::push_worker(
        dirs.1.path(),
        label,
        &[
            ("ALIAS_PUSH_CHUNK", "65536"),
            ("ALIAS_PUSH_PER_CLIENT", "1"),
        ],
    );
    (sink, state, storage, pusher)
}

/// A transfer pushing three stored archives of 200 KiB to a sink, one
/// push at a time allowed per client.
async fn setup() -> Setup {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sink, state, storage, pusher) = sink_and_worker(&dirs, &example("grant_token"), "drain");
    let id = example("grant_contract_hash");
    let push_url = format!("{}{id}", sink.base_url());
    let mut files = Vec::new();
    for (i, name) in ["a.zip", "b.zip", "c.zip"].iter().enumerate() {
        files.push(stored_archive(&storage, &id, name, 200, i + 3).await);
    }
    crate::pushing_transfer(&state, &id, &example("grant_token"), &push_url, &files).await;
    Setup {
        _dirs: dirs,
        sink,
        state,
        pusher,
        id,
        names: files.into_iter().map(|f| f.name).collect(),
    }
}

fn job(id: &str, file: &str) -> PushJob {
    PushJob {
        transfer: id.to_owned(),
        generation: 1,
        file: Some(file.to_owned()),
    }
}

async fn deliver(pusher: &pusher::worker::Pusher, job: &PushJob) -> Disposition {
    pusher.handle(&jobs::encode(job).unwrap(), 1).await
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn one_delivery_pushes_every_file_of_the_generation() {
    let s = setup().await;
    assert_eq!(
        deliver(&s.pusher, &job(&s.id, &s.names[0])).await,
        Disposition::Ack
    );
    let t = s.state.transfer(&s.id).await.unwrap().unwrap();
    assert_eq!(t.state, TransferState::Done, "{t:?}");
    let counters = s.sink.counters();
    assert_eq!(counters.file_finishes, 3, "{counters:?}");
    assert_eq!(counters.transfer_finishes, 1, "{counters:?}");
    // The other files' own jobs end without a request of their own.
    for name in &s.names[1..] {
        assert_eq!(
            deliver(&s.pusher, &job(&s.id, name)).await,
            Disposition::Ack
        );
    }
    let after = s.sink.counters();
    assert_eq!(after.requests, counters.requests, "{after:?}");
}

/// A file another worker is pushing (it holds the file's lease) is left to
/// it, but the job does not end on the strength of it: one push job is
/// queued per announcement of archives, so the job is answerable for every
/// file recorded when it started, and it comes back (`Retry`) until it saw
/// each counted. A job whose recorded files were all pushed elsewhere, the
/// list not sealed yet, ends at once, without waiting for the client's
/// slot (held here by another pusher).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_file_another_worker_holds_brings_the_job_back() {
    let s = setup().await;
    let held = LeaseGuard::acquire(
        &s.state,
        Lease::push(&s.id, 1, &s.names[2]),
        "another-worker",
        Duration::from_secs(60),
    )
    .await
    .unwrap()
    .expect("the lease is free");
    let step = deliver(&s.pusher, &job(&s.id, &s.names[0])).await;
    assert!(matches!(step, Disposition::Retry(_)), "{step:?}");
    let mut finished = Vec::new();
    for name in &s.names {
        let done = Mark::FileDone(name);
        finished.push(s.state.marked(&s.id, 1, done).await.unwrap());
    }
    assert_eq!(finished, [true, true, false]);
    assert_eq!(s.sink.counters().file_finishes, 2);
    let t = s.state.transfer(&s.id).await.unwrap().unwrap();
    assert_eq!(t.state, TransferState::Pushing, "{t:?}");
    assert_eq!(s.sink.counters().transfer_finishes, 0);
    // The holder lets go without pushing it; the job's next delivery
    // pushes the file and ends the transfer.
    held.release().await;
    assert_eq!(
        deliver(&s.pusher, &job(&s.id, &s.names[0])).await,
        Disposition::Ack
    );
    let t = s.state.transfer(&s.id).await.unwrap().unwrap();
    assert_eq!(t.state, TransferState::Done, "{t:?}");
    assert_eq!(s.sink.counters().file_finishes, 3);
}

/// A push job whose generation's recorded archives were all pushed by
/// other jobs, while the list is not sealed, ends at once: it neither
/// waits for the client's slot (held here by another pusher) nor comes
/// back from the retry queue. Its own file counted is not enough: it is
/// answerable for every file recorded when it started. Archives recorded
/// after it started queue a job of their own.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_with_every_file_pushed_elsewhere_ends_at_once() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sink, state, storage, pusher, id) = pushing_without_archives(&dirs, "elsewhere").await;
    record_two_archives(&state, &storage, &id).await;
    let slot = hold_client_slot(&state).await;
    // Its file pushed and counted by another job, B not: the usual path,
    // and the slot is taken.
    assert!(state.finish_file(&id, 1, "a.zip").await.unwrap());
    let step = deliver(&pusher, &job(&id, "a.zip")).await;
    assert!(matches!(step, Disposition::Retry(_)), "{step:?}");
    // Both counted: it ends.
    assert!(state.finish_file(&id, 1, "b.zip").await.unwrap());
    assert_eq!(deliver(&pusher, &job(&id, "a.zip")).await, Disposition::Ack);
    assert_eq!(sink.counters().requests, 0);
    // It lowered the queued flag as it started: the next archive queues.
    let c = stored_archive(&storage, &id, "c.zip", 50, 7).await;
    assert_eq!(
        state.add_files(&id, 1, &[c], false).await.unwrap(),
        Added::Recorded { queue: true }
    );
    // Not counted: the usual path, and the slot is taken.
    let step = deliver(&pusher, &job(&id, "c.zip")).await;
    assert!(matches!(step, Disposition::Retry(_)), "{step:?}");
    slot.release().await;
}

/// Takes the sink's domain's first client slot as another pusher would.
async fn hold_client_slot(state: &State) -> LeaseGuard {
    let domain = runtime::state::ClientName::Domain("127.0.0.1".into());
    LeaseGuard::acquire(
        state,
        Lease::client_slot(&domain, 0),
        "another-pusher",
        Duration::from_secs(60),
    )
    .await
    .unwrap()
    .expect("the slot is free")
}

/// A push job that arrives while another job of the generation is pushing
/// (it is in the restart fence) waits for that job to drain the files
/// rather than go for the client's slot, here held elsewhere: it ends once
/// they are all counted (and the transfer ended), with no request and no
/// trip round the retry queue. Past the wait, or with nobody pushing, it
/// takes the usual path (the slot is taken: it retries later).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_job_waits_for_the_job_draining_its_files() {
    let s = setup().await;
    let slot = hold_client_slot(&s.state).await;
    // Nobody pushing the generation: the usual path, and the slot is taken.
    let step = deliver(&s.pusher, &job(&s.id, &s.names[0])).await;
    assert!(matches!(step, Disposition::Retry(_)), "{step:?}");

    // Another job of generation 1 is pushing.
    assert!(s
        .state
        .enter_fence(&s.id, 1, "another-pusher:job", Duration::from_secs(60))
        .await
        .unwrap());
    // Files nobody counts: past the wait, the usual path again.
    let step = deliver(&s.pusher, &job(&s.id, &s.names[1])).await;
    assert!(matches!(step, Disposition::Retry(_)), "{step:?}");
    assert_eq!(s.sink.counters().requests, 0);

    // Now it counts every file 100 ms into the wait and ends the transfer
    // (any time within the wait gives the same outcome).
    let drainer = {
        let (state, id, names) = (s.state.clone(), s.id.clone(), s.names.clone());
        tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            for name in &names {
                assert!(state.finish_file(&id, 1, name).await.unwrap());
            }
            let pushing = [TransferState::Pushing];
            state
                .transition(&id, 1, &pushing, TransferState::Done, None)
                .await
                .unwrap()
        })
    };
    let step = deliver(&s.pusher, &job(&s.id, &s.names[0])).await;
    assert!(drainer.await.unwrap());
    assert_eq!(step, Disposition::Ack);
    assert_eq!(s.sink.counters().requests, 0);
    slot.release().await;
}

/// A grant of a contract of client `name` (the one client key of these
/// tests, pushing to `domain`) signed by user `user`: (transfer id, token).
fn grant_of(name: &str, domain: &str, user: u8) -> (String, String) {
    use protocol::alias::build::{group, scope, signed_grant, ClientDeclDoc, ContractDoc};
    use protocol::anychain::{signing_key_from_seed, to_token, Value};
    let client = ClientDeclDoc::new(name, domain)
        .sign(&signing_key_from_seed(&[0x17; 32]), 1_700_000_000_000.0)
        .unwrap();
    let contract = ContractDoc::new(client)
        .usage("tests")
        .contractual(group([Value::Dict(scope("google", "photos"))], &[]))
        .scheme("http")
        .build();
    let id = protocol::alias::Contract::new(&contract)
        .unwrap()
        .hash()
        .unwrap()
        .to_b64();
    let grant = signed_grant(
        &signing_key_from_seed(&[user; 32]),
        &contract,
        vec![],
        vec![],
        1_700_000_000_000.0,
    )
    .unwrap();
    (id, to_token(&grant))
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_slot_holder_pushes_the_transfers_waiting_for_it() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (a, grant_a) = grant_of("Client A", "127.0.0.1", 1);
    let (b, grant_b) = grant_of("Client B", "127.0.0.1", 2);
    let (c, grant_c) = grant_of("Client C", "127.0.0.1", 3);
    assert!(a != b && b != c);
    let (sink, state, storage, pusher) = sink_and_worker(&dirs, &grant_a, "serve");
    for (i, (id, grant)) in [(&a, &grant_a), (&b, &grant_b), (&c, &grant_c)]
        .into_iter()
        .enumerate()
    {
        let file = stored_archive(&storage, id, "photos.zip", 100, i + 2).await;
        let push_url = format!("{}{id}", sink.base_url());
        // C is pushed to another host name: another push domain.
        let push_url = if *id == c {
            push_url.replace("127.0.0.1", "localhost")
        } else {
            push_url
        };
        crate::pushing_transfer(&state, id, grant, &push_url, &[file]).await;
    }
    // Another pusher holds the slots of both push domains: B's and C's
    // jobs find them taken and join the waiting lists (of the signing key
    // they share, and of their domains).
    let mut taken = Vec::new();
    for host in ["127.0.0.1", "localhost"] {
        let domain = runtime::state::ClientName::Domain(host.into());
        let slot = Lease::client_slot(&domain, 0);
        let held = LeaseGuard::acquire(&state, slot, "another-pusher", Duration::from_secs(60))
            .await
            .unwrap()
            .expect("the slot is free");
        taken.push(held);
    }
    for id in [&b, &c] {
        let step = deliver(&pusher, &job(id, "photos.zip")).await;
        assert!(matches!(step, Disposition::Retry(_)), "{step:?}");
    }
    assert_eq!(sink.counters().requests, 0);
    taken.remove(0).release().await;
    // A's job takes the freed slot, pushes A, then B, which waited for it;
    // C needs the other domain's slot, still taken, and is left to its own
    // job.
    assert_eq!(
        deliver(&pusher, &job(&a, "photos.zip")).await,
        Disposition::Ack
    );
    let state_of = |id: String| {
        let state = state.clone();
        async move { state.transfer(&id).await.unwrap().unwrap().state }
    };
    assert_eq!(state_of(a.clone()).await, TransferState::Done);
    assert_eq!(state_of(b.clone()).await, TransferState::Done);
    assert_eq!(state_of(c.clone()).await, TransferState::Pushing);
    assert_eq!(sink.counters().transfer_finishes, 2);
    // B's job, back from its wait, finds the transfer done and sends nothing.
    let before = sink.counters().requests;
    assert_eq!(
        deliver(&pusher, &job(&b, "photos.zip")).await,
        Disposition::Ack
    );
    assert_eq!(sink.counters().requests, before);
}

/// Stores archives `a.zip` and `b.zip` of generation 1 and records them,
/// unsealed, in one announcement (which queues a push job).
async fn record_two_archives(state: &State, storage: &runtime::storage::Storage, id: &str) {
    let files = [
        stored_archive(storage, id, "a.zip", 100, 3).await,
        stored_archive(storage, id, "b.zip", 50, 5).await,
    ];
    assert_eq!(
        state.add_files(id, 1, &files, false).await.unwrap(),
        Added::Recorded { queue: true }
    );
}

/// A sink and a push worker (see [`sink_and_worker`]), and the example
/// grant's transfer in `pushing` with no archive recorded yet.
async fn pushing_without_archives(
    dirs: &(tempfile::TempDir, tempfile::TempDir),
    label: &str,
) -> (
    SinkHandle,
    State,
    runtime::storage::Storage,
    pusher::worker::Pusher,
    String,
) {
    let (sink, state, storage, pusher) = sink_and_worker(dirs, &example("grant_token"), label);
    let id = example("grant_contract_hash");
    let push_url = format!("{}{id}", sink.base_url());
    crate::begin_pushing(&state, &id, &example("grant_token"), &push_url).await;
    (sink, state, storage, pusher, id)
}

/// Archives are pushed while the processor still builds the others: a
/// generation whose list is not sealed pushes what it has, and the client
/// is told the transfer is finished only after the last archive, which
/// seals the list, was pushed too.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_transfer_finish_waits_for_the_sealed_list() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sink, state, storage, pusher, id) = pushing_without_archives(&dirs, "sealed").await;
    let first = stored_archive(&storage, &id, "a.zip", 100, 3).await;
    assert_eq!(
        state.add_files(&id, 1, &[first], false).await.unwrap(),
        Added::Recorded { queue: true }
    );
    assert_eq!(deliver(&pusher, &job(&id, "a.zip")).await, Disposition::Ack);
    let t = state.transfer(&id).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.files_done),
        (TransferState::Pushing, 1),
        "{t:?}"
    );
    let counters = sink.counters();
    assert_eq!(
        (counters.file_finishes, counters.transfer_finishes),
        (1, 0),
        "{counters:?}"
    );
    // The last archive seals the list; its push ends the transfer.
    let last = stored_archive(&storage, &id, "b.zip", 50, 5).await;
    assert_eq!(
        state.add_files(&id, 1, &[last], true).await.unwrap(),
        Added::Recorded { queue: true }
    );
    assert_eq!(deliver(&pusher, &job(&id, "b.zip")).await, Disposition::Ack);
    let t = state.transfer(&id).await.unwrap().unwrap();
    assert_eq!((t.state, t.files_done), (TransferState::Done, 2), "{t:?}");
    let counters = sink.counters();
    assert_eq!(
        (counters.file_finishes, counters.transfer_finishes),
        (2, 1),
        "{counters:?}"
    );
}

/// A file's own job that finds its file counted still goes on when every
/// file is counted: the transfer finish may be its to send (here the list
/// was sealed only after both files were pushed, so no push sent it).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_counted_files_job_sends_the_finish_left_to_it() {
    let dirs = (tempfile::tempdir().unwrap(), tempfile::tempdir().unwrap());
    let (sink, state, storage, pusher, id) = pushing_without_archives(&dirs, "left").await;
    record_two_archives(&state, &storage, &id).await;
    // A's job pushes both files; the list is not sealed: no finish.
    assert_eq!(deliver(&pusher, &job(&id, "a.zip")).await, Disposition::Ack);
    let t = state.transfer(&id).await.unwrap().unwrap();
    assert_eq!(
        (t.state, t.files_done),
        (TransferState::Pushing, 2),
        "{t:?}"
    );
    assert_eq!(sink.counters().transfer_finishes, 0);
    // The list is sealed with nothing more; B's job finds its file counted,
    // and every file: it sends the finish.
    assert_eq!(
        state.add_files(&id, 1, &[], true).await.unwrap(),
        Added::Recorded { queue: true }
    );
    assert_eq!(deliver(&pusher, &job(&id, "b.zip")).await, Disposition::Ack);
    let t = state.transfer(&id).await.unwrap().unwrap();
    assert_eq!(t.state, TransferState::Done, "{t:?}");
    let counters = sink.counters();
    assert_eq!(
        (counters.file_finishes, counters.transfer_finishes),
        (2, 1),
        "{counters:?}"
    );
}
