//! The scanner on its serial port: a tokio task that reads bytes as they come, frames them into scans
//! ([`ScanFramer`]), reads each scan's identity ([`identify`]) and sends it, with the time its last byte came,
//! to the orchestrator. A port that fails or hangs up is counted (`scanner_faults`) and reopened every second;
//! meanwhile parts get no scan, so they are NOREADs: fail-safe rejects, never parts without identity.

use std::sync::Arc;
use std::time::{Duration, Instant};

use tokio::io::AsyncReadExt;
use tokio::sync::{mpsc, watch};
use tokio_serial::SerialStream;

use super::{PartIdentity, ReadOptions, ScanFramer, ScannerConfig, identify};
use crate::metrics::{Counters, bump};

/// A scan and when its terminator came.
#[derive(Debug)]
pub struct ScanEvent {
    pub at: Instant,
    pub identity: PartIdentity,
}

/// Opens the scanner's port (8N1 at the configured baud rate).
pub fn open(config: &ScannerConfig) -> Result<SerialStream, String> {
    let device = config.port.to_string_lossy();
    SerialStream::open(&tokio_serial::new(device.as_ref(), config.baud))
        .map_err(|e| format!("cannot open the scanner's port {device} (identity.port): {e}"))
}

/// Reads scans until `stop` turns true; `port` is the port opened at start.
pub async fn run(
    config: ScannerConfig,
    mut port: Option<SerialStream>,
    tx: mpsc::Sender<ScanEvent>,
    counters: Arc<Counters>,
    mut stop: watch::Receiver<bool>,
) {
    let mut framer = ScanFramer::new(config.framer.clone());
    let mut buf = [0u8; 512];
    while !*stop.borrow() {
        let Some(stream) = port.as_mut() else {
            tokio::select! {
                _ = tokio::time::sleep(Duration::from_secs(1)) => {}
                _ = stop.changed() => break,
            }
            port = open(&config)
                .inspect_err(|e| tracing::debug!("scanner: {e}"))
                .ok();
            if port.is_some() {
                tracing::info!("scanner: port {} open again", config.port.display());
            }
            continue;
        };
        let read = tokio::select! {
            read = stream.read(&mut buf) => read,
            _ = stop.changed() => break,
        };
        match read {
            Ok(n) if n > 0 => deliver(&config, &mut framer, &buf[..n], &tx, &counters),
            result => {
                let why = result.map_or_else(|e| e.to_string(), |_| "hung up".into());
                tracing::warn!("scanner: port {}: {why}; reopening", config.port.display());
                bump(&counters.scanner_faults);
                port = None;
                framer = ScanFramer::new(config.framer.clone());
            }
        }
    }
}

/// Frames a chunk and sends its scans.
fn deliver(
    config: &ScannerConfig,
    framer: &mut ScanFramer,
    chunk: &[u8],
    tx: &mpsc::Sender<ScanEvent>,
    counters: &Counters,
) {
    let at = Instant::now();
    let options = ReadOptions {
        gs1_without_marker: config.gs1_without_marker,
        current_year: current_year(),
    };
    for scan in framer.feed(chunk) {
        match scan {
            Ok(scan) => {
                bump(&counters.scans);
                let identity = identify(&scan, &options);
                if tx.try_send(ScanEvent { at, identity }).is_err() {
                    // The orchestrator is 64 scans behind: the part this scan was for becomes a NOREAD.
                    bump(&counters.scans_dropped);
                    tracing::warn!("scanner: scan dropped, the station is behind");
                }
            }
            Err(e) => {
                bump(&counters.scanner_faults);
                tracing::warn!("scanner: {e}");
            }
        }
    }
}

/// This year (UTC), for the century of two-digit GS1 years.
fn current_year() -> i32 {
    let days = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs() / 86_400) as i64;
    crate::clock::civil_from_days(days).0 as i32
}

#[cfg(test)]
mod tests {
    #[test]
    fn the_current_year_is_plausible() {
        let year = super::current_year();
        assert!((2026..2100).contains(&year), "{year}");
    }
}
