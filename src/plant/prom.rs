//! Prometheus `/metrics` (the `prometheus-client` crate's OpenMetrics text), served by axum on its own address
//! (`[metrics] listen`), without a login: bind it to an address only the monitoring network reaches.
//!
//! Every figure is read at scrape time from what the line already keeps (the shared [`Counters`], the model in
//! force, each sink's [`SinkStatus`]), so the line does no extra work per part for it: parts, verdicts, reasons,
//! faults by kind, per-stage latency histograms (from the records' timestamps), the PLC link, queues and drops,
//! the model, and the outbox backlog of each sink.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};

use axum::Router;
use axum::extract::State;
use axum::http::header::CONTENT_TYPE;
use axum::response::IntoResponse;
use axum::routing::get;
use prometheus_client::collector::Collector;
use prometheus_client::encoding::{DescriptorEncoder, NoLabelSet};
use prometheus_client::metrics::MetricType;
use prometheus_client::registry::Registry;

use super::deliver::SinkStatus;
use crate::clock::Clock;
use crate::live::LineTap;
use crate::metrics::{BUCKETS_MS, Counters, Histogram};

/// What a scrape reads.
#[derive(Debug)]
struct Figures {
    station: String,
    counters: Arc<Counters>,
    model: tokio::sync::watch::Receiver<Option<crate::part::ModelInfo>>,
    sinks: Vec<(String, Arc<SinkStatus>)>,
}

type Fmt = Result<(), std::fmt::Error>;
/// A metric's name, help and type.
type Descriptor<'a> = (&'a str, &'a str, MetricType);

fn counter(e: &mut DescriptorEncoder, name: &str, help: &str, value: u64) -> Fmt {
    e.encode_descriptor(name, help, None, MetricType::Counter)?
        .encode_counter::<NoLabelSet, _, u64>(&value, None)
}

fn gauge(e: &mut DescriptorEncoder, name: &str, help: &str, value: f64) -> Fmt {
    e.encode_descriptor(name, help, None, MetricType::Gauge)?
        .encode_gauge(&value)
}

/// A counter or gauge with one label, one series per `(value, figure)`.
fn family(
    e: &mut DescriptorEncoder,
    (name, help, kind): Descriptor,
    label: &str,
    series: &[(&str, f64)],
) -> Fmt {
    let mut m = e.encode_descriptor(name, help, None, kind)?;
    for (value, figure) in series {
        let labels = [(label, *value)];
        let mut s = m.encode_family(&labels)?;
        match kind {
            MetricType::Counter => {
                s.encode_counter::<NoLabelSet, _, u64>(&(*figure as u64), None)?
            }
            _ => s.encode_gauge(figure)?,
        }
    }
    Ok(())
}

fn n(a: &AtomicU64) -> f64 {
    a.load(Ordering::Relaxed) as f64
}

/// A histogram in seconds, its buckets as [`Histogram`] keeps them.
fn histogram(h: &Histogram) -> (f64, u64, Vec<(f64, u64)>) {
    let mut buckets: Vec<(f64, u64)> = BUCKETS_MS
        .iter()
        .zip(&h.buckets)
        .map(|(ms, c)| (ms / 1e3, c.load(Ordering::Relaxed)))
        .collect();
    buckets.push((
        f64::INFINITY,
        h.buckets[BUCKETS_MS.len()].load(Ordering::Relaxed),
    ));
    let sum = h.sum_us.load(Ordering::Relaxed) as f64 / 1e6;
    (sum, h.count.load(Ordering::Relaxed), buckets)
}

impl Figures {
    fn line(&self, e: &mut DescriptorEncoder) -> Fmt {
        let c = &self.counters;
        counter(
            e,
            "station_parts",
            "Parts judged",
            c.parts.load(Ordering::Relaxed),
        )?;
        let verdicts = [("pass", n(&c.passed)), ("reject", n(&c.rejected))];
        family(
            e,
            ("station_verdicts", "Recorded verdicts", MetricType::Counter),
            "verdict",
            &verdicts,
        )?;
        let reasons = c.reasons.lock().unwrap_or_else(|p| p.into_inner()).clone();
        let reasons: Vec<(&str, f64)> = reasons
            .iter()
            .map(|(k, v)| (k.as_str(), *v as f64))
            .collect();
        family(
            e,
            (
                "station_reasons",
                "Reasons of the recorded verdicts",
                MetricType::Counter,
            ),
            "reason",
            &reasons,
        )?;
        let faults = [
            ("frame_fault", n(&c.frame_faults)),
            ("model_error", n(&c.model_errors)),
            ("deadline_missed", n(&c.deadline_misses)),
            ("pipeline_overloaded", n(&c.overloaded)),
            ("late_result", n(&c.late_results)),
            ("plc_undelivered", n(&c.plc_undelivered)),
            ("plc_outage", n(&c.plc_outages)),
            ("record_write_failure", n(&c.record_write_failures)),
            ("image_write_failure", n(&c.images_failed)),
        ];
        family(
            e,
            ("station_faults", "Faults by kind", MetricType::Counter),
            "kind",
            &faults,
        )?;
        let mut m = e.encode_descriptor(
            "station_stage_latency_seconds",
            "Per-stage latency of the recorded parts",
            None,
            MetricType::Histogram,
        )?;
        let s = &c.stages;
        for (stage, h) in [
            ("end_to_end", &s.end_to_end),
            ("capture", &s.capture),
            ("preprocess", &s.preprocess),
            ("inference", &s.inference),
        ] {
            let (sum, count, buckets) = histogram(h);
            let labels = [("stage", stage)];
            m.encode_family(&labels)?
                .encode_histogram::<NoLabelSet>(sum, count, &buckets, None)?;
        }
        Ok(())
    }

