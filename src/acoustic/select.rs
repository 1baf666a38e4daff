//! `station train audio`'s comparison: every candidate detector (the slice Gaussian, k-NN, GMM and the frame
//! Gaussian) with every clip aggregation is scored out of fold on the normal training clips and on anomalies
//! made from those clips ([`super::stress`]) plus any anomalous recordings given for validation; the candidate
//! with the best validation AUC (then pAUC) is refitted on all the normal sound and kept.
//!
//! Folds are contiguous groups of recordings (5, or one per recording when there are fewer; the clips of a single
//! recording when there is only one), so overlapping clips of one recording never validate each other. The frame
//! embedding (standardisation and PCA) is fitted once on all training frames: it is unsupervised, and refitting
//! it per fold would only add time.

use super::AcousticError;
use super::autoencoder::{AeOptions, Autoencoder};
use super::clip::{Aggregation, Standardiser};
use super::detectors::Kind;
use super::evaluate;
use super::frames::{BandNorm, Embedding, FrameExtractor, FrameParams, MOD_DIMS};
use super::gaussian::Gaussian;
use super::scoring::{Scoring, sub_windows};
use super::stress::{self, Change};
use crate::audio::features::{Extractor, FeatureParams};

/// A clip of normal training sound.
pub struct Clip<'a> {
    /// Which recording it was cut from (folds never split a recording).
    pub recording: usize,
    pub condition: Option<String>,
    pub samples: &'a [f32],
}

/// A candidate detector.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Candidate {
    Slice,
    Frames(Kind),
    /// A detector over whole-clip embeddings of the mel bands ([`BandNorm::clip_embedding`]).
    Clip(Kind),
    /// A detector over whole-clip embeddings of the FFT bins.
    Spectrum(Kind),
    /// A detector over the clip's rhythm alone (the modulation part of the mel embedding).
    Rhythm(Kind),
    /// The dense autoencoder of stacked log-mel frames.
    Autoencoder,
}

impl Candidate {
    pub const ALL: [Candidate; 14] = [
        Candidate::Spectrum(Kind::Zmax),
        Candidate::Spectrum(Kind::Knn),
        Candidate::Rhythm(Kind::Zmax),
        Candidate::Rhythm(Kind::Knn),
        Candidate::Rhythm(Kind::Gaussian),
        Candidate::Clip(Kind::Zmax),
        Candidate::Clip(Kind::Knn),
        Candidate::Clip(Kind::Gaussian),
        Candidate::Frames(Kind::Zmax),
        Candidate::Frames(Kind::Knn),
        Candidate::Frames(Kind::Gmm),
        Candidate::Frames(Kind::Gaussian),
        Candidate::Slice,
        Candidate::Autoencoder,
    ];

    pub fn name(self) -> &'static str {
        match self {
            Candidate::Slice => "slice-gaussian",
            Candidate::Autoencoder => "autoencoder",
            Candidate::Frames(k) => k.name(),
            Candidate::Clip(Kind::Knn) => "clip-knn",
            Candidate::Clip(Kind::Gaussian) => "clip-gaussian",
            Candidate::Clip(Kind::Gmm) => "clip-gmm",
            Candidate::Clip(Kind::Zmax) => "clip-zmax",
            Candidate::Spectrum(Kind::Knn) => "spectrum-knn",
            Candidate::Spectrum(Kind::Gaussian) => "spectrum-gaussian",
            Candidate::Spectrum(Kind::Gmm) => "spectrum-gmm",
            Candidate::Spectrum(Kind::Zmax) => "spectrum-zmax",
            Candidate::Rhythm(Kind::Knn) => "rhythm-knn",
            Candidate::Rhythm(Kind::Gaussian) => "rhythm-gaussian",
            Candidate::Rhythm(Kind::Gmm) => "rhythm-gmm",
            Candidate::Rhythm(Kind::Zmax) => "rhythm-zmax",
        }
    }

    /// Which features the candidate scores (candidates of one family see the same things).
    fn family(self) -> usize {
        match self {
            Candidate::Slice => 0,
            Candidate::Frames(_) => 1,
            Candidate::Clip(_) => 2,
            Candidate::Spectrum(_) => 3,
            Candidate::Rhythm(_) => 4,
            Candidate::Autoencoder => 5,
        }
    }

    pub fn parse(s: &str) -> Option<Candidate> {
        Candidate::ALL.into_iter().find(|c| c.name() == s)
    }
}

