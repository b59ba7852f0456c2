//! Resources that answer the methods they serve and refuse any other with `405 Method Not
//! Allowed` and an `Allow` header naming them (a wrong method on a known path is not a 404). A
//! resource served on `GET` answers `HEAD` with the same handler (actix-http sends the head
//! only): a health checker that sends `HEAD` gets the status a `GET` would.

use actix_web::dev::{HttpServiceFactory, ServiceFactory, ServiceRequest};
use actix_web::http::header::{self, HeaderValue};
use actix_web::http::Method;
use actix_web::{web, FromRequest, Handler, HttpRequest, HttpResponse, Resource, Responder};

/// How an API answers a method a resource does not serve, given the message ("PUT is not
/// allowed on /healthz; use GET, HEAD") to put in its own error body; the status and the
/// `Allow` header are set on what it returns.
pub type Refusal = fn(String) -> HttpResponse;

/// A resource at `path`, named after it (the request metrics read the route from the name,
/// allocating nothing), answering `method` with `handler` (and `HEAD` too when `method` is
/// `GET`), and any other method with `refuse`.
pub fn only<F, Args>(path: &str, method: Method, handler: F, refuse: Refusal) -> Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    let resource = web::resource(path).name(path);
    let resource = if method == Method::GET {
        resource
            .route(web::get().to(handler.clone()))
            .route(web::head().to(handler))
    } else {
        resource.route(web::method(method.clone()).to(handler))
    };
    refusing_others(resource, allowed(&[method]), refuse)
}

/// `resource` (routes added) refusing with `refuse` every method but `allow` (say
/// `"GET, HEAD, POST"`).
pub fn refusing_others<T>(resource: Resource<T>, allow: String, refuse: Refusal) -> Resource<T>
where
    T: ServiceFactory<
        ServiceRequest,
        Config = (),
        Response = actix_web::dev::ServiceResponse,
        Error = actix_web::Error,
        InitError = (),
    >,
    Resource<T>: HttpServiceFactory,
{
    resource.default_service(web::to(move |req: HttpRequest| {
        let message = format!(
            "{} is not allowed on {}; use {allow}",
            req.method(),
            req.path()
        );
        let mut response = refuse(message);
        *response.status_mut() = actix_web::http::StatusCode::METHOD_NOT_ALLOWED;
        if let Ok(value) = HeaderValue::from_str(&allow) {
            response.headers_mut().insert(header::ALLOW, value);
        }
        std::future::ready(response)
    }))
}

/// The `Allow` value for `methods`: `HEAD` beside `GET`.
pub fn allowed(methods: &[Method]) -> String {
    let mut names: Vec<&str> = methods.iter().map(Method::as_str).collect();
    if methods.contains(&Method::GET) && !methods.contains(&Method::HEAD) {
        names.push(Method::HEAD.as_str());
    }
    names.sort_unstable();
    names.dedup();
    names.join(", ")
}

#[cfg(test)]
mod tests {
    use super::*;
    use actix_web::test::{call_service, init_service, read_body, TestRequest};
    use actix_web::App;

    fn refuse(message: String) -> HttpResponse {
        HttpResponse::Ok().body(message)
    }

    #[actix_web::test]
    async fn a_get_resource_answers_head_and_refuses_others_with_allow() {
        let app = init_service(App::new().service(only(
            "/healthz",
            Method::GET,
            || async { "ok" },
            refuse,
        )))
        .await;
        let get = call_service(&app, TestRequest::get().uri("/healthz").to_request()).await;
        assert_eq!(get.status(), 200);
        assert_eq!(read_body(get).await, "ok");
        let head = TestRequest::default()
            .method(Method::HEAD)
            .uri("/healthz")
            .to_request();
        let head = call_service(&app, head).await;
        assert_eq!(head.status(), 200);
        let put = TestRequest::put().uri("/healthz").to_request();
        let put = call_service(&app, put).await;
        assert_eq!(put.status(), 405);
        assert_eq!(put.headers().get(header::ALLOW).unwrap(), "GET, HEAD");
        assert_eq!(
            read_body(put).await,
            "PUT is not allowed on /healthz; use GET, HEAD"
        );
    }

    #[test]
    fn allow_names_head_beside_get_once() {
        assert_eq!(allowed(&[Method::POST]), "POST");
        assert_eq!(allowed(&[Method::GET, Method::POST]), "GET, HEAD, POST");
        assert_eq!(allowed(&[Method::HEAD, Method::GET]), "GET, HEAD");
    }
}
