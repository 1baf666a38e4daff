//! Each part's identity, as the orchestrator assigns it at the trigger: the scan the [`ScanBook`] matches to
//! it, or the PLC's part ID, checked for NOREAD, a scan that does not parse, and a duplicate serial. A problem
//! becomes a fail-safe reason that joins the part's verdict when it is decided (the part is still inspected, so
//! its record has its image and scores).

use std::collections::HashMap;
use std::time::Duration;

use crate::decision::Reason;
use crate::identity::reader::ScanEvent;
use crate::identity::{IdentityConfig, IdentitySource, PartIdentity, ScanBook};
use crate::metrics::{Counters, bump};
use crate::part::record::IdentityRow;
use crate::part::{Seq, TriggerEvent};

/// What a part was given at its trigger.
#[derive(Debug, Default)]
pub struct Assigned {
    pub row: Option<IdentityRow>,
    pub problem: Option<Reason>,
}

pub struct Identities {
    source: IdentitySource,
    book: ScanBook,
    window_ms: u64,
    parts: HashMap<Seq, Assigned>,
}

impl Identities {
    pub fn new(config: &IdentityConfig) -> Identities {
        let window_ms = match &config.source {
            IdentitySource::Scanner(s) => s.scan_window_ms,
            _ => 0,
        };
        Identities {
            source: config.source.clone(),
            book: ScanBook::new(
                Duration::from_millis(window_ms),
                Duration::from_secs(config.duplicate_window_s),
            ),
            window_ms,
            parts: HashMap::new(),
        }
    }

    /// `identity.source`, or `None` when parts have the station's own `<run>-<seq>` only.
    pub fn source_name(&self) -> Option<&'static str> {
        (self.source != IdentitySource::Sequence).then(|| self.source.name())
    }

    pub fn scanned(&mut self, event: ScanEvent) {
        self.book.scanned(event.at, event.identity);
    }

    /// Gives part `seq` (`part_id`) triggered by `event` its identity, noting any problem with it.
    pub fn assign(&mut self, seq: Seq, part_id: &str, event: &TriggerEvent, counters: &Counters) {
        let (row, mut problem) = match &self.source {
            IdentitySource::Sequence => return,
            IdentitySource::Plc => match event.tag {
                Some(tag) => (Some(plc_row(Some(tag.part_id))), None),
                None => (
                    Some(plc_row(None)),
                    Some(Reason::NoRead {
                        detail: "the trigger came without the PLC's part ID".into(),
                    }),
                ),
            },
            IdentitySource::Scanner(_) => {
                let stale = self.book.stale;
                let scan = self.book.take(event.at);
                counters.stale_scans.fetch_add(
                    self.book.stale - stale,
                    std::sync::atomic::Ordering::Relaxed,
                );
                match scan {
                    Some(identity) => scan_row(&identity),
                    None => (
                        Some(IdentityRow {
                            source: "scanner".into(),
                            ..plc_row(None)
                        }),
                        Some(Reason::NoRead {
                            detail: format!(
                                "no scan within {} ms before the trigger",
                                self.window_ms
                            ),
                        }),
                    ),
                }
            }
        };
        let serial = row.as_ref().and_then(|r| r.serial.clone());
        if let (Some(serial), None) = (serial, &problem)
            && let Some(first_part) = self.book.duplicate(&serial, event.at, part_id)
        {
            problem = Some(Reason::DuplicateSerial { serial, first_part });
        }
        match &problem {
            Some(Reason::NoRead { .. }) => bump(&counters.noreads),
            Some(Reason::DuplicateSerial { .. }) => bump(&counters.duplicate_serials),
            Some(_) => bump(&counters.identity_invalid),
            None => {}
        }
        self.parts.insert(seq, Assigned { row, problem });
    }

    /// What part `seq` was given (nothing with the station's own identity).
    pub fn take(&mut self, seq: Seq) -> Assigned {
        self.parts.remove(&seq).unwrap_or_default()
    }
}

/// A PLC identity (`None`: the trigger came without a part ID); with another `source`, the row of a NOREAD.
fn plc_row(part_id: Option<u32>) -> IdentityRow {
    IdentityRow {
        source: "plc".into(),
        raw: None,
        symbology: None,
        serial: part_id.map(|id| id.to_string()),
        gtin: None,
        lot: None,
        expiry: None,
        production_date: None,
        gs1_fields: None,
        error: None,
    }
}

/// A scan's row, and why it cannot serve as the part's identity, if it cannot.
fn scan_row(id: &PartIdentity) -> (Option<IdentityRow>, Option<Reason>) {
    let fields = (!id.fields.is_empty()).then(|| {
        let list: Vec<_> = id
            .fields
            .iter()
            .map(|f| serde_json::json!({"ai": f.ai, "value": f.value}))
            .collect();
        serde_json::Value::Array(list).to_string()
    });
    let error = id.error.as_ref().map(ToString::to_string);
    let problem = match (&error, &id.serial, &id.gtin) {
        (Some(e), _, _) => Some(format!("the scan is not a valid GS1 element string: {e}")),
        (None, None, None) => Some("the scan has neither a serial (21) nor a GTIN (01)".into()),
        _ => None,
    };
    let row = IdentityRow {
        source: "scanner".into(),
        raw: Some(id.raw.clone()),
        symbology: id.symbology.map(|s| s.as_string()),
        serial: id.serial.clone(),
        gtin: id.gtin.clone(),
        lot: id.lot.clone(),
        expiry: id.expiry.map(|d| d.to_string()),
        production_date: id.production_date.map(|d| d.to_string()),
        gs1_fields: fields,
        error,
    };
    (
        Some(row),
        problem.map(|detail| Reason::IdentityInvalid { detail }),
    )
}