pub struct SelectOptions {
    pub features: FeatureParams,
    pub frames: FrameParams,
    /// PCA dimensions of the frame embedding.
    pub embedding_dims: usize,
    /// Sub-window of the slice detector in long clips.
    pub slice_sub_window_ms: u64,
    pub candidates: Vec<Candidate>,
    /// The threshold is this factor x the highest standardised out-of-fold score of the normal clips.
    pub threshold_margin: f32,
    pub seed: u64,
}

impl SelectOptions {
    /// Defaults at a sample rate: every candidate, a 32-axis embedding, 500 ms slice sub-windows, threshold
    /// margin 1.25.
    pub fn for_rate(rate_hz: u32) -> SelectOptions {
        SelectOptions {
            features: FeatureParams::for_rate(rate_hz),
            frames: FrameParams::for_rate(rate_hz),
            embedding_dims: 32,
            slice_sub_window_ms: 500,
            candidates: Candidate::ALL.to_vec(),
            threshold_margin: 1.25,
            seed: 0x000A_0D10,
        }
    }
}

/// One line of the comparison table.
#[derive(Debug, Clone, serde::Serialize)]
pub struct Compared {
    pub detector: String,
    pub aggregation: String,
    pub auc: f64,
    pub pauc: f64,
}

pub struct Selected {
    pub scoring: Scoring,
    pub threshold: f32,
    pub method: String,
    pub table: Vec<Compared>,
    /// Standardised out-of-fold scores of the normal clips.
    pub oof: Vec<f32>,
}

/// What a family of detectors is fitted on and scores: per normal clip, the vectors to fit on; per normal clip
/// and per anomaly, the vectors whose scores make its curve.
#[derive(Default)]
struct Views {
    /// Empty when the detectors are fitted on the normal clips' own vectors (`normal`).
    train: Vec<Vec<Vec<f32>>>,
    normal: Vec<Vec<Vec<f32>>>,
    anomalous: Vec<Vec<Vec<f32>>>,
}

impl Views {
    /// Views whose detectors are fitted on the normal clips' own vectors.
    fn same(normal: Vec<Vec<Vec<f32>>>, anomalous: Vec<Vec<Vec<f32>>>) -> Views {
        Views {
            train: Vec::new(),
            normal,
            anomalous,
        }
    }

    /// What the detectors are fitted on, per normal clip.
    fn train(&self) -> &[Vec<Vec<f32>>] {
        if self.train.is_empty() {
            &self.normal
        } else {
            &self.train
        }
    }
}

/// Score curves of the normal clips (out of fold) and of the anomalies.
struct Curves {
    normal: Vec<Vec<f32>>,
    anomalous: Vec<Vec<f32>>,
}

/// Below this many normal clips, clip detectors are fitted on quarter-length sub-clips (more, noisier points).
const FEW_CLIPS: usize = 16;

/// A validation anomaly: the fold that scores it, its condition, its sound.
type Anomaly = (usize, Option<String>, Vec<f32>);

