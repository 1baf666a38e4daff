//! The webhook sink: POSTs each outbox message (the same JSON envelope MQTT gets) to a configured `http://` URL,
//! one message per request, in order. Every request carries `X-Station-Signature: sha256=<hex HMAC-SHA256 of the
//! body, keyed by webhook.secret>`, `X-Station-Message-Id` and `X-Station-Kind`. A 2xx answer moves the cursor;
//! anything else (an error status, no answer in `timeout_ms`, a refused connection) stops the batch, and the
//! delivery loop retries from the cursor with backoff. Kinds the hook does not want are passed over.

use std::time::Duration;

use axum::body::Bytes;
use axum::http::{Request, header};
use hmac::{Hmac, Mac};
use http_body_util::Full;
use hyper_util::client::legacy::Client;
use hyper_util::client::legacy::connect::HttpConnector;
use hyper_util::rt::TokioExecutor;
use sha2::Sha256;

use super::config::WebhookConfig;
use super::deliver::Sink;
use crate::store::outbox::Message;

pub struct WebhookSink {
    config: WebhookConfig,
    station: String,
    cursor: String,
    client: Client<HttpConnector, Full<Bytes>>,
}

impl WebhookSink {
    pub fn new(config: WebhookConfig, station: &str) -> WebhookSink {
        WebhookSink {
            cursor: cursor_name(&config.name),
            config,
            station: station.to_string(),
            client: Client::builder(TokioExecutor::new()).build_http(),
        }
    }

    /// POSTs one message; `Err` says why it did not land.
    async fn post(&self, m: &Message) -> Result<(), String> {
        let body = m.envelope(&self.station).to_string();
        let request = Request::post(self.config.url.clone())
            .header(header::CONTENT_TYPE, "application/json")
            .header(
                "x-station-signature",
                signature(&self.config.secret, body.as_bytes())?,
            )
            .header("x-station-message-id", m.id)
            .header("x-station-kind", &m.kind)
            .body(Full::new(Bytes::from(body)))
            .map_err(|e| e.to_string())?;
        let timeout = Duration::from_millis(self.config.timeout_ms);
        match tokio::time::timeout(timeout, self.client.request(request)).await {
            Err(_) => Err(format!("no answer in {} ms", self.config.timeout_ms)),
            Ok(Err(e)) => Err(e.to_string()),
            Ok(Ok(r)) if r.status().is_success() => Ok(()),
            Ok(Ok(r)) => Err(format!("answered {}", r.status())),
        }
    }
}

/// The hook's cursor in `outbox_cursors`.
pub fn cursor_name(hook: &str) -> String {
    format!("webhook:{hook}")
}

/// `sha256=<hex>` of the HMAC-SHA256 of `body` keyed by `secret`.
pub fn signature(secret: &str, body: &[u8]) -> Result<String, String> {
    // HMAC takes a key of any length; the error cannot happen.
    let mut mac = Hmac::<Sha256>::new_from_slice(secret.as_bytes()).map_err(|e| e.to_string())?;
    mac.update(body);
    let hex: String = mac
        .finalize()
        .into_bytes()
        .iter()
        .map(|b| format!("{b:02x}"))
        .collect();
    Ok(format!("sha256={hex}"))
}

impl Sink for WebhookSink {
    fn name(&self) -> &str {
        &self.cursor
    }

    async fn deliver(&mut self, batch: &[Message]) -> (usize, Option<String>) {
        for (i, m) in batch.iter().enumerate() {
            if !self.config.events.contains(&m.kind) {
                continue;
            }
            if let Err(e) = self.post(m).await {
                return (
                    i,
                    Some(format!("{}: message {}: {e}", self.config.url, m.id)),
                );
            }
        }
        (batch.len(), None)
    }

    async fn close(&mut self) {}
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231, test case 2.
        assert_eq!(
            signature("Jefe", b"what do ya want for nothing?").unwrap(),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
