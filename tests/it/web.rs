//! The review page's JSON API on a real SQLite file written by the real pipeline: every route without a session
//! (401), CSRF and role failures, image path traversal, queue paging and filters, reviews as an audit trail, the
//! live event stream, the threshold hook into the running line, and the dataset export.

use std::path::Path;

use axum::Router;
use axum::body::Body;
use axum::http::{Method, Request, StatusCode, header};
use http_body_util::BodyExt;
use inspection_station::config::Config;
use inspection_station::live::{LineTap, LiveEvent, PartSummary};
use inspection_station::users::{self, Role};
use inspection_station::web::{self, AppState};
use serde_json::{Value, json};
use tower::ServiceExt;

use crate::common::{run, station};

/// A line that ran 30 synthetic parts (half defective, every 2nd passed image kept), with an operator `ana`
/// and a technician `tom` (password `secret-pass`).
pub async fn recorded_line(dir: &Path) -> Config {
    let config = station(
        dir,
        r#"
        [trigger]
        kind = "interval"
        interval_ms = 40
        [source]
        kind = "synthetic"
        seed = 5
        defect_fraction = 0.5
        [plc]
        kind = "off"
        [record]
        save_passed_every = 2
        [web]
        port = 0
        defect_classes = ["scratch", "spot", "crack"]
        "#,
    );
    let summary = run(&config, Some(30)).await;
    assert!(summary.rejected >= 5 && summary.passed >= 5, "{summary}");
    let conn = inspection_station::store::open_database(&config.record.database).unwrap();
    users::add_user(&conn, "ana", Role::Operator, "secret-pass").unwrap();
    users::add_user(&conn, "tom", Role::Technician, "secret-pass").unwrap();
    config
}

struct Site {
    app: Router,
    config: Config,
}

/// A logged-in client: its cookie and CSRF token.
struct Login {
    cookie: String,
    csrf: String,
}

impl Site {
    fn new(config: Config, tap: Option<LineTap>) -> Site {
        let state = AppState::open(&config.record.database, &config.web, tap).unwrap();
        Site {
            app: web::router(state),
            config,
        }
    }

    async fn send(&self, req: Request<Body>) -> (StatusCode, axum::http::HeaderMap, Vec<u8>) {
        let res = self.app.clone().oneshot(req).await.unwrap();
        let (parts, body) = res.into_parts();
        let bytes = body.collect().await.unwrap().to_bytes().to_vec();
        (parts.status, parts.headers, bytes)
    }

    /// A request as the page makes it: `login` adds the cookie, and the CSRF token on non-GET methods.
    async fn call(
        &self,
        method: Method,
        uri: &str,
        login: Option<&Login>,
        body: Option<Value>,
    ) -> (StatusCode, Value) {
        let mut req = Request::builder().method(method.clone()).uri(uri);
        if let Some(l) = login {
            req = req.header(header::COOKIE, &l.cookie);
            if method != Method::GET {
                req = req.header("x-csrf-token", &l.csrf);
            }
        }
        let req = match body {
            Some(b) => req
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(b.to_string())),
            None => req.body(Body::empty()),
        }
        .unwrap();
        let (status, _, bytes) = self.send(req).await;
        let value = serde_json::from_slice(&bytes).unwrap_or(Value::Null);
        (status, value)
    }

    async fn login(&self, name: &str) -> Login {
        let req = Request::post("/api/auth/login")
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(
                json!({"name": name, "password": "secret-pass"}).to_string(),
            ))
            .unwrap();
        let (status, headers, body) = self.send(req).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let cookie = headers[header::SET_COOKIE].to_str().unwrap().to_string();
        for attr in ["HttpOnly", "SameSite=Strict", "Path=/"] {
            assert!(cookie.contains(attr), "{cookie}");
        }
        let user: Value = serde_json::from_slice(&body).unwrap();
        Login {
            cookie: cookie.split(';').next().unwrap().to_string(),
            csrf: user["csrf_token"].as_str().unwrap().to_string(),
        }
    }

    fn db(&self) -> rusqlite::Connection {
        rusqlite::Connection::open(&self.config.record.database).unwrap()
    }

    /// Part ids of a list query, following `next_before` to the end.
    async fn all_pages(&self, query: &str, login: &Login) -> Vec<Value> {
        let mut parts = Vec::new();
        let mut before = String::new();
        loop {
            let (status, page) = self
                .call(
                    Method::GET,
                    &format!("/api/parts?{query}{before}"),
                    Some(login),
                    None,
                )
                .await;
            assert_eq!(status, StatusCode::OK, "{page}");
            parts.extend(page["parts"].as_array().unwrap().iter().cloned());
            match page["next_before"].as_i64() {
                Some(id) => before = format!("&before={id}"),
                None => return parts,
            }
        }
    }
}