/// Anomalies: one change (in turn, at half the stress set's strength: a normal clip already holds the factory's
/// noise, which the change then also moves) made to every normal clip, scored by that clip's fold; then the given
/// ones, spread over the folds.
fn validation_anomalies(
    clips: &[Clip],
    fold_of: &[usize],
    n_folds: usize,
    given: &[(Option<String>, Vec<f32>)],
    opts: &SelectOptions,
) -> Vec<Anomaly> {
    let rate = opts.features.sample_rate_hz;
    let mut anomalies: Vec<Anomaly> = clips
        .iter()
        .enumerate()
        .map(|(i, c)| {
            let change = Change::ALL[i % Change::ALL.len()];
            let sound = stress::apply_scaled(
                c.samples,
                rate,
                change,
                opts.seed ^ i as u64,
                VALIDATION_STRENGTH,
            );
            (fold_of[i], c.condition.clone(), sound)
        })
        .collect();
    anomalies.extend(
        given
            .iter()
            .enumerate()
            .map(|(i, (cond, s))| (i % n_folds, cond.clone(), s.clone())),
    );
    anomalies
}

/// Every family's views, and what was fitted to make them.
#[derive(Default)]
struct AllViews {
    embedding: Option<Embedding>,
    band_norm: Option<BandNorm>,
    spectrum_norm: Option<BandNorm>,
    frames: Views,
    clip: Views,
    spectrum: Views,
    rhythm: Views,
    slice: Views,
    stacked: Views,
}

impl AllViews {
    /// The views of the families the candidates need.
    fn build(
        clips: &[Clip],
        anomalies: &[Anomaly],
        opts: &SelectOptions,
    ) -> Result<AllViews, AcousticError> {
        let wants = |f: usize| opts.candidates.iter().any(|c| c.family() == f);
        let mut ex = FrameExtractor::new(&opts.frames);
        let mut all = AllViews::default();
        if wants(1) || wants(5) {
            // Stacked frames once, for the autoencoder as they are and for the frame detectors embedded.
            let normal: Vec<Vec<Vec<f32>>> = clips.iter().map(|c| ex.stacked(c.samples)).collect();
            let anomalous: Vec<Vec<Vec<f32>>> =
                anomalies.iter().map(|a| ex.stacked(&a.2)).collect();
            if wants(1) {
                let frames: Vec<&[f32]> = normal.iter().flatten().map(Vec::as_slice).collect();
                let step = frames.len().div_ceil(20_000).max(1);
                let sample: Vec<&[f32]> = frames.iter().step_by(step).copied().collect();
                let embedding = Embedding::fit(&sample, opts.embedding_dims)
                    .map_err(AcousticError::Training)?;
                let project = |frames: &Vec<Vec<f32>>| -> Vec<Vec<f32>> {
                    frames.iter().map(|f| embedding.project(f)).collect()
                };
                all.frames = Views::same(
                    normal.iter().map(project).collect(),
                    anomalous.iter().map(project).collect(),
                );
                all.embedding = Some(embedding);
            }
            if wants(5) {
                all.stacked = Views::same(normal, anomalous);
            }
        }
        if wants(2) || wants(4) {
            (all.band_norm, all.clip) =
                whole_clip_views(clips, anomalies, &mut ex, FrameExtractor::log_mel, false)?;
            let tail = |v: &[Vec<Vec<f32>>]| -> Vec<Vec<Vec<f32>>> {
                v.iter()
                    .map(|c| {
                        c.iter()
                            .map(|e| e[e.len().saturating_sub(MOD_DIMS)..].to_vec())
                            .collect()
                    })
                    .collect()
            };
            all.rhythm = Views {
                train: tail(all.clip.train()),
                normal: tail(&all.clip.normal),
                anomalous: tail(&all.clip.anomalous),
            };
        }
        if wants(3) {
            (all.spectrum_norm, all.spectrum) =
                whole_clip_views(clips, anomalies, &mut ex, FrameExtractor::log_power, true)?;
        }
        if wants(0) {
            let mut slice_ex = Extractor::new(&opts.features);
            let (sub_ms, rate) = (opts.slice_sub_window_ms, opts.features.sample_rate_hz);
            let mut features = |s: &[f32]| -> Vec<Vec<f32>> {
                sub_windows(s, sub_ms, rate)
                    .into_iter()
                    .map(|w| slice_ex.features(w))
                    .collect()
            };
            let normal: Vec<Vec<Vec<f32>>> = clips.iter().map(|c| features(c.samples)).collect();
            let anomalous = anomalies.iter().map(|a| features(&a.2)).collect();
            all.slice = Views::same(normal, anomalous);
        }
        Ok(all)
    }

