//! The MQTT sink (`rumqttc`, pure Rust): publishes the outbox at QoS 1 to
//! `<prefix>/<station>/part` (kind `part`) and `<prefix>/<station>/event` (every other kind), and keeps
//! `<prefix>/<station>/state` retained: `online` once connected, `offline` at the stop and, as the last will,
//! when the station vanishes. A batch counts as delivered up to the last message the broker acknowledged
//! (PUBACK) without a gap; a lost connection drops the client, and the next batch reconnects with a clean session
//! and resends from the cursor.

use std::collections::HashSet;
use std::time::Duration;

use rumqttc::{AsyncClient, Event, EventLoop, LastWill, MqttOptions, Outgoing, Packet, QoS};

use super::config::MqttConfig;
use super::deliver::Sink;
use crate::store::outbox::Message;

/// A connected client and its event loop.
struct Session {
    client: AsyncClient,
    events: EventLoop,
}

pub struct MqttSink {
    config: MqttConfig,
    station: String,
    session: Option<Session>,
}

impl MqttSink {
    pub fn new(config: MqttConfig, station: &str) -> MqttSink {
        MqttSink {
            config,
            station: station.to_string(),
            session: None,
        }
    }

    /// `<prefix>/<station>/<leaf>`.
    pub fn topic(&self, leaf: &str) -> String {
        format!("{}/{}/{leaf}", self.config.topic_prefix, self.station)
    }

    fn state(&self, state: &str) -> Vec<u8> {
        serde_json::json!({ "station": self.station, "state": state })
            .to_string()
            .into_bytes()
    }

    /// Connects, waits for the CONNACK, and publishes the retained `online` state (acknowledged).
    async fn connect(&mut self) -> Result<Session, String> {
        let c = &self.config;
        let id = c
            .client_id
            .clone()
            .unwrap_or_else(|| format!("station-{}", self.station));
        let mut options = MqttOptions::new(id, c.host.clone(), c.port);
        options
            .set_keep_alive(Duration::from_secs(c.keep_alive_s))
            .set_clean_session(true)
            .set_inflight(c.batch as u16 + 1)
            .set_max_packet_size(1 << 20, 1 << 20)
            .set_last_will(LastWill::new(
                self.topic("state"),
                self.state("offline"),
                QoS::AtLeastOnce,
                true,
            ));
        let (client, events) = AsyncClient::new(options, c.batch + 4);
        let mut session = Session { client, events };
        let timeout = Duration::from_millis(c.ack_timeout_ms);
        wait_for(&mut session.events, timeout, |e| {
            matches!(e, Event::Incoming(Packet::ConnAck(_)))
        })
        .await?;
        let online = self.state("online");
        publish_acked(&mut session, &self.topic("state"), online, true, timeout).await?;
        Ok(session)
    }
}

impl Sink for MqttSink {
    fn name(&self) -> &'static str {
        "mqtt"
    }

    async fn deliver(&mut self, batch: &[Message]) -> (usize, Option<String>) {
        let mut session = match self.session.take() {
            Some(s) => s,
            None => match self.connect().await {
                Ok(s) => s,
                Err(e) => {
                    return (
                        0,
                        Some(format!(
                            "broker {}:{}: {e}",
                            self.config.host, self.config.port
                        )),
                    );
                }
            },
        };
        for m in batch {
            let leaf = if m.kind == "part" { "part" } else { "event" };
            let payload = m.envelope(&self.station).to_string();
            if let Err(e) = session
                .client
                .publish(self.topic(leaf), QoS::AtLeastOnce, false, payload)
                .await
            {
                return (0, Some(format!("cannot queue a publish: {e}")));
            }
        }
        let timeout = Duration::from_millis(self.config.ack_timeout_ms);
        let (acked, error) = acks(&mut session.events, batch.len(), timeout).await;
        if error.is_none() {
            self.session = Some(session);
        }
        (acked, error)
    }

    async fn close(&mut self) {
        let Some(mut session) = self.session.take() else {
            return;
        };
        let timeout = Duration::from_millis(self.config.ack_timeout_ms.min(2000));
        let offline = self.state("offline");
        let topic = self.topic("state");
        if publish_acked(&mut session, &topic, offline, true, timeout)
            .await
            .is_ok()
        {
            let _ = session.client.disconnect().await;
            let _ = wait_for(&mut session.events, timeout, |e| {
                matches!(e, Event::Outgoing(Outgoing::Disconnect))
            })
            .await;
        }
    }
}

/// Publishes one message and waits for its acknowledgement.
async fn publish_acked(
    session: &mut Session,
    topic: &str,
    payload: Vec<u8>,
    retain: bool,
    timeout: Duration,
) -> Result<(), String> {
    session
        .client
        .publish(topic, QoS::AtLeastOnce, retain, payload)
        .await
        .map_err(|e| e.to_string())?;
    match acks(&mut session.events, 1, timeout).await {
        (1, _) => Ok(()),
        (_, e) => Err(e.unwrap_or_else(|| "not acknowledged".into())),
    }
}

/// Polls until `done` sees an event, the connection fails, or `timeout` passes.
async fn wait_for(
    events: &mut EventLoop,
    timeout: Duration,
    done: impl Fn(&Event) -> bool,
) -> Result<(), String> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Err(_) => return Err(format!("no answer in {} ms", timeout.as_millis())),
            Ok(Err(e)) => return Err(e.to_string()),
            Ok(Ok(e)) if done(&e) => return Ok(()),
            Ok(Ok(_)) => {}
        }
    }
}

/// Polls until the `n` publishes queued last are all acknowledged; returns how many of the first were, without a
/// gap, and the error that stopped it short.
async fn acks(events: &mut EventLoop, n: usize, timeout: Duration) -> (usize, Option<String>) {
    let mut sent: Vec<u16> = Vec::with_capacity(n);
    let mut acked: HashSet<u16> = HashSet::with_capacity(n);
    let prefix =
        |sent: &[u16], acked: &HashSet<u16>| sent.iter().take_while(|p| acked.contains(p)).count();
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let done = prefix(&sent, &acked);
        if done == n {
            return (n, None);
        }
        match tokio::time::timeout_at(deadline, events.poll()).await {
            Err(_) => {
                return (
                    done,
                    Some(format!("no acknowledgement in {} ms", timeout.as_millis())),
                );
            }
            Ok(Err(e)) => return (done, Some(e.to_string())),
            Ok(Ok(Event::Outgoing(Outgoing::Publish(pkid)))) => sent.push(pkid),
            Ok(Ok(Event::Incoming(Packet::PubAck(ack)))) => {
                acked.insert(ack.pkid);
            }
            Ok(Ok(_)) => {}
        }
    }
}
