//! Inspection station: one part from trigger to reject gate.
//!
//! For every part a trigger fires ([`trigger`]), a frame is captured ([`capture`]), OpenCV preprocesses it
//! ([`preprocess`]), an ONNX model scores it ([`model`]), the station decides PASS or REJECT ([`decision`]), tells
//! the PLC over Modbus ([`plc`]) and records everything in SQLite ([`store`]). [`pipeline`] wires the stages
//! together; [`config`] parses and validates `station.toml`; [`metrics`] counts and times what happens.
//! With an `[audio]` section, [`audio`] captures the machine's sound and [`acoustic`] scores each part's slice;
//! the acoustic score joins the vision score in the verdict.
//! [`web`] serves the operator review page and its JSON API over the records ([`review`], [`users`]), fed live by
//! [`live`].
//! [`vision`] trains and evaluates the anomaly models technicians make from the station's own images.
//! [`identity`] frames barcode scans and reads part identities from them (GS1 element strings or plain serials).
//! [`calibration`] fits a camera's intrinsics and distortion to chessboard photos (`station calibrate`); preprocess
//! undistorts frames with the result.
//! [`spc`] is the statistical process control engine: control charts with run rules, capability, ARL and
//! two-sample comparisons, as pure functions (`station spc` charts a CSV).
//! The `station` binary (`src/main.rs`, [`cli`]) is a thin shell over this library.

/// This build of the station: the crate's version and `git describe` of its checkout (see `build.rs`), recorded
/// with every run.
pub const SOFTWARE_VERSION: &str = env!("STATION_SOFTWARE_VERSION");

pub mod acoustic;
pub mod audio;
pub mod calibration;
pub mod capture;
pub mod cli;
pub mod clock;
pub mod config;
pub mod decision;
pub mod export;
pub mod identity;
pub mod linalg;
pub mod live;
pub mod metrics;
pub mod model;
pub mod onnx;
pub mod part;
pub mod pipeline;
pub mod plant;
pub mod plc;
pub mod preprocess;
pub mod problems;
pub mod recipe;
pub mod review;
pub mod rng;
pub mod spc;
pub mod store;
pub mod trace;
pub mod trigger;
pub mod users;
pub mod vision;
pub mod web;
