//! `station spc --data FILE.csv --chart KIND`: a control chart, CUSUM, capability study or ARL from a CSV of
//! subgroups (one column per observation) or of counts and sample sizes, as a table or as JSON (`--json`).
//! Phase I is `--phase1 N` (the first N points), else the file's `phase` column, else every point; `--exclude`
//! leaves phase I points out of the estimate (they are still charted and judged). Point numbers count rows from 1.
//! The engine is `crate::spc`; this file reads the data ([`super::spc_data`]) and writes the report.

use std::fmt::Write as _;
use std::path::PathBuf;

use clap::ValueEnum as _;
use serde::Serialize;

use super::spc_data::{DataError, Table};
use crate::spc::{
    self, Baseline, BaselinePoints, Chart, Phase, RuleSet, arl, attributes, capability, cusum,
    ewma, variables,
};

#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum ChartKind {
    XbarR,
    XbarS,
    Imr,
    P,
    Np,
    C,
    U,
    LaneyP,
    LaneyU,
    Ewma,
    Cusum,
    Capability,
    /// Average run length of a Shewhart chart (needs no data)
    Arl,
}

impl ChartKind {
    /// The name on the command line (`xbar-r`).
    fn name(self) -> String {
        self.to_possible_value()
            .map_or_else(String::new, |v| v.get_name().to_string())
    }
}

#[derive(clap::Args)]
pub struct SpcArgs {
    /// CSV: a header, then one row per subgroup (x1..xn) or sample (count, size); `subgroup`/`sample` and `phase`
    /// columns are recognised
    #[arg(long, value_name = "FILE")]
    data: Option<PathBuf>,
    #[arg(long, value_enum)]
    chart: ChartKind,
    /// Phase I is the first N points [default: the `phase` column, else all points]
    #[arg(long, value_name = "N")]
    phase1: Option<usize>,
    /// Phase I points (numbered from 1) left out of the estimate for an assignable cause
    #[arg(long, value_delimiter = ',', value_name = "POINTS")]
    exclude: Vec<usize>,
    /// Run rules: we, nelson, or a list like 1,2,5 (Nelson tests), we2, n5:4 (K changed) [default: we on X-bar
    /// and I charts, rule 1 on the others]
    #[arg(long, value_name = "RULES")]
    rules: Option<String>,
    /// Spec limits for capability; either may be empty (`,74.05`)
    #[arg(long, value_name = "LSL,USL", allow_hyphen_values = true)]
    spec: Option<String>,
    /// Capability target [default: the middle of the spec]
    #[arg(long, value_name = "T", allow_hyphen_values = true)]
    target: Option<f64>,
    /// Capability intervals' confidence level
    #[arg(long, default_value_t = 0.95)]
    confidence: f64,
    /// EWMA weight
    #[arg(long, default_value_t = 0.2)]
    lambda: f64,
    /// EWMA limits' width in sigmas (and the ARL's limits)
    #[arg(long = "L", default_value_t = 3.0)]
    l: f64,
    /// CUSUM reference value (sigmas)
    #[arg(long, default_value_t = 0.5)]
    k: f64,
    /// CUSUM decision interval (sigmas)
    #[arg(long, default_value_t = 5.0)]
    h: f64,
    /// CUSUM head start (FIR), 0 <= S < h
    #[arg(long, default_value_t = 0.0)]
    head_start: f64,
    /// The data columns: the observations of a subgroup, or COUNT,SIZE [default: all but id and phase]
    #[arg(long, value_delimiter = ',', value_name = "NAMES")]
    columns: Vec<String>,
    /// ARL: shifts of the mean in process sigmas (with --rules: the run length under those rules)
    #[arg(
        long,
        value_delimiter = ',',
        default_value = "0,1",
        allow_hyphen_values = true
    )]
    shift: Vec<f64>,
    /// ARL: subgroup size
    #[arg(long, default_value_t = 1)]
    n: usize,
    /// Print JSON instead of a table
    #[arg(long)]
    json: bool,
}

