//! The bodies of `/healthz` and `/readyz`, the same in every service.

use actix_web::HttpResponse;
use serde_json::{Map, Value};

/// `GET /healthz`: the process answers. `200 {"status":"up"}`.
pub async fn healthz() -> HttpResponse {
    HttpResponse::Ok().json(serde_json::json!({ "status": "up" }))
}

/// `GET /readyz` when the service's dependencies answer: `200 {"status":"ready", ...}` with
/// the service's own `details` beside the status.
pub fn ready<const N: usize>(details: [(&str, Value); N]) -> HttpResponse {
    let mut body = Map::new();
    body.insert("status".to_owned(), Value::from("ready"));
    body.extend(details.into_iter().map(|(k, v)| (k.to_owned(), v)));
    HttpResponse::Ok().json(Value::Object(body))
}
