//! The register map shared by every role (station as Modbus client, as Modbus server, over RTU): the PLC's command
//! block (written by the PLC), the station's result block (written by the station), their bits and codes, and the
//! pure encoding/decoding between registers and Rust values. docs/PLC.md is the controls engineer's copy of this.

/// Registers in the PLC's command block (holding registers at `plc.command_register`).
pub const COMMAND_LEN: u16 = 7;
/// Registers in the station's result block (holding registers at `plc.result_register`).
pub const STATUS_LEN: u16 = 17;

/// Command word bits (command block +0).
pub mod command {
    pub const TRIGGER: u16 = 1 << 0;
    pub const RESULT_ACK: u16 = 1 << 1;
    pub const FAULT_RESET: u16 = 1 << 2;
}

/// Status word bits (result block +0).
pub mod status {
    pub const READY: u16 = 1 << 0;
    pub const BUSY: u16 = 1 << 1;
    pub const TRIGGER_ACK: u16 = 1 << 2;
    pub const RESULT_READY: u16 = 1 << 3;
    pub const OVERRUN: u16 = 1 << 4;
    pub const ALARM: u16 = 1 << 5;
    pub const TRIGGER_REFUSED: u16 = 1 << 6;
    pub const HEARTBEAT_LOST: u16 = 1 << 7;
    /// Every bit with its name, for status displays.
    pub const NAMES: [(u16, &str); 8] = [
        (READY, "ready"),
        (BUSY, "busy"),
        (TRIGGER_ACK, "trigger-ack"),
        (RESULT_READY, "result-ready"),
        (OVERRUN, "overrun"),
        (ALARM, "alarm"),
        (TRIGGER_REFUSED, "trigger-refused"),
        (HEARTBEAT_LOST, "heartbeat-lost"),
    ];
}

/// Fault codes (result block +6): the most recent fault not yet reset.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u16)]
pub enum Fault {
    None = 0,
    HeartbeatLost = 1,
    ResultOverrun = 2,
    TriggerRefused = 3,
    UnknownRecipe = 4,
    VerdictLateAtGate = 5,
    RejectPulseMissed = 6,
    /// Neither the database nor the journal takes the station's records: the line must not run blind.
    RecordsAtRisk = 7,
    /// The result buffer is full of results the station holds back itself (they wait, in trigger order, for an
    /// earlier part's verdict): a stall of the station, not of the PLC.
    StationHoldsResults = 8,
}

impl Fault {
    pub fn from_code(code: u16) -> &'static str {
        match code {
            0 => "none",
            1 => "PLC heartbeat lost",
            2 => "result buffer overrun",
            3 => "trigger refused (busy)",
            4 => "unknown recipe",
            5 => "verdict late at the gate",
            6 => "reject pulse missed (link down)",
            7 => "records cannot be written (database and journal)",
            8 => {
                "result buffer full of results the station holds (an earlier part's verdict is late)"
            }
            _ => "unknown fault code",
        }
    }
}

/// The PLC's command block as read.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Commands {
    pub word: u16,
    pub part_id: u32,
    pub recipe: u16,
    pub encoder: u32,
    pub heartbeat: u16,
}

impl Commands {
    pub fn decode(r: &[u16]) -> Commands {
        let at = |i: usize| r.get(i).copied().unwrap_or(0);
        Commands {
            word: at(0),
            part_id: u32::from(at(1)) << 16 | u32::from(at(2)),
            recipe: at(3),
            encoder: u32::from(at(4)) << 16 | u32::from(at(5)),
            heartbeat: at(6),
        }
    }

    pub fn has(&self, bit: u16) -> bool {
        self.word & bit != 0
    }
}

/// Diagnostic counters in the result block (+9..+15), each wrapping at 65536.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Diagnostics {
    pub triggers: u16,
    pub refused: u16,
    pub overruns: u16,
    pub heartbeat_faults: u16,
    pub gate_fail_safe: u16,
    pub outages: u16,
    pub reject_pulses: u16,
    /// Reject pulses that fell due but could not be written (link down): parts that may have passed the gate.
    pub missed_pulses: u16,
}