/// What a report is made from.
struct Input<'a> {
    args: &'a SpcArgs,
    table: &'a Table,
    baseline: &'a Baseline,
}

/// A command line that cannot work with this data.
#[derive(Debug, thiserror::Error)]
#[error("{0}")]
pub struct SpcUsage(String);

/// The whole report: charts, CUSUM, capability, ARL.
#[derive(Serialize)]
struct Report {
    file: Option<String>,
    chart: String,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    charts: Vec<ChartOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    cusum: Option<CusumOut>,
    #[serde(skip_serializing_if = "Option::is_none")]
    capability: Option<capability::Capability>,
    #[serde(skip_serializing_if = "Vec::is_empty")]
    arl: Vec<ArlOut>,
}

#[derive(Serialize)]
struct ChartOut {
    kind: &'static str,
    center: f64,
    sigma: f64,
    /// Points (from 1) that estimated the limits.
    baseline: Vec<usize>,
    excluded: Vec<usize>,
    rules: Vec<String>,
    points: Vec<PointOut>,
    violations: Vec<ViolationOut>,
}

#[derive(Serialize)]
struct PointOut {
    point: usize,
    id: String,
    phase: Phase,
    statistic: f64,
    center: f64,
    lcl: f64,
    ucl: f64,
    excluded: bool,
}

#[derive(Serialize)]
struct ViolationOut {
    rule: String,
    point: usize,
    id: String,
}

#[derive(Serialize)]
struct CusumOut {
    k: f64,
    h: f64,
    head_start: f64,
    center: f64,
    baseline: Vec<usize>,
    excluded: Vec<usize>,
    points: Vec<CusumPoint>,
    upper_signals: Vec<usize>,
    lower_signals: Vec<usize>,
}

#[derive(Serialize)]
struct CusumPoint {
    point: usize,
    id: String,
    phase: Phase,
    upper: f64,
    lower: f64,
}

#[derive(Serialize)]
struct ArlOut {
    shift_sigma: f64,
    n: usize,
    l: f64,
    arl: f64,
}

pub fn spc(args: &SpcArgs) -> anyhow::Result<()> {
    let report = report(args)?;
    if args.json {
        println!("{}", serde_json::to_string_pretty(&report)?);
    } else {
        print!("{}", text(&report));
    }
    Ok(())
}

fn report(args: &SpcArgs) -> anyhow::Result<Report> {
    let mut report = Report {
        file: args.data.as_ref().map(|f| f.display().to_string()),
        chart: args.chart.name(),
        charts: Vec::new(),
        cusum: None,
        capability: None,
        arl: Vec::new(),
    };
    if args.chart == ChartKind::Arl {
        for &shift_sigma in &args.shift {
            let arl = match &args.rules {
                Some(rules) => arl::with_rules(&RuleSet::parse(rules)?, shift_sigma, args.n)?,
                None => arl::shewhart(shift_sigma, args.n, args.l)?,
            };
            report.arl.push(ArlOut {
                shift_sigma,
                n: args.n,
                l: args.l,
                arl,
            });
        }
        return Ok(report);
    }
    let file = args
        .data
        .as_ref()
        .ok_or_else(|| SpcUsage("--data FILE.csv is needed for this chart".into()))?;
    let table = Table::read(file)?;
    let baseline = baseline(args, &table)?;
    let input = Input {
        args,
        table: &table,
        baseline: &baseline,
    };
    let built = match args.chart {
        ChartKind::XbarR | ChartKind::XbarS | ChartKind::Imr => {
            variables_report(&input, &mut report)
        }
        ChartKind::Ewma | ChartKind::Cusum | ChartKind::Capability => {
            smoothed_report(&input, &mut report)
        }
        _ => attributes_chart(args, &table, &baseline).and_then(|chart| {
            let rules = rules_or(args, RuleSet::beyond_limits())?;
            report.charts.push(chart_out(&chart, &table.ids(), &rules));
            Ok(())
        }),
    };
    built.map_err(|e| located(e, &table))?;
    Ok(report)
}

