//! A connection to Redis that reconnects: the bus's shared link (publish, acknowledge,
//! claim, stats, retention: commands that never block) and each consumer's and reader's
//! own link for blocking reads (a blocking read holds its connection, so it must not
//! share one).
//!
//! A link connects on first use and again on the first use after its connection broke
//! (a restarted Redis, a reset socket). [`Link::query`] sends a command once more on a
//! fresh connection when the one it used turned out broken: an idle connection that
//! Redis dropped fails before anything was sent, and a command that did reach Redis and
//! whose answer was lost is one a retry may repeat (publishes are at-least-once).
//! Callers that must know about a lost answer use [`Link::query_once`].

use std::time::Duration;

use ::redis::aio::MultiplexedConnection;
use ::redis::{AsyncConnectionConfig, Client, Cmd, FromRedisValue, Pipeline, RedisError};
use tokio::sync::Mutex;

use crate::BusError;

/// How long connecting may take before Redis counts as unreachable.
pub(crate) const CONNECT_TIMEOUT: Duration = Duration::from_secs(5);

pub(crate) struct Link {
    client: Client,
    /// The URL with any password hidden, for messages.
    url: String,
    config: AsyncConnectionConfig,
    /// The connection and its generation (counts connections made).
    current: Mutex<(u64, Option<MultiplexedConnection>)>,
}

impl Link {
    /// A link that waits up to `response_timeout` for each answer (`None`: callers bound
    /// their blocking reads themselves).
    pub fn new(client: Client, url: &str, response_timeout: Option<Duration>) -> Link {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(response_timeout);
        Link { client, url: redact(url), config, current: Mutex::new((0, None)) }
    }

    /// The URL, password hidden.
    pub fn url(&self) -> &str {
        &self.url
    }

    /// The current connection, made if there is none.
    pub async fn connection(&self) -> Result<(u64, MultiplexedConnection), BusError> {
        let mut current = self.current.lock().await;
        if let Some(connection) = &current.1 {
            return Ok((current.0, connection.clone()));
        }
        let connection = self
            .client
            .get_multiplexed_async_connection_with_config(&self.config)
            .await
            .map_err(|e| BusError::backend(format!("cannot reach Redis at {}", self.url), e))?;
        current.0 += 1;
        current.1 = Some(connection.clone());
        Ok((current.0, connection))
    }

    /// Drops connection `generation` (if still current): the next use makes a new one.
    pub async fn forget(&self, generation: u64) {
        let mut current = self.current.lock().await;
        if current.0 == generation {
            current.1 = None;
        }
    }

    /// Drops the current connection, whichever it is (its answer is overdue).
    pub async fn forget_current(&self) {
        self.current.lock().await.1 = None;
    }

    /// Sends `command` (a [`Cmd`] or a [`Pipeline`]), once more on a new connection if
    /// the first one was broken. `what` says what it was for, in the error.
    pub async fn query<T: FromRedisValue>(&self, what: &str, command: impl Into<Request<'_>>) -> Result<T, BusError> {
        let command = command.into();
        match self.query_once(what, command).await {
            Err(Failed::Lost(_)) => self.query_once(what, command).await.map_err(Failed::into_error),
            other => other.map_err(Failed::into_error),
        }
    }

    /// Sends `command` once; a broken connection is forgotten and reported as
    /// [`Failed::Lost`].
    pub async fn query_once<T: FromRedisValue>(
        &self,
        what: &str,
        command: impl Into<Request<'_>>,
    ) -> Result<T, Failed> {
        let (generation, mut connection) = self.connection().await.map_err(Failed::Refused)?;
        let answer = match command.into() {
            Request::Command(command) => command.query_async::<T>(&mut connection).await,
            Request::Pipeline(pipeline) => pipeline.query_async::<T>(&mut connection).await,
        };
        match answer {
            Ok(value) => Ok(value),
            Err(error) => {
                let lost = connection_lost(&error);
                let error = BusError::backend(format!("{what} (Redis at {})", self.url), error);
                if lost {
                    self.forget(generation).await;
                    Err(Failed::Lost(error))
                } else {
                    Err(Failed::Refused(error))
                }
            }
        }
    }
}

/// What a link sends: one command, or a pipeline (a `MULTI`/`EXEC` when atomic).
#[derive(Clone, Copy)]
pub(crate) enum Request<'a> {
    Command(&'a Cmd),
    Pipeline(&'a Pipeline),
}

impl<'a> From<&'a Cmd> for Request<'a> {
    fn from(command: &'a Cmd) -> Request<'a> {
        Request::Command(command)
    }
}

impl<'a> From<&'a mut Cmd> for Request<'a> {
    fn from(command: &'a mut Cmd) -> Request<'a> {
        Request::Command(command)
    }
}

impl<'a> From<&'a Pipeline> for Request<'a> {
    fn from(pipeline: &'a Pipeline) -> Request<'a> {
        Request::Pipeline(pipeline)
    }
}

/// Why [`Link::query_once`] failed.
#[derive(Debug)]
pub(crate) enum Failed {
    /// The connection broke (or timed out): the command may or may not have run.
    Lost(BusError),
    /// Redis answered with an error, or could not be reached at all.
    Refused(BusError),
}

impl Failed {
    pub fn into_error(self) -> BusError {
        match self {
            Failed::Lost(error) | Failed::Refused(error) => error,
        }
    }
}

/// The error means the connection is unusable (rather than Redis refusing a command).
fn connection_lost(error: &RedisError) -> bool {
    error.is_io_error() || error.is_connection_dropped() || error.is_timeout() || error.is_unrecoverable_error()
}

pub(crate) use crate::redact;

#[cfg(test)]
mod tests {
    use super::redact;

    #[test]
    fn passwords_never_show() {
        assert_eq!(redact("redis://127.0.0.1:6379/0"), "redis://127.0.0.1:6379/0");
        assert_eq!(redact("redis://:secret@host:6379/0"), "redis://:***@host:6379/0");
        assert_eq!(redact("redis://user:secret@host/0"), "redis://user:***@host/0");
        assert_eq!(redact("redis://user@host/0"), "redis://user@host/0");
        assert_eq!(redact("unix:///run/redis.sock"), "unix:///run/redis.sock");
    }
}
