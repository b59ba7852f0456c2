//! The signal a service's main loop stops on.

/// Resolves on Ctrl-C (SIGINT) or SIGTERM.
///
/// # Panics
/// When the SIGTERM handler cannot be installed (no signal support in the runtime): a service
/// that could not be stopped cleanly must not start.
pub async fn shutdown_signal() {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term = tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate())
            .expect("install the SIGTERM handler");
        tokio::select! {
            _ = ctrl_c => {}
            _ = term.recv() => {}
        }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
}

/// Serves with `server` until [`shutdown_signal`], then stops it gracefully: no new
/// connections, requests in flight answered (up to the server's `shutdown_timeout`). Build the
/// server with `disable_signals()`: on its own, actix stops at once on Ctrl-C (SIGINT),
/// dropping the requests in flight, and gracefully only on SIGTERM.
///
/// # Errors
/// When the server fails.
#[cfg(feature = "http")]
pub async fn serve_until_stopped(server: actix_web::dev::Server) -> std::io::Result<()> {
    let handle = server.handle();
    let mut server = std::pin::pin!(server);
    tokio::select! {
        result = &mut server => return result,
        () = shutdown_signal() => {}
    }
    tracing::info!("stopping: finishing the requests in flight");
    // The server carries out the stop as it is polled.
    let ((), result) = tokio::join!(handle.stop(true), server);
    result
}