/// The engine's complaint about one point, turned into the file line it came from.
fn located(err: anyhow::Error, table: &Table) -> anyhow::Error {
    match err.downcast::<spc::SpcError>() {
        Ok(spc::SpcError::BadPoint { index, what }) => table.row_error(index, what).into(),
        Ok(spc::SpcError::SubgroupSize {
            index,
            size,
            expected,
        }) => table
            .row_error(
                index,
                format!("{size} values, but subgroups need {expected}"),
            )
            .into(),
        Ok(other) => other.into(),
        Err(other) => other,
    }
}

fn rules_or(args: &SpcArgs, default: RuleSet) -> Result<RuleSet, spc::SpcError> {
    args.rules.as_deref().map_or(Ok(default), RuleSet::parse)
}

fn baseline(args: &SpcArgs, table: &Table) -> anyhow::Result<Baseline> {
    let excluded = args
        .exclude
        .iter()
        .map(|&p| match p {
            1.. if p <= table.len() => Ok(p - 1),
            _ => Err(SpcUsage(format!(
                "--exclude {p}: points are numbered 1..={} in {}",
                table.len(),
                table.file.display()
            ))),
        })
        .collect::<Result<Vec<_>, _>>()?;
    let points = match args.phase1 {
        Some(n) => Some(BaselinePoints::First(n)),
        None => table.phase_one_rows()?.map(BaselinePoints::Indices),
    };
    let baseline = Baseline { points, excluded };
    if let Some(i) = baseline
        .excluded
        .iter()
        .find(|&&i| !baseline.is_phase_one(i))
    {
        return Err(SpcUsage(format!(
            "--exclude {}: that point is in phase II; only phase I points can be left out of the estimate",
            i + 1
        ))
        .into());
    }
    Ok(baseline)
}

/// The columns named by `--columns`, else all but the id and phase columns (at least one).
fn chosen_columns(args: &SpcArgs, table: &Table) -> Result<Vec<usize>, DataError> {
    let columns: Vec<usize> = if args.columns.is_empty() {
        table.data_columns()
    } else {
        args.columns
            .iter()
            .map(|name| table.named(name))
            .collect::<Result<_, _>>()?
    };
    if columns.is_empty() {
        return Err(table.columns_error("no data columns (only an id and a phase column)".into()));
    }
    Ok(columns)
}

/// The chosen columns as numbers.
fn data_columns(args: &SpcArgs, table: &Table) -> Result<Vec<Vec<f64>>, DataError> {
    chosen_columns(args, table)?
        .iter()
        .map(|&c| table.numbers(c, "a number", |_| true))
        .collect()
}

/// Rows of the data columns: one subgroup per row.
fn subgroups(columns: &[Vec<f64>]) -> Vec<Vec<f64>> {
    (0..columns[0].len())
        .map(|i| columns.iter().map(|c| c[i]).collect())
        .collect()
}

fn variables_report(input: &Input, report: &mut Report) -> anyhow::Result<()> {
    let (args, table, baseline) = (input.args, input.table, input.baseline);
    let columns = data_columns(args, table)?;
    let rules = rules_or(args, RuleSet::western_electric())?;
    let charts = match (args.chart, columns.len()) {
        (ChartKind::Imr, 1) => variables::imr(&columns[0], baseline, &rules)?,
        (ChartKind::Imr, n) => {
            return Err(SpcUsage(format!(
                "imr charts one column, but {n} were found: name it with --columns"
            ))
            .into());
        }
        (_, 1) => {
            return Err(SpcUsage(
                "X-bar charts need subgroups of 2..=25 columns; use --chart imr for one".into(),
            )
            .into());
        }
        (ChartKind::XbarR, _) => variables::xbar_r(&subgroups(&columns), baseline, &rules)?,
        _ => variables::xbar_s(&subgroups(&columns), baseline, &rules)?,
    };
    report
        .charts
        .push(chart_out(&charts.location, &table.ids(), &rules));
    report.charts.push(chart_out(
        &charts.spread,
        &table.ids(),
        &RuleSet::beyond_limits(),
    ));
    if args.spec.is_some() {
        report.capability = Some(capability_of(args, &columns, &charts.location)?);
    }
    Ok(())
}

