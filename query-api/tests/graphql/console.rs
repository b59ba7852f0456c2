//! The operations console's page and files, as a browser fetches them.

use crate::helpers::*;

#[tokio::test]
async fn the_console_page_loads_its_own_script_and_style_under_a_policy_that_admits_no_other_site()
{
    let app = spawn_app().await;

    let page = app
        .client
        .get(format!("{}/console", app.address))
        .send()
        .await
        .unwrap();
    assert_eq!(page.status(), 200);
    let policy = page.headers()["content-security-policy"]
        .to_str()
        .unwrap()
        .to_owned();
    assert!(policy.contains("script-src 'self'"), "{policy}");
    assert!(
        policy.contains("connect-src 'self' http://127.0.0.1:8080;"),
        "{policy}"
    );
    let html = page.text().await.unwrap();
    assert!(
        html.contains(r#"<script src="/console/console.js""#),
        "{html}"
    );

    for (file, content_type) in [
        ("console.js", "text/javascript; charset=utf-8"),
        ("console.css", "text/css; charset=utf-8"),
    ] {
        let response = app
            .client
            .get(format!("{}/console/{file}", app.address))
            .send()
            .await
            .unwrap();
        assert_eq!(response.status(), 200, "{file}");
        assert_eq!(response.headers()["content-type"], content_type);
        let text = response.text().await.unwrap();
        assert!(
            !text.contains("http://") && !text.contains("https://"),
            "{file} names another site"
        );
    }
    assert!(!html.contains("http://") && !html.contains("https://"));
}

#[tokio::test]
async fn the_console_is_told_where_the_command_api_is() {
    let app = spawn_app().await;

    let settings: serde_json::Value = app
        .client
        .get(format!("{}/console/config.json", app.address))
        .send()
        .await
        .unwrap()
        .json()
        .await
        .unwrap();

    assert_eq!(settings["commandApiUrl"], "http://127.0.0.1:8080");
}

#[tokio::test]
async fn a_file_the_console_does_not_have_is_not_found() {
    let app = spawn_app().await;

    let response = app
        .client
        .get(format!("{}/console/secrets.txt", app.address))
        .send()
        .await
        .unwrap();

    assert_eq!(response.status(), 404);
    let body: serde_json::Value = response.json().await.unwrap();
    assert_eq!(error_code(&body), "NOT_FOUND");
}
