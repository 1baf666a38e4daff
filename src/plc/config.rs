//! `[plc]`: the PLC link, its role, the register blocks, the reject gate's timing and the heartbeat. Parsed into
//! [`RawPlc`], validated into [`PlcConfig`] (every problem with its field path).

use std::net::SocketAddr;
use std::path::PathBuf;

use serde::Deserialize;

use super::map::{COMMAND_LEN, STATUS_LEN};
use crate::problems::Problems;

#[derive(Debug, Default, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RawPlc {
    kind: Option<String>,
    address: Option<String>,
    unit_id: Option<u8>,
    timeout_ms: Option<u64>,
    slow_answer_retries: Option<u32>,
    output_connection: Option<String>,
    reject_coil: Option<u16>,
    reject_pulse_ms: Option<u64>,
    result_register: Option<u16>,
    reconnect_min_ms: Option<u64>,
    reconnect_max_ms: Option<u64>,
    role: Option<String>,
    listen: Option<String>,
    device: Option<PathBuf>,
    baud_rate: Option<u32>,
    parity: Option<String>,
    stop_bits: Option<u8>,
    poll_ms: Option<u64>,
    command_register: Option<u16>,
    result_ack: Option<bool>,
    result_buffer: Option<usize>,
    result_hold_ms: Option<u64>,
    max_parts_in_flight: Option<usize>,
    reject_delay_ms: Option<u64>,
    reject_distance_counts: Option<u32>,
    heartbeat_ms: Option<u64>,
    heartbeat_missed: Option<u32>,
}

#[derive(Debug, Clone, PartialEq)]
pub enum PlcLink {
    /// An in-process Modbus TCP server plays the PLC (the demo).
    Simulated,
    /// A real PLC (a Modbus TCP server) at this address; the station is the client.
    Tcp(SocketAddr),
    /// The station is a Modbus TCP server on this address, polled by the PLC (smart-camera style).
    Serve(SocketAddr),
    /// A PLC on a serial line (Modbus RTU); the station is the master.
    Rtu(RtuConfig),
    /// No PLC: verdicts are recorded only.
    Off,
}

#[derive(Debug, Clone, PartialEq)]
pub struct PlcConfig {
    pub link: PlcLink,
    pub unit_id: u8,
    pub timeout_ms: u64,
    /// A call not answered within `timeout_ms` is waited for this many more periods before the link counts as
    /// down (one slow answer is not an outage).
    pub slow_answer_retries: u32,
    /// Client role over TCP: the reject output writes the coil on a connection of its own (`"own"`, the default)
    /// or on the handshake's, between its calls (`"shared"`: for a PLC that accepts one client connection).
    pub output_shares_link: bool,
    pub reject_coil: u16,
    pub reject_pulse_ms: u64,
    /// First of the result block's holding registers: result code, inspection counter, part seq (high, low).
    pub result_register: u16,
    pub reconnect_min_ms: u64,
    pub reconnect_max_ms: u64,
    /// Handshake scan period: the PLC's command block is read (client) or looked at (server) this often.
    pub poll_ms: u64,
    /// First of the PLC's command block's holding registers (see docs/PLC.md).
    pub command_register: u16,
    /// Results wait for the PLC's acknowledge (true) or each one overwrites the last (false).
    pub result_ack: bool,
    /// Results waiting for an acknowledge, at most (the one shown included).
    pub result_buffer: usize,
    /// Without acknowledge: how long each result stays shown after it was written before the next replaces it
    /// (the PLC must read the block at least this often to see every result).
    pub result_hold_ms: u64,
    /// PLC triggers beyond this many parts in flight are refused (busy).
    pub max_parts_in_flight: usize,
    /// When the reject output fires.
    pub reject_timing: RejectTiming,
    /// Station heartbeat period, and the PLC heartbeat watchdog's period.
    pub heartbeat_ms: u64,
    /// Periods without a change of the PLC's heartbeat before the alarm (0: no watchdog).
    pub heartbeat_missed: u32,
}

/// When the reject output fires for a rejected part.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RejectTiming {
    /// As soon as the verdict is known.
    OnVerdict,
    /// This long after the part's trigger.
    DelayMs(u64),
    /// When the PLC's encoder count has moved this far since the part's trigger.
    DistanceCounts(u32),
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Parity {
    None,
    Even,
    Odd,
}

