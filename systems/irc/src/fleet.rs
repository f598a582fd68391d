//! The `irc` connector: one network's fleet of connections, each in its own task, and
//! the three helpers they share:
//!
//! - the **emitter** turns connection events into bus messages (the connector's queue)
//!   and log rows (the log queue `irclog.<connector>`), in batches, dropping the
//!   duplicate QUIT/NICK rows that several connections see for the same user;
//! - the **logger** ([`crate::logger`]) writes the log queue into the store;
//! - the **outbox router** takes what rules hand this connector (`Send`) and gives each
//!   message to the connection that is in its channel, acknowledging it only once the
//!   lines are written. A relayed report (`relayed_from` set, no `target`: the relay
//!   groups of `systems/relay`) is posted to every channel of the connector, in the
//!   configured order.
//!
//! When every connection is sunk the connector logs `ARMADA-ALL-DEAD` and fails (the
//! supervisor then restarts it after its own backoff); whenever it ends it logs
//! `PROCESS-TERMINATED`.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use bytes::Bytes;
use flotilla_connector::{Connector, ConnectorContext};
use flotilla_core::Message;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinSet;
use tokio::time::Instant;

use crate::bucket::Pacer;
use crate::config::IrcSettings;
use crate::connection::{self, Event, OutboxItem, Outcome, Shared};
use crate::logger::{self, LoggerControl, log_queue};
use crate::record::{fleet_message, fleet_row, is_channel, now_ms};
use crate::session::{FleetEvent, FleetMessage, fold};
use crate::status::{ConnectionState, ConnectionStatus, StatusTable};

/// Events waiting for the emitter; a full channel slows readers down (the bus is
/// local and fast; the database is not in this path).
const EVENT_CAPACITY: usize = 16_384;
/// Most events emitted as one bus batch.
const EMIT_BATCH: usize = 2048;
/// How long the logger may take to catch up when the connector stops.
const DRAIN_GRACE: Duration = Duration::from_secs(4);
/// Window in which identical QUIT/NICK rows from several connections count as one.
const DEDUPE_WINDOW: Duration = Duration::from_secs(30);

/// The `irc` connector.
pub struct IrcConnector {
    settings: Arc<IrcSettings>,
}

impl IrcConnector {
    pub fn new(settings: IrcSettings) -> IrcConnector {
        IrcConnector { settings: Arc::new(settings) }
    }

    pub fn settings(&self) -> &IrcSettings {
        &self.settings
    }
}

#[async_trait::async_trait]
impl Connector for IrcConnector {
    fn warnings(&self) -> Vec<flotilla_config::Diagnostic> {
        self.settings.warnings.clone()
    }

