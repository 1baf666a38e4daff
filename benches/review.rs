//! Review page load times with 100,000 records: seeds a real SQLite file (the station's schema, 20% rejects with
//! their reasons and image paths, two model versions, 1% fail-safe rejects, 5% of parts reviewed) and times the
//! JSON API through the real axum router: the queue's first page, a page deep in the history (keyset cursor),
//! sparse filters (a rare reason, a time window, a model version), one part's detail, and the line figures (as
//! recounted, and as served from the 3 s cache the live streams share).

use std::sync::Arc;

use axum::body::Body;
use axum::http::{Request, StatusCode, header};
use criterion::{Criterion, criterion_group, criterion_main};
use http_body_util::BodyExt;
use inspection_station::config::Config;
use inspection_station::users::{self, Role};
use inspection_station::web::{self, AppState};
use rusqlite::{Connection, params};
use tower::ServiceExt;

const PARTS: i64 = 100_000;

fn seed(conn: &mut Connection) {
    let tx = conn.transaction().unwrap();
    tx.execute(
        "INSERT INTO runs (station, config, started_us) VALUES ('bench', 'bench', 0)",
        [],
    )
    .unwrap();
    users::add_user(&tx, "ana", Role::Operator, "bench-password").unwrap();
    {
        let mut part = tx
            .prepare(
                "INSERT INTO parts (part_id, run_id, seq, origin, truth, triggered_us, captured_us, preprocessed_us,
                    inferred_us, decided_us, actuated_us, score, threshold, verdict, reasons, result_code, plc_status,
                    model_name, model_version, model_sha256, image_path)
                 VALUES (?1, 1, ?2, ?3, NULL, ?4, ?4 + 7000, ?4 + 10000, ?4 + 15000, ?4 + 15500, ?4 + 16000, ?5, 4.8,
                    ?6, ?7, ?8, 'delivered', 'surface-defect', ?9, 'abc', ?10)",
            )
            .unwrap();
        let mut review = tx
            .prepare(
                "INSERT INTO reviews (part_id, user_id, at_us, old_verdict, label, defect_class)
                 VALUES (?1, 1, ?2, ?3, 'good', NULL)",
            )
            .unwrap();
        let start_us = 1_700_000_000_000_000i64;
        for seq in 1..=PARTS {
            let id = format!("1-{seq:06}");
            let t = start_us + seq * 100_000;
            let (verdict, score, reasons, code) = if seq % 100 == 7 {
                (
                    "REJECT",
                    None,
                    r#"[{"code":"frame_fault","detail":"bench"}]"#,
                    4,
                )
            } else if seq % 5 == 0 {
                (
                    "REJECT",
                    Some(9.0),
                    r#"[{"code":"score_over_threshold","score":9.0,"threshold":4.8}]"#,
                    2,
                )
            } else {
                ("PASS", Some((seq % 50) as f64 / 10.0), "[]", 1)
            };
            let image = (verdict == "REJECT").then(|| format!("images/run-1/{id}.png"));
            let version = if seq <= PARTS / 2 { "1" } else { "2" };
            part.execute(params![
                id,
                seq,
                format!("synthetic#{seq}"),
                t,
                score,
                verdict,
                reasons,
                code,
                version,
                image
            ])
            .unwrap();
            if seq % 20 == 0 {
                review.execute(params![id, t + 1, verdict]).unwrap();
            }
        }
    }
    tx.commit().unwrap();
}

fn load_times(c: &mut Criterion) {
    let dir = tempfile::tempdir().unwrap();
    let toml = format!(
        "[station]\ndata_dir = \"{}\"\n[model]\ndir = \"m\"\n[web]\nport = 0\n",
        dir.path().display()
    );
    let config = Config::parse(&toml, "bench.toml", dir.path()).unwrap();
    let mut conn = inspection_station::store::open_database(&config.record.database).unwrap();
    let seeded = std::time::Instant::now();
    seed(&mut conn);
    eprintln!(
        "seeded {PARTS} parts into {} in {:.1} s",
        config.record.database.display(),
        seeded.elapsed().as_secs_f64()
    );
    let cookie = format!(
        "station_session={}",
        users::login(&conn, "ana", "bench-password", 1)
            .unwrap()
            .unwrap()
            .token
    );
    let state = AppState::open(&config.record.database, &config.web, None).unwrap();
    let figures_cache = state.figures.clone();
    let app = web::router(state);
    let rt = Arc::new(tokio::runtime::Runtime::new().unwrap());
    let get = |uri: String| {
        let (app, rt, cookie) = (app.clone(), rt.clone(), cookie.clone());
        move || {
            rt.block_on(async {
                let req = Request::get(&uri)
                    .header(header::COOKIE, &cookie)
                    .body(Body::empty())
                    .unwrap();
                let res = app.clone().oneshot(req).await.unwrap();
                assert_eq!(res.status(), StatusCode::OK, "{uri}");
                res.into_body().collect().await.unwrap().to_bytes().len()
            })
        }
    };
    let mid_us = 1_700_000_000_000_000i64 + PARTS / 2 * 100_000;
    let cases = [
        (
            "queue first page (50)",
            "/api/parts?queue=true&reviewed=false&limit=50".to_string(),
        ),
        (
            "queue page at record 1,000",
            "/api/parts?queue=true&reviewed=false&limit=50&before=1000".into(),
        ),
        ("all parts first page (50)", "/api/parts?limit=50".into()),
        (
            "rare reason (1%)",
            "/api/parts?reason=frame_fault&limit=50".into(),
        ),
        (
            "reason at record 5,000",
            "/api/parts?reason=frame_fault&limit=50&before=5000".into(),
        ),
        (
            "reviewed only (5%)",
            "/api/parts?reviewed=true&limit=50".into(),
        ),
        (
            "model version 1 (older half)",
            "/api/parts?model_version=1&queue=true&limit=50".into(),
        ),
        (
            "10-minute window mid-history",
            format!(
                "/api/parts?queue=true&from_us={mid_us}&to_us={}&limit=50",
                mid_us + 600_000_000
            ),
        ),
        ("part detail", "/api/parts/1-050000".into()),
        ("line figures (/api/stats), cached", "/api/stats".into()),
    ];
    let mut group = c.benchmark_group("review page, 100k records");
    group.sample_size(20);
    for (name, uri) in cases {
        group.bench_function(name, |b| b.iter(get(uri.clone())));
    }
    let stats = get("/api/stats".into());
    group.bench_function("line figures (/api/stats), recounted", |b| {
        b.iter(|| {
            *figures_cache.lock().unwrap() = None;
            stats()
        })
    });
    group.finish();
}

criterion_group!(benches, load_times);
criterion_main!(benches);
