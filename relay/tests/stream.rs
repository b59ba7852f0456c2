//! The JetStream stream is created at start-up, and brought up to date when it exists with
//! other settings.

use relay::nats_server::NatsServer;
use relay::Config;
use std::time::Duration;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_stream_is_created_at_start_up_and_updated_when_its_settings_change() {
    let nats = NatsServer::start();
    let mut config = Config::local("postgres://unused", &nats.url());
    let js = relay::publisher::connect_configured(&config).await.unwrap();
    let mut stream = js.get_stream("MILESTONE").await.unwrap();
    let info = stream.info().await.unwrap().clone();
    assert_eq!(info.config.subjects, ["milestone.>"]);
    assert_eq!(
        info.config.storage,
        async_nats::jetstream::stream::StorageType::File
    );
    assert_eq!(info.config.duplicate_window, Duration::from_secs(120));

    config.stream.duplicate_window = Duration::from_secs(600);
    let js = relay::publisher::connect_configured(&config).await.unwrap();
    let mut stream = js.get_stream("MILESTONE").await.unwrap();
    let info = stream.info().await.unwrap();
    assert_eq!(info.config.duplicate_window, Duration::from_secs(600));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_relay_started_before_the_broker_sets_the_stream_up_once_the_broker_is_there() {
    let mut nats = NatsServer::start();
    nats.kill();
    let mut config = Config::local("postgres://unused", &nats.url());
    config.backoff.max = Duration::from_millis(300);
    // Each attempt gives up after half a second; the broker comes up after three times that.
    config.ack_timeout = Duration::from_millis(500);
    let connecting =
        tokio::spawn(async move { relay::publisher::connect_configured(&config).await.unwrap() });
    tokio::time::sleep(Duration::from_millis(1500)).await;
    assert!(!connecting.is_finished(), "gave up before the broker came");
    nats.restart();
    let js = tokio::time::timeout(Duration::from_secs(15), connecting)
        .await
        .expect("the stream was not set up once the broker came up")
        .unwrap();
    assert!(js.get_stream("MILESTONE").await.is_ok());
}
