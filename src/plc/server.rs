//! A Modbus TCP server (tokio-modbus) over an in-memory image: coils, discrete inputs, holding and input
//! registers. It is the station's side in `role = "server"` (the PLC polls the station, smart-camera style) and
//! the demo's simulated PLC ([`super::sim`]). An optional write guard limits what the peer may write (the station
//! lets a PLC write only its command block and trigger coil); other writes are refused with "illegal data address".

use std::borrow::Cow;
use std::future::{Ready, ready};
use std::net::SocketAddr;
use std::ops::Range;
use std::sync::{Arc, Mutex, MutexGuard};
use std::time::Instant;

use tokio::net::TcpListener;
use tokio::task::JoinHandle;
use tokio_modbus::prelude::{ExceptionCode, Request, Response};
use tokio_modbus::server::Service;
use tokio_modbus::server::tcp::{Server, accept_tcp_connection};

/// What a peer may write.
#[derive(Debug, Clone)]
pub struct WriteGuard {
    pub holding: Range<usize>,
    pub coils: Vec<usize>,
}

/// The served image.
#[derive(Debug)]
pub struct Memory {
    pub coils: Vec<bool>,
    pub discrete_inputs: Vec<bool>,
    pub holding: Vec<u16>,
    pub input_registers: Vec<u16>,
    reject_coil: usize,
    guard: Option<WriteGuard>,
    /// Rising edges seen on the reject coil when written by the peer.
    pub reject_pulses: u64,
    /// Write requests served.
    pub writes: u64,
    /// Requests served, and when the last one came.
    pub requests: u64,
    pub last_request: Option<Instant>,
    /// When the peer's last accepted write arrived.
    pub last_write: Option<Instant>,
}

impl Memory {
    /// An image of `size` entries of each kind (addresses 0..size-1).
    pub fn new(size: usize, reject_coil: u16, guard: Option<WriteGuard>) -> Memory {
        Memory {
            coils: vec![false; size],
            discrete_inputs: vec![false; size],
            holding: vec![0; size],
            input_registers: vec![0; size],
            reject_coil: usize::from(reject_coil),
            guard,
            reject_pulses: 0,
            writes: 0,
            requests: 0,
            last_request: None,
            last_write: None,
        }
    }

    fn range(&self, addr: u16, count: usize) -> Result<Range<usize>, ExceptionCode> {
        let start = usize::from(addr);
        if count == 0 || start + count > self.holding.len() {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        Ok(start..start + count)
    }

    fn set_coils(&mut self, addr: u16, values: &[bool]) -> Result<(), ExceptionCode> {
        let r = self.range(addr, values.len())?;
        if self
            .guard
            .as_ref()
            .is_some_and(|g| !r.clone().all(|a| g.coils.contains(&a)))
        {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        if r.contains(&self.reject_coil) {
            let new = values[self.reject_coil - r.start];
            if new && !self.coils[self.reject_coil] {
                self.reject_pulses += 1;
            }
        }
        self.coils[r].copy_from_slice(values);
        self.writes += 1;
        self.last_write = Some(Instant::now());
        Ok(())
    }

    fn set_holding(&mut self, addr: u16, values: &[u16]) -> Result<(), ExceptionCode> {
        let r = self.range(addr, values.len())?;
        if self
            .guard
            .as_ref()
            .is_some_and(|g| !(g.holding.start <= r.start && r.end <= g.holding.end))
        {
            return Err(ExceptionCode::IllegalDataAddress);
        }
        self.holding[r].copy_from_slice(values);
        self.writes += 1;
        self.last_write = Some(Instant::now());
        Ok(())
    }

    fn handle(&mut self, req: Request<'static>) -> Result<Response, ExceptionCode> {
        self.requests += 1;
        self.last_request = Some(Instant::now());
        Ok(match req {
            Request::ReadCoils(a, n) => {
                Response::ReadCoils(self.coils[self.range(a, n.into())?].to_vec())
            }
            Request::ReadDiscreteInputs(a, n) => Response::ReadDiscreteInputs(
                self.discrete_inputs[self.range(a, n.into())?].to_vec(),
            ),
            Request::ReadHoldingRegisters(a, n) => {
                Response::ReadHoldingRegisters(self.holding[self.range(a, n.into())?].to_vec())
            }
            Request::ReadInputRegisters(a, n) => Response::ReadInputRegisters(
                self.input_registers[self.range(a, n.into())?].to_vec(),
            ),
            Request::WriteSingleCoil(a, v) => {
                self.set_coils(a, &[v])?;
                Response::WriteSingleCoil(a, v)
            }
            Request::WriteMultipleCoils(a, values) => {
                self.set_coils(a, &values)?;
                Response::WriteMultipleCoils(a, values.len() as u16)
            }
            Request::WriteSingleRegister(a, v) => {
                self.set_holding(a, &[v])?;
                Response::WriteSingleRegister(a, v)
            }
            Request::WriteMultipleRegisters(a, values) => {
                let values: Cow<'_, [u16]> = values;
                self.set_holding(a, &values)?;
                Response::WriteMultipleRegisters(a, values.len() as u16)
            }
            _ => return Err(ExceptionCode::IllegalFunction),
        })
    }
}

struct MemoryService(Arc<Mutex<Memory>>);

impl Service for MemoryService {
    type Request = Request<'static>;
    type Response = Response;
    type Exception = ExceptionCode;
    type Future = Ready<Result<Response, ExceptionCode>>;

    fn call(&self, req: Self::Request) -> Self::Future {
        let result = match self.0.lock() {
            Ok(mut memory) => memory.handle(req),
            Err(_) => Err(ExceptionCode::ServerDeviceFailure),
        };
        ready(result)
    }
}

/// Locks the image, recovering from a poisoned lock (the image stays usable).
pub fn lock(memory: &Mutex<Memory>) -> MutexGuard<'_, Memory> {
    memory.lock().unwrap_or_else(|p| p.into_inner())
}

/// A running Modbus TCP server; stops when dropped.
pub struct ModbusServer {
    pub addr: SocketAddr,
    pub memory: Arc<Mutex<Memory>>,
    task: JoinHandle<()>,
}

impl ModbusServer {
    /// Serves `memory` on `listen` (port 0: a free port).
    pub async fn start(listen: SocketAddr, memory: Memory) -> std::io::Result<ModbusServer> {
        let listener = TcpListener::bind(listen).await?;
        let addr = listener.local_addr()?;
        let memory = Arc::new(Mutex::new(memory));
        let shared = memory.clone();
        let task = tokio::spawn(async move {
            let server = Server::new(listener);
            let on_connected = |stream, socket_addr| {
                let shared = shared.clone();
                async move {
                    accept_tcp_connection(stream, socket_addr, |_| {
                        Ok(Some(MemoryService(shared.clone())))
                    })
                }
            };
            if let Err(e) = server
                .serve(&on_connected, move |e| {
                    tracing::debug!("Modbus server {addr}: {e}")
                })
                .await
            {
                tracing::error!("Modbus server {addr} stopped: {e}");
            }
        });
        Ok(ModbusServer { addr, memory, task })
    }

    pub fn memory(&self) -> MutexGuard<'_, Memory> {
        lock(&self.memory)
    }
}

impl Drop for ModbusServer {
    fn drop(&mut self) {
        self.task.abort();
    }
}