/// The station's result block as written.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct Status {
    pub word: u16,
    pub result_code: u16,
    /// Inspection counter of the shown result: the station's sequence number of that part's trigger (wrapping).
    pub counter: u16,
    /// Part ID of the shown result, as the PLC gave it with the trigger (or the sequence number).
    pub part_id: u32,
    pub buffer_depth: u16,
    pub fault: u16,
    pub heartbeat: u16,
    pub recipe: u16,
    pub diag: Diagnostics,
}

impl Status {
    pub fn encode(&self) -> [u16; STATUS_LEN as usize] {
        let d = &self.diag;
        [
            self.word,
            self.result_code,
            self.counter,
            (self.part_id >> 16) as u16,
            self.part_id as u16,
            self.buffer_depth,
            self.fault,
            self.heartbeat,
            self.recipe,
            d.triggers,
            d.refused,
            d.overruns,
            d.heartbeat_faults,
            d.gate_fail_safe,
            d.outages,
            d.reject_pulses,
            d.missed_pulses,
        ]
    }

    pub fn decode(r: &[u16]) -> Status {
        let at = |i: usize| r.get(i).copied().unwrap_or(0);
        Status {
            word: at(0),
            result_code: at(1),
            counter: at(2),
            part_id: u32::from(at(3)) << 16 | u32::from(at(4)),
            buffer_depth: at(5),
            fault: at(6),
            heartbeat: at(7),
            recipe: at(8),
            diag: Diagnostics {
                triggers: at(9),
                refused: at(10),
                overruns: at(11),
                heartbeat_faults: at(12),
                gate_fail_safe: at(13),
                outages: at(14),
                reject_pulses: at(15),
                missed_pulses: at(16),
            },
        }
    }

    pub fn set(&mut self, bit: u16, on: bool) {
        if on {
            self.word |= bit;
        } else {
            self.word &= !bit;
        }
    }

    pub fn has(&self, bit: u16) -> bool {
        self.word & bit != 0
    }

    /// The set status bits by name: `ready busy result-ready`.
    pub fn bit_names(&self) -> String {
        let names: Vec<&str> = status::NAMES
            .iter()
            .filter(|(bit, _)| self.has(*bit))
            .map(|(_, name)| *name)
            .collect();
        if names.is_empty() {
            "(none)".into()
        } else {
            names.join(" ")
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn commands_decode_32_bit_values_high_word_first() {
        let c = Commands::decode(&[0b101, 0x0001, 0x0002, 7, 0xFFFF, 0xFFFE, 42]);
        assert!(c.has(command::TRIGGER) && c.has(command::FAULT_RESET));
        assert!(!c.has(command::RESULT_ACK));
        assert_eq!(
            (c.part_id, c.recipe, c.encoder, c.heartbeat),
            (0x0001_0002, 7, 0xFFFF_FFFE, 42)
        );
    }

    #[test]
    fn status_round_trips_and_names_its_bits() {
        let mut s = Status {
            result_code: 2,
            counter: 9,
            part_id: 70_000,
            buffer_depth: 3,
            fault: Fault::ResultOverrun as u16,
            heartbeat: 5,
            recipe: 4,
            diag: Diagnostics {
                triggers: 10,
                reject_pulses: 2,
                ..Default::default()
            },
            ..Default::default()
        };
        s.set(status::READY, true);
        s.set(status::RESULT_READY, true);
        let regs = s.encode();
        assert_eq!(&regs[..9], &[0b1001, 2, 9, 1, 4464, 3, 2, 5, 4]);
        assert_eq!(Status::decode(&regs), s);
        assert_eq!(s.bit_names(), "ready result-ready");
        s.set(status::READY, false);
        assert_eq!(s.bit_names(), "result-ready");
    }
}
