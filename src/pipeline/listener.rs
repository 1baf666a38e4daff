//! The acoustic stage as the line sees it: the audio input and model opened at build ([`open_acoustic`]), and
//! the orchestrator's end of it ([`Listener`]): it marks each trigger in the audio ring, queues the part for
//! the acoustic thread, and turns a part's sound into its acoustic record and figures.

use std::sync::Arc;
use std::sync::mpsc::{SyncSender, TrySendError};
use std::time::Instant;

use super::PipelineError;
use super::inflight::Heard;
use crate::acoustic::spectrogram::Spectrogram;
use crate::acoustic::{AcousticJob, AcousticModel};
use crate::audio::{AudioConfig, AudioInput};
use crate::metrics::{AcousticSummary, Latencies, Spread};
use crate::part::record::{AcousticRow, Drawing};
use crate::part::{ModelInfo, Seq};

/// Loads the acoustic model and opens the audio input. A missing or failing audio input is an error when the
/// config requires audio; otherwise the line runs without the acoustic score (`Ok(None)`, with a warning).
pub fn open_acoustic(
    audio: &AudioConfig,
) -> Result<Option<(AudioInput, AcousticModel)>, PipelineError> {
    let model = AcousticModel::load(&audio.model_dir, audio.threshold)?;
    let mismatch = |detail: String| PipelineError::AcousticMismatch {
        model: model.dir.display().to_string(),
        detail,
    };
    if model.sample_rate_hz() != audio.sample_rate_hz {
        return Err(mismatch(format!(
            "trained at {} Hz but [audio] sample_rate_hz is {}",
            model.sample_rate_hz(),
            audio.sample_rate_hz
        )));
    }
    let window_ms = audio.pre_ms + audio.post_ms;
    // A model that standardises its clip scores knows normal clips of its own length only: another slice length
    // moves every score, so it is refused. Older models (one slice Gaussian) are only warned about.
    let standardised = !matches!(
        model.scorer.scoring,
        crate::acoustic::scoring::Scoring::Slice {
            standardiser: None,
            ..
        }
    );
    if model.manifest.window_ms != window_ms && standardised {
        return Err(mismatch(format!(
            "trained on clips of {} ms but [audio] pre_ms + post_ms = {window_ms} ms (set them to add up to {} ms, or retrain with --window-ms {window_ms})",
            model.manifest.window_ms, model.manifest.window_ms
        )));
    }
    if model.manifest.window_ms != window_ms {
        tracing::warn!(
            "acoustic model {} was trained on {} ms slices but [audio] pre_ms + post_ms = {window_ms} ms; scores may shift",
            model.dir.display(),
            model.manifest.window_ms
        );
    }
    match AudioInput::open(audio) {
        Ok(input) => Ok(Some((input, model))),
        Err(e) if audio.required => Err(PipelineError::Audio(e)),
        Err(e) => {
            tracing::warn!("{e}; running WITHOUT the acoustic score ([audio] required = false)");
            Ok(None)
        }
    }
}

/// The acoustic stage as the orchestrator sees it.
pub struct Listener {
    pub input: Arc<AudioInput>,
    pub jobs: Option<SyncSender<AcousticJob>>,
    pub info: ModelInfo,
    pub summary: AcousticSummary,
    pub latency: Latencies,
}

impl Listener {
    /// Tells the audio source about the part and hands it to the acoustic worker; a full queue is a fault at once.
    pub fn listen(&mut self, seq: Seq, at: Instant) -> Option<Heard> {
        self.input.mark(seq, at);
        let job = AcousticJob { seq, triggered: at };
        let detail = match self.jobs.as_ref()?.try_send(job) {
            Ok(()) => return None,
            Err(TrySendError::Full(_)) => "the acoustic queue was full (scoring falls behind)",
            Err(TrySendError::Disconnected(_)) => "the acoustic worker has stopped",
        };
        Some(Heard {
            result: Err(detail.into()),
            truth: None,
        })
    }

    /// A part's acoustic columns, its sound to draw as a spectrogram when it was rejected, and the figures.
    pub fn record(
        &mut self,
        heard: Option<Heard>,
        rejected: bool,
        for_sound: bool,
    ) -> (AcousticRow, Option<Box<dyn Drawing>>) {
        self.summary.rejected += u64::from(for_sound);
        let (score, samples, truth) = match heard {
            Some(Heard {
                result: Ok((s, samples)),
                truth,
            }) => (Some(s), Some(samples), truth),
            Some(Heard {
                result: Err(_),
                truth,
            }) => {
                self.summary.faults += 1;
                (None, None, truth)
            }
            None => (None, None, None),
        };
        if let Some(t) = &truth {
            let t = if t == "normal" { "good" } else { t.as_str() };
            self.summary.detection.add(t, for_sound);
        }
        let sample_rate_hz = self.input.sample_rate_hz();
        let row = AcousticRow {
            score,
            threshold: self.info.threshold,
            model_name: self.info.name.clone(),
            model_version: self.info.version.clone(),
            model_sha256: self.info.sha256.clone(),
            truth,
            spectrogram_path: None,
        };
        let spectrogram = samples.filter(|_| rejected).map(|samples| {
            Box::new(Spectrogram {
                samples,
                sample_rate_hz,
            }) as Box<dyn Drawing>
        });
        (row, spectrogram)
    }

    /// The acoustic figures of the run.
    pub fn into_summary(self) -> AcousticSummary {
        let mut summary = self.summary;
        summary.overruns = self.input.overruns();
        summary.latency = Spread::of(&self.latency);
        summary
    }
}