    fn of(&self, c: Candidate) -> &Views {
        match c {
            Candidate::Slice => &self.slice,
            Candidate::Frames(_) => &self.frames,
            Candidate::Clip(_) => &self.clip,
            Candidate::Spectrum(_) => &self.spectrum,
            Candidate::Rhythm(_) => &self.rhythm,
            Candidate::Autoencoder => &self.stacked,
        }
    }
}

/// A detector fitted on one fold, as a scoring function.
type FoldScorer = Box<dyn Fn(&[f32]) -> f32>;

/// A candidate's detector fitted on a fold's normal frames, as a scoring function.
fn fit_candidate(
    candidate: Candidate,
    train: &[Vec<&[f32]>],
    seed: u64,
) -> Result<FoldScorer, String> {
    Ok(match candidate {
        Candidate::Frames(kind)
        | Candidate::Clip(kind)
        | Candidate::Spectrum(kind)
        | Candidate::Rhythm(kind) => {
            let d = kind.fit(train, seed)?;
            Box::new(move |e: &[f32]| d.score(e))
        }
        Candidate::Slice => {
            let rows: Vec<Vec<f32>> = train.iter().flatten().map(|f| f.to_vec()).collect();
            let g = Gaussian::fit(&rows)?;
            Box::new(move |f: &[f32]| g.score(f))
        }
        Candidate::Autoencoder => {
            let frames: Vec<&[f32]> = train.iter().flatten().copied().collect();
            let ae = Autoencoder::fit(&frames, &ae_options(seed))?;
            Box::new(move |f: &[f32]| ae.score(f))
        }
    })
}

