//! End to end in real headless Chromium (Debian's `chromium` + `chromium-driver`, driven over WebDriver by
//! fantoccini) against `station review` serving a real line's records: log in, open the queue, open a rejected
//! part, toggle its heat map, override it to good with the keyboard shortcut, and find the review in SQLite.
//! Screenshots of the queue, the part page and the live page are saved to `target/e2e/` as test artifacts.

use std::net::TcpListener;
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use fantoccini::actions::{InputSource, KeyAction, KeyActions};
use fantoccini::{Client, ClientBuilder, Locator};
use hyper_util::client::legacy::connect::HttpConnector;
use serde_json::json;

use crate::common::root;
use crate::web::recorded_line;

/// A child process killed when dropped.
struct Process(Child);

impl Drop for Process {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// Starts chromedriver and a headless Chromium session.
async fn browser() -> (Process, Client) {
    for tool in ["/usr/bin/chromium", "/usr/bin/chromedriver"] {
        assert!(
            std::path::Path::new(tool).exists(),
            "{tool} is missing: run `bash scripts/setup.sh` (installs Debian's chromium and chromium-driver)"
        );
    }
    let port = free_port();
    let driver = Process(
        Command::new("/usr/bin/chromedriver")
            .arg(format!("--port={port}"))
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start chromedriver"),
    );
    let mut caps = serde_json::Map::new();
    caps.insert(
        "goog:chromeOptions".into(),
        json!({
            "binary": "/usr/bin/chromium",
            "args": ["--headless=new", "--no-sandbox", "--disable-gpu", "--disable-dev-shm-usage",
                     "--window-size=1360,900", "--force-device-scale-factor=1"],
        }),
    );
    let until = Instant::now() + Duration::from_secs(30);
    loop {
        match ClientBuilder::new(HttpConnector::new())
            .capabilities(caps.clone())
            .connect(&format!("http://127.0.0.1:{port}"))
            .await
        {
            Ok(client) => return (driver, client),
            Err(e) if Instant::now() > until => panic!("cannot start a Chromium session: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(200)).await,
        }
    }
}

async fn wait_css(client: &Client, css: &str) -> fantoccini::elements::Element {
    client
        .wait()
        .at_most(Duration::from_secs(20))
        .for_element(Locator::Css(css))
        .await
        .unwrap_or_else(|e| panic!("no {css} on the page: {e}"))
}

async fn press(client: &Client, key: char) {
    let keys = KeyActions::new("keyboard".into())
        .then(KeyAction::Down { value: key })
        .then(KeyAction::Up { value: key });
    client.perform_actions(keys).await.unwrap();
}

fn artifacts() -> PathBuf {
    let dir = root().join("target/e2e");
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

/// `station review` on the recorded data folder in `dir`; the process and the page's base URL.
fn review_server(dir: &std::path::Path) -> (Process, String) {
    let mut child = Command::new(env!("CARGO_BIN_EXE_station"))
        .args(["review", "-c", dir.join("station.toml").to_str().unwrap()])
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .spawn()
        .unwrap();
    let stdout = child.stdout.take().unwrap();
    let server = Process(child);
    let mut line = String::new();
    std::io::BufRead::read_line(&mut std::io::BufReader::new(stdout), &mut line).unwrap();
    let base = line
        .trim()
        .strip_prefix("review page: ")
        .unwrap_or_else(|| panic!("unexpected first line from station review: {line}"))
        .trim_end_matches('/')
        .to_string();

    (server, base)
}

/// Logs in as the operator `ana` through the login form.
async fn log_in(client: &Client, base: &str) {
    client.goto(&format!("{base}/")).await.unwrap();
    // No session: the page sends us to the login form.
    wait_css(client, "#login-form").await;
    client
        .find(Locator::Css("#name"))
        .await
        .unwrap()
        .send_keys("ana")
        .await
        .unwrap();
    client
        .find(Locator::Css("#password"))
        .await
        .unwrap()
        .send_keys("secret-pass")
        .await
        .unwrap();
    client
        .find(Locator::Css("#login"))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn operator_overrides_a_reject_with_the_keyboard_in_chromium() {
    let dir = tempfile::tempdir().unwrap();
    let config = recorded_line(dir.path()).await;

    // The review page as an operator starts it: `station review` on the recorded data folder.
    let (_server, base) = review_server(dir.path());
    let (_driver, client) = browser().await;
    log_in(&client, &base).await;

    // The queue: pick a rejected part with an image.
    wait_css(&client, "#queue tbody tr[data-part]").await;
    let conn = rusqlite::Connection::open(&config.record.database).unwrap();
    let part: String = conn
        .query_row(
            "SELECT part_id FROM parts WHERE verdict = 'REJECT' AND image_path IS NOT NULL
             AND result_code = 2 ORDER BY id DESC LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    std::fs::write(
        artifacts().join("queue.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();
    // A heat map, as a model that provides one records it (here: the part image itself stands in).
    conn.execute(
        "UPDATE parts SET heatmap_path = image_path, heatmap_roi = '32,32,256,256' WHERE part_id = ?1",
        [&part],
    )
    .unwrap();
    client
        .find(Locator::Css(&format!(
            "#queue tbody tr[data-part='{part}']"
        )))
        .await
        .unwrap()
        .click()
        .await
        .unwrap();
    wait_css(&client, &format!("#part[data-part='{part}']")).await;
    // Let the image load before the screenshot.
    let until = Instant::now() + Duration::from_secs(10);
    while client
        .execute(
            "const i = document.getElementById('part-image'); return !!(i && i.complete && i.naturalWidth > 0);",
            vec![],
        )
        .await
        .unwrap()
        != json!(true)
    {
        assert!(Instant::now() < until, "the part image did not load");
        tokio::time::sleep(Duration::from_millis(100)).await;
    }
    // The overlay toggles with its shortcut.
    let overlay_hidden = || async {
        client
            .execute("return document.querySelector('img.heat').hidden;", vec![])
            .await
            .unwrap()
    };
    assert_eq!(overlay_hidden().await, json!(true));
    press(&client, 'h').await;
    assert_eq!(overlay_hidden().await, json!(false));
    // Laid over the ROI: 32 px of a 320 px frame is 10%, 256 px 80%.
    let placed = client
        .execute(
            "const s = document.querySelector('img.heat').style; return [s.left, s.top, s.width, s.height];",
            vec![],
        )
        .await
        .unwrap();
    assert_eq!(placed, json!(["10%", "10%", "80%", "80%"]));
    press(&client, 'h').await;
    assert_eq!(overlay_hidden().await, json!(true));
    let status = client.find(Locator::Css("#review-status")).await.unwrap();
    assert_eq!(status.text().await.unwrap(), "not reviewed");
    let shot = client.screenshot().await.unwrap();
    assert_eq!(&shot[1..4], b"PNG");
    std::fs::write(artifacts().join("part.png"), shot).unwrap();

    // Override to good with the keyboard shortcut.
    press(&client, 'g').await;
    let until = Instant::now() + Duration::from_secs(10);
    let review = loop {
        let row = conn
            .query_row(
                "SELECT u.name, r.label, r.old_verdict, r.defect_class FROM reviews r JOIN users u ON u.id = r.user_id
                 WHERE r.part_id = ?1",
                [&part],
                |r| {
                    Ok((
                        r.get::<_, String>(0)?,
                        r.get::<_, String>(1)?,
                        r.get::<_, String>(2)?,
                        r.get::<_, Option<String>>(3)?,
                    ))
                },
            )
            .ok();
        if let Some(row) = row {
            break row;
        }
        assert!(
            Instant::now() < until,
            "no review of {part} in SQLite after pressing G"
        );
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    assert_eq!(review, ("ana".into(), "good".into(), "REJECT".into(), None));
    let verdict: String = conn
        .query_row(
            "SELECT verdict FROM parts WHERE part_id = ?1",
            [&part],
            |r| r.get(0),
        )
        .unwrap();
    assert_eq!(verdict, "REJECT", "the recorded verdict stays");

    // A 2,000-character comment without spaces wraps: the page is never wider than the window.
    conn.execute(
        "INSERT INTO reviews (part_id, user_id, at_us, old_verdict, label, comment)
         SELECT ?1, id, 1, 'REJECT', 'good', ?2 FROM users WHERE name = 'ana'",
        rusqlite::params![part, "x".repeat(2000)],
    )
    .unwrap();
    client.goto(&format!("{base}/#/part/{part}")).await.unwrap();
    client.refresh().await.unwrap();
    wait_css(&client, &format!("#part[data-part='{part}']")).await;
    let widths = client
        .execute(
            "return [document.documentElement.scrollWidth, window.innerWidth];",
            vec![],
        )
        .await
        .unwrap();
    let (scroll, window) = (widths[0].as_i64().unwrap(), widths[1].as_i64().unwrap());
    assert!(
        scroll <= window,
        "the page is {scroll} px wide in a {window} px window"
    );

    // A part rejected for its sound alone shows the sound's score against its threshold, with its bar.
    conn.execute(
        "UPDATE parts SET acoustic_score = 2.5, acoustic_threshold = 1.5,
            reasons = '[{\"code\":\"acoustic_score_over_threshold\"}]' WHERE part_id = ?1",
        [&part],
    )
    .unwrap();
    client.refresh().await.unwrap();
    let sound = wait_css(&client, ".score.sound").await;
    let text = sound.text().await.unwrap();
    assert!(
        text.contains("sound score 2.5") && text.contains("threshold 1.5") && text.contains("over"),
        "{text}"
    );
    assert!(
        sound.find(Locator::Css(".bar em")).await.is_ok(),
        "no threshold mark"
    );

    // The live page shows the line's figures.
    client.goto(&format!("{base}/#/live")).await.unwrap();
    wait_css(&client, "#tiles .tile").await;
    std::fs::write(
        artifacts().join("live.png"),
        client.screenshot().await.unwrap(),
    )
    .unwrap();
    client.close().await.unwrap();
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn seven_tabs_all_get_live_figures_over_one_stream() {
    let dir = tempfile::tempdir().unwrap();
    recorded_line(dir.path()).await;
    let (_server, base) = review_server(dir.path());
    let (_driver, client) = browser().await;
    log_in(&client, &base).await;
    wait_css(&client, "#queue").await;
    client.goto(&format!("{base}/#/live")).await.unwrap();
    wait_css(&client, "#tiles .tile").await;
    // Six more tabs on the live view: a browser allows 6 connections per host, so a stream per tab would
    // leave the last ones without data (or without the page at all).
    for _ in 0..6 {
        let tab = client.new_window(true).await.unwrap();
        client.switch_to_window(tab.handle).await.unwrap();
        client.goto(&format!("{base}/#/live")).await.unwrap();
        wait_css(&client, "#tiles .tile").await;
    }
    let since = client
        .execute("return Date.now();", vec![])
        .await
        .unwrap()
        .as_f64()
        .unwrap();
    let tabs = client.windows().await.unwrap();
    assert_eq!(tabs.len(), 7);
    for (i, tab) in tabs.into_iter().enumerate() {
        client.switch_to_window(tab).await.unwrap();
        let until = Instant::now() + Duration::from_secs(20);
        loop {
            let at = client
                .execute("return Number(document.body.dataset.liveAt || 0);", vec![])
                .await
                .unwrap()
                .as_f64()
                .unwrap_or(0.0);
            if at > since {
                break;
            }
            assert!(Instant::now() < until, "tab {i} got no live figures");
            tokio::time::sleep(Duration::from_millis(200)).await;
        }
    }
    client.close().await.unwrap();
}

/// What a layout check measures on the page: sideways scroll, the smallest visible button, the body text size.
const LAYOUT: &str = "
    const buttons = [...document.querySelectorAll('button, select, nav a')].filter(b => b.offsetParent !== null);
    const small = buttons.map(b => [b.id || b.textContent.trim().slice(0, 20), b.getBoundingClientRect()])
        .filter(([, r]) => r.height < 44 || r.width < 44).map(([n, r]) => `${n} ${r.width}x${r.height}`);
    const defect = document.getElementById('btn-defect');
    return { scroll: document.documentElement.scrollWidth, width: document.documentElement.clientWidth,
        height: window.innerHeight, small, font: parseFloat(getComputedStyle(document.body).fontSize),
        defect_bottom: defect ? defect.getBoundingClientRect().bottom : null };";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_queue_and_part_pages_fit_a_tablet_either_way_with_touch_sized_targets() {
    let dir = tempfile::tempdir().unwrap();
    let config = recorded_line(dir.path()).await;
    let part: String = rusqlite::Connection::open(&config.record.database)
        .unwrap()
        .query_row(
            "SELECT part_id FROM parts WHERE verdict = 'REJECT' AND image_path IS NOT NULL LIMIT 1",
            [],
            |r| r.get(0),
        )
        .unwrap();
    let (_server, base) = review_server(dir.path());
    let (_driver, client) = browser().await;
    log_in(&client, &base).await;
    wait_css(&client, "#queue tbody tr").await;
    for (w, h) in [(1024, 768), (768, 1024)] {
        client.set_window_size(w, h).await.unwrap();
        for (view, ready) in [
            ("#/queue".to_string(), "#queue tbody tr".to_string()),
            (
                format!("#/part/{part}"),
                format!("#part[data-part='{part}']"),
            ),
        ] {
            client.goto(&format!("{base}/{view}")).await.unwrap();
            client.refresh().await.unwrap();
            wait_css(&client, &ready).await;
            tokio::time::sleep(Duration::from_millis(300)).await;
            let m = client.execute(LAYOUT, vec![]).await.unwrap();
            let at = format!("{view} at {w}x{h}: {m}");
            assert!(
                m["scroll"].as_f64() <= m["width"].as_f64(),
                "sideways scroll, {at}"
            );
            assert_eq!(m["small"], json!([]), "targets under 44 px, {at}");
            assert!(m["font"].as_f64().unwrap() >= 18.0, "{at}");
            if view.starts_with("#/part") && (w, h) == (1024, 768) {
                let bottom = m["defect_bottom"]
                    .as_f64()
                    .expect("no Confirm defect button");
                assert!(
                    bottom <= m["height"].as_f64().unwrap(),
                    "Confirm defect below the fold, {at}"
                );
            }
        }
        std::fs::write(
            artifacts().join(format!("part-{w}x{h}.png")),
            client.screenshot().await.unwrap(),
        )
        .unwrap();
    }
    client.close().await.unwrap();
}
