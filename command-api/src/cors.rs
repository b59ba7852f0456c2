//! Cross-origin requests from the configured origins only (the operations console served by the
//! query API, say): a preflight is answered here, before routing, and every answer to such an
//! origin says it may read it. Other origins get no allowance, so a browser keeps them out.

use crate::http::{CORRELATION_HEADER, IDEMPOTENCY_HEADER, REPLAYED_HEADER};
use actix_web::body::MessageBody;
use actix_web::dev::{ServiceRequest, ServiceResponse};
use actix_web::http::header::{self, HeaderMap, HeaderValue};
use actix_web::http::Method;
use actix_web::middleware::Next;
use actix_web::{web, HttpResponse};

/// The methods a cross-origin caller may use: commands are POSTs.
const METHODS: &str = "POST";
/// The request headers a cross-origin caller may send.
const REQUEST_HEADERS: &[&str] = &[
    "Authorization",
    "Content-Type",
    IDEMPOTENCY_HEADER,
    "If-Match",
    CORRELATION_HEADER,
];
/// The response headers a cross-origin caller may read.
const EXPOSED_HEADERS: &[&str] = &["Location", "ETag", CORRELATION_HEADER, REPLAYED_HEADER];
/// How long a browser may keep a preflight's answer, in seconds.
const PREFLIGHT_MAX_AGE: &str = "600";

/// The origins allowed to call the API from a browser, e.g. `http://127.0.0.1:8081`.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct AllowedOrigins(Vec<String>);

impl AllowedOrigins {
    /// Whether `origin` is one of them (compared exactly, without a trailing slash).
    fn allows(&self, origin: &str) -> bool {
        self.0.iter().any(|o| o == origin)
    }
}

impl std::str::FromStr for AllowedOrigins {
    type Err = String;

    /// A comma-separated list of origins (`scheme://host[:port]`); empty allows none.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let origins = s
            .split(',')
            .map(|o| o.trim().trim_end_matches('/'))
            .filter(|o| !o.is_empty())
            .map(|o| match o.split_once("://") {
                Some((scheme, host))
                    if matches!(scheme, "http" | "https")
                        && !host.is_empty()
                        && !host.contains('/') =>
                {
                    Ok(o.to_owned())
                }
                _ => Err(format!(
                    "'{o}' is not an origin such as http://127.0.0.1:8081"
                )),
            })
            .collect::<Result<_, _>>()?;
        Ok(Self(origins))
    }
}

/// The middleware: answers the preflights of allowed origins and marks their answers readable.
pub async fn allow_configured_origins(
    req: ServiceRequest,
    next: Next<impl MessageBody + 'static>,
) -> Result<ServiceResponse<impl MessageBody>, actix_web::Error> {
    let origin = req
        .headers()
        .get(header::ORIGIN)
        .and_then(|v| v.to_str().ok())
        .filter(|origin| {
            req.app_data::<web::Data<crate::startup::AppState>>()
                .is_some_and(|app| app.config.cors_allowed_origins.allows(origin))
        })
        .and_then(|origin| HeaderValue::from_str(origin).ok());
    let Some(origin) = origin else {
        return Ok(next.call(req).await?.map_into_left_body());
    };
    let preflight = req.method() == Method::OPTIONS
        && req
            .headers()
            .contains_key(header::ACCESS_CONTROL_REQUEST_METHOD);
    if preflight {
        let mut response = HttpResponse::NoContent().finish();
        let headers = response.headers_mut();
        allow(headers, origin);
        headers.insert(
            header::ACCESS_CONTROL_ALLOW_METHODS,
            HeaderValue::from_static(METHODS),
        );
        if let Ok(value) = HeaderValue::from_str(&REQUEST_HEADERS.join(", ")) {
            headers.insert(header::ACCESS_CONTROL_ALLOW_HEADERS, value);
        }
        headers.insert(
            header::ACCESS_CONTROL_MAX_AGE,
            HeaderValue::from_static(PREFLIGHT_MAX_AGE),
        );
        return Ok(req.into_response(response).map_into_right_body());
    }
    let mut response = next.call(req).await?;
    let headers = response.headers_mut();
    allow(headers, origin);
    if let Ok(value) = HeaderValue::from_str(&EXPOSED_HEADERS.join(", ")) {
        headers.insert(header::ACCESS_CONTROL_EXPOSE_HEADERS, value);
    }
    Ok(response.map_into_left_body())
}

fn allow(headers: &mut HeaderMap, origin: HeaderValue) {
    headers.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, origin);
    headers.append(header::VARY, HeaderValue::from_static("Origin"));
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn origins_are_read_from_a_comma_separated_list_without_trailing_slashes() {
        let origins: AllowedOrigins = " http://127.0.0.1:8081/ ,https://console.example"
            .parse()
            .unwrap();
        assert!(origins.allows("http://127.0.0.1:8081"));
        assert!(origins.allows("https://console.example"));
        assert!(!origins.allows("http://127.0.0.1:8082"));
        assert_eq!("".parse::<AllowedOrigins>(), Ok(AllowedOrigins::default()));
    }

    #[test]
    fn an_origin_with_a_path_or_without_a_scheme_is_refused() {
        assert!("127.0.0.1:8081".parse::<AllowedOrigins>().is_err());
        assert!("http://127.0.0.1:8081/console"
            .parse::<AllowedOrigins>()
            .is_err());
    }
}