/// Trains every candidate, compares them and returns the best, refitted on all the clips.
pub fn select(
    clips: &[Clip],
    validation_anomalous: &[(Option<String>, Vec<f32>)],
    opts: &SelectOptions,
) -> Result<Selected, AcousticError> {
    let rate = opts.features.sample_rate_hz;
    let fold_of = folds(clips);
    let n_folds = fold_of.iter().max().map_or(0, |m| m + 1);
    if n_folds < 2 {
        return Err(AcousticError::Training(format!(
            "need at least 2 normal clips to validate, got {}: give more or longer normal recordings",
            clips.len()
        )));
    }
    let anomalies = validation_anomalies(clips, &fold_of, n_folds, validation_anomalous, opts);
    let conditions = Conditions {
        normal: clips.iter().map(|c| c.condition.clone()).collect(),
        anomalous: anomalies.iter().map(|a| a.1.clone()).collect(),
    };
    let views = AllViews::build(clips, &anomalies, opts)?;
    let frame_smooth = smooth_frames(500, opts.frames.hop, rate);
    let slice_smooth = smooth_frames(
        500,
        (opts.slice_sub_window_ms * u64::from(rate) / 2000).max(1) as usize,
        rate,
    );
    let mut table = Vec::new();
    let mut entries: Vec<Entry> = Vec::new();
    for &candidate in &opts.candidates {
        let (smooth, aggregations): (usize, &[Aggregation]) = match candidate {
            Candidate::Slice => (slice_smooth, &Aggregation::CHOICES),
            Candidate::Frames(_) | Candidate::Autoencoder => (frame_smooth, &Aggregation::CHOICES),
            _ => (1, &[Aggregation::Max]),
        };
        let fit = |train: &[Vec<&[f32]>]| fit_candidate(candidate, train, opts.seed);
        let curves = oof_curves(
            &fold_of,
            n_folds,
            &anomalies,
            views.of(candidate),
            &conditions.normal,
            fit,
        )?;
        for &aggregation in aggregations {
            let raw_n: Vec<f32> = curves
                .normal
                .iter()
                .map(|c| aggregation.apply(c, smooth))
                .collect();
            let raw_a: Vec<f32> = curves
                .anomalous
                .iter()
                .map(|c| aggregation.apply(c, smooth))
                .collect();
            let Some((zn, za, st)) = conditions.standardise(&raw_n, &raw_a) else {
                continue;
            };
            let (auc, pauc) = aucs(&zn, &za);
            let entry = Entry {
                candidate,
                aggregation,
                smooth,
                auc,
                pauc,
                zn,
                za,
                standardiser: st,
            };
            table.push(Compared {
                detector: candidate.name().into(),
                aggregation: entry.label().into(),
                auc,
                pauc,
            });
            entries.push(entry);
        }
    }
    entries.sort_by(|a, b| {
        (b.auc, b.pauc)
            .partial_cmp(&(a.auc, a.pauc))
            .unwrap_or(std::cmp::Ordering::Equal)
    });
    let Some(top) = entries.first() else {
        return Err(AcousticError::Training(
            "no detector could be validated".into(),
        ));
    };
    // The one-standard-error rule: the first candidate (in the order given, simplest and fastest first) whose
    // AUC is within one standard error of the best, since with few validation clips the best AUC is partly
    // luck.
    let se = auc_standard_error(top.auc, conditions.normal.len(), conditions.anomalous.len());
    let order = |e: &Entry| {
        opts.candidates
            .iter()
            .position(|c| *c == e.candidate)
            .unwrap_or(usize::MAX)
    };
    let pick = (0..entries.len())
        .filter(|&i| entries[i].auc >= top.auc - se)
        .min_by_key(|&i| (order(&entries[i]), i))
        .unwrap_or(0);
    let mut chosen = Chosen {
        members: vec![pick],
        auc: entries[pick].auc,
        pauc: entries[pick].pauc,
        oof: entries[pick].zn.clone(),
        ensemble: None,
    };
    // A pair is more complex than one detector: it must beat the best one by more than the standard error.
    best_pair(
        &entries,
        &conditions,
        top.auc + se.max(ENSEMBLE_GAIN),
        &mut table,
        &mut chosen,
    );
    let mut fitted = chosen
        .members
        .iter()
        .map(|&m| refit(&entries[m], &views, &conditions.normal, opts))
        .collect::<Result<Vec<_>, _>>()?;
    let scoring = match chosen.ensemble {
        Some(st) => Scoring::Ensemble {
            members: fitted,
            standardiser: st,
        },
        None => fitted.remove(0),
    };
    let max = chosen.oof.iter().copied().fold(f32::MIN, f32::max);
    let threshold = max * opts.threshold_margin;
    let method = format!(
        "{} x the highest out-of-fold score ({max:.3}) of the {} normal clips (scores relative to the typical normal \
         clip of their condition, 1.0 = typical); chosen: {} with validation AUC {:.4}, pAUC {:.4}",
        opts.threshold_margin,
        clips.len(),
        scoring.describe(),
        chosen.auc,
        chosen.pauc
    );
    Ok(Selected {
        scoring,
        threshold,
        method,
        table,
        oof: chosen.oof,
    })
}

/// The conditions of the normal clips and of the anomalies.
struct Conditions {
    normal: Vec<Option<String>>,
    anomalous: Vec<Option<String>>,
}