    async fn run(&self, ctx: &ConnectorContext) -> anyhow::Result<()> {
        let settings = self.settings.clone();
        if settings.log && !flotilla_bus::valid_name(&log_queue(ctx.name())) {
            anyhow::bail!("the connector name '{}' cannot name its log queue {}", ctx.name(), log_queue(ctx.name()));
        }
        let tls = match &settings.tls {
            None => None,
            Some(tls) => Some(tokio_rustls::TlsConnector::from(crate::tls::client_config(tls)?)),
        };
        let entries = settings
            .plans
            .iter()
            .map(|p| ConnectionStatus {
                bind: p.bind.map(|b| b.to_string()),
                nick: settings.session_for(p.index).nick,
                channels: Vec::new(),
                lag_ms: None,
                reconnects: 0,
                state: ConnectionState::Connecting,
                last_error: None,
            })
            .collect();
        let status = Arc::new(StatusTable::new(settings.server(), settings.network.to_string(), entries));
        let stop = ctx.shutdown().child_token();
        let (events_tx, events_rx) = mpsc::channel(EVENT_CAPACITY);
        let shared = Arc::new(Shared {
            settings: settings.clone(),
            events: events_tx.clone(),
            status: status.clone(),
            pacer: Mutex::new(Pacer::new(settings.connect_rate, 10)),
            tls,
            stop: stop.clone(),
            connector: ctx.name().to_string(),
        });

        let emitter = tokio::spawn(emit(ctx.clone(), events_rx, settings.log, settings.network.clone()));
        let logger_control = LoggerControl::default();
        let logger = settings.log.then(|| {
            tokio::spawn(logger::run(
                ctx.bus().clone(),
                ctx.store().clone(),
                ctx.name().to_string(),
                status.clone(),
                logger_control.clone(),
            ))
        });

        let mut connections = JoinSet::new();
        let mut outboxes = Vec::new();
        let mut owners: HashMap<String, usize> = HashMap::new();
        let mut channels = Vec::new();
        for plan in &settings.plans {
            let (tx, rx) = mpsc::channel(4);
            outboxes.push(tx);
            for channel in &plan.channels {
                owners.insert(fold(&channel.name), plan.index);
                channels.push(channel.name.clone());
            }
            connections.spawn(connection::run(plan.clone(), shared.clone(), rx));
        }
        let router = tokio::spawn(route_outbox(ctx.clone(), outboxes, owners, channels, status.clone(), stop.clone()));
        tracing::info!(connector = %ctx.name(), network = %settings.network, server = %settings.server(),
            connections = settings.plans.len(), "IRC fleet starting.");

        let mut sunk = 0;
        let mut refresh = tokio::time::interval(Duration::from_secs(1));
        let armada_dead = loop {
            tokio::select! {
                _ = stop.cancelled() => break false,
                _ = refresh.tick() => {
                    if let Some(detail) = status.take_detail() {
                        ctx.set_detail(detail);
                    }
                }
                joined = connections.join_next() => match joined {
                    Some(Ok(Outcome::Sunk(_))) => {
                        sunk += 1;
                        if sunk == settings.plans.len() {
                            break true;
                        }
                    }
                    Some(Ok(Outcome::Stopped)) => {}
                    Some(Err(e)) => {
                        // A panic in a connection task is a bug; count it as sunk so the
                        // rest of the fleet carries on and the operator hears of it.
                        tracing::error!(connector = %ctx.name(), error = %e, "An IRC connection task failed.");
                        sunk += 1;
                        if sunk == settings.plans.len() {
                            break true;
                        }
                    }
                    None => break false,
                },
            }
        };

        // Teardown: stop the connections (they send QUIT), log the end, flush.
        stop.cancel();
        let _ =
            tokio::time::timeout(Duration::from_secs(3), async { while connections.join_next().await.is_some() {} })
                .await;
        connections.abort_all();
        let _ = router.await;
        let nick = settings.session.nick.clone();
        let mut finals = Vec::new();
        if armada_dead {
            finals.push(FleetEvent {
                message: FleetMessage::ArmadaAllDead,
                channel: None,
                nick: nick.clone(),
                detail: Some(format!("all {} connection(s) to {} are sunk", settings.plans.len(), settings.server())),
            });
        }
        finals.push(FleetEvent {
            message: FleetMessage::ProcessTerminated,
            channel: None,
            nick,
            detail: Some(if armada_dead { "every connection is sunk".into() } else { "the node is stopping".into() }),
        });
        for event in finals {
            let _ = events_tx.send(Event::Fleet { event, connection: None, at: now_ms() }).await;
        }
        drop(events_tx);
        drop(shared);
        if let Err(e) = emitter.await {
            tracing::error!(connector = %ctx.name(), error = %e, "The IRC emitter failed.");
        }
        if let Some(logger) = logger {
            logger_control.drain.cancel();
            let mut logger = logger;
            match tokio::time::timeout(DRAIN_GRACE, &mut logger).await {
                Ok(Ok(Ok(()))) => {}
                Ok(Ok(Err(e))) => tracing::error!(connector = %ctx.name(), error = %e, "The IRC logger failed."),
                Ok(Err(e)) => tracing::error!(connector = %ctx.name(), error = %e, "The IRC logger task failed."),
                Err(_) => {
                    logger_control.stop.cancel();
                    let _ = logger.await;
                    tracing::warn!(connector = %ctx.name(),
                        "The IRC logger did not catch up before stopping; the rest stays on the bus for the next start.");
                }
            }
        }
        ctx.set_detail(status.detail());
        if armada_dead {
            anyhow::bail!(
                "ARMADA-ALL-DEAD: all {} connection(s) to {} are sunk",
                settings.plans.len(),
                settings.server()
            );
        }
        Ok(())
    }
}