/// A Modbus RTU serial line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RtuConfig {
    pub device: PathBuf,
    pub baud_rate: u32,
    pub parity: Parity,
    pub stop_bits: u8,
}

pub fn validate(p: &mut Problems, raw: RawPlc, queue_depth: usize) -> PlcConfig {
    let link = link(p, &raw);
    let reconnect_min_ms = p.positive("plc.reconnect_min_ms", raw.reconnect_min_ms, 100);
    let reconnect_max_ms = p.positive("plc.reconnect_max_ms", raw.reconnect_max_ms, 250);
    if reconnect_max_ms < reconnect_min_ms {
        p.problem(
            "plc.reconnect_max_ms",
            format!("expected at least plc.reconnect_min_ms ({reconnect_min_ms}), got {reconnect_max_ms}"),
        );
    }
    let reject_timing = reject_timing(p, &raw);
    let result_buffer = raw.result_buffer.unwrap_or(8);
    if result_buffer == 0 {
        p.problem("plc.result_buffer", "expected at least 1 result, got 0");
    }
    let max_parts_in_flight = raw.max_parts_in_flight.unwrap_or(queue_depth);
    if max_parts_in_flight == 0 {
        p.problem("plc.max_parts_in_flight", "expected at least 1 part, got 0");
    }
    let result_register = raw.result_register.unwrap_or(0);
    let command_register = raw.command_register.unwrap_or(32);
    register_blocks(p, result_register, command_register);
    PlcConfig {
        link,
        unit_id: raw.unit_id.unwrap_or(1),
        timeout_ms: p.positive("plc.timeout_ms", raw.timeout_ms, 250),
        slow_answer_retries: raw.slow_answer_retries.unwrap_or(1),
        output_shares_link: match raw.output_connection.as_deref() {
            None | Some("own") => false,
            Some("shared") => true,
            Some(other) => {
                p.problem(
                    "plc.output_connection",
                    format!("expected \"own\" or \"shared\", got \"{other}\""),
                );
                false
            }
        },
        reject_coil: raw.reject_coil.unwrap_or(0),
        reject_pulse_ms: p.positive("plc.reject_pulse_ms", raw.reject_pulse_ms, 30),
        result_register,
        reconnect_min_ms,
        reconnect_max_ms,
        poll_ms: p.positive("plc.poll_ms", raw.poll_ms, 5),
        result_hold_ms: raw
            .result_hold_ms
            .unwrap_or_else(|| raw.poll_ms.unwrap_or(5).max(1)),
        command_register,
        result_ack: raw.result_ack.unwrap_or(true),
        result_buffer: result_buffer.max(1),
        max_parts_in_flight: max_parts_in_flight.max(1),
        reject_timing,
        heartbeat_ms: p.positive("plc.heartbeat_ms", raw.heartbeat_ms, 100),
        heartbeat_missed: raw.heartbeat_missed.unwrap_or(10),
    }
}

/// `kind` and `role`: which link, with the fields each needs and refusing those it does not use.
fn link(p: &mut Problems, raw: &RawPlc) -> PlcLink {
    let kind = raw.kind.as_deref().unwrap_or("simulated");
    let role = raw.role.as_deref().unwrap_or("client");
    let serial = [
        ("device", raw.device.is_some()),
        ("baud_rate", raw.baud_rate.is_some()),
        ("parity", raw.parity.is_some()),
        ("stop_bits", raw.stop_bits.is_some()),
    ];
    if !matches!(role, "client" | "server") {
        p.problem(
            "plc.role",
            format!("expected \"client\" or \"server\", got \"{role}\""),
        );
    } else if role == "server" && kind != "tcp" {
        p.problem("plc.role", "\"server\" needs kind = \"tcp\"");
    }
    let address = |p: &mut Problems, field: &str, text: Option<&str>, example: &str| match text {
        Some(text) => text.parse::<SocketAddr>().map_err(|_| {
            p.problem(
                field,
                format!("expected an address like \"{example}\", got \"{text}\""),
            )
        }),
        None => {
            p.problem(
                field,
                format!("required with kind = \"tcp\", role = \"{role}\""),
            );
            Err(())
        }
    };
    match kind {
        "simulated" | "off" => {
            let mut unused = vec![
                ("address", raw.address.is_some()),
                ("listen", raw.listen.is_some()),
            ];
            unused.extend(serial);
            p.unused("plc", kind, &unused);
            if kind == "off" {
                PlcLink::Off
            } else {
                PlcLink::Simulated
            }
        }
        "tcp" if role == "server" => {
            let mut unused = vec![("address", raw.address.is_some())];
            unused.extend(serial);
            p.unused("plc", "tcp\", role = \"server", &unused);
            address(p, "plc.listen", raw.listen.as_deref(), "0.0.0.0:502")
                .map_or(PlcLink::Off, PlcLink::Serve)
        }
        "tcp" => {
            let mut unused = vec![("listen", raw.listen.is_some())];
            unused.extend(serial);
            p.unused("plc", kind, &unused);
            address(p, "plc.address", raw.address.as_deref(), "192.168.0.10:502")
                .map_or(PlcLink::Off, PlcLink::Tcp)
        }
        "rtu" => {
            p.unused(
                "plc",
                kind,
                &[
                    ("address", raw.address.is_some()),
                    ("listen", raw.listen.is_some()),
                ],
            );
            rtu(p, raw).map_or(PlcLink::Off, PlcLink::Rtu)
        }
        other => {
            p.problem(
                "plc.kind",
                format!("expected \"simulated\", \"tcp\", \"rtu\" or \"off\", got \"{other}\""),
            );
            PlcLink::Off
        }
    }
}

