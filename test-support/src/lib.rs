//! Helpers shared by the integration tests of every crate: each test gets its own PostgreSQL
//! database with a random name, on the server named by `MILESTONE_TEST_DATABASE_URL` (default
//! the local server `scripts/test.sh` starts).

#![forbid(unsafe_code)]

use uuid::Uuid;

/// The server the tests create their databases on.
pub fn admin_url() -> String {
    std::env::var("MILESTONE_TEST_DATABASE_URL")
        .unwrap_or_else(|_| "postgres://postgres:postgres@127.0.0.1:5432/postgres".to_owned())
}

/// The URL of database `name` on the test server.
pub fn database_url(name: &str) -> String {
    let admin = admin_url();
    let base = admin.rsplit_once('/').map_or(admin.as_str(), |(b, _)| b);
    format!("{base}/{name}")
}

async fn admin() -> tokio_postgres::Client {
    let (client, conn) = tokio_postgres::connect(&admin_url(), tokio_postgres::NoTls)
        .await
        .expect("PostgreSQL must be running: start it with `bash scripts/test.sh`");
    tokio::spawn(conn);
    client
}

/// Creates an empty database with a random name and returns its URL.
///
/// # Panics
/// When the test server cannot be reached (a test cannot go on without it).
pub async fn fresh_database() -> String {
    let name = format!("test_{}", Uuid::new_v4().simple());
    admin()
        .await
        .batch_execute(&format!("create database {name}"))
        .await
        .expect("create a test database");
    database_url(&name)
}

/// Drops a test database, closing its connections: the store behind it becomes unreachable.
///
/// # Panics
/// When the test server cannot be reached.
pub async fn drop_database(url: &str) {
    let name = url.rsplit('/').next().unwrap_or_default();
    admin()
        .await
        .batch_execute(&format!("drop database if exists {name} with (force)"))
        .await
        .expect("drop the test database");
}
