//! The demo's PLC: an in-process Modbus TCP server (tokio-modbus server) with coils, discrete inputs, holding and
//! input registers (256 of each, addresses 0..255). It counts reject pulses (rising edges of the reject coil) and
//! keeps the last result block, so the run summary can show what the PLC saw.

use std::borrow::Cow;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::sync::{Arc, Mutex, MutexGuard};

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::prelude::{ExceptionCode, Request, Response};
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};

const SIZE: usize = 256;

/// The simulated PLC's memory.
#[derive(Debug)]
pub struct SimState {
    pub coils: Vec<bool>,
    pub discrete_inputs: Vec<bool>,
    pub holding: Vec<u16>,
    pub input_registers: Vec<u16>,
    reject_coil: usize,
    /// Rising edges seen on the reject coil.
    pub reject_pulses: u64,
    /// Write requests served.
    pub writes: u64,
}

struct SimService(Arc<Mutex<SimState>>);

fn range(addr: u16, count: usize) -> Result<std::ops::Range<usize>, ExceptionCode> {
    let start = usize::from(addr);
    if count == 0 || start + count > SIZE {
        return Err(ExceptionCode::IllegalDataAddress);
    }
    Ok(start..start + count)
}

impl SimState {
    fn set_coils(&mut self, addr: u16, values: &[bool]) -> Result<(), ExceptionCode> {
        let r = range(addr, values.len())?;
        if r.contains(&self.reject_coil) {
            let new = values[self.reject_coil - r.start];
            if new && !self.coils[self.reject_coil] {
                self.reject_pulses += 1;
            }
        }
        self.coils[r].copy_from_slice(values);
        self.writes += 1;
        Ok(())
    }

    fn handle(&mut self, req: Request<'static>) -> Result<Response, ExceptionCode> {
        Ok(match req {
            Request::ReadCoils(a, n) => {
                Response::ReadCoils(self.coils[range(a, n.into())?].to_vec())
            }
            Request::ReadDiscreteInputs(a, n) => {
                Response::ReadDiscreteInputs(self.discrete_inputs[range(a, n.into())?].to_vec())
            }
            Request::ReadHoldingRegisters(a, n) => {
                Response::ReadHoldingRegisters(self.holding[range(a, n.into())?].to_vec())
            }
            Request::ReadInputRegisters(a, n) => {
                Response::ReadInputRegisters(self.input_registers[range(a, n.into())?].to_vec())
            }
            Request::WriteSingleCoil(a, v) => {
                self.set_coils(a, &[v])?;
                Response::WriteSingleCoil(a, v)
            }
            Request::WriteMultipleCoils(a, values) => {
                self.set_coils(a, &values)?;
                Response::WriteMultipleCoils(a, values.len() as u16)
            }
            Request::WriteSingleRegister(a, v) => {
                self.holding[range(a, 1)?][0] = v;
                self.writes += 1;
                Response::WriteSingleRegister(a, v)
            }
            Request::WriteMultipleRegisters(a, values) => {
                let values: Cow<'_, [u16]> = values;
                self.holding[range(a, values.len())?].copy_from_slice(&values);
                self.writes += 1;
                Response::WriteMultipleRegisters(a, values.len() as u16)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        })
    }
}

impl Service for SimService {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let result = match self.0.lock() {
            Ok(mut state) => state.handle(req),
            Err(_) => Err(ExceptionCode::ServerDeviceFailure),
        };
        ready(result)
    }
}

/// A running simulated PLC; stops when dropped.
pub struct SimPlc {
    pub addr: SocketAddr,
    state: Arc<Mutex<SimState>>,
    task: JoinHandle<()>,
}

impl SimPlc {
    /// Starts the server on 127.0.0.1, on a free port.
    pub async fn start(reject_coil: u16) -> std::io::Result<SimPlc> {
        let listener = TcpListener::bind(("127.0.0.1", 0)).await?;
        let addr = listener.local_addr()?;
        let state = Arc::new(Mutex::new(SimState {
            coils: vec![false; SIZE],
            discrete_inputs: vec![false; SIZE],
            holding: vec![0; SIZE],
            input_registers: vec![0; SIZE],
            reject_coil: usize::from(reject_coil),
            reject_pulses: 0,
            writes: 0,
        }));
        let shared = state.clone();
        let task = tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = |stream, socket_addr| {
                let shared = shared.clone();
                async move {
                    accept_tcp_connection(stream, socket_addr, |_| {
                        Ok(Some(SimService(shared.clone())))
                    })
                }
            };
            if let Err(e) = server
                .serve(&on_connected, |e| tracing::debug!("simulated PLC: {e}"))
                .await
            {
                tracing::error!("simulated PLC stopped: {e}");
            }
        });
        Ok(SimPlc { addr, state, task })
    }

    pub fn state(&self) -> MutexGuard<'_, SimState> {
        self.state
            .lock()
            .unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    pub fn reject_pulses(&self) -> u64 {
        self.state().reject_pulses
    }
}

impl Drop for SimPlc {
    fn drop(&mut self) {
        self.task.abort();
    }
}