/// Turns events into bus messages and log rows, in batches, until every sender is gone.
async fn emit(ctx: ConnectorContext, mut events: mpsc::Receiver<Event>, log: bool, network: Arc<str>) {
    let queue = log_queue(ctx.name());
    let mut batch = Vec::with_capacity(EMIT_BATCH);
    let mut recent: HashMap<u64, Instant> = HashMap::new();
    while events.recv_many(&mut batch, EMIT_BATCH).await > 0 {
        let now = Instant::now();
        if recent.len() > 4096 {
            recent.retain(|_, seen| now.saturating_duration_since(*seen) < DEDUPE_WINDOW);
        }
        let mut messages: Vec<Message> = Vec::with_capacity(batch.len());
        let mut rows: Vec<Bytes> = Vec::new();
        for event in batch.drain(..) {
            match event {
                Event::Line { message, row } => {
                    messages.push(message);
                    if let (true, Some(row)) = (log, row) {
                        let duplicate = row.dedupe_key().is_some_and(|key| {
                            recent
                                .insert(key, now)
                                .is_some_and(|seen| now.saturating_duration_since(seen) < DEDUPE_WINDOW)
                        });
                        if !duplicate {
                            rows.push(Bytes::from(row.to_json()));
                        }
                    }
                }
                Event::Sent(row) => {
                    if log {
                        rows.push(Bytes::from(row.to_json()));
                    }
                }
                Event::Fleet { event, connection, at } => {
                    messages.push(fleet_message(&event, &network, connection));
                    if log {
                        rows.push(Bytes::from(fleet_row(&event, &network, at).to_json()));
                    }
                }
            }
        }
        publish(&ctx, messages, &queue, rows).await;
    }
}

