//! The statement pool (`lifo.rs`): the connection used last is used next, and a
//! connection the server closed is dropped, whether it was busy or idle when it died.

use std::time::Duration;

use super::*;
use crate::test_pg;

async fn fresh() -> Option<PgStore> {
    let url = tokio::task::spawn_blocking(test_pg::database).await.unwrap()?;
    Some(PgStore::connect(&url, None).await.unwrap())
}

async fn backend(store: &PgStore) -> Result<i32, sqlx::Error> {
    sqlx::query_scalar("SELECT pg_backend_pid()").fetch_one(store.statements()).await
}

async fn terminate(store: &PgStore, pid: i32) {
    let done: bool =
        sqlx::query_scalar("SELECT pg_terminate_backend($1, 5000)").bind(pid).fetch_one(store.pool()).await.unwrap();
    assert!(done);
}

#[tokio::test]
async fn one_statement_after_another_runs_on_one_connection() {
    let Some(store) = fresh().await else { return };
    let first = backend(&store).await.unwrap();
    for _ in 0..20 {
        assert_eq!(backend(&store).await.unwrap(), first, "the connection used last is used next");
    }
    // A statement while another holds the connection takes a second one; afterwards the
    // one given back last comes first.
    let slow = async {
        sqlx::query_scalar::<_, i32>("SELECT pg_backend_pid() FROM pg_sleep(1)").fetch_one(store.statements()).await
    };
    let meanwhile = async {
        tokio::time::sleep(Duration::from_millis(100)).await;
        backend(&store).await
    };
    let (slow, meanwhile) = tokio::join!(slow, meanwhile);
    let (slow, meanwhile) = (slow.unwrap(), meanwhile.unwrap());
    assert_eq!(slow, first);
    assert_ne!(meanwhile, first);
    assert_eq!(backend(&store).await.unwrap(), slow, "the slow statement's connection came back last");
}

#[tokio::test]
async fn a_connection_killed_while_busy_fails_one_statement_and_is_dropped() {
    let Some(store) = fresh().await else { return };
    let pid = backend(&store).await.unwrap();
    // The same connection is taken at once (not idle long enough to be pinged): its
    // statement fails, and the connection is not put back.
    terminate(&store, pid).await;
    assert!(backend(&store).await.is_err());
    let next = backend(&store).await.expect("a new connection");
    assert_ne!(next, pid);
}

#[tokio::test]
async fn a_connection_killed_while_idle_is_replaced_before_use() {
    let Some(store) = fresh().await else { return };
    let pid = backend(&store).await.unwrap();
    terminate(&store, pid).await;
    tokio::time::sleep(PING_AFTER_IDLE + Duration::from_millis(200)).await;
    let next = backend(&store).await.expect("pinged, found dead, replaced");
    assert_ne!(next, pid);
}
