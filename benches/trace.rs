//! Trace lookups on a real history: seeds a SQLite file with the station's schema and 1,000,000 parts (each with
//! its serial; 100 lots of 10,000 parts; every 1000th serial inspected twice; 1% of parts reviewed) and times
//! `trace::part_history` by serial (every attempt with reviews and run), by part id, and `trace::lot` for a lot
//! of 10,000 parts. The seeded file is kept in `target/bench-trace.sqlite` between runs (seeding takes a while).

use criterion::{Criterion, criterion_group, criterion_main};
use inspection_station::users::{self, Role};
use rusqlite::{Connection, params};

const PARTS: i64 = 1_000_000;
const LOT_SIZE: i64 = 10_000;

fn seed(conn: &mut Connection) {
    let tx = conn.transaction().unwrap();
    tx.execute(
        "INSERT INTO runs (station, config, started_us, software_version) VALUES ('bench', 'bench', 0, 'bench')",
        [],
    )
    .unwrap();
    let ana = users::add_user(&tx, "ana", Role::Operator, "bench-password").unwrap();
    {
        let mut part = tx
            .prepare(
                "INSERT INTO parts (part_id, run_id, seq, origin, triggered_us, decided_us, score, threshold, verdict,
                    reasons, result_code, plc_status, model_name, model_version, model_sha256, identity_source,
                    serial, gtin, lot, attempt)
                 VALUES (?1, 1, ?2, 'bench', ?3, ?3 + 15000, ?4, 4.8, ?5, ?6, ?7, 'delivered', 'surface-defect', '2',
                    'abc', 'scanner', ?8, '09506000134352', ?9, ?10)",
            )
            .unwrap();
        let mut review = tx
            .prepare(
                "INSERT INTO reviews (part_id, user_id, at_us, old_verdict, label, defect_class)
                 VALUES (?1, ?2, ?3, ?4, 'defect', 'scratch')",
            )
            .unwrap();
        for seq in 1..=PARTS {
            let id = format!("1-{seq:07}");
            let t = 1_700_000_000_000_000i64 + seq * 100_000;
            // Every 1000th part is a re-inspection of the part before it.
            let (serial, attempt) = if seq % 1000 == 0 {
                (format!("SN{:08}", seq - 1), 2)
            } else {
                (format!("SN{seq:08}"), 1)
            };
            let reject = seq % 20 == 0;
            let (verdict, reasons, code) = if reject {
                ("REJECT", r#"[{"code":"score_over_threshold"}]"#, 2)
            } else {
                ("PASS", "[]", 1)
            };
            let lot = format!("LOT{:03}", (seq - 1) / LOT_SIZE);
            part.execute(params![
                id,
                seq,
                t,
                if reject { 6.0 } else { 2.0 },
                verdict,
                reasons,
                code,
                serial,
                lot,
                attempt
            ])
            .unwrap();
            if seq % 100 == 0 {
                review
                    .execute(params![id, ana, t + 60_000_000, verdict])
                    .unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

fn open() -> Connection {
    let path = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("target/bench-trace.sqlite");
    let mut conn = inspection_station::store::open_database(&path).unwrap();
    let parts: i64 = conn
        .query_row("SELECT count(*) FROM parts", [], |r| r.get(0))
        .unwrap();
    if parts != PARTS {
        drop(conn);
        for suffix in ["", "-wal", "-shm"] {
            let _ = std::fs::remove_file(format!("{}{suffix}", path.display()));
        }
        conn = inspection_station::store::open_database(&path).unwrap();
        eprintln!("seeding {PARTS} parts into {} ...", path.display());
        seed(&mut conn);
    }
    conn
}

fn bench(c: &mut Criterion) {
    let conn = open();
    let history = inspection_station::trace::part_history(&conn, "SN00499999", 0.1).unwrap();
    assert_eq!(
        history["attempts"], 2,
        "a re-inspected serial: both attempts"
    );
    let lot = inspection_station::trace::lot(&conn, "LOT042").unwrap();
    assert_eq!(lot["parts"], LOT_SIZE);
    let mut g = c.benchmark_group("trace at 1,000,000 parts");
    g.bench_function("serial lookup (2 attempts, reviews, run)", |b| {
        b.iter(|| inspection_station::trace::part_history(&conn, "SN00499999", 0.1).unwrap())
    });
    g.bench_function("part id lookup", |b| {
        b.iter(|| inspection_station::trace::part_history(&conn, "1-0777777", 0.1).unwrap())
    });
    g.sample_size(20);
    g.bench_function("lot of 10,000 parts", |b| {
        b.iter(|| inspection_station::trace::lot(&conn, "LOT042").unwrap())
    });
    g.finish();
}

criterion_group!(benches, bench);
criterion_main!(benches);
