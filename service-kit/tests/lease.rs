//! The fenced lease against a real PostgreSQL: one holder at a time, the token goes up with
//! every tenure, and a write fenced with a replaced token changes nothing.

use service_kit::lease::{fenced, FencedLease};
use std::str::FromStr;
use std::time::Duration;

async fn setup() -> (tokio_postgres::Config, tokio_postgres::Client) {
    let url = test_support::fresh_database().await;
    let config = tokio_postgres::Config::from_str(&url).unwrap();
    let (client, connection) = tokio_postgres::connect(&url, tokio_postgres::NoTls)
        .await
        .unwrap();
    tokio::spawn(connection);
    (config, client)
}

const TTL: Duration = Duration::from_secs(2);

#[tokio::test]
async fn a_second_instance_stands_by_while_the_lease_is_held_and_takes_over_with_the_next_token_once_released(
) {
    let (config, _client) = setup().await;
    let first = FencedLease::try_acquire(&config, "work", "a", TTL)
        .await
        .unwrap()
        .expect("a free lease is taken");
    assert!(first.is_held());
    assert!(FencedLease::try_acquire(&config, "work", "b", TTL)
        .await
        .unwrap()
        .is_none());
    // Held past several time-to-live periods: renewals keep it.
    tokio::time::sleep(TTL * 2).await;
    assert!(first.is_held());
    assert!(FencedLease::try_acquire(&config, "work", "b", TTL)
        .await
        .unwrap()
        .is_none());
    let token = first.token();
    drop(first);
    let second = FencedLease::acquire(&config, "work", "b", TTL, Duration::from_millis(50)).await;
    assert_eq!(second.token(), token + 1);
}

#[tokio::test]
async fn a_write_fenced_with_a_replaced_token_changes_nothing() {
    let (config, client) = setup().await;
    client
        .batch_execute("create table progress (name text primary key, at bigint); insert into progress values ('work', 0)")
        .await
        .unwrap();
    let write = fenced("update progress set at = $3 where name = $1");
    let old = FencedLease::try_acquire(&config, "work", "a", TTL)
        .await
        .unwrap()
        .unwrap();
    let old_token = old.token();
    assert_eq!(
        client
            .execute(&write, &[&"work", &old_token, &1i64])
            .await
            .unwrap(),
        1
    );
    // The holder is replaced (here: it released; a paused holder's lease expires the same way).
    drop(old);
    let new = FencedLease::acquire(&config, "work", "b", TTL, Duration::from_millis(50)).await;
    assert_eq!(
        client
            .execute(&write, &[&"work", &old_token, &2i64])
            .await
            .unwrap(),
        0
    );
    assert_eq!(
        client
            .execute(&write, &[&"work", &new.token(), &3i64])
            .await
            .unwrap(),
        1
    );
    let at: i64 = client
        .query_one("select at from progress", &[])
        .await
        .unwrap()
        .get(0);
    assert_eq!(at, 3);
}

#[tokio::test]
async fn a_lease_released_on_shutdown_is_free_for_a_standby_at_once() {
    let (config, _client) = setup().await;
    let holder = FencedLease::try_acquire(&config, "work", "a", Duration::from_secs(30))
        .await
        .unwrap()
        .unwrap();
    // What a process does as it stops: release, then end. Its runtime (and the renewals)
    // would end with it, so the release must have reached the database by then.
    holder.release(Duration::from_secs(5)).await;
    let standby = FencedLease::try_acquire(&config, "work", "b", Duration::from_secs(30))
        .await
        .unwrap();
    assert!(
        standby.is_some(),
        "a standby waits for the 30 s expiry after a graceful stop"
    );
}