/// EWMA, CUSUM and capability: on the X-bar/R (or, for one column, I-MR) estimate of the centre and sigma.
fn smoothed_report(input: &Input, report: &mut Report) -> anyhow::Result<()> {
    let (args, table, baseline) = (input.args, input.table, input.baseline);
    let columns = data_columns(args, table)?;
    let location = if columns.len() == 1 {
        variables::imr(&columns[0], baseline, &RuleSet::beyond_limits())?.location
    } else {
        variables::xbar_r(&subgroups(&columns), baseline, &RuleSet::beyond_limits())?.location
    };
    match args.chart {
        ChartKind::Ewma => {
            let params = ewma::EwmaParams {
                lambda: args.lambda,
                l: args.l,
            };
            report.charts.push(chart_out(
                &ewma::ewma(&location, params)?,
                &table.ids(),
                &RuleSet::beyond_limits(),
            ));
        }
        ChartKind::Cusum => {
            let params = cusum::CusumParams {
                k: args.k,
                h: args.h,
                head_start: args.head_start,
            };
            report.cusum = Some(cusum_out(&cusum::cusum(&location, params)?, &table.ids()));
        }
        _ => {
            if args.spec.is_none() {
                return Err(SpcUsage("--chart capability needs --spec LSL,USL".into()).into());
            }
            report.capability = Some(capability_of(args, &columns, &location)?);
        }
    }
    Ok(())
}

/// Capability of the baseline's observations with the location chart's sigma within.
fn capability_of(
    args: &SpcArgs,
    columns: &[Vec<f64>],
    location: &Chart,
) -> anyhow::Result<capability::Capability> {
    let spec = args.spec.as_deref().unwrap_or_default();
    let bad = || {
        SpcUsage(format!(
            "--spec {spec}: expected LSL,USL with either one empty (e.g. 73.95,74.05 or ,74.05)"
        ))
    };
    let (lsl, usl) = spec.split_once(',').ok_or_else(bad)?;
    let limit = |s: &str| -> Result<Option<f64>, SpcUsage> {
        let s = s.trim();
        if s.is_empty() {
            Ok(None)
        } else {
            s.parse().map(Some).map_err(|_| bad())
        }
    };
    let spec = capability::Spec {
        lsl: limit(lsl)?,
        usl: limit(usl)?,
        target: args.target,
    };
    let observations: Vec<f64> = location
        .baseline
        .iter()
        .flat_map(|&i| columns.iter().map(move |c| c[i]))
        .collect();
    Ok(capability::capability(
        &observations,
        location.sigma,
        spec,
        args.confidence,
    )?)
}

fn attributes_chart(args: &SpcArgs, table: &Table, baseline: &Baseline) -> anyhow::Result<Chart> {
    let (count_col, size_col) = count_columns(args, table)?;
    let counts = table.numbers(count_col, "a count >= 0", |v| v >= 0.0)?;
    let rules = rules_or(args, RuleSet::beyond_limits())?;
    if args.chart == ChartKind::C {
        return Ok(attributes::c(&counts, baseline, &rules)?);
    }
    let size_col = size_col.ok_or_else(|| SpcUsage(format!(
        "{}: the {} chart needs a sample-size column beside the counts (name both with --columns COUNT,SIZE)",
        table.file.display(),
        args.chart.name()
    )))?;
    let sizes = table.numbers(size_col, "a sample size > 0", |v| v > 0.0)?;
    let data = attributes::Counts {
        counts: &counts,
        sizes: &sizes,
    };
    Ok(match args.chart {
        ChartKind::P => attributes::p(data, baseline, &rules)?,
        ChartKind::Np => attributes::np(data, baseline, &rules)?,
        ChartKind::U => attributes::u(data, baseline, &rules)?,
        ChartKind::LaneyP => attributes::laney_p(data, baseline, &rules)?,
        _ => attributes::laney_u(data, baseline, &rules)?,
    })
}

