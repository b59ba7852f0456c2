use crate::helpers::*;
use std::path::PathBuf;

/// Set `UPDATE_SCHEMAS=1` to rewrite the committed SDL after an intended change.
#[tokio::test]
async fn the_served_sdl_matches_the_committed_one() {
    let app = spawn_app().await;
    let served = app
        .client
        .get(format!("{}/schema.graphql", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(served.contains("type Order"));
    let path = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/query.graphql");
    if std::env::var("UPDATE_SCHEMAS").is_ok() {
        std::fs::write(&path, &served).unwrap();
    }
    let committed = std::fs::read_to_string(&path)
        .expect("schemas/query.graphql is missing: run with UPDATE_SCHEMAS=1");
    assert_eq!(
        served, committed,
        "the GraphQL schema drifted: run with UPDATE_SCHEMAS=1 and commit"
    );
}
