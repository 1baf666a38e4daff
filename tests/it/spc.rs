//! `station spc` on the reference data sets of the shared data's `spc/` folder (Montgomery's textbook data as
//! shipped by R's qcc), asserting every figure of its README to the digits printed there: a figure printed as
//! `74.00118` must be within half a unit of its last digit (5e-6).

use std::path::PathBuf;

use serde_json::Value;

use crate::cli::{station, stderr_line, succeeded};
use crate::common::{root, shared_data};

fn data(name: &str) -> PathBuf {
    let file = shared_data("spc").join(name);
    assert!(
        file.is_file(),
        "{} is missing from the shared data",
        file.display()
    );
    file
}

/// `station spc --data FILE --json ARGS...` as JSON.
fn spc(file: &str, args: &[&str]) -> Value {
    let path = data(file);
    let mut all = vec!["spc", "--data", path.to_str().unwrap(), "--json"];
    all.extend_from_slice(args);
    let out = succeeded(&station(&all, &root()));
    serde_json::from_str(&out).unwrap_or_else(|e| panic!("not JSON ({e}): {out}"))
}

/// Asserts `actual` equals the printed figure `expected` to half a unit of its last digit.
#[track_caller]
fn figure(actual: &Value, expected: &str) {
    let actual = actual
        .as_f64()
        .unwrap_or_else(|| panic!("not a number: {actual}"));
    let decimals = expected.split_once('.').map_or(0, |(_, d)| d.len());
    let tolerance = 0.5 * 10f64.powi(-(decimals as i32));
    let want: f64 = expected.parse().unwrap();
    assert!(
        (actual - want).abs() <= tolerance * (1.0 + 1e-9),
        "{actual} is not {expected} (to +/- {tolerance})"
    );
}

/// The points (numbered from 1) where `rule` fired in chart `chart`.
fn fired(report: &Value, chart: usize, rule: &str) -> Vec<u64> {
    report["charts"][chart]["violations"]
        .as_array()
        .unwrap()
        .iter()
        .filter(|v| v["rule"] == rule)
        .map(|v| v["point"].as_u64().unwrap())
        .collect()
}

fn point(report: &Value, chart: usize, number: usize) -> &Value {
    &report["charts"][chart]["points"][number - 1]
}

#[test]
fn spc_pistonrings_xbar_r_phase_one() {
    for args in [&[][..], &["--phase1", "25"]] {
        let mut all = vec!["--chart", "xbar-r"];
        all.extend_from_slice(args);
        let r = spc("pistonrings.csv", &all);
        let (xbar, range) = (&r["charts"][0], &r["charts"][1]);
        assert_eq!(xbar["kind"], "xbar");
        assert_eq!(xbar["baseline"].as_array().unwrap().len(), 25);
        figure(&xbar["center"], "74.00118");
        figure(&xbar["sigma"], "0.009785039");
        figure(&point(&r, 0, 1)["lcl"], "73.98805");
        figure(&point(&r, 0, 40)["ucl"], "74.01430");
        assert_eq!(range["kind"], "R");
        figure(&range["center"], "0.02276");
        figure(&point(&r, 1, 1)["ucl"], "0.04812533");
        assert_eq!(point(&r, 1, 1)["lcl"].as_f64(), Some(0.0));
        assert_eq!(point(&r, 0, 26)["phase"], "II");
    }
}

#[test]
fn spc_pistonrings_xbar_s_phase_one() {
    let r = spc("pistonrings.csv", &["--chart", "xbar-s"]);
    assert_eq!(r["charts"][1]["kind"], "S");
    figure(&r["charts"][1]["center"], "0.009240037");
    figure(&r["charts"][0]["sigma"], "0.009829977");
    figure(&point(&r, 1, 1)["ucl"], "0.01930242");
}

#[test]
fn spc_pistonrings_phase_two_western_electric_and_nelson() {
    let r = spc("pistonrings.csv", &["--chart", "xbar-r", "--rules", "we"]);
    let phase_two =
        |rule: &str| -> Vec<u64> { fired(&r, 0, rule).into_iter().filter(|&p| p > 25).collect() };
    assert_eq!(phase_two("WE1"), vec![37, 38, 39]);
    assert_eq!(phase_two("WE2"), vec![35, 37, 38, 39, 40]);
    assert_eq!(phase_two("WE3"), vec![35, 38, 39, 40]);
    assert_eq!(
        phase_two("WE4"),
        Vec::<u64>::new(),
        "no run of 8 on one side"
    );
    assert!(fired(&r, 1, "WE1").is_empty(), "the R chart is in control");
    let nelson = spc(
        "pistonrings.csv",
        &["--chart", "xbar-r", "--rules", "2,3,4,7,8"],
    );
    for rule in ["N2", "N3", "N4", "N7", "N8"] {
        let late: Vec<u64> = fired(&nelson, 0, rule)
            .into_iter()
            .filter(|&p| p > 25)
            .collect();
        assert!(late.is_empty(), "{rule} fired at {late:?}");
    }
}

