//! The OpenAPI 3.1 document, generated from the handlers and bodies. Committed at
//! `schemas/openapi.json`; a test fails when they drift.

use crate::error::{FieldError, Problem};
use crate::workflow::WorkflowApi;
use serde_json::{json, Map, Value};
use utoipa::OpenApi;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Milestone command API",
        description = "State an intent about an order and get an immediate answer. Every accepted command returns the order's status, its stream revision and a consistency token to read your own write through the query API. Errors are RFC 9457 problem+json with a stable `code`.",
        version = "0.1.0"
    ),
    components(schemas(Problem, FieldError))
)]
pub struct ApiDoc;

/// Adds links from every successful command of workflow `W` (its id field) to each action on
/// that instance, so a client (or a stateful fuzzer) can follow an instance from its creation
/// through its workflow. Done on the JSON because utoipa's `Link` serialises its fields in
/// snake case (`operation_id`), which OpenAPI readers do not know.
pub fn add_action_links<W: WorkflowApi>(doc: &mut Value) {
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    let action_prefix = format!("{}/{{{}}}/", W::COLLECTION, W::ID_FIELD);
    let actions: Vec<(String, Value)> = paths
        .iter()
        .filter_map(|(path, item)| {
            let action = path.strip_prefix(&action_prefix)?;
            Some((action.to_owned(), item["post"]["operationId"].clone()))
        })
        .collect();
    let links: Map<String, Value> = actions
        .into_iter()
        .map(|(action, operation_id)| {
            let link = json!({
                "operationId": operation_id,
                "parameters": Map::from_iter([(
                    W::ID_FIELD.to_owned(),
                    json!(format!("$response.body#/{}", W::ID_FIELD)),
                )]),
                "description": format!("`{action}` on this {}", W::NAME),
            });
            (action, link)
        })
        .collect();
    let created = W::COLLECTION;
    let of_workflow = |path: &str| path == created || path.starts_with(&action_prefix);
    for (_, item) in paths.iter_mut().filter(|(path, _)| of_workflow(path)) {
        for status in ["200", "201"] {
            if let Some(response) = item
                .pointer_mut(&format!("/post/responses/{status}"))
                .and_then(Value::as_object_mut)
            {
                response.insert("links".to_owned(), Value::Object(links.clone()));
            }
        }
    }
}

/// The server reads a missing body as `{}` (see `http::read_body`), so a body is required only
/// where `{}` is not a valid one: where its schema requires some field.
fn mark_optional_bodies(doc: &mut Value) {
    let schemas = doc["components"]["schemas"].clone();
    let Some(paths) = doc.get_mut("paths").and_then(Value::as_object_mut) else {
        return;
    };
    for item in paths.values_mut() {
        let Some(body) = item
            .pointer_mut("/post/requestBody")
            .and_then(Value::as_object_mut)
        else {
            continue;
        };
        let accepts_empty = body
            .get("content")
            .and_then(|c| c.pointer("/application~1json/schema/$ref"))
            .and_then(Value::as_str)
            .and_then(|r| r.strip_prefix("#/components/schemas/"))
            .is_some_and(|name| {
                let schema = &schemas[name];
                schema["type"] == "object"
                    && schema["required"].as_array().is_none_or(Vec::is_empty)
            });
        if accepts_empty {
            body.remove("required");
        }
    }
}

/// The name of the bearer-token security scheme in the document.
pub const SECURITY_SCHEME: &str = "bearer";

/// Adds the bearer-token security scheme and, to every command route, the scope it needs as its
/// security requirement (from the routes' declarations, the same the handlers check). Done on
/// the JSON because a `security` attribute of utoipa takes the scope as a literal only.
fn add_security(doc: &mut Value) {
    if let Some(components) = doc.get_mut("components").and_then(Value::as_object_mut) {
        components.insert(
            "securitySchemes".to_owned(),
            json!({ SECURITY_SCHEME: {
                "type": "http",
                "scheme": "bearer",
                "bearerFormat": "JWT",
                "description": "A JWT (RS256 or ES256) from the identity provider; its `role` claim names a role, whose scopes decide which commands it may send (see the README)."
            }}),
        );
    }
    for served in crate::SERVED {
        for (path, scope) in served.scopes {
            if let Some(operation) = doc
                .pointer_mut(&format!(
                    "/paths/{}/post",
                    path.replace('~', "~0").replace('/', "~1")
                ))
                .and_then(Value::as_object_mut)
            {
                operation.insert(
                    "security".to_owned(),
                    json!([{ SECURITY_SCHEME: [scope.as_str()] }]),
                );
            }
        }
    }
}

/// The document as served and committed.
pub fn document() -> Value {
    let mut api = ApiDoc::openapi();
    for served in crate::SERVED {
        api.merge((served.openapi)());
    }
    let mut doc = serde_json::to_value(api).unwrap_or_else(|e| json!({ "error": e.to_string() }));
    for served in crate::SERVED {
        (served.links)(&mut doc);
    }
    mark_optional_bodies(&mut doc);
    add_security(&mut doc);
    doc
}

/// The document as pretty JSON, as committed.
pub fn openapi_json() -> String {
    serde_json::to_string_pretty(&document()).unwrap_or_else(|e| format!("{{\"error\": \"{e}\"}}"))
}