impl Conditions {
    /// Standardised normal and anomalous scores, with the standardiser fitted on the normal ones.
    fn standardise(
        &self,
        normal: &[f32],
        anomalous: &[f32],
    ) -> Option<(Vec<f32>, Vec<f32>, Standardiser)> {
        let st = Standardiser::fit(normal, &self.normal)?;
        let z = |raw: &[f32], conds: &[Option<String>]| -> Vec<f32> {
            raw.iter()
                .zip(conds)
                .map(|(s, c)| st.apply(*s, c.as_deref()))
                .collect()
        };
        Some((z(normal, &self.normal), z(anomalous, &self.anomalous), st))
    }
}

/// What training keeps: one entry, or a pair with the ensemble's standardiser.
struct Chosen {
    members: Vec<usize>,
    auc: f64,
    pauc: f64,
    oof: Vec<f32>,
    ensemble: Option<Standardiser>,
}

/// Pairs of the best detectors that see different features, each clip scored by the larger of the two
/// standardised scores (one detector hears a tone, another a rhythm): kept if its validation AUC clears `bar`.
fn best_pair(
    entries: &[Entry],
    conditions: &Conditions,
    bar: f64,
    table: &mut Vec<Compared>,
    chosen: &mut Chosen,
) {
    let leaders = entries.len().min(ENSEMBLE_FROM);
    let max =
        |a: &[f32], b: &[f32]| -> Vec<f32> { a.iter().zip(b).map(|(x, y)| x.max(*y)).collect() };
    for i in 0..leaders {
        for j in (i + 1..leaders)
            .filter(|j| entries[*j].candidate.family() != entries[i].candidate.family())
        {
            let (a, b) = (&entries[i], &entries[j]);
            let Some((zn, za, st)) = conditions.standardise(&max(&a.zn, &b.zn), &max(&a.za, &b.za))
            else {
                continue;
            };
            let (auc, pauc) = aucs(&zn, &za);
            table.push(Compared {
                detector: format!("max of {} and {}", a.candidate.name(), b.candidate.name()),
                aggregation: format!("{} / {}", a.label(), b.label()),
                auc,
                pauc,
            });
            if auc > bar && (auc, pauc) > (chosen.auc, chosen.pauc) {
                *chosen = Chosen {
                    members: vec![i, j],
                    auc,
                    pauc,
                    oof: zn,
                    ensemble: Some(st),
                };
            }
        }
    }
}

/// An entry's detector refitted on all the normal clips, with the standardiser of its out-of-fold scores.
fn refit(
    e: &Entry,
    views: &AllViews,
    conditions: &[Option<String>],
    opts: &SelectOptions,
) -> Result<Scoring, AcousticError> {
    let missing =
        || AcousticError::Training("internal: the winner's features were not computed".into());
    fn all<'a>(v: &'a Views, conditions: &[Option<String>]) -> Vec<Vec<&'a [f32]>> {
        by_condition(v.train(), conditions, |_| true)
    }
    let standardiser = Some(e.standardiser.clone());
    Ok(match e.candidate {
        Candidate::Frames(kind) => Scoring::Frames {
            frames: opts.frames.clone(),
            embedding: views.embedding.clone().ok_or_else(missing)?,
            scorer: kind
                .fit(&all(&views.frames, conditions), opts.seed)
                .map_err(AcousticError::Training)?,
            aggregation: e.aggregation,
            smooth: e.smooth,
            standardiser,
        },
        Candidate::Clip(kind) | Candidate::Spectrum(kind) | Candidate::Rhythm(kind) => {
            let spectrum = matches!(e.candidate, Candidate::Spectrum(_));
            let norm = if spectrum {
                &views.spectrum_norm
            } else {
                &views.band_norm
            };
            Scoring::Clip {
                frames: opts.frames.clone(),
                spectrum,
                rhythm: matches!(e.candidate, Candidate::Rhythm(_)),
                rhythm_lines: true,
                band_norm: norm.clone().ok_or_else(missing)?,
                scorer: kind
                    .fit(&all(views.of(e.candidate), conditions), opts.seed)
                    .map_err(AcousticError::Training)?,
                standardiser,
            }
        }
        Candidate::Autoencoder => {
            let frames: Vec<&[f32]> = views
                .stacked
                .train()
                .iter()
                .flatten()
                .map(Vec::as_slice)
                .collect();
            Scoring::Autoencoder {
                frames: opts.frames.clone(),
                model: Autoencoder::fit(&frames, &ae_options(opts.seed))
                    .map_err(AcousticError::Training)?,
                aggregation: e.aggregation,
                smooth: e.smooth,
                standardiser,
            }
        }
        Candidate::Slice => {
            let rows: Vec<Vec<f32>> = views.slice.train().iter().flatten().cloned().collect();
            Scoring::Slice {
                gaussian: Gaussian::fit(&rows).map_err(AcousticError::Training)?,
                sub_window_ms: opts.slice_sub_window_ms,
                aggregation: e.aggregation,
                smooth: e.smooth,
                standardiser,
            }
        }
    })
}

