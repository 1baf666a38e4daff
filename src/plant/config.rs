//! `[metrics]` and `[mqtt]`: where the Prometheus exposition is served, and the MQTT broker the outbox is sent
//! to. Both sections are optional (absent: off). Parsed into [`RawMetrics`] / [`RawMqtt`], validated into
//! [`MetricsConfig`] / [`MqttConfig`]; every problem is collected with its field path.

use std::net::SocketAddr;

use serde::Deserialize;

use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMetrics {
    listen: Option<String>,
}

/// `[metrics]`: the Prometheus `/metrics` endpoint, on its own address (no login: see docs/PLANT.md).
#[derive(Debug, Clone, PartialEq)]
pub struct MetricsConfig {
    /// Where `/metrics` is served; port 0 takes any free port (logged).
    pub listen: SocketAddr,
}

pub fn validate_metrics(p: &mut Problems, raw: RawMetrics) -> MetricsConfig {
    let text = raw.listen.unwrap_or_else(|| "127.0.0.1:9464".into());
    let listen = text.parse().unwrap_or_else(|_| {
        p.problem(
            "metrics.listen",
            format!("expected an address like \"127.0.0.1:9464\", got \"{text}\""),
        );
        SocketAddr::from(([127, 0, 0, 1], 9464))
    });
    MetricsConfig { listen }
}

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawMqtt {
    broker: Option<String>,
    client_id: Option<String>,
    topic_prefix: Option<String>,
    keep_alive_s: Option<u64>,
    retry_min_ms: Option<u64>,
    retry_max_ms: Option<u64>,
    ack_timeout_ms: Option<u64>,
    batch: Option<u64>,
}

/// `[mqtt]`: the broker the outbox is published to (QoS 1), and how.
#[derive(Debug, Clone, PartialEq)]
pub struct MqttConfig {
    pub host: String,
    pub port: u16,
    /// Default `station-<station.name>`; a broker allows one connection per client id.
    pub client_id: Option<String>,
    /// Topics are `<topic_prefix>/<station.name>/{part,event,state}`.
    pub topic_prefix: String,
    pub keep_alive_s: u64,
    /// First retry after the broker was unreachable; doubles up to `retry_max_ms`.
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
    /// How long a batch waits for its acknowledgements before the connection is taken as lost.
    pub ack_timeout_ms: u64,
    /// Messages in flight at once (at most 1000).
    pub batch: usize,
}

pub fn validate_mqtt(p: &mut Problems, raw: RawMqtt) -> MqttConfig {
    let broker = raw.broker.unwrap_or_default();
    let (host, port) = match broker
        .rsplit_once(':')
        .map(|(h, port)| (h, port.parse::<u16>()))
    {
        Some((h, Ok(port))) if !h.is_empty() && port > 0 => (h.to_string(), port),
        _ => {
            p.problem(
                "mqtt.broker",
                format!(
                    "expected the broker as \"host:port\" like \"127.0.0.1:1883\", got \"{broker}\""
                ),
            );
            (String::new(), 1883)
        }
    };
    let topic_prefix = raw.topic_prefix.unwrap_or_else(|| "station".into());
    if topic_prefix.is_empty() || topic_prefix.contains(['+', '#']) {
        p.problem(
            "mqtt.topic_prefix",
            format!("expected a topic level without '+' or '#', got \"{topic_prefix}\""),
        );
    }
    let retry_min_ms = p.positive("mqtt.retry_min_ms", raw.retry_min_ms, 100);
    let retry_max_ms = p.positive("mqtt.retry_max_ms", raw.retry_max_ms, 5000);
    if retry_max_ms < retry_min_ms {
        p.problem(
            "mqtt.retry_max_ms",
            format!("expected at least mqtt.retry_min_ms ({retry_min_ms}), got {retry_max_ms}"),
        );
    }
    let batch = p.positive("mqtt.batch", raw.batch, 100);
    if batch > 1000 {
        p.problem("mqtt.batch", format!("expected at most 1000, got {batch}"));
    }
    MqttConfig {
        host,
        port,
        client_id: raw.client_id,
        topic_prefix,
        keep_alive_s: p.positive("mqtt.keep_alive_s", raw.keep_alive_s, 5),
        retry_min_ms,
        retry_max_ms,
        ack_timeout_ms: p.positive("mqtt.ack_timeout_ms", raw.ack_timeout_ms, 5000),
        batch: batch.min(1000) as usize,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn mqtt(text: &str) -> (MqttConfig, Vec<String>) {
        let table: toml::Table = toml::from_str(text).unwrap();
        let mut p = Problems::new(std::path::Path::new("."));
        let raw = p.section(&table, "mqtt");
        let config = validate_mqtt(&mut p, raw);
        (config, p.list.iter().map(|p| p.field.clone()).collect())
    }

    #[test]
    fn every_mqtt_problem_is_reported_with_its_field() {
        let (_, fields) = mqtt(
            "[mqtt]\nbroker = \"nowhere\"\ntopic_prefix = \"a/#\"\nretry_min_ms = 500\nretry_max_ms = 100\nbatch = 5000\nkeep_alive_s = 0\n",
        );
        assert_eq!(
            fields,
            [
                "mqtt.broker",
                "mqtt.topic_prefix",
                "mqtt.retry_max_ms",
                "mqtt.batch",
                "mqtt.keep_alive_s"
            ]
        );
        let (_, fields) = mqtt("[mqtt]\nbroker = \"b:1\"\nqos = 2\n");
        assert_eq!(fields, ["mqtt.qos"], "unknown fields are refused");
        let (ok, fields) = mqtt("[mqtt]\nbroker = \"broker.plant:1883\"\n");
        assert!(fields.is_empty(), "{fields:?}");
        assert_eq!(
            (ok.host.as_str(), ok.port, ok.batch),
            ("broker.plant", 1883, 100)
        );
    }
}
