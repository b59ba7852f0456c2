use crate::helpers::*;
use std::path::PathBuf;

fn committed_path() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../schemas/openapi.json")
}

/// Set `UPDATE_SCHEMAS=1` to rewrite the committed document after an intended change.
#[tokio::test]
async fn the_served_openapi_document_matches_the_committed_one() {
    let app = spawn_app().await;
    let served = app
        .client
        .get(format!("{}/openapi.json", app.address))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    let doc: serde_json::Value = serde_json::from_str(&served).unwrap();
    assert!(doc["openapi"].as_str().unwrap().starts_with("3.1"));
    assert!(doc["paths"]["/orders/{order_id}/ship"]["post"].is_object());
    if std::env::var("UPDATE_SCHEMAS").is_ok() {
        std::fs::write(committed_path(), &served).unwrap();
    }
    let committed = std::fs::read_to_string(committed_path())
        .expect("schemas/openapi.json is missing: run the tests with UPDATE_SCHEMAS=1");
    assert_eq!(
        served, committed,
        "the OpenAPI document drifted: run with UPDATE_SCHEMAS=1 and commit"
    );
}