/// The autoencoder's shape and training: 320 -> 64 -> 8 -> 64 -> 320 on up to 2,048 frames, 15 epochs (a few
/// seconds per fold on one core).
fn ae_options(seed: u64) -> AeOptions {
    AeOptions {
        hidden: 64,
        bottleneck: 8,
        epochs: 15,
        max_frames: 2048,
        seed,
        ..AeOptions::default()
    }
}

/// Strength of the validation anomalies against the stress set's.
const VALIDATION_STRENGTH: f32 = 0.5;
/// Ensembles are tried among this many best single detectors.
const ENSEMBLE_FROM: usize = 6;
/// An ensemble must validate at least this much better (AUC) than the best single detector to be kept.
const ENSEMBLE_GAIN: f64 = 0.005;

/// The standard error of an AUC from `n` normal and `m` anomalous scores (Hanley and McNeil, 1982).
fn auc_standard_error(auc: f64, n: usize, m: usize) -> f64 {
    let (n, m) = (n.max(1) as f64, m.max(1) as f64);
    let q1 = auc / (2.0 - auc);
    let q2 = 2.0 * auc * auc / (1.0 + auc);
    ((auc * (1.0 - auc) + (m - 1.0) * (q1 - auc * auc) + (n - 1.0) * (q2 - auc * auc)) / (n * m))
        .max(0.0)
        .sqrt()
}

fn aucs(normal: &[f32], anomalous: &[f32]) -> (f64, f64) {
    let roc = evaluate::roc(normal, anomalous);
    (
        evaluate::partial_auc(&roc, 1.0),
        evaluate::partial_auc(&roc, 0.1),
    )
}

/// One validated detector with one aggregation: its standardised out-of-fold normal scores, the anomalies'
/// scores, and the standardiser.
struct Entry {
    candidate: Candidate,
    aggregation: Aggregation,
    smooth: usize,
    auc: f64,
    pauc: f64,
    zn: Vec<f32>,
    za: Vec<f32>,
    standardiser: Standardiser,
}

impl Entry {
    fn label(&self) -> &'static str {
        match self.candidate {
            Candidate::Clip(_) | Candidate::Spectrum(_) | Candidate::Rhythm(_) => "whole clip",
            _ => self.aggregation.name(),
        }
    }
}