/// Publishes a batch, retrying while the bus fails (a full disk): these lines exist
/// nowhere else.
async fn publish(ctx: &ConnectorContext, messages: Vec<Message>, queue: &str, rows: Vec<Bytes>) {
    let mut backoff = flotilla_connector::Backoff::new(Duration::from_millis(100), Duration::from_secs(10));
    if !messages.is_empty() {
        loop {
            match ctx.emit_all(messages.clone()).await {
                Ok(()) => break,
                Err(e) => {
                    tracing::error!(connector = %ctx.name(), error = %e, "Putting IRC lines on the bus failed; retrying.");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
    if !rows.is_empty() {
        backoff.reset();
        loop {
            match ctx.bus().publish(queue, rows.clone()).await {
                Ok(_) => break,
                Err(e) => {
                    tracing::error!(connector = %ctx.name(), error = %e, "Putting IRC log rows on the bus failed; retrying.");
                    tokio::time::sleep(backoff.next_delay()).await;
                }
            }
        }
    }
}

/// What an outbox message asks for.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct OutboxRequest {
    pub target: String,
    pub text: String,
    pub notice: bool,
    pub raw: Option<String>,
}

/// Reads an outbox message: `target` (or `channel`) and `text` (or `subject`, or
/// `body`); `notice: true` for a NOTICE; or `raw`, one IRC line sent as is. A relayed
/// report (`relayed_from` set) without a target has an empty `target`: every channel.
pub fn outbox_request(message: &Message) -> Result<OutboxRequest, String> {
    let text_of = |field: &str| message.get(field).map(|v| flotilla_core::message::value_text(v).into_owned());
    let raw = text_of("raw").filter(|r| !r.is_empty());
    let target = text_of("target").or_else(|| text_of("channel")).unwrap_or_default();
    let text = text_of("text").or_else(|| text_of("subject")).or_else(|| text_of("body")).unwrap_or_default();
    let notice = message.get("notice").is_some_and(flotilla_core::message::is_truthy);
    let relayed = message.get("relayed_from").is_some_and(flotilla_core::message::is_truthy);
    if raw.is_none() {
        if target.is_empty() && !relayed {
            return Err("the message has no target or channel to post to".into());
        }
        if text.trim().is_empty() {
            return Err("the message has no text, subject or body to post".into());
        }
    }
    Ok(OutboxRequest { target, text, notice, raw })
}

/// Delivers outbox messages to connections, acknowledging each once it is written.
async fn route_outbox(
    ctx: ConnectorContext,
    outboxes: Vec<mpsc::Sender<Box<OutboxItem>>>,
    owners: HashMap<String, usize>,
    channels: Vec<String>,
    status: Arc<StatusTable>,
    stop: tokio_util::sync::CancellationToken,
) {
    let mut consumer = match ctx.outbox().await {
        Ok(consumer) => consumer,
        Err(e) => {
            tracing::error!(connector = %ctx.name(), error = %e, "Cannot read the IRC outbox; nothing will be posted.");
            return;
        }
    };
    loop {
        let deliveries = tokio::select! {
            _ = stop.cancelled() => return,
            fetched = consumer.fetch(64, Duration::from_secs(1)) => match fetched {
                Ok(d) => d,
                Err(e) => {
                    tracing::error!(connector = %ctx.name(), error = %e, "Reading the IRC outbox failed.");
                    tokio::select! {
                        _ = stop.cancelled() => return,
                        _ = tokio::time::sleep(Duration::from_secs(1)) => continue,
                    }
                }
            },
        };
        for delivery in deliveries {
            let request =
                Message::from_json(&delivery.payload).map_err(|e| e.to_string()).and_then(|m| outbox_request(&m));
            match request {
                Err(reason) => {
                    tracing::warn!(connector = %ctx.name(), %reason, "An outbox message cannot be posted; dropping it.");
                }
                Ok(request) if request.target.is_empty() && request.raw.is_none() => {
                    // A relayed report: every channel, in order. Stopping half-way
                    // posts it again to all of them after the restart (at-least-once).
                    for channel in &channels {
                        let one = OutboxRequest { target: channel.clone(), ..request.clone() };
                        if !deliver(&ctx, &outboxes, &owners, &status, &stop, one).await {
                            return;
                        }
                    }
                }
                Ok(request) => {
                    if !deliver(&ctx, &outboxes, &owners, &status, &stop, request).await {
                        return; // Stopping: not acknowledged, posted after the restart.
                    }
                }
            }
            if let Err(e) = consumer.ack(&[delivery.id]).await {
                tracing::error!(connector = %ctx.name(), error = %e, "Acknowledging an outbox message failed.");
            }
        }
    }
}

/// Hands one request to a connection until one has written it (true) or refused it for
/// good (true, logged); false when stopping first.
async fn deliver(
    ctx: &ConnectorContext,
    outboxes: &[mpsc::Sender<Box<OutboxItem>>],
    owners: &HashMap<String, usize>,
    status: &StatusTable,
    stop: &tokio_util::sync::CancellationToken,
    request: OutboxRequest,
) -> bool {
    loop {
        // The connection in the channel; for a nick, a channel we are not in, or a
        // channel whose connection has sunk (its task is gone), any connected one.
        let alive = |i: &usize| outboxes.get(*i).is_some_and(|o| !o.is_closed());
        let owner = if is_channel(&request.target) { owners.get(&fold(&request.target)).copied() } else { None };
        let index = owner.filter(alive).or_else(|| {
            status.entries().iter().enumerate().position(|(i, e)| e.state == ConnectionState::Connected && alive(&i))
        });
        let Some(index) = index else {
            // Nobody can post now: wait for a connection to come back.
            tokio::select! {
                _ = stop.cancelled() => return false,
                _ = tokio::time::sleep(Duration::from_millis(500)) => continue,
            }
        };
        let (done_tx, done_rx) = oneshot::channel();
        let item = Box::new(OutboxItem {
            target: request.target.clone(),
            text: request.text.clone(),
            notice: request.notice,
            raw: request.raw.clone(),
            done: done_tx,
        });
        tokio::select! {
            _ = stop.cancelled() => return false,
            sent = outboxes[index].send(item) => if sent.is_err() { continue },
        }
        let answer = tokio::select! {
            _ = stop.cancelled() => return false,
            answer = done_rx => answer,
        };
        match answer {
            Ok(Ok(())) => return true,
            Ok(Err(reason)) => {
                tracing::warn!(connector = %ctx.name(), target = %request.target, %reason, "An outbox message was refused; dropping it.");
                return true;
            }
            // The connection dropped it (lost before writing): try again shortly.
            Err(_) => {
                tokio::select! {
                    _ = stop.cancelled() => return false,
                    _ = tokio::time::sleep(Duration::from_millis(500)) => {}
                }
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn request(json: &str) -> Result<OutboxRequest, String> {
        outbox_request(&Message::from_json(json.as_bytes()).unwrap())
    }

    #[test]
    fn outbox_requests() {
        let ok = |target: &str, text: &str, notice: bool| {
            Ok(OutboxRequest { target: target.into(), text: text.into(), notice, raw: None })
        };
        assert_eq!(request(r##"{"target":"#a","text":"hi"}"##), ok("#a", "hi", false));
        assert_eq!(request(r##"{"channel":"#a","subject":"s","body":"b"}"##), ok("#a", "s", false));
        assert_eq!(request(r##"{"channel":"#a","body":"b","notice":true}"##), ok("#a", "b", true));
        assert_eq!(request(r##"{"target":"bob","channel":"#a","text":"t"}"##), ok("bob", "t", false));
        assert_eq!(
            request(r#"{"raw":"MAP"}"#),
            Ok(OutboxRequest { target: String::new(), text: String::new(), notice: false, raw: Some("MAP".into()) })
        );
        assert!(request(r#"{"text":"no target"}"#).unwrap_err().contains("no target"));
        assert_eq!(request(r#"{"text":"a report","relayed_from":"mail"}"#), ok("", "a report", false));
        assert!(request(r##"{"channel":"#a"}"##).unwrap_err().contains("no text"));
    }
}