#[test]
fn spc_pistonrings_ewma() {
    let r = spc(
        "pistonrings.csv",
        &["--chart", "ewma", "--lambda", "0.2", "--L", "3"],
    );
    figure(&point(&r, 0, 1)["lcl"], "73.99855");
    figure(&point(&r, 0, 1)["ucl"], "74.00380");
    figure(&point(&r, 0, 25)["lcl"], "73.99680");
    figure(&point(&r, 0, 25)["ucl"], "74.00555");
    assert_eq!(fired(&r, 0, "WE1"), vec![37, 38, 39, 40]);
}

#[test]
fn spc_pistonrings_cusum() {
    let r = spc(
        "pistonrings.csv",
        &["--chart", "cusum", "--k", "0.5", "--h", "5"],
    );
    let c = &r["cusum"];
    for (number, expected) in [
        (36, "4.163"),
        (37, "7.187"),
        (38, "10.898"),
        (39, "15.476"),
        (40, "17.633"),
    ] {
        figure(&c["points"][number - 1]["upper"], expected);
    }
    assert_eq!(c["upper_signals"], serde_json::json!([37, 38, 39, 40]));
    assert_eq!(c["lower_signals"], serde_json::json!([]));
}

#[test]
fn spc_pistonrings_capability() {
    let r = spc(
        "pistonrings.csv",
        &[
            "--chart",
            "capability",
            "--spec",
            "73.95,74.05",
            "--target",
            "74",
        ],
    );
    let cap = &r["capability"];
    assert_eq!(cap["n"], 125);
    figure(&cap["sigma_within"], "0.009785039");
    let within = &cap["within"];
    let overall = &cap["overall"];
    for (index, value, lower, upper) in [
        (&within["cp"], "1.7033", "1.4914", "1.9148"),
        (&within["cpl"], "1.7433", "1.5548", "1.9319"),
        (&within["cpu"], "1.6632", "1.4827", "1.8437"),
        (&within["cpk"], "1.6632", "1.4481", "1.8783"),
        (&within["cpm"], "1.6911", "1.4801", "1.9018"),
        (&overall["cp"], "1.6551", "1.4492", "1.8606"),
        (&overall["cpk"], "1.6162", "1.4067", "1.8256"),
    ] {
        figure(&index["value"], value);
        figure(&index["lower"], lower);
        figure(&index["upper"], upper);
    }
}

#[test]
fn spc_shewhart_arl() {
    let out = succeeded(&station(
        &[
            "spc", "--chart", "arl", "--n", "1", "--shift", "0,1", "--json",
        ],
        &root(),
    ));
    let r: Value = serde_json::from_str(&out).unwrap();
    figure(&r["arl"][0]["arl"], "370.4");
    figure(&r["arl"][1]["arl"], "43.9");
    let args = ["spc", "--chart", "arl", "--rules", "we", "--json"];
    let r: Value = serde_json::from_str(&succeeded(&station(&args, &root()))).unwrap();
    let with_rules = r["arl"][0]["arl"].as_f64().unwrap();
    assert!((91.0..92.5).contains(&with_rules), "{with_rules}");
}

#[test]
fn spc_orangejuice_p_np_and_refit() {
    let r = spc("orangejuice.csv", &["--chart", "p"]);
    figure(&r["charts"][0]["center"], "0.2313333");
    figure(&point(&r, 0, 1)["lcl"], "0.05242755");
    figure(&point(&r, 0, 1)["ucl"], "0.4102391");
    let phase_one: Vec<u64> = fired(&r, 0, "WE1")
        .into_iter()
        .filter(|&p| p <= 30)
        .collect();
    assert_eq!(phase_one, vec![15, 23]);
    let phase_two: Vec<f64> = r["charts"][0]["points"].as_array().unwrap()[30..]
        .iter()
        .map(|p| p["statistic"].as_f64().unwrap())
        .collect();
    assert_eq!(phase_two.len(), 24);
    figure(&Value::from(phase_two.iter().sum::<f64>() / 24.0), "0.1108");

    let np = spc("orangejuice.csv", &["--chart", "np"]);
    figure(&np["charts"][0]["center"], "11.56667");
    figure(&point(&np, 0, 1)["lcl"], "2.621377");
    figure(&point(&np, 0, 1)["ucl"], "20.51196");

    let refit = spc("orangejuice.csv", &["--chart", "p", "--exclude", "15,23"]);
    assert_eq!(refit["charts"][0]["excluded"], serde_json::json!([15, 23]));
    assert_eq!(refit["charts"][0]["baseline"].as_array().unwrap().len(), 28);
    figure(&refit["charts"][0]["center"], "0.215");
    figure(&point(&refit, 0, 1)["lcl"], "0.04070284");
    figure(&point(&refit, 0, 1)["ucl"], "0.3892972");
}