    fn plc_and_queues(&self, e: &mut DescriptorEncoder) -> Fmt {
        let c = &self.counters;
        gauge(
            e,
            "station_plc_link_up",
            "1 while the PLC link is up",
            n(&c.plc_link_up),
        )?;
        gauge(
            e,
            "station_plc_result_buffer",
            "Results waiting for the PLC's acknowledge",
            n(&c.plc_result_buffer),
        )?;
        counter(
            e,
            "station_plc_delivered",
            "Results the PLC received",
            c.plc_delivered.load(Ordering::Relaxed),
        )?;
        let queues = [
            ("records", n(&c.records_queued)),
            ("journal", n(&c.records_waiting)),
        ];
        family(
            e,
            (
                "station_queue_depth",
                "Messages waiting, by queue",
                MetricType::Gauge,
            ),
            "queue",
            &queues,
        )?;
        let drops = [
            ("shadow_tensor", n(&c.shadow_dropped)),
            ("image_skipped", n(&c.images_skipped)),
            ("record_lost", n(&c.records_lost)),
            ("outbox_message", n(&c.outbox_dropped)),
        ];
        family(
            e,
            (
                "station_dropped",
                "Things dropped (counted, never silent)",
                MetricType::Counter,
            ),
            "what",
            &drops,
        )?;
        gauge(
            e,
            "station_records_alarm",
            "1 while neither the database nor the journal takes records",
            n(&c.records_alarm),
        )?;
        gauge(
            e,
            "station_images_bytes",
            "Bytes of images in the images folder",
            n(&c.images_bytes),
        )?;
        if let Some(model) = self.model.borrow().as_ref() {
            let labels = [
                ("station", self.station.as_str()),
                ("name", model.name.as_str()),
                ("version", model.version.as_str()),
                ("sha256", model.sha256.as_str()),
            ];
            e.encode_descriptor(
                "station_model_info",
                "The model in force",
                None,
                MetricType::Gauge,
            )?
            .encode_family(&labels)?
            .encode_gauge(&1i64)?;
        }
        Ok(())
    }

    fn outbox(&self, e: &mut DescriptorEncoder) -> Fmt {
        let now_us = Clock::new().now_us();
        let pick = |f: &dyn Fn(&SinkStatus) -> f64| -> Vec<(&str, f64)> {
            self.sinks
                .iter()
                .map(|(name, s)| (name.as_str(), f(s)))
                .collect()
        };
        let age = |s: &SinkStatus| match s.oldest_us.load(Ordering::Relaxed) {
            0 => 0.0,
            t => (now_us - t).max(0) as f64 / 1e6,
        };
        let families: [(Descriptor, Vec<(&str, f64)>); 5] = [
            (
                (
                    "station_outbox_backlog_messages",
                    "Outbox messages a sink has not delivered",
                    MetricType::Gauge,
                ),
                pick(&|s| n(&s.backlog)),
            ),
            (
                (
                    "station_outbox_oldest_age_seconds",
                    "Age of the oldest message a sink has not delivered",
                    MetricType::Gauge,
                ),
                pick(&age),
            ),
            (
                (
                    "station_outbox_delivered",
                    "Messages a sink delivered",
                    MetricType::Counter,
                ),
                pick(&|s| n(&s.delivered)),
            ),
            (
                (
                    "station_outbox_failures",
                    "Failed deliveries (retried)",
                    MetricType::Counter,
                ),
                pick(&|s| n(&s.failures)),
            ),
            (
                (
                    "station_outbox_peer_up",
                    "1 while a sink's peer takes messages",
                    MetricType::Gauge,
                ),
                pick(&|s| n(&s.up)),
            ),
        ];
        for (descriptor, series) in &families {
            family(e, *descriptor, "sink", series)?;
        }
        Ok(())
    }
}

impl Collector for Figures {
    fn encode(&self, mut e: DescriptorEncoder) -> Fmt {
        self.line(&mut e)?;
        self.plc_and_queues(&mut e)?;
        self.outbox(&mut e)
    }
}

/// Serves `/metrics` on `listen`; returns the bound address.
pub async fn serve(
    listen: SocketAddr,
    station: &str,
    tap: &LineTap,
    sinks: Vec<(String, Arc<SinkStatus>)>,
) -> std::io::Result<SocketAddr> {
    let mut registry = Registry::default();
    registry.register_collector(Box::new(Figures {
        station: station.to_string(),
        counters: tap.counters.clone(),
        model: tap.model.subscribe(),
        sinks,
    }));
    let app = Router::new()
        .route("/metrics", get(scrape))
        .with_state(Arc::new(registry));
    let listener = tokio::net::TcpListener::bind(listen).await?;
    let addr = listener.local_addr()?;
    tokio::spawn(async move {
        if let Err(e) = axum::serve(listener, app).await {
            tracing::error!("metrics {addr}: {e}");
        }
    });
    Ok(addr)
}

async fn scrape(State(registry): State<Arc<Registry>>) -> impl IntoResponse {
    let mut text = String::new();
    if let Err(e) = prometheus_client::encoding::text::encode(&mut text, &registry) {
        tracing::error!("metrics: cannot encode them: {e}");
    }
    (
        [(
            CONTENT_TYPE,
            "application/openmetrics-text; version=1.0.0; charset=utf-8",
        )],
        text,
    )
}