/// Header names taken as the sample-size column.
const SIZE_NAMES: [&str; 8] = [
    "n",
    "size",
    "sample_size",
    "inspected",
    "units",
    "boards",
    "parts",
    "total",
];

/// The count column and the size column (if any).
fn count_columns(args: &SpcArgs, table: &Table) -> Result<(usize, Option<usize>), DataError> {
    let columns = chosen_columns(args, table)?;
    let is_size = |&c: &usize| SIZE_NAMES.contains(&table.headers[c].to_ascii_lowercase().as_str());
    match columns[..] {
        [count] => Ok((count, None)),
        [a, b] if args.columns.is_empty() && is_size(&a) && !is_size(&b) => Ok((b, Some(a))),
        [count, size] => Ok((count, Some(size))),
        _ => Err(table.columns_error(format!(
            "attributes charts need a count column and a size column, found {}: name them with --columns COUNT,SIZE",
            columns.iter().map(|&c| table.headers[c].as_str()).collect::<Vec<_>>().join(", ")
        ))),
    }
}

fn chart_out(chart: &Chart, ids: &[String], rules: &RuleSet) -> ChartOut {
    let id = |i: usize| ids.get(i).cloned().unwrap_or_default();
    ChartOut {
        kind: chart.kind,
        center: chart.center,
        sigma: chart.sigma,
        baseline: chart.baseline.iter().map(|i| i + 1).collect(),
        excluded: chart.excluded.iter().map(|i| i + 1).collect(),
        rules: rules
            .rules
            .iter()
            .map(|r| format!("{}:{}", r.label, r.k))
            .collect(),
        points: chart
            .points
            .iter()
            .enumerate()
            .map(|(i, p)| PointOut {
                point: i + 1,
                id: id(i),
                phase: p.phase,
                statistic: p.statistic,
                center: p.center,
                lcl: p.lcl,
                ucl: p.ucl,
                excluded: p.excluded,
            })
            .collect(),
        violations: chart
            .violations
            .iter()
            .map(|v| ViolationOut {
                rule: v.rule.clone(),
                point: v.index + 1,
                id: id(v.index),
            })
            .collect(),
    }
}

fn cusum_out(c: &cusum::Cusum, ids: &[String]) -> CusumOut {
    let from_one = |v: &[usize]| v.iter().map(|i| i + 1).collect();
    CusumOut {
        k: c.params.k,
        h: c.params.h,
        head_start: c.params.head_start,
        center: c.center,
        baseline: from_one(&c.baseline),
        excluded: from_one(&c.excluded),
        points: (0..c.upper.len())
            .map(|i| CusumPoint {
                point: i + 1,
                id: ids[i].clone(),
                phase: c.phases[i],
                upper: c.upper[i],
                lower: c.lower[i],
            })
            .collect(),
        upper_signals: from_one(&c.upper_signals),
        lower_signals: from_one(&c.lower_signals),
    }
}

/// A number to 7 significant digits; `-` for none.
fn num(x: f64) -> String {
    if !x.is_finite() {
        return "-".into();
    }
    let digits = if x == 0.0 {
        6
    } else {
        (6 - x.abs().log10().floor() as i32).clamp(0, 10) as usize
    };
    format!("{x:.digits$}")
}

