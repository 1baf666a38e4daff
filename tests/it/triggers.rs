//! Triggers: the HTTP software trigger, and a PLC input bit (rising edge only) on a pymodbus PLC.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::sync::oneshot;
use tokio_modbus::client::Writer;
use tokio_modbus::prelude::{Slave, tcp};

use inspection_station::pipeline::{self, RunOptions};

use crate::common::{PymodbusPlc, rows, station};

const SYNTHETIC: &str = r#"
[source]
kind = "synthetic"
seed = 4
"#;

async fn post_trigger(addr: std::net::SocketAddr) -> String {
    let mut stream = tokio::net::TcpStream::connect(addr).await.unwrap();
    stream
        .write_all(b"POST /trigger HTTP/1.1\r\nHost: station\r\nContent-Length: 0\r\nConnection: close\r\n\r\n")
        .await
        .unwrap();
    let mut response = String::new();
    stream.read_to_string(&mut response).await.unwrap();
    response
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn http_posts_trigger_one_part_each() {
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"http\"\nlisten = \"127.0.0.1:0\"\n[plc]\nkind = \"off\"\n{SYNTHETIC}"
        ),
    );
    let (ready_tx, ready_rx) = oneshot::channel();
    let cfg = config.clone();
    let line = tokio::spawn(async move {
        let opts = RunOptions {
            max_parts: Some(3),
            ready: Some(ready_tx),
            ..Default::default()
        };
        pipeline::run(&cfg, opts, std::future::pending::<()>()).await
    });
    let addr = ready_rx
        .await
        .unwrap()
        .http_trigger
        .expect("http trigger address");
    for _ in 0..3 {
        let response = post_trigger(addr).await;
        assert!(response.starts_with("HTTP/1.1 202"), "{response}");
        assert!(
            response.contains("application/json") && response.ends_with(r#"{"accepted":true}"#),
            "{response}"
        );
    }
    let summary = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.parts, 3);
    assert_eq!(rows(&config).len(), 3);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_plc_trigger_fires_on_rising_edges_only() {
    let plc = PymodbusPlc::start();
    let dir = tempfile::tempdir().unwrap();
    let config = station(
        dir.path(),
        &format!(
            "[trigger]\nkind = \"plc\"\ninput_kind = \"coil\"\ninput_address = 5\npoll_ms = 5\n\
             [plc]\nkind = \"tcp\"\naddress = \"{}\"\nreject_pulse_ms = 5\nresult_ack = false\n{SYNTHETIC}",
            plc.addr
        ),
    );
    let cfg = config.clone();
    let line = tokio::spawn(async move {
        let opts = RunOptions {
            max_parts: Some(2),
            ..Default::default()
        };
        pipeline::run(&cfg, opts, std::future::pending::<()>()).await
    });
    let mut client = tcp::connect_slave(plc.addr, Slave(1)).await.unwrap();
    let mut set = async |on: bool| client.write_single_coil(5, on).await.unwrap().unwrap();
    tokio::time::sleep(Duration::from_millis(300)).await;
    // Held high for a long time: one part, not one per poll.
    set(true).await;
    tokio::time::sleep(Duration::from_millis(600)).await;
    assert!(
        !line.is_finished(),
        "a trigger held high fired more than once"
    );
    assert_eq!(rows(&config).len(), 1, "one rising edge, one part");
    set(false).await;
    tokio::time::sleep(Duration::from_millis(100)).await;
    set(true).await;
    let summary = tokio::time::timeout(Duration::from_secs(20), line)
        .await
        .unwrap()
        .unwrap()
        .unwrap();
    assert_eq!(summary.parts, 2);
    let rows = rows(&config);
    assert_eq!(rows.iter().map(|r| r.seq).collect::<Vec<_>>(), [1, 2]);
    assert!(rows.iter().all(|r| r.plc_status == "delivered"));
}
