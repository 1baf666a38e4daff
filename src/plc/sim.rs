//! The demo's PLC: a Modbus TCP server ([`super::server`]) on 127.0.0.1 that also runs a small PLC program, so the
//! station's full handshake works without hardware: it counts up its heartbeat every `heartbeat_ms` and
//! acknowledges each result (sets the acknowledge bit when result-ready rises, clears it when result-ready falls).
//! It counts reject pulses (rising edges of the reject coil) for the run summary.

use std::net::SocketAddr;
use std::time::Duration;

use tokio::task::JoinHandle;

use super::config::PlcConfig;
use super::map::{COMMAND_LEN, STATUS_LEN, command, status};
use super::server::{Memory, ModbusServer, lock};

/// A running simulated PLC; stops when dropped.
pub struct SimPlc {
    pub addr: SocketAddr,
    server: ModbusServer,
    program: JoinHandle<()>,
}

impl SimPlc {
    /// Starts the server on 127.0.0.1, on a free port, and its program.
    pub async fn start(config: &PlcConfig) -> std::io::Result<SimPlc> {
        let size = image_size(config);
        let memory = Memory::new(size, config.reject_coil, None);
        let server = ModbusServer::start(SocketAddr::from(([127, 0, 0, 1], 0)), memory).await?;
        let shared = server.memory.clone();
        let cmd = usize::from(config.command_register);
        let res = usize::from(config.result_register);
        let beat_every = (config.heartbeat_ms / 5).max(1);
        let program = tokio::spawn(async move {
            let mut scan = tokio::time::interval(Duration::from_millis(5));
            let mut scans = 0u64;
            loop {
                scan.tick().await;
                scans += 1;
                let mut m = lock(&shared);
                if scans % beat_every == 0 {
                    m.holding[cmd + 6] = m.holding[cmd + 6].wrapping_add(1);
                }
                let ready = m.holding[res] & status::RESULT_READY != 0;
                if ready {
                    m.holding[cmd] |= command::RESULT_ACK;
                } else {
                    m.holding[cmd] &= !command::RESULT_ACK;
                }
            }
        });
        Ok(SimPlc {
            addr: server.addr,
            server,
            program,
        })
    }

    pub fn reject_pulses(&self) -> u64 {
        self.server.memory().reject_pulses
    }
}

/// Entries of each kind an image needs to hold the map at the configured addresses (at least 256).
pub fn image_size(config: &PlcConfig) -> usize {
    [
        usize::from(config.result_register) + usize::from(STATUS_LEN),
        usize::from(config.command_register) + usize::from(COMMAND_LEN),
        usize::from(config.reject_coil) + 1,
        256,
    ]
    .into_iter()
    .max()
    .unwrap_or(256)
}

impl Drop for SimPlc {
    fn drop(&mut self) {
        self.program.abort();
    }
}