fn text(report: &Report) -> String {
    let file = report.file.as_deref().unwrap_or("-");
    let mut out: String = report.charts.iter().map(|c| chart_text(c, file)).collect();
    if let Some(c) = &report.cusum {
        out.push_str(&cusum_text(c, file));
    }
    if let Some(cap) = &report.capability {
        out.push_str(&capability_text(cap));
    }
    for a in &report.arl {
        let _ = writeln!(
            out,
            "ARL at a {} sigma shift, n {}, L {}: {:.1}",
            a.shift_sigma, a.n, a.l, a.arl
        );
    }
    out
}

/// One chart as a table: a point per line with the rules that fired there (`*`: excluded from the estimate).
fn chart_text(c: &ChartOut, file: &str) -> String {
    let excluded = if c.excluded.is_empty() {
        "none".into()
    } else {
        format!("{:?} (marked *)", c.excluded)
    };
    let mut out = format!(
        "{} chart of {file}: centre {}, sigma {}; estimated on {} points, excluded {excluded}\n",
        c.kind,
        num(c.center),
        num(c.sigma),
        c.baseline.len()
    );
    let _ = writeln!(
        out,
        "{:>5} {:>8} {:>5} {:>12} {:>12} {:>12} {:>12}  rules",
        "point", "id", "phase", "statistic", "LCL", "CL", "UCL"
    );
    for p in &c.points {
        let fired: Vec<&str> = c
            .violations
            .iter()
            .filter(|v| v.point == p.point)
            .map(|v| v.rule.as_str())
            .collect();
        let phase = if p.phase == Phase::One { "I" } else { "II" };
        let mark = if p.excluded { "*" } else { "" };
        let _ = writeln!(
            out,
            "{:>5} {:>8} {phase:>5} {:>12} {:>12} {:>12} {:>12}  {}{mark}",
            p.point,
            p.id,
            num(p.statistic),
            num(p.lcl),
            num(p.center),
            num(p.ucl),
            fired.join(",")
        );
    }
    let _ = writeln!(out, "{} violation(s)\n", c.violations.len());
    out
}

fn cusum_text(c: &CusumOut, file: &str) -> String {
    let mut out = format!(
        "CUSUM of {file}: centre {}, k {}, h {}, head start {}\n",
        num(c.center),
        c.k,
        c.h,
        c.head_start
    );
    let _ = writeln!(out, "{:>5} {:>8} {:>12} {:>12}", "point", "id", "C+", "C-");
    for p in &c.points {
        let _ = writeln!(
            out,
            "{:>5} {:>8} {:>12} {:>12}",
            p.point,
            p.id,
            num(p.upper),
            num(p.lower)
        );
    }
    let _ = writeln!(
        out,
        "upper signals {:?}, lower signals {:?}",
        c.upper_signals, c.lower_signals
    );
    out
}

fn capability_text(cap: &capability::Capability) -> String {
    let mut out = format!(
        "capability: n {}, mean {}, sigma within {}, overall {}; {:.0}% intervals\n",
        cap.n,
        num(cap.mean),
        num(cap.sigma_within),
        num(cap.sigma_overall),
        cap.confidence * 100.0
    );
    let rows = [
        ("Cp", cap.within.cp),
        ("Cpl", cap.within.cpl),
        ("Cpu", cap.within.cpu),
        ("Cpk", cap.within.cpk),
        ("Cpm", cap.within.cpm),
        ("Pp", cap.overall.cp),
        ("Ppl", cap.overall.cpl),
        ("Ppu", cap.overall.cpu),
        ("Ppk", cap.overall.cpk),
    ];
    for (name, index) in rows {
        if let Some(i) = index {
            let _ = writeln!(
                out,
                "{name:>4} {:.4} [{:.4}, {:.4}]",
                i.value, i.lower, i.upper
            );
        }
    }
    let pct = |f: Option<f64>| f.map_or("-".into(), |f| num(f * 1e6));
    let _ = writeln!(
        out,
        "out of spec (ppm): expected {} below, {} above; observed {} below, {} above",
        pct(cap.expected.below_lsl),
        pct(cap.expected.above_usl),
        pct(cap.observed.below_lsl),
        pct(cap.observed.above_usl)
    );
    out
}