#[test]
fn spc_circuit_c_u_and_refit() {
    let r = spc("circuit.csv", &["--chart", "c"]);
    figure(&r["charts"][0]["center"], "19.84615");
    figure(&point(&r, 0, 1)["lcl"], "6.481447");
    figure(&point(&r, 0, 1)["ucl"], "33.21086");
    let phase_one: Vec<u64> = fired(&r, 0, "WE1")
        .into_iter()
        .filter(|&p| p <= 26)
        .collect();
    assert_eq!(phase_one, vec![6, 20]);
    let refit = spc("circuit.csv", &["--chart", "c", "--exclude", "6,20"]);
    figure(&refit["charts"][0]["center"], "19.66667");
    figure(&point(&refit, 0, 1)["lcl"], "6.362532");
    figure(&point(&refit, 0, 1)["ucl"], "32.97080");
    // Per board: the same divided by 100.
    let u = spc("circuit.csv", &["--chart", "u"]);
    figure(&u["charts"][0]["center"], "0.1984615");
    figure(&point(&u, 0, 1)["lcl"], "0.06481447");
    figure(&point(&u, 0, 1)["ucl"], "0.3321086");
    assert_eq!(fired(&u, 0, "WE1"), fired(&r, 0, "WE1"));
    let u_refit = spc("circuit.csv", &["--chart", "u", "--exclude", "6,20"]);
    figure(&u_refit["charts"][0]["center"], "0.1966667");
    figure(&point(&u_refit, 0, 1)["ucl"], "0.3297080");
}

#[test]
fn spc_viscosity_imr_refit_and_ewma() {
    let r = spc("viscosity.csv", &["--chart", "imr"]);
    assert_eq!(r["charts"][1]["kind"], "MR");
    figure(&r["charts"][0]["center"], "34.088");
    figure(&r["charts"][1]["center"], "0.57263");
    figure(&r["charts"][0]["sigma"], "0.5076521");
    figure(&point(&r, 0, 1)["lcl"], "32.56504");
    figure(&point(&r, 0, 1)["ucl"], "35.61096");
    assert!(
        point(&r, 1, 1)["statistic"].is_null(),
        "the first point has no moving range"
    );

    let refit = spc("viscosity.csv", &["--chart", "imr", "--exclude", "4"]);
    assert_eq!(refit["charts"][0]["excluded"], serde_json::json!([4]));
    figure(&refit["charts"][0]["center"], "33.98947");
    figure(&refit["charts"][0]["sigma"], "0.4117415");
    figure(&point(&refit, 0, 1)["lcl"], "32.75425");
    figure(&point(&refit, 0, 1)["ucl"], "35.2247");

    let ewma = spc(
        "viscosity.csv",
        &["--chart", "ewma", "--lambda", "0.2", "--L", "2.7"],
    );
    figure(&point(&ewma, 0, 1)["lcl"], "33.81387");
    figure(&point(&ewma, 0, 1)["ucl"], "34.36213");
}

/// The one error line of `station spc --chart p` on a CSV of `text`, which must exit 2.
fn p_chart_error(text: &str) -> String {
    let dir = tempfile::tempdir().unwrap();
    let file = dir.path().join("bad.csv");
    std::fs::write(&file, text).unwrap();
    let out = station(
        &["spc", "--data", file.to_str().unwrap(), "--chart", "p"],
        &root(),
    );
    assert_eq!(out.status.code(), Some(2));
    stderr_line(&out)
}

#[test]
fn spc_bad_input_names_file_line_and_field() {
    let line = p_chart_error("sample,nonconforming,n\n1,3,50\n2,x,50\n");
    assert!(
        line.contains("bad.csv:3: field `nonconforming`: expected a count >= 0, got `x`"),
        "{line}"
    );
    let line = p_chart_error("sample,nonconforming,n\n1,3,50\n2,60,50\n");
    assert!(
        line.contains("bad.csv:3: the count exceeds the sample size"),
        "{line}"
    );
    let missing = station(
        &["spc", "--data", "/nonexistent.csv", "--chart", "c"],
        &root(),
    );
    assert_eq!(missing.status.code(), Some(2));
    assert!(stderr_line(&missing).contains("/nonexistent.csv: cannot read"));
    let phase_two = data("circuit.csv");
    let out = station(
        &[
            "spc",
            "--data",
            phase_two.to_str().unwrap(),
            "--chart",
            "c",
            "--exclude",
            "30",
        ],
        &root(),
    );
    assert_eq!(out.status.code(), Some(2));
    assert!(
        stderr_line(&out).contains("phase II"),
        "{}",
        stderr_line(&out)
    );
}

#[test]
fn spc_text_output_is_a_table() {
    let path = data("pistonrings.csv");
    let out = succeeded(&station(
        &["spc", "--data", path.to_str().unwrap(), "--chart", "xbar-r"],
        &root(),
    ));
    assert!(out.contains("xbar chart of"), "{out}");
    assert!(
        out.lines()
            .any(|l| l.trim_start().starts_with("37") && l.contains("WE1")),
        "{out}"
    );
}