/// Whole-clip views over the frames `frames_of` gives (log-mel or log-power): the band statistics of all normal
/// frames, then each clip's embedding; with few clips, clip detectors are fitted on quarter-length sub-clips.
fn whole_clip_views(
    clips: &[Clip],
    anomalies: &[Anomaly],
    ex: &mut FrameExtractor,
    frames_of: fn(&mut FrameExtractor, &[f32]) -> Vec<Vec<f32>>,
    contrast: bool,
) -> Result<(Option<BandNorm>, Views), AcousticError> {
    let rate = ex.params().frame_rate_hz();
    let frames: Vec<Vec<Vec<f32>>> = clips.iter().map(|c| frames_of(ex, c.samples)).collect();
    let all: Vec<&[f32]> = frames.iter().flatten().map(Vec::as_slice).collect();
    let norm = BandNorm::fit(&all).map_err(AcousticError::Training)?;
    let train = frames
        .iter()
        .map(|m| {
            if clips.len() >= FEW_CLIPS || m.len() < 8 {
                vec![norm.clip_embedding(m, contrast, rate)]
            } else {
                let len = m.len() / 4;
                (0..=(m.len() - len) / (len / 2))
                    .map(|k| {
                        norm.clip_embedding(&m[k * len / 2..k * len / 2 + len], contrast, rate)
                    })
                    .collect()
            }
        })
        .collect();
    let normal = frames
        .iter()
        .map(|m| vec![norm.clip_embedding(m, contrast, rate)])
        .collect();
    let anomalous = anomalies
        .iter()
        .map(|a| vec![norm.clip_embedding(&frames_of(ex, &a.2), contrast, rate)])
        .collect();
    Ok((
        Some(norm),
        Views {
            train,
            normal,
            anomalous,
        },
    ))
}

/// The fold of each clip: contiguous groups of recordings (or of clips, with one recording).
fn folds(clips: &[Clip]) -> Vec<usize> {
    let recordings = clips.iter().map(|c| c.recording).max().map_or(0, |m| m + 1);
    let (unit, units): (Box<dyn Fn(usize) -> usize>, usize) = if recordings >= 2 {
        (Box::new(|i: usize| clips[i].recording), recordings)
    } else {
        (Box::new(|i: usize| i), clips.len())
    };
    let n = units.min(5);
    (0..clips.len())
        .map(|i| unit(i) * n / units.max(1))
        .collect()
}

/// Moving-average length of the smoothed maximum: `ms` of frames at `hop` samples.
fn smooth_frames(ms: u64, hop: usize, rate: u32) -> usize {
    ((ms * u64::from(rate) / 1000) as usize / hop.max(1)).max(1)
}

/// The frames of the clips `keep` selects, grouped by condition.
fn by_condition<'a>(
    clips: &'a [Vec<Vec<f32>>],
    conditions: &[Option<String>],
    keep: impl Fn(usize) -> bool,
) -> Vec<Vec<&'a [f32]>> {
    let mut groups: std::collections::BTreeMap<Option<&str>, Vec<&[f32]>> = Default::default();
    for (i, frames) in clips.iter().enumerate().filter(|(i, _)| keep(*i)) {
        groups
            .entry(conditions[i].as_deref())
            .or_default()
            .extend(frames.iter().map(Vec::as_slice));
    }
    groups.into_values().collect()
}

/// Out-of-fold curves: for each fold, fits on the other folds' normal clips and scores the fold's normal clips
/// and anomalies.
fn oof_curves(
    fold_of: &[usize],
    n_folds: usize,
    anomalies: &[Anomaly],
    views: &Views,
    conditions: &[Option<String>],
    fit: impl Fn(&[Vec<&[f32]>]) -> Result<FoldScorer, String>,
) -> Result<Curves, AcousticError> {
    let mut out = Curves {
        normal: vec![Vec::new(); views.normal.len()],
        anomalous: vec![Vec::new(); views.anomalous.len()],
    };
    for f in 0..n_folds {
        let train = by_condition(views.train(), conditions, |i| fold_of[i] != f);
        let score = fit(&train).map_err(AcousticError::Training)?;
        for (i, v) in views
            .normal
            .iter()
            .enumerate()
            .filter(|(i, _)| fold_of[*i] == f)
        {
            out.normal[i] = v.iter().map(|e| score(e)).collect();
        }
        for (i, v) in views
            .anomalous
            .iter()
            .enumerate()
            .filter(|(i, _)| anomalies[*i].0 == f)
        {
            out.anomalous[i] = v.iter().map(|e| score(e)).collect();
        }
    }
    Ok(out)
}