fn first_part(site: &Site, verdict: &str) -> String {
    site.db()
        .query_row(
            "SELECT part_id FROM parts WHERE verdict = ?1 AND image_path IS NOT NULL ORDER BY id LIMIT 1",
            [verdict],
            |r| r.get(0),
        )
        .unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn api_refuses_without_a_session_and_checks_csrf_and_roles() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(recorded_line(dir.path()).await, None);
    let part = first_part(&site, "REJECT");

    let routes = [
        (Method::GET, "/api/auth/me".to_string()),
        (Method::POST, "/api/auth/logout".into()),
        (Method::GET, "/api/parts".into()),
        (Method::GET, format!("/api/parts/{part}")),
        (Method::GET, "/api/images/images/run-1/x.png".into()),
        (Method::GET, "/api/reviews".into()),
        (Method::POST, "/api/reviews".into()),
        (Method::GET, "/api/stats".into()),
        (Method::GET, "/api/live".into()),
        (Method::GET, "/api/models".into()),
        (Method::PUT, "/api/models/threshold".into()),
    ];
    let body = || Some(json!({"part_id": part, "label": "good", "threshold": 1.0}));
    for (method, uri) in &routes {
        let (status, value) = site.call(method.clone(), uri, None, body()).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {value}");
        assert_eq!(value["error"], "log in first");
        let forged = Login {
            cookie: "station_session=00ff".into(),
            csrf: "x".into(),
        };
        let (status, _) = site.call(method.clone(), uri, Some(&forged), body()).await;
        assert_eq!(
            status,
            StatusCode::UNAUTHORIZED,
            "forged cookie: {method} {uri}"
        );
    }

    // Wrong password and unknown user look the same.
    for (name, password) in [("ana", "wrong-pass"), ("nobody", "secret-pass")] {
        let (status, value) = site
            .call(
                Method::POST,
                "/api/auth/login",
                None,
                Some(json!({"name": name, "password": password})),
            )
            .await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{value}");
    }

    let ana = site.login("ana").await;
    let review = json!({"part_id": part, "label": "good"});
    for csrf in [None, Some("0123456789abcdef0123456789abcdef")] {
        let mut req = Request::post("/api/reviews")
            .header(header::COOKIE, &ana.cookie)
            .header(header::CONTENT_TYPE, "application/json");
        if let Some(token) = csrf {
            req = req.header("x-csrf-token", token);
        }
        let (status, _, body) = site
            .send(req.body(Body::from(review.to_string())).unwrap())
            .await;
        assert_eq!(status, StatusCode::FORBIDDEN, "csrf {csrf:?}");
        assert!(String::from_utf8_lossy(&body).contains("X-CSRF-Token"));
    }
    let no_csrf = Login {
        cookie: ana.cookie.clone(),
        csrf: String::new(),
    };
    let (status, _) = site
        .call(Method::POST, "/api/auth/logout", Some(&no_csrf), None)
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "logout needs the CSRF token");
    let reviews: i64 = site
        .db()
        .query_row("SELECT count(*) FROM reviews", [], |r| r.get(0))
        .unwrap();
    assert_eq!(reviews, 0, "refused requests must not write");

    // Roles: an operator cannot change the threshold; a technician can, when a line runs here.
    let (status, value) = site
        .call(
            Method::PUT,
            "/api/models/threshold",
            Some(&ana),
            Some(json!({"threshold": 3.0})),
        )
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN, "{value}");
    assert!(value["error"].as_str().unwrap().contains("technician"));
    let tom = site.login("tom").await;
    let (status, value) = site
        .call(
            Method::PUT,
            "/api/models/threshold",
            Some(&tom),
            Some(json!({"threshold": 3.0})),
        )
        .await;
    assert_eq!(
        status,
        StatusCode::CONFLICT,
        "no line in this process: {value}"
    );

    // Logout ends the session.
    let (status, _) = site
        .call(Method::POST, "/api/auth/logout", Some(&ana), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    let (status, _) = site
        .call(Method::GET, "/api/auth/me", Some(&ana), None)
        .await;
    assert_eq!(status, StatusCode::UNAUTHORIZED);

    // The pages themselves carry no data and need no session.
    for page in ["/", "/login", "/assets/app.js", "/assets/style.css"] {
        let (status, headers, body) = site
            .send(Request::get(page).body(Body::empty()).unwrap())
            .await;
        assert_eq!(status, StatusCode::OK, "{page}");
        assert!(!body.is_empty());
        assert!(
            headers.contains_key(header::CONTENT_SECURITY_POLICY),
            "{page}"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn image_paths_cannot_leave_the_data_folder() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(recorded_line(dir.path()).await, None);
    let ana = site.login("ana").await;
    let data = dir.path().join("data");
    std::fs::write(dir.path().join("secret.png"), b"not for you").unwrap();
    std::os::unix::fs::symlink(dir.path().join("secret.png"), data.join("link.png")).unwrap();
    std::fs::write(data.join("notes.txt"), b"text").unwrap();

    let image: String = site
        .db()
        .query_row(
            "SELECT image_path FROM parts WHERE image_path IS NOT NULL LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let (status, headers, bytes) = site
        .send(
            Request::get(format!("/api/images/{image}"))
                .header(header::COOKIE, &ana.cookie)
                .body(Body::empty())
                .unwrap(),
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(headers[header::CONTENT_TYPE], "image/png");
    assert_eq!(&bytes[1..4], b"PNG");

    for (uri, expected) in [
        ("/api/images/../secret.png", StatusCode::BAD_REQUEST),
        (
            "/api/images/images/../../secret.png",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/images/%2e%2e/secret.png", StatusCode::BAD_REQUEST),
        ("/api/images/%2E%2E%2Fsecret.png", StatusCode::BAD_REQUEST),
        (
            "/api/images/images%2F..%2F..%2Fsecret.png",
            StatusCode::BAD_REQUEST,
        ),
        ("/api/images//etc/passwd", StatusCode::BAD_REQUEST),
        ("/api/images/%2Fetc%2Fpasswd", StatusCode::BAD_REQUEST),
        ("/api/images/..%5Csecret.png", StatusCode::BAD_REQUEST),
        ("/api/images/link.png", StatusCode::BAD_REQUEST),
        ("/api/images/notes.txt", StatusCode::BAD_REQUEST),
        ("/api/images/station.sqlite", StatusCode::BAD_REQUEST),
        ("/api/images/images/missing.png", StatusCode::NOT_FOUND),
    ] {
        let (status, _, body) = site
            .send(
                Request::get(uri)
                    .header(header::COOKIE, &ana.cookie)
                    .body(Body::empty())
                    .unwrap(),
            )
            .await;
        assert_eq!(
            status,
            expected,
            "{uri}: {}",
            String::from_utf8_lossy(&body)
        );
        assert!(
            !String::from_utf8_lossy(&body).contains("not for you"),
            "{uri} leaked the file"
        );
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn queue_pages_filters_and_reviews_as_an_audit_trail() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(recorded_line(dir.path()).await, None);
    let ana = site.login("ana").await;
    let (rejected, total): (i64, i64) = site
        .db()
        .query_row(
            "SELECT count(*) FILTER (WHERE verdict = 'REJECT'), count(*) FROM parts",
            [],
            |r| Ok((r.get(0)?, r.get(1)?)),
        )
        .unwrap();

    // Keyset paging: every part once, newest first.
    let all = site.all_pages("limit=7", &ana).await;
    assert_eq!(all.len() as i64, total);
    let ids: Vec<i64> = all.iter().map(|p| p["id"].as_i64().unwrap()).collect();
    assert!(ids.windows(2).all(|w| w[0] > w[1]), "{ids:?}");
    // The queue: rejected and uncertain, not yet reviewed.
    let queue = site
        .all_pages("queue=true&reviewed=false&limit=4", &ana)
        .await;
    let uncertain = queue.iter().filter(|p| p["uncertain"] == true).count() as i64;
    assert_eq!(queue.len() as i64, rejected + uncertain);
    assert!(
        queue
            .iter()
            .all(|p| p["verdict"] == "REJECT" || p["uncertain"] == true)
    );
    let passed = site.all_pages("verdict=PASS", &ana).await;
    assert_eq!(passed.len() as i64, total - rejected);
    let by_reason = site.all_pages("reason=score_over_threshold", &ana).await;
    assert!(
        by_reason
            .iter()
            .all(|p| p["reasons"][0]["code"] == "score_over_threshold")
    );
    assert_eq!(
        site.all_pages("model_version=1", &ana).await.len() as i64,
        total
    );
    assert!(site.all_pages("model_version=99", &ana).await.is_empty());
    let mid = all[all.len() / 2]["decided_us"].as_i64().unwrap();
    let newer = site.all_pages(&format!("from_us={mid}"), &ana).await;
    assert!(
        newer
            .iter()
            .all(|p| p["decided_us"].as_i64().unwrap() >= mid)
    );
    assert!(!newer.is_empty() && newer.len() < all.len());
    for bad in ["verdict=MAYBE", "limit=ten", "colour=red"] {
        let (status, value) = site
            .call(Method::GET, &format!("/api/parts?{bad}"), Some(&ana), None)
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{bad}: {value}");
    }

    // A heat map, when the model provides one, comes with the part.
    let reject = first_part(&site, "REJECT");
    site.db()
        .execute(
            "UPDATE parts SET heatmap_path = image_path WHERE part_id = ?1",
            [&reject],
        )
        .unwrap();
    let (status, part) = site
        .call(
            Method::GET,
            &format!("/api/parts/{reject}"),
            Some(&ana),
            None,
        )
        .await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(part["heatmap_path"], part["image_path"]);
    assert!(part["stages"]["end_to_end_ms"].as_f64().unwrap() > 0.0);
    assert!(part["stages"]["inference_ms"].as_f64().is_some());
    assert_eq!(part["review"], Value::Null);
    let (status, _) = site
        .call(Method::GET, "/api/parts/9-999999", Some(&ana), None)
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Bad reviews are refused with the reason.
    for (body, expected) in [
        (
            json!({"part_id": reject, "label": "defect"}),
            "defect_class",
        ),
        (
            json!({"part_id": reject, "label": "defect", "defect_class": "dent"}),
            "scratch, spot, crack",
        ),
        (
            json!({"part_id": reject, "label": "good", "defect_class": "spot"}),
            "no defect class",
        ),
        (json!({"part_id": reject, "label": "maybe"}), "label"),
        (
            json!({"part_id": reject, "label": "good", "extra": 1}),
            "extra",
        ),
    ] {
        let (status, value) = site
            .call(Method::POST, "/api/reviews", Some(&ana), Some(body.clone()))
            .await;
        assert_eq!(status, StatusCode::BAD_REQUEST, "{body}: {value}");
        assert!(
            value["error"].as_str().unwrap().contains(expected),
            "{value}"
        );
    }
    let (status, _) = site
        .call(
            Method::POST,
            "/api/reviews",
            Some(&ana),
            Some(json!({"part_id": "9-999999", "label": "good"})),
        )
        .await;
    assert_eq!(status, StatusCode::NOT_FOUND);

    // Override to good, then a second opinion: both kept, the recorded verdict untouched.
    let (status, first) = site
        .call(
            Method::POST,
            "/api/reviews",
            Some(&ana),
            Some(json!({"part_id": reject, "label": "good", "comment": "dust"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED, "{first}");
    assert_eq!(first["old_verdict"], "REJECT");
    assert_eq!(first["user"], "ana");
    let tom = site.login("tom").await;
    let (status, _) = site
        .call(
            Method::POST,
            "/api/reviews",
            Some(&tom),
            Some(json!({"part_id": reject, "label": "defect", "defect_class": "scratch"})),
        )
        .await;
    assert_eq!(status, StatusCode::CREATED);
    let verdict: String = site
        .db()
        .query_row(
            "SELECT verdict FROM parts WHERE part_id = ?1",
            [&reject],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(verdict, "REJECT", "a review never overwrites the verdict");
    let (_, part) = site
        .call(
            Method::GET,
            &format!("/api/parts/{reject}"),
            Some(&ana),
            None,
        )
        .await;
    assert_eq!(part["reviews"].as_array().unwrap().len(), 2);
    assert_eq!(part["review"]["user"], "tom");
    assert_eq!(part["review"]["defect_class"], "scratch");
    let (_, trail) = site
        .call(Method::GET, "/api/reviews?limit=10", Some(&ana), None)
        .await;
    let users: Vec<&str> = trail
        .as_array()
        .unwrap()
        .iter()
        .map(|r| r["user"].as_str().unwrap())
        .collect();
    assert_eq!(users, ["tom", "ana"], "newest first");
    let (_, of_part) = site
        .call(
            Method::GET,
            &format!("/api/reviews?part_id={reject}"),
            Some(&ana),
            None,
        )
        .await;
    assert_eq!(of_part.as_array().unwrap().len(), 2);
    // Reviewed parts leave the queue and show under reviewed=true.
    let queue_after = site.all_pages("queue=true&reviewed=false", &ana).await;
    assert_eq!(queue_after.len(), queue.len() - 1);
    let reviewed = site.all_pages("reviewed=true", &ana).await;
    assert_eq!(reviewed.len(), 1);
    assert_eq!(reviewed[0]["review"]["label"], "defect");

    // Figures from the records.
    let (status, stats) = site.call(Method::GET, "/api/stats", Some(&ana), None).await;
    assert_eq!(status, StatusCode::OK);
    assert_eq!(stats["parts"].as_i64(), Some(total));
    assert_eq!(stats["rejected"].as_i64(), Some(rejected));
    assert_eq!(
        stats["awaiting_review"].as_u64(),
        Some(queue_after.len() as u64)
    );
    assert_eq!(stats["plc"], "off");
    assert!(stats["latency_p99_ms"].as_f64().unwrap() >= stats["latency_p50_ms"].as_f64().unwrap());
    assert_eq!(stats["line"]["running"], false);
    let (_, models) = site
        .call(Method::GET, "/api/models", Some(&ana), None)
        .await;
    assert_eq!(models["recorded"][0]["parts"].as_i64(), Some(total));
    assert_eq!(models["active"], Value::Null);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn live_events_stream_and_a_technician_changes_the_running_threshold() {
    let dir = tempfile::tempdir().unwrap();
    let config = recorded_line(dir.path()).await;
    let tap = LineTap::default();
    let site = Site::new(config.clone(), Some(tap.clone()));
    let tom = site.login("tom").await;

    // The stream carries parts as the record writer publishes them.
    let req = Request::get("/api/live")
        .header(header::COOKIE, &tom.cookie)
        .body(Body::empty())
        .unwrap();
    let res = site.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    assert_eq!(res.headers()[header::CONTENT_TYPE], "text/event-stream");
    let mut body = res.into_body();
    let summary = PartSummary {
        part_id: "7-000001".into(),
        seq: 1,
        decided_us: 1,
        verdict: "REJECT",
        score: Some(9.0),
        threshold: 4.8,
        reasons: json!([{"code": "score_over_threshold"}]),
        image_path: None,
        latency_ms: 12.0,
    };
    tap.events.send(LiveEvent::Part(summary)).unwrap();
    let mut text = String::new();
    while !text.contains("event: part") {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s")
            .unwrap()
            .unwrap();
        if let Ok(data) = frame.into_data() {
            text += &String::from_utf8_lossy(&data);
        }
    }
    assert!(text.contains("\"part_id\":\"7-000001\""), "{text}");

    // The real line with the tap: every recorded part is published, and a threshold set through the API is the
    // one the orchestrator judges by from then on.
    let mut events = tap.events.subscribe();
    let mut model = tap.model.subscribe();
    let line_config = config.clone();
    let line_tap = tap.clone();
    let (stop_tx, stop_rx) = tokio::sync::oneshot::channel::<()>();
    let line = tokio::spawn(async move {
        inspection_station::pipeline::run(
            &line_config,
            inspection_station::pipeline::RunOptions {
                max_parts: Some(5000),
                tap: Some(line_tap),
                ..Default::default()
            },
            async {
                let _ = stop_rx.await;
            },
        )
        .await
        .unwrap()
    });
    model.wait_for(Option::is_some).await.unwrap();
    let before = tap.model.borrow().as_ref().unwrap().threshold;
    // A threshold that rejects every part needs an explicit confirmation, and says what it will do.
    let (status, value) = site
        .call(
            Method::PUT,
            "/api/models/threshold",
            Some(&tom),
            Some(json!({"threshold": -1000.0})),
        )
        .await;
    assert_eq!(status, StatusCode::CONFLICT, "{value}");
    let why = value["error"].as_str().unwrap();
    assert!(
        why.contains("about 100.0% of them would be rejected") && why.contains("confirm"),
        "{why}"
    );
    assert_eq!(
        tap.model.borrow().as_ref().map(|m| m.threshold),
        Some(before),
        "a refused threshold is not applied"
    );
    let (status, value) = site
        .call(
            Method::PUT,
            "/api/models/threshold",
            Some(&tom),
            Some(json!({"threshold": -1000.0, "confirm": true})),
        )
        .await;
    assert_eq!(status, StatusCode::OK, "{value}");
    assert_eq!(
        value["effect"]["reject_pct_new"].as_f64(),
        Some(100.0),
        "{value}"
    );
    let (_, models) = site
        .call(Method::GET, "/api/models", Some(&tom), None)
        .await;
    assert_eq!(models["active"]["threshold"].as_f64(), Some(-1000.0));
    let mut published = 0;
    let mut judged_by_new = 0;
    while judged_by_new < 3 {
        let ev = tokio::time::timeout(std::time::Duration::from_secs(20), events.recv())
            .await
            .expect("parts keep coming")
            .expect("the test keeps up with the events");
        if let LiveEvent::Part(p) = ev {
            published += 1;
            if p.threshold == -1000.0 {
                assert_eq!(p.verdict, "REJECT", "{p:?}");
                judged_by_new += 1;
            }
        }
    }
    stop_tx.send(()).unwrap();
    let summary = line.await.unwrap();
    while let Ok(ev) = events.try_recv() {
        published += u64::from(matches!(ev, LiveEvent::Part(_)));
    }
    assert_eq!(published, summary.parts, "every recorded part is published");
    let changed: Vec<(f64, String)> = site
        .db()
        .prepare(
            "SELECT threshold, verdict FROM parts WHERE run_id = 2
             AND id >= (SELECT min(id) FROM parts WHERE threshold = -1000)",
        )
        .unwrap()
        .query_map([], |r| Ok((r.get(0)?, r.get(1)?)))
        .unwrap()
        .map(Result::unwrap)
        .collect();
    assert!(changed.len() >= 3);
    assert!(
        changed.iter().all(|(t, v)| *t == -1000.0 && v == "REJECT"),
        "every part after the change is judged by it: {changed:?}"
    );
    let audit: String = site
        .db()
        .query_row("SELECT detail FROM audit", [], |r| r.get(0))
        .unwrap();
    assert!(
        audit.contains("-> -1000 (recent parts rejected")
            && audit.ends_with("-> 100.0%, confirmed)"),
        "{audit}"
    );
    let sent: String = site
        .db()
        .query_row(
            "SELECT json_extract(payload, '$.detail') FROM outbox WHERE kind = 'audit'",
            [],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(sent, audit, "the setting change's outbox message");
    assert!(
        tap.model.borrow().is_none(),
        "the stopped line shows as stopped"
    );
}

fn station_cmd(args: &[&str], stdin: &str) -> std::process::Output {
    use std::io::Write as _;
    let mut child = std::process::Command::new(env!("CARGO_BIN_EXE_station"))
        .args(args)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    child
        .stdin
        .take()
        .unwrap()
        .write_all(stdin.as_bytes())
        .unwrap();
    child.wait_with_output().unwrap()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn users_are_added_from_the_command_line_and_reviews_export_as_a_dataset() {
    let dir = tempfile::tempdir().unwrap();
    let config = recorded_line(dir.path()).await;
    let cfg = dir.path().join("station.toml");
    let cfg = cfg.to_str().unwrap();

    let out = station_cmd(
        &[
            "user",
            "add",
            "-c",
            cfg,
            "eve",
            "--role",
            "operator",
            "--password-stdin",
        ],
        "long-enough\n",
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    assert!(
        users::login(&conn, "eve", "long-enough", 1)
            .unwrap()
            .is_some()
    );
    for (args, stdin, expected) in [
        (vec!["--role", "admin"], "long-enough\n", "\"admin\""),
        (vec!["--role", "operator"], "short\n", "at least 8"),
    ] {
        let mut all = vec!["user", "add", "-c", cfg, "zed", "--password-stdin"];
        all.extend(args);
        let out = station_cmd(&all, stdin);
        let err = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(2), "{err}");
        assert!(err.contains(expected), "{err}");
    }
    // A leaver: list, a new password ends the old one and the sessions, disabling locks them out, and a user
    // with reviews cannot be deleted (the audit trail names them) while one without can.
    let session = users::login(&conn, "eve", "long-enough", 1)
        .unwrap()
        .unwrap();
    let user = |args: &[&str], stdin: &str| {
        let mut all = vec!["user", args[0], "-c", cfg];
        all.extend(&args[1..]);
        station_cmd(&all, stdin)
    };
    let out = user(&["passwd", "eve", "--password-stdin"], "another-long-one\n");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(
        users::session(&conn, &session.token).unwrap().is_none(),
        "the old session lives on"
    );
    assert!(
        users::login(&conn, "eve", "long-enough", 1)
            .unwrap()
            .is_none()
    );
    let session = users::login(&conn, "eve", "another-long-one", 1)
        .unwrap()
        .unwrap();
    let out = user(&["disable", "eve"], "");
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(users::session(&conn, &session.token).unwrap().is_none());
    assert!(
        users::login(&conn, "eve", "another-long-one", 1)
            .unwrap()
            .is_none()
    );
    let listed = String::from_utf8_lossy(&user(&["list"], "").stdout).to_string();
    let eve = listed
        .lines()
        .find(|l| l.starts_with("eve "))
        .unwrap_or_else(|| panic!("{listed}"));
    assert!(
        eve.contains("operator") && eve.matches("20").count() >= 2,
        "{listed}"
    );
    let out = user(&["enable", "eve"], "");
    assert!(out.status.success());
    assert!(
        users::login(&conn, "eve", "another-long-one", 1)
            .unwrap()
            .is_some()
    );
    assert!(user(&["delete", "eve"], "").status.success());
    let out = user(&["delete", "nobody"], "");
    assert_eq!(
        out.status.code(),
        Some(2),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );

    // Reviews: a false reject, an escape, a confirmed defect, and a reviewed part without an image.
    let ana: i64 = conn
        .query_row("SELECT id FROM users WHERE name = 'ana'", [], |r| r.get(0))
        .unwrap();
    let pick = |sql: &str| -> Vec<String> {
        conn.prepare(sql)
            .unwrap()
            .query_map([], |r| r.get(0))
            .unwrap()
            .map(Result::unwrap)
            .collect()
    };
    let rejects = pick(
        "SELECT part_id FROM parts WHERE verdict = 'REJECT' AND image_path IS NOT NULL ORDER BY id LIMIT 2",
    );
    let passed_with_image =
        pick("SELECT part_id FROM parts WHERE verdict = 'PASS' AND image_path IS NOT NULL LIMIT 1");
    let passed_without_image =
        pick("SELECT part_id FROM parts WHERE verdict = 'PASS' AND image_path IS NULL LIMIT 1");
    let classes = config.web.defect_classes.clone();
    let review = |part: &str, label: &str, class: Option<&str>| {
        let r = inspection_station::review::NewReview {
            label: label.into(),
            defect_class: class.map(Into::into),
            comment: String::new(),
        };
        inspection_station::review::add_review(&conn, part, ana, &r, &classes).unwrap();
    };
    review(&rejects[0], "defect", Some("crack"));
    review(&rejects[0], "good", None); // the latest review counts
    review(&rejects[1], "defect", Some("crack"));
    review(&passed_with_image[0], "defect", Some("spot"));
    let out = user(&["delete", "ana"], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(err.contains("disable them instead"), "{err}");
    review(&passed_without_image[0], "good", None);

    let set = dir.path().join("set");
    let out = station_cmd(
        &[
            "dataset",
            "export",
            "-c",
            cfg,
            "--out",
            set.to_str().unwrap(),
        ],
        "",
    );
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    assert!(text.contains("exported 3 reviewed images"), "{text}");
    assert!(
        text.contains(
            "false rejects (rejected, reviewed good) 1, escapes (passed, reviewed defective) 1"
        ),
        "{text}"
    );
    assert!(
        text.contains("1 reviewed part(s) had no kept image"),
        "{text}"
    );
    for (folder, part) in [
        ("good", &rejects[0]),
        ("crack", &rejects[1]),
        ("spot", &passed_with_image[0]),
    ] {
        let file = set.join(folder).join(format!("{part}.png"));
        let bytes = std::fs::read(&file).unwrap_or_else(|e| panic!("{}: {e}", file.display()));
        assert_eq!(&bytes[1..4], b"PNG");
    }
    let labels = std::fs::read_to_string(set.join("labels.csv")).unwrap();
    assert_eq!(labels.lines().count(), 4, "{labels}");
    assert!(
        labels.contains(&format!("good/{0}.png,{0},good,,REJECT,ana,", rejects[0])),
        "{labels}"
    );
    // A second export into the same folder is refused rather than mixed.
    let out = station_cmd(
        &[
            "dataset",
            "export",
            "-c",
            cfg,
            "--out",
            set.to_str().unwrap(),
        ],
        "",
    );
    assert!(!out.status.success());
    assert!(String::from_utf8_lossy(&out.stderr).contains("must be empty"));
}

#[test]
fn web_config_is_validated_and_off_by_default() {
    let base = "[model]\ndir = \"m\"\n";
    let config = Config::parse(base, "t.toml", Path::new(".")).unwrap();
    assert!(
        !config.web.enabled,
        "old configs keep running without a page"
    );
    let config = Config::parse(
        &format!("{base}[web]\nport = 0\n"),
        "t.toml",
        Path::new("."),
    )
    .unwrap();
    assert!(config.web.enabled);
    assert_eq!(config.web.listen.to_string(), "127.0.0.1:0");
    let text = format!(
        "{base}[web]\nbind = \"localhost:80\"\ndefect_classes = [\"good\", \"../x\"]\nuncertain_margin = 1.5\nsession_hours = 0\ncolour = 1\n"
    );
    let err = Config::parse(&text, "t.toml", Path::new("."))
        .unwrap_err()
        .to_string();
    // Unknown fields stop the section's parse; the rest are reported together.
    assert!(err.contains("web.colour"), "{err}");
    let text = text.replace("colour = 1\n", "");
    let err = Config::parse(&text, "t.toml", Path::new("."))
        .unwrap_err()
        .to_string();
    for field in [
        "web.bind",
        "\"good\"",
        "\"../x\"",
        "web.uncertain_margin",
        "web.session_hours",
    ] {
        assert!(err.contains(field), "{field} missing in: {err}");
    }
}

/// A login request from a client address (as the server sees it with connection info).
fn login_from(name: &str, password: &str, addr: &str) -> Request<Body> {
    let mut req = Request::post("/api/auth/login")
        .header(header::CONTENT_TYPE, "application/json")
        .body(Body::from(
            json!({"name": name, "password": password}).to_string(),
        ))
        .unwrap();
    let addr: std::net::SocketAddr = addr.parse().unwrap();
    req.extensions_mut()
        .insert(axum::extract::ConnectInfo(addr));
    req
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn wrong_passwords_slow_down_then_lock_the_account_and_the_address() {
    use inspection_station::web::throttle::{LOCK_AFTER, MAX_DELAY};
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(recorded_line(dir.path()).await, None);
    let attacker = "10.0.0.66:40000";
    let mut took = Vec::new();
    for _ in 0..LOCK_AFTER {
        let t = std::time::Instant::now();
        let (status, _, _) = site.send(login_from("ana", "guess", attacker)).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED);
        took.push(t.elapsed());
    }
    // The later failures are answered after a growing delay.
    assert!(took[LOCK_AFTER as usize - 1] >= MAX_DELAY, "{took:?}");
    assert!(took[LOCK_AFTER as usize - 1] > took[0] * 4, "{took:?}");
    // Locked: even the right password is refused, for the account (from anywhere) and from the address (for
    // any account); another account from elsewhere still logs in.
    for (name, addr) in [("ana", attacker), ("ana", "10.0.0.7:1"), ("tom", attacker)] {
        let (status, _, body) = site.send(login_from(name, "secret-pass", addr)).await;
        assert_eq!(status, StatusCode::TOO_MANY_REQUESTS, "{name} from {addr}");
        let text = String::from_utf8_lossy(&body);
        assert!(text.contains("try again in"), "{text}");
    }
    let (status, headers, body) = site
        .send(login_from("tom", "secret-pass", "10.0.0.7:1"))
        .await;
    assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
    let user: Value = serde_json::from_slice(&body).unwrap();
    let tom = Login {
        cookie: headers[header::SET_COOKIE]
            .to_str()
            .unwrap()
            .split(';')
            .next()
            .unwrap()
            .to_string(),
        csrf: user["csrf_token"].as_str().unwrap().to_string(),
    };
    // The lockout is shown on the page.
    let (_, stats) = site.call(Method::GET, "/api/stats", Some(&tom), None).await;
    let alerts = stats["alerts"].to_string();
    assert!(
        alerts.contains("login locked for user:ana")
            && alerts.contains("login locked for addr:10.0.0.66"),
        "{alerts}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn hosts_origins_caching_body_limits_and_repeated_reviews() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(recorded_line(dir.path()).await, None);
    let ana = site.login("ana").await;
    let get_with = |host: &str| {
        Request::get("/api/stats")
            .header(header::HOST, host)
            .header(header::COOKIE, &ana.cookie)
            .body(Body::empty())
            .unwrap()
    };
    // A DNS-rebinding page names its own host: refused; the station's address and localhost are fine.
    let (status, _, body) = site.send(get_with("evil.example:8080")).await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    assert!(String::from_utf8_lossy(&body).contains("web.allowed_hosts"));
    for host in ["127.0.0.1:8080", "localhost:8080", "[::1]:8080", "10.1.2.3"] {
        let (status, headers, _) = site.send(get_with(host)).await;
        assert_eq!(status, StatusCode::OK, "{host}");
        // API answers are never cached (a shared PC keeps nothing after logout).
        assert_eq!(headers[header::CACHE_CONTROL], "no-store", "{host}");
    }
    // A state-changing request from another origin is refused.
    let part = first_part(&site, "REJECT");
    let review = json!({"part_id": part, "label": "defect", "defect_class": "spot"});
    let post = |origin: &str, body: String| {
        Request::post("/api/reviews")
            .header(header::HOST, "127.0.0.1:8080")
            .header(header::ORIGIN, origin)
            .header(header::COOKIE, &ana.cookie)
            .header("x-csrf-token", &ana.csrf)
            .header(header::CONTENT_TYPE, "application/json")
            .body(Body::from(body))
            .unwrap()
    };
    let (status, _, _) = site
        .send(post("http://evil.example", review.to_string()))
        .await;
    assert_eq!(status, StatusCode::FORBIDDEN);
    // A double tap stores one review: the repeat answers the same one.
    let (first, _, a) = site
        .send(post("http://127.0.0.1:8080", review.to_string()))
        .await;
    let (second, _, b) = site
        .send(post("http://127.0.0.1:8080", review.to_string()))
        .await;
    assert_eq!((first, second), (StatusCode::CREATED, StatusCode::CREATED));
    let (a, b): (Value, Value) = (
        serde_json::from_slice(&a).unwrap(),
        serde_json::from_slice(&b).unwrap(),
    );
    assert_eq!(a["id"], b["id"], "{a} {b}");
    let stored: i64 = site
        .db()
        .query_row(
            "SELECT count(*) FROM reviews WHERE part_id = ?1",
            [&part],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(stored, 1);
    let sent: i64 = site
        .db()
        .query_row(
            "SELECT count(*) FROM outbox WHERE kind = 'review'
               AND key = (SELECT CAST(id AS TEXT) FROM reviews WHERE part_id = ?1)
               AND json_extract(payload, '$.part_id') = ?1",
            [&part],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(
        sent, 1,
        "the review's outbox message, once (the repeat adds none)"
    );
    // A different verdict on the same part is a new review (the audit trail keeps both).
    let (status, _, _) = site
        .send(post(
            "http://127.0.0.1:8080",
            json!({"part_id": part, "label": "good"}).to_string(),
        ))
        .await;
    assert_eq!(status, StatusCode::CREATED);
    // A body over the limit is "too large", not "bad request".
    let huge = json!({"part_id": part, "label": "good", "comment": "x".repeat(3 << 20)});
    let (status, _, _) = site
        .send(post("http://127.0.0.1:8080", huge.to_string()))
        .await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn logout_ends_an_open_live_stream() {
    let dir = tempfile::tempdir().unwrap();
    let site = Site::new(recorded_line(dir.path()).await, None);
    let ana = site.login("ana").await;
    let req = Request::get("/api/live")
        .header(header::COOKIE, &ana.cookie)
        .body(Body::empty())
        .unwrap();
    let res = site.app.clone().oneshot(req).await.unwrap();
    assert_eq!(res.status(), StatusCode::OK);
    let mut body = res.into_body();
    let mut text = String::new();
    let mut next = async |text: &mut String| {
        let frame = tokio::time::timeout(std::time::Duration::from_secs(10), body.frame())
            .await
            .expect("an event within 10 s");
        match frame {
            Some(frame) => {
                if let Ok(data) = frame.unwrap().into_data() {
                    text.push_str(&String::from_utf8_lossy(&data));
                }
                true
            }
            None => false,
        }
    };
    while !text.contains("event: stats") {
        assert!(next(&mut text).await, "the stream ended early: {text}");
    }
    let (status, _) = site
        .call(Method::POST, "/api/auth/logout", Some(&ana), None)
        .await;
    assert_eq!(status, StatusCode::OK);
    // Within one tick the stream says so and ends.
    let mut ended = false;
    for _ in 0..20 {
        if !next(&mut text).await {
            ended = true;
            break;
        }
    }
    assert!(ended, "the stream goes on after logout: {text}");
    assert!(text.contains("event: session_ended"), "{text}");
}

#[test]
fn station_review_on_a_folder_without_a_database_refuses_instead_of_creating_one() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("station.toml");
    std::fs::write(
        &config,
        format!(
            "[station]\nname = \"t\"\ndata_dir = \"dtaa\"\n[model]\ndir = \"{}\"\n[web]\nport = 0\n",
            crate::common::demo_model().display()
        ),
    )
    .unwrap();
    let out = station_cmd(&["review", "--config", config.to_str().unwrap()], "");
    let err = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(2), "{err}");
    assert!(
        err.contains("station.sqlite") && err.contains("check station.data_dir"),
        "{err}"
    );
    assert!(!dir.path().join("dtaa/station.sqlite").exists());
}
