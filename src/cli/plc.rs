//! `station plc status`: connects to the PLC link of the config as a Modbus client and shows, from the register
//! map itself, what the PLC sees: link state, round-trip time p50/p99, the station's and the PLC's heartbeats
//! (value and age), status bits, the shown result, buffer depth, fault code and the station's fault counters.
//! With `role = "server"` it connects to the running station's own Modbus server (`plc.listen`).

use std::net::SocketAddr;
use std::time::{Duration, Instant};

use tokio_modbus::client::Reader;

use super::{ConfigArg, PlcUnreachable, load_config, runtime};
use crate::config::PlcLink;
use crate::metrics::Latencies;
use crate::plc::map::{COMMAND_LEN, Commands, Fault, STATUS_LEN, Status};
use crate::plc::{Endpoint, Limit, call, connect};

/// A value and when it last changed.
struct Watched {
    value: u16,
    changed: Instant,
    changes: u32,
}

impl Watched {
    fn see(w: &mut Option<Watched>, value: u16, now: Instant) {
        match w {
            Some(w) if w.value == value => {}
            Some(w) => {
                w.value = value;
                w.changed = now;
                w.changes += 1;
            }
            None => {
                *w = Some(Watched {
                    value,
                    changed: now,
                    changes: 0,
                })
            }
        }
    }

    fn describe(w: &Option<Watched>, now: Instant, window: Duration) -> String {
        match w {
            Some(w) if w.changes > 0 => format!(
                "{} (changed {} times in {:.1} s, last {} ms ago)",
                w.value,
                w.changes,
                window.as_secs_f64(),
                now.duration_since(w.changed).as_millis()
            ),
            Some(w) => format!(
                "{} (NOT changing for {:.1} s)",
                w.value,
                window.as_secs_f64()
            ),
            None => "-".into(),
        }
    }
}

pub fn status(arg: &ConfigArg, seconds: f64) -> anyhow::Result<()> {
    let config = load_config(arg)?;
    let plc = &config.plc;
    let (endpoint, role) = match &plc.link {
        PlcLink::Off => anyhow::bail!("plc.kind = \"off\" in {}: no PLC link", config.file),
        PlcLink::Simulated => anyhow::bail!(
            "plc.kind = \"simulated\": the demo's PLC lives inside `station run`; its status line shows the link"
        ),
        PlcLink::Serve(listen) => {
            let host = if listen.ip().is_unspecified() {
                SocketAddr::from(([127, 0, 0, 1], listen.port()))
            } else {
                *listen
            };
            (Endpoint::Tcp(host), "the station's own Modbus server")
        }
        link => (
            Endpoint::of(link).ok_or_else(|| PlcUnreachable("no endpoint".into()))?,
            "the PLC (the station is its client)",
        ),
    };
    let window = Duration::from_secs_f64(seconds.max(0.1));
    let limit = Limit::of(plc);
    runtime()?.block_on(async {
        let mut ctx = connect(&endpoint, plc.unit_id, limit.timeout)
            .await
            .map_err(PlcUnreachable)?;
        let mut rtt = Latencies::default();
        let (mut station_beat, mut plc_beat) = (None, None);
        let (mut status, mut commands) = (Status::default(), Commands::default());
        let started = Instant::now();
        while started.elapsed() < window {
            let t0 = Instant::now();
            let regs = call(
                limit,
                "read the result block",
                ctx.read_holding_registers(plc.result_register, STATUS_LEN),
            )
            .await
            .map_err(PlcUnreachable)?;
            rtt.push(t0.elapsed());
            let t1 = Instant::now();
            let cmd = call(
                limit,
                "read the command block",
                ctx.read_holding_registers(plc.command_register, COMMAND_LEN),
            )
            .await
            .map_err(PlcUnreachable)?;
            rtt.push(t1.elapsed());
            let now = Instant::now();
            status = Status::decode(&regs);
            commands = Commands::decode(&cmd);
            Watched::see(&mut station_beat, status.heartbeat, now);
            Watched::see(&mut plc_beat, commands.heartbeat, now);
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let now = Instant::now();
        let p = |q| rtt.percentile(q).unwrap_or(0.0);
        let d = &status.diag;
        println!("plc {endpoint}, unit {}: {role}: link up", plc.unit_id);
        println!(
            "  round trip      p50 {:.2} ms  p99 {:.2} ms  ({} reads)",
            p(50.0),
            p(99.0),
            rtt.len()
        );
        println!(
            "  heartbeats      station {}\n                  plc     {}",
            Watched::describe(&station_beat, now, window),
            Watched::describe(&plc_beat, now, window)
        );
        println!("  status bits     {}", status.bit_names());
        println!(
            "  shown result    code {}  counter {}  part ID {}  buffer depth {}",
            status.result_code, status.counter, status.part_id, status.buffer_depth
        );
        println!(
            "  fault           {} ({})  recipe {}",
            status.fault,
            Fault::from_code(status.fault),
            status.recipe
        );
        println!(
            "  counters        triggers {}  refused {}  overruns {}  heartbeat faults {}  late at gate {}  outages {}  reject pulses {}  missed pulses {}",
            d.triggers,
            d.refused,
            d.overruns,
            d.heartbeat_faults,
            d.gate_fail_safe,
            d.outages,
            d.reject_pulses,
            d.missed_pulses
        );
        println!(
            "  plc commands    word {:#06b}  part ID {}  recipe {}  encoder {}",
            commands.word, commands.part_id, commands.recipe, commands.encoder
        );
        Ok(())
    })
}
