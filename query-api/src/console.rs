//! The operations console on `GET /console`: one page (HTML, CSS and plain JavaScript from
//! `query-api/console/`, embedded in the binary) over this API's GraphQL and subscriptions and
//! the command API's escalations. Its settings come from `/console/config.json`; a content
//! security policy keeps it to this origin and the command API's.

use crate::startup::{get_only, AppState};
use actix_web::http::header;
use actix_web::{web, HttpResponse};
use serde_json::json;

/// Where the console is served.
pub const PATH: &str = "/console";

/// The console's files, by name under [`PATH`]: content type and content.
const ASSETS: &[(&str, &str, &str)] = &[
    (
        "console.js",
        "text/javascript; charset=utf-8",
        include_str!("../console/console.js"),
    ),
    (
        "console.css",
        "text/css; charset=utf-8",
        include_str!("../console/console.css"),
    ),
];

const INDEX: &str = include_str!("../console/index.html");

/// Registers the page, its files and its settings (on `GET` and `HEAD`; another method is a
/// 405 naming them).
pub fn configure(cfg: &mut web::ServiceConfig) {
    cfg.service(get_only(PATH, index))
        .service(get_only(&format!("{PATH}/"), index))
        .service(get_only(&format!("{PATH}/config.json"), settings))
        .service(get_only(&format!("{PATH}/{{asset}}"), asset));
}

/// The scheme, host and port of `url` (what a browser compares origins by).
fn origin(url: &str) -> &str {
    let after_scheme = url.find("://").map_or(0, |i| i + 3);
    match url[after_scheme..].find('/') {
        Some(i) => &url[..after_scheme + i],
        None => url,
    }
}

/// Scripts, styles and images from this origin only; requests to it and to the command API.
fn content_security_policy(command_api_url: &str) -> String {
    format!(
        "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; \
         connect-src 'self' {}; base-uri 'none'; form-action 'none'; frame-ancestors 'none'",
        origin(command_api_url)
    )
}

/// `GET /console`.
async fn index(app: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            content_security_policy(&app.config.console_command_api_url),
        ))
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .body(INDEX)
}

/// `GET /console/config.json`: what the page needs to know of its deployment.
async fn settings(app: web::Data<AppState>) -> HttpResponse {
    HttpResponse::Ok()
        .insert_header((header::CACHE_CONTROL, "no-cache"))
        .json(json!({ "commandApiUrl": app.config.console_command_api_url }))
}

/// `GET /console/{asset}`.
async fn asset(name: web::Path<String>) -> HttpResponse {
    match ASSETS.iter().find(|(n, _, _)| *n == name.as_str()) {
        Some((_, content_type, body)) => HttpResponse::Ok()
            .content_type(*content_type)
            .insert_header((header::CACHE_CONTROL, "no-cache"))
            .insert_header((header::X_CONTENT_TYPE_OPTIONS, "nosniff"))
            .body(*body),
        None => crate::http::error_response(
            actix_web::http::StatusCode::NOT_FOUND,
            "NOT_FOUND",
            &format!(
                "the console has no file {}",
                name.chars().take(64).collect::<String>()
            ),
        ),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_policy_lets_the_page_reach_the_command_api_origin_and_nothing_else_outside() {
        let policy = content_security_policy("http://127.0.0.1:8080/base");
        assert!(
            policy.contains("connect-src 'self' http://127.0.0.1:8080;"),
            "{policy}"
        );
        assert!(policy.contains("script-src 'self';"), "{policy}");
        assert_eq!(
            origin("https://commands.example"),
            "https://commands.example"
        );
    }
}
