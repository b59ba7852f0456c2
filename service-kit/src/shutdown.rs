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
