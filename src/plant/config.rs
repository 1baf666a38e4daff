//! `[metrics]`, `[mqtt]` and `[[webhook]]`: where the Prometheus exposition is served, the MQTT broker the
//! outbox is sent to, and the HTTP endpoints it is POSTed to. All optional (absent: off). Parsed into
//! [`RawMetrics`] / [`RawMqtt`] / [`RawWebhook`], validated into [`MetricsConfig`] / [`MqttConfig`] /
//! [`WebhookConfig`]; every problem is collected with its field path.

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

/// The outbox's message kinds (what `webhook.events` may name).
pub const KINDS: &[&str] = &[
    "run_start",
    "part",
    "plc_delivered",
    "plc_undelivered",
    "rejected_at_gate",
    "pulse_ended",
    "review",
    "audit",
    "run_end",
];

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawWebhook {
    name: Option<String>,
    url: Option<String>,
    secret: Option<String>,
    events: Option<Vec<String>>,
    timeout_ms: Option<u64>,
    retry_min_ms: Option<u64>,
    retry_max_ms: Option<u64>,
}

/// One `[[webhook]]`: the outbox POSTed as JSON, one message per request, HMAC-signed.
#[derive(Debug, Clone, PartialEq)]
pub struct WebhookConfig {
    /// Names its cursor (`webhook:<name>`): keep it when the URL changes, or the hook starts over.
    pub name: String,
    pub url: axum::http::Uri,
    /// The HMAC-SHA256 key of the `X-Station-Signature` header.
    pub secret: String,
    /// The message kinds it gets (default: all); the others are skipped (its cursor passes them).
    pub events: Vec<String>,
    /// A request not answered in this time failed (retried).
    pub timeout_ms: u64,
    pub retry_min_ms: u64,
    pub retry_max_ms: u64,
}

pub fn validate_webhooks(p: &mut Problems, raw: Vec<RawWebhook>) -> Vec<WebhookConfig> {
    let mut hooks: Vec<WebhookConfig> = Vec::new();
    for (i, raw) in raw.into_iter().enumerate() {
        let field = |name: &str| format!("webhook[{i}].{name}");
        let name = raw.name.unwrap_or_default();
        if name.is_empty()
            || !name
                .chars()
                .all(|c| c.is_ascii_alphanumeric() || "_-".contains(c))
        {
            p.problem(
                &field("name"),
                format!("expected a name of letters, digits, '_' or '-', got \"{name}\""),
            );
        } else if hooks.iter().any(|h| h.name == name) {
            p.problem(
                &field("name"),
                format!("\"{name}\" is used by another webhook"),
            );
        }
        let text = raw.url.unwrap_or_default();
        let url = match text.parse::<axum::http::Uri>() {
            Ok(u) if u.scheme_str() == Some("http") && u.host().is_some() => u,
            _ => {
                p.problem(
                    &field("url"),
                    format!("expected an http:// URL like \"http://qms.plant:8080/hooks/station\" (https is not supported yet), got \"{text}\""),
                );
                axum::http::Uri::from_static("http://127.0.0.1/")
            }
        };
        let secret = raw.secret.unwrap_or_default();
        if secret.len() < 16 {
            p.problem(
                &field("secret"),
                "expected a shared secret of at least 16 characters (the HMAC key)",
            );
        }
        let events = raw
            .events
            .unwrap_or_else(|| KINDS.iter().map(|k| k.to_string()).collect());
        for e in events.iter().filter(|e| !KINDS.contains(&e.as_str())) {
            p.problem(
                &field("events"),
                format!("expected kinds among {}, got \"{e}\"", KINDS.join(", ")),
            );
        }
        let retry_min_ms = p.positive(&field("retry_min_ms"), raw.retry_min_ms, 100);
        let retry_max_ms = p.positive(&field("retry_max_ms"), raw.retry_max_ms, 30_000);
        if retry_max_ms < retry_min_ms {
            p.problem(
                &field("retry_max_ms"),
                format!("expected at least retry_min_ms ({retry_min_ms}), got {retry_max_ms}"),
            );
        }
        hooks.push(WebhookConfig {
            name,
            url,
            secret,
            events,
            timeout_ms: p.positive(&field("timeout_ms"), raw.timeout_ms, 5000),
            retry_min_ms,
            retry_max_ms,
        });
    }
    hooks
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

    #[test]
    fn every_webhook_problem_is_reported_with_its_field() {
        let table: toml::Table = toml::from_str(
            "[[webhook]]\nname = \"qms\"\nurl = \"https://x/\"\nsecret = \"short\"\nevents = [\"part\", \"lot\"]\n\
             [[webhook]]\nname = \"qms\"\nurl = \"http://erp:9000/in\"\nsecret = \"0123456789abcdef\"\n",
        )
        .unwrap();
        let mut p = Problems::new(std::path::Path::new("."));
        let raw = p.section(&table, "webhook");
        let hooks = validate_webhooks(&mut p, raw);
        let fields: Vec<&str> = p.list.iter().map(|p| p.field.as_str()).collect();
        assert_eq!(
            fields,
            [
                "webhook[0].url",
                "webhook[0].secret",
                "webhook[0].events",
                "webhook[1].name"
            ]
        );
        assert_eq!(hooks[1].url.port_u16(), Some(9000));
        assert_eq!(hooks[1].events.len(), KINDS.len(), "all kinds by default");
    }
}
