//! The event that says "a part is here, inspect it", from whichever trigger fired, and what the PLC gave with it.

use std::time::Instant;

/// What the PLC gave with a trigger.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PlcTag {
    /// Part ID from the command block (32 bits).
    pub part_id: u32,
    /// Encoder count at the trigger.
    pub encoder: u32,
    /// How far before the trigger's recorded time the PLC may have sampled it, in µs: the round trip of the read
    /// that saw it (the time is taken when the answer arrived, so a pulse timed from it is never early); 0 when
    /// the PLC wrote it to the station's server (the write's arrival is the time).
    pub uncertainty_us: u32,
}

/// A part arrived.
#[derive(Debug, Clone, Copy)]
pub struct TriggerEvent {
    pub at: Instant,
    /// Part ID and encoder count, when the PLC triggered.
    pub tag: Option<PlcTag>,
    /// The PLC handshake refused this trigger (busy): the part is rejected without inspection.
    pub refused: bool,
}

impl TriggerEvent {
    /// A trigger of the station's own (interval, HTTP).
    pub fn now() -> TriggerEvent {
        TriggerEvent {
            at: Instant::now(),
            tag: None,
            refused: false,
        }
    }
}
