//! The supervisor: each connector runs in its own task. When it fails or panics it is
//! restarted after an exponential backoff with jitter; a connector that stays up for a
//! minute has its backoff forgotten; one that fails `max_restarts` times in a row is
//! *sunk* and left alone. One connector's trouble never touches another's task.

use std::sync::Arc;
use std::time::{Duration, Instant};

use flotilla_connector::{Backoff, Connector, ConnectorContext, ConnectorState, StatusBoard};

use crate::config::RestartPolicy;

/// A run that lasted this long counts as a success: the backoff starts over.
const STABLE_AFTER: Duration = Duration::from_secs(60);
/// How long a connector has to stop after shutdown is signalled.
pub const STOP_GRACE: Duration = Duration::from_secs(10);

/// Supervises one connector until shutdown.
pub async fn supervise(
    connector: Arc<dyn Connector>,
    ctx: ConnectorContext,
    policy: RestartPolicy,
    board: StatusBoard,
) {
    supervise_with_grace(connector, ctx, policy, board, STOP_GRACE).await;
}

/// [`supervise`] with `grace` to stop instead of [`STOP_GRACE`]: a connector under a
/// fleet lease must be gone before its lease can lapse (see the `fleet` module).
pub async fn supervise_with_grace(
    connector: Arc<dyn Connector>,
    ctx: ConnectorContext,
    policy: RestartPolicy,
    board: StatusBoard,
    grace: Duration,
) {
    let name = ctx.name().to_string();
    let mut backoff = Backoff::new(policy.min_backoff, policy.max_backoff);
    loop {
        board.set_state(&name, ConnectorState::Running);
        let started = Instant::now();
        let mut task = {
            let connector = connector.clone();
            let ctx = ctx.clone();
            tokio::spawn(async move { connector.run(&ctx).await })
        };
        let result = tokio::select! {
            result = &mut task => result,
            _ = ctx.shutdown().cancelled() => {
                // Give it the grace period to finish, then cut it off.
                if tokio::time::timeout(grace, &mut task).await.is_err() {
                    tracing::warn!(connector = %name, "A connector did not stop in time; aborting it.");
                    task.abort();
                }
                board.set_state(&name, ConnectorState::Stopped);
                return;
            }
        };
        if ctx.shutdown().is_cancelled() {
            board.set_state(&name, ConnectorState::Stopped);
            return;
        }
        let error = match result {
            Ok(Ok(())) => "stopped on its own without being asked to".to_string(),
            Ok(Err(error)) => format!("{error:#}"),
            Err(join) if join.is_panic() => format!("panicked: {}", panic_text(join.into_panic())),
            Err(join) => format!("task ended: {join}"),
        };
        board.record_failure(&name, error.clone());
        if started.elapsed() >= STABLE_AFTER {
            backoff.reset();
        }
        if policy.max_restarts > 0 && backoff.failures() + 1 >= policy.max_restarts {
            board.set_state(&name, ConnectorState::Sunk);
            tracing::error!(connector = %name, %error, failures = policy.max_restarts,
                "A connector failed too often in a row and is sunk; it needs an operator.");
            return;
        }
        let delay = backoff.next_delay();
        board.set_state(&name, ConnectorState::BackingOff);
        tracing::warn!(connector = %name, %error, retry_in = ?delay, "A connector failed; restarting it after a backoff.");
        tokio::select! {
            _ = tokio::time::sleep(delay) => {}
            _ = ctx.shutdown().cancelled() => {
                board.set_state(&name, ConnectorState::Stopped);
                return;
            }
        }
        board.record_restart(&name);
    }
}

fn panic_text(payload: Box<dyn std::any::Any + Send>) -> String {
    if let Some(text) = payload.downcast_ref::<&str>() {
        (*text).to_string()
    } else if let Some(text) = payload.downcast_ref::<String>() {
        text.clone()
    } else {
        "(no message)".to_string()
    }
}