/// The serial line of `kind = "rtu"`.
fn rtu(p: &mut Problems, raw: &RawPlc) -> Option<RtuConfig> {
    let parity = match raw.parity.as_deref().unwrap_or("even") {
        "none" => Parity::None,
        "even" => Parity::Even,
        "odd" => Parity::Odd,
        other => {
            p.problem(
                "plc.parity",
                format!("expected \"none\", \"even\" or \"odd\", got \"{other}\""),
            );
            Parity::Even
        }
    };
    let stop_bits = raw.stop_bits.unwrap_or(1);
    if !matches!(stop_bits, 1 | 2) {
        p.problem("plc.stop_bits", format!("expected 1 or 2, got {stop_bits}"));
    }
    let baud_rate = raw.baud_rate.unwrap_or(19200);
    if baud_rate == 0 {
        p.problem("plc.baud_rate", "expected a positive number, got 0");
    }
    match &raw.device {
        Some(device) => Some(RtuConfig {
            device: device.clone(),
            baud_rate,
            parity,
            stop_bits,
        }),
        None => {
            p.problem(
                "plc.device",
                "required with kind = \"rtu\": the serial port, like \"/dev/ttyUSB0\"",
            );
            None
        }
    }
}

/// When the reject output fires: on the verdict, after a delay, or after an encoder distance (one of them).
fn reject_timing(p: &mut Problems, raw: &RawPlc) -> RejectTiming {
    match (raw.reject_delay_ms, raw.reject_distance_counts) {
        (Some(_), Some(_)) => {
            p.problem(
                "plc.reject_distance_counts",
                "set either plc.reject_delay_ms or plc.reject_distance_counts, not both",
            );
            RejectTiming::OnVerdict
        }
        (Some(ms), None) => RejectTiming::DelayMs(ms),
        (None, Some(0)) => {
            p.problem(
                "plc.reject_distance_counts",
                "expected a positive number, got 0",
            );
            RejectTiming::OnVerdict
        }
        (None, Some(counts)) => RejectTiming::DistanceCounts(counts),
        (None, None) => RejectTiming::OnVerdict,
    }
}

/// The result and command blocks must not overlap and must fit below register 65536.
fn register_blocks(p: &mut Problems, result_register: u16, command_register: u16) {
    let overlap = |a: u16, alen: u16, b: u16, blen: u16| {
        u32::from(a) < u32::from(b) + u32::from(blen)
            && u32::from(b) < u32::from(a) + u32::from(alen)
    };
    if overlap(result_register, STATUS_LEN, command_register, COMMAND_LEN) {
        p.problem(
            "plc.command_register",
            format!(
                "the command block ({command_register}..{}) overlaps the result block ({result_register}..{})",
                u32::from(command_register) + u32::from(COMMAND_LEN) - 1,
                u32::from(result_register) + u32::from(STATUS_LEN) - 1,
            ),
        );
    }
    for (field, base, len) in [
        ("plc.result_register", result_register, STATUS_LEN),
        ("plc.command_register", command_register, COMMAND_LEN),
    ] {
        if u32::from(base) + u32::from(len) > 65536 {
            p.problem(
                field,
                format!("the block of {len} registers must end below 65536, got {base}"),
            );
        }
    }
}
