//! Integration tests: the real pipeline on the real stack (OpenCV, ONNX Runtime, SQLite, a pymodbus PLC, the
//! `station` binary). One test binary, modules by subject; shared helpers in `common`.

mod audio;
mod backbone;
mod calibration;
mod cli;
mod common;
mod config;
mod defects;
mod e2e;
mod failsafe;
mod identity;
mod machines;
mod pipeline;
mod plant;
mod plc;
mod records;
mod sources;
mod spc;
mod triggers;
mod vision;
mod web;
