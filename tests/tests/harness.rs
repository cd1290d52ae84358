//! The harness's own promises, which every end-to-end test relies on: a
//! wait on a process we started fails at once, with the end of its log, when
//! that process exits; a port taken by someone else is a quick, clear error
//! when it was asked for, and no error at all when any free port would do.

// A failed expectation is a failed test: panicking is the point here.
#![allow(clippy::expect_used, clippy::unwrap_used)]

use std::net::TcpListener;
use std::process::Command;
use std::time::Duration;

use devstack::postgres::Postgres;
use devstack::process::Proc;
use devstack::stack::{Nats, Worker, WorkerOptions};
use devstack::{Exited, free_port, wait_for_proc};

/// Far longer than any of these may take. That a wait noticed an exit is
/// shown by its error (an [`Exited`], not a timeout), never by how long it
/// took: a slow machine must not fail a correct harness.
const LONG: Duration = Duration::from_secs(600);

/// A listener on a free port of 127.0.0.1, held by this test.
fn taken_port() -> (TcpListener, u16) {
    let listener = TcpListener::bind(("127.0.0.1", 0)).unwrap();
    let port = listener.local_addr().unwrap().port();
    (listener, port)
}

#[tokio::test]
async fn a_process_that_exits_fails_the_wait_at_once_with_its_log() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = Proc::spawn(
        "doomed",
        Command::new("sh").args(["-c", "echo starting; echo 'fatal: no luck' >&2; exit 3"]),
        &dir.path().join("doomed.log"),
    )
    .unwrap();
    let err = wait_for_proc(&mut proc, "the doomed process", LONG, || async {
        None::<()>
    })
    .await
    .unwrap_err();
    let exited = err.downcast_ref::<Exited>().expect("an Exited error");
    assert_eq!(exited.status.code(), Some(3));
    assert!(exited.tail.contains("fatal: no luck"), "{}", exited.tail);
    assert!(!exited.port_taken());
    let message = err.to_string();
    assert!(
        message.starts_with("the doomed process: doomed exited (exit status: 3); last lines of ")
            && message.contains("doomed.log")
            && message.contains("starting\nfatal: no luck"),
        "{message}"
    );
}

#[tokio::test]
async fn an_answer_once_the_process_died_is_not_its_own() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = Proc::spawn(
        "gone",
        &mut Command::new("true"),
        &dir.path().join("gone.log"),
    )
    .unwrap();
    while proc.exited().is_none() {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    // Something else answers where it should have listened.
    let err = wait_for_proc(&mut proc, "gone", LONG, || async { Some(()) })
        .await
        .unwrap_err();
    assert!(err.downcast_ref::<Exited>().is_some(), "{err:#}");
}

#[tokio::test]
async fn a_running_process_is_waited_for_until_the_probe_answers() {
    let dir = tempfile::tempdir().unwrap();
    let mut proc = Proc::spawn(
        "sleeper",
        Command::new("sleep").arg("30"),
        &dir.path().join("sleeper.log"),
    )
    .unwrap();
    let mut calls = 0;
    let got = wait_for_proc(&mut proc, "the third call", LONG, || {
        calls += 1;
        let n = calls;
        async move { (n == 3).then_some(n) }
    })
    .await
    .unwrap();
    assert_eq!(got, 3);
    // And a timeout names the process still running, with its log.
    let err = wait_for_proc(&mut proc, "nothing", Duration::from_millis(200), || async {
        None::<()>
    })
    .await
    .unwrap_err();
    assert!(err.downcast_ref::<Exited>().is_none());
    assert!(
        err.to_string()
            .starts_with("timed out after 200ms waiting for nothing (sleeper still running)"),
        "{err:#}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_on_a_taken_port_fails_at_once_when_that_port_was_asked_for() {
    let dir = tempfile::tempdir().unwrap();
    let (_held, port) = taken_port();
    let err = Postgres::start(&dir.path().join("pg"), Some(port))
        .await
        .err()
        .expect("PostgreSQL cannot listen on a taken port");
    let exited = err.downcast_ref::<Exited>().expect("an Exited error");
    assert!(exited.port_taken(), "{err:#}");
    assert!(err.to_string().contains("postgres exited"), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn postgres_moves_to_another_port_when_any_free_port_will_do() {
    let dir = tempfile::tempdir().unwrap();
    let (_held, port) = taken_port();
    // The first port it gets is taken meanwhile, as by a parallel test.
    let mut picks = vec![port];
    let pg = Postgres::start_picking(&dir.path().join("pg"), 3, || {
        picks.pop().map_or_else(free_port, Ok)
    })
    .await
    .expect("PostgreSQL starts on the next port");
    assert_ne!(pg.port, port);
    assert!(pg.created);
    assert_eq!(pg.sql("postgres", "SELECT 1").unwrap(), "1");
    let first = std::fs::read_to_string(dir.path().join("pg/postgres.log")).unwrap();
    assert!(first.contains("Address already in use"), "{first}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn nats_binds_its_own_port_and_a_taken_one_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let nats = Nats::start(&dir.path().join("a"), None, &dir.path().join("a.log"))
        .await
        .unwrap();
    let port: u16 = nats.url.rsplit(':').next().unwrap().parse().unwrap();
    assert_ne!(port, 0, "{}", nats.url);
    async_nats::connect(nats.url.as_str()).await.unwrap();

    let (_held, taken) = taken_port();
    let err = Nats::start(
        &dir.path().join("b"),
        Some(taken),
        &dir.path().join("b.log"),
    )
    .await
    .err()
    .expect("nats-server cannot listen on a taken port");
    let exited = err.downcast_ref::<Exited>().expect("an Exited error");
    assert!(exited.port_taken(), "{err:#}");
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrangler_dev_on_a_taken_port_fails_at_once() {
    let dir = tempfile::tempdir().unwrap();
    let (_held, taken) = taken_port();
    let err = Worker::start(WorkerOptions {
        port: Some(taken),
        persist: &dir.path().join("wrangler"),
        log: &dir.path().join("worker.log"),
        vars: vec![(
            "INGEST_SECRET",
            devstack::fixtures::random_secret().unwrap(),
        )],
    })
    .await
    .err()
    .expect("wrangler dev cannot listen on a taken port");
    let exited = err.downcast_ref::<Exited>().expect("an Exited error");
    assert!(exited.port_taken(), "{err:#}");
}
