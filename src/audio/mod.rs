//! Audio input: where the station's sound comes from and how a part's slice is cut from it.
//!
//! A live [`AudioSource`] (microphone via `cpal`, a long WAV recording replayed in real time, or the demo's
//! synthetic machine sound) runs on its own capture thread and fills a [`Ring`] of samples whose timestamps are
//! in the station's clock (the monotonic [`Instant`]s that [`crate::clock::Clock`] maps to wall time). For a part
//! triggered at `t`, [`AudioInput::slice`] waits until the ring holds `[t - pre_ms, t + post_ms]` and cuts it.
//! A folder of WAV files replays recorded part slices instead: part `n` gets the `n`-th file.
//! Samples the ring had already overwritten, and device overruns, are counted, never hidden.
//!
//! [`features`] turns a slice into the spectra the acoustic model scores.

pub mod config;
pub mod cpal;
pub mod features;
pub mod synthetic;
pub mod wav;

use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::mpsc::{SyncSender, sync_channel};
use std::sync::{Arc, Mutex};
use std::thread::JoinHandle;
use std::time::{Duration, Instant};

use crate::part::Seq;
pub use config::{AudioConfig, AudioSourceConfig};

#[derive(Debug, thiserror::Error)]
pub enum AudioError {
    #[error("no audio input device: {0}")]
    NoDevice(String),
    #[error("audio device {device}: {detail}")]
    Device { device: String, detail: String },
    #[error("{path}: {detail}")]
    File { path: String, detail: String },
    #[error("audio slice unavailable: {0}")]
    Slice(String),
    #[error("cannot start the audio capture thread: {0}")]
    Thread(std::io::Error),
}

/// A sound source that captures continuously into a ring on its own thread.
pub trait AudioSource: Send + 'static {
    /// One line for logs: what is captured, at what rate.
    fn describe(&self) -> String;
    fn sample_rate_hz(&self) -> u32;
    /// Called by the pipeline at each part's trigger (the synthetic source plays that part's anomaly).
    fn part_hook(&self) -> Option<PartHook> {
        None
    }
    /// The known truth of a part's sound (`"normal"` or an anomaly kind), for synthetic sound.
    fn truth_hook(&self) -> Option<TruthHook> {
        None
    }
    /// Captures into `ring` until `stop` is set. Reports on `ready` once capture has started (or why it could not).
    fn run(
        self: Box<Self>,
        ring: Arc<Ring>,
        stop: Arc<AtomicBool>,
        ready: SyncSender<Result<(), AudioError>>,
    );
}

pub type PartHook = Arc<dyn Fn(Seq, Instant) + Send + Sync>;
pub type TruthHook = Arc<dyn Fn(Seq) -> String + Send + Sync>;

/// Why a slice could not be cut.
#[derive(Debug, Clone, PartialEq)]
pub enum SliceError {
    /// The ring does not hold the end of the slice yet.
    NotYet,
    /// The start of the slice was already overwritten (the ring is too short or the part waited too long).
    Overwritten,
    /// The slice starts before the capture did.
    BeforeStart,
}

struct RingState {
    buf: Vec<f32>,
    /// Samples pushed since the start.
    written: u64,
    /// The sample index `written` at the last push and the time it maps to (smoothed).
    anchor: Option<(u64, Instant)>,
}

/// The capture ring: the last `capacity` samples, each index mapped to an [`Instant`].
///
/// A push says when the sample after its last one is due (`end`). Device callbacks arrive with jitter, so the
/// index-to-time map follows them through a slow loop filter (the expected time from the sample count, pulled 5%
/// of the way towards the reported time) and is reset when they disagree by more than 50 ms (a dropout).
pub struct Ring {
    state: Mutex<RingState>,
    sample_rate_hz: u32,
    /// Slices that lost samples to the ring wrapping, plus device overruns reported by the source.
    pub overruns: AtomicU64,
}

impl Ring {
    pub fn new(sample_rate_hz: u32, capacity: usize) -> Ring {
        Ring {
            state: Mutex::new(RingState {
                buf: vec![0.0; capacity.max(1)],
                written: 0,
                anchor: None,
            }),
            sample_rate_hz,
            overruns: AtomicU64::new(0),
        }
    }

    pub fn sample_rate_hz(&self) -> u32 {
        self.sample_rate_hz
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, RingState> {
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Appends samples; `end` is when the sample after the last one is due.
    pub fn push(&self, samples: &[f32], end: Instant) {
        let rate = f64::from(self.sample_rate_hz);
        let mut s = self.lock();
        let cap = s.buf.len();
        for &x in samples {
            let at = (s.written % cap as u64) as usize;
            s.buf[at] = x;
            s.written += 1;
        }
        let written = s.written;
        s.anchor = Some(match s.anchor {
            Some((i, t)) => {
                let expected = t + Duration::from_secs_f64((written - i) as f64 / rate);
                let error = end.saturating_duration_since(expected).as_secs_f64()
                    - expected.saturating_duration_since(end).as_secs_f64();
                if error.abs() > 0.05 {
                    (written, end)
                } else if error >= 0.0 {
                    (written, expected + Duration::from_secs_f64(error * 0.05))
                } else {
                    (written, expected - Duration::from_secs_f64(-error * 0.05))
                }
            }
            None => (written, end),
        });
    }

    /// Samples pushed so far.
    pub fn written(&self) -> u64 {
        self.lock().written
    }

    /// The sample index due at `t` (may be in the future or before the start), if anything was pushed.
    pub fn index_at(&self, t: Instant) -> Option<i64> {
        let (i, at) = self.lock().anchor?;
        let secs = t.saturating_duration_since(at).as_secs_f64()
            - at.saturating_duration_since(t).as_secs_f64();
        Some(i as i64 + (secs * f64::from(self.sample_rate_hz)).round() as i64)
    }

    /// The last `n` samples (fewer if fewer were pushed).
    pub fn latest(&self, n: usize) -> Vec<f32> {
        let s = self.lock();
        let cap = s.buf.len() as u64;
        let from = s.written.saturating_sub((n as u64).min(cap));
        (from..s.written)
            .map(|i| s.buf[(i % cap) as usize])
            .collect()
    }

    /// The samples from `from` to `to`.
    pub fn slice(&self, from: Instant, to: Instant) -> Result<Vec<f32>, SliceError> {
        let (Some(start), Some(end)) = (self.index_at(from), self.index_at(to)) else {
            return Err(SliceError::NotYet);
        };
        let s = self.lock();
        let cap = s.buf.len() as i64;
        if end > s.written as i64 {
            return Err(SliceError::NotYet);
        }
        if start < 0 {
            return Err(SliceError::BeforeStart);
        }
        if start < s.written as i64 - cap {
            return Err(SliceError::Overwritten);
        }
        Ok((start..end).map(|i| s.buf[(i % cap) as usize]).collect())
    }
}

/// A running capture: its thread, ring and hooks. Stops and joins on drop.
pub struct Capture {
    pub ring: Arc<Ring>,
    stop: Arc<AtomicBool>,
    thread: Option<JoinHandle<()>>,
    part_hook: Option<PartHook>,
    truth_hook: Option<TruthHook>,
    describe: String,
}

impl Capture {
    /// Starts `source` on its own thread, waiting (up to 10 s) until it reports that capture runs.
    pub fn start(source: Box<dyn AudioSource>, ring_s: u64) -> Result<Capture, AudioError> {
        let rate = source.sample_rate_hz();
        let ring = Arc::new(Ring::new(rate, (u64::from(rate) * ring_s.max(1)) as usize));
        let stop = Arc::new(AtomicBool::new(false));
        let (ready_tx, ready_rx) = sync_channel(1);
        let describe = source.describe();
        let (part_hook, truth_hook) = (source.part_hook(), source.truth_hook());
        let thread = {
            let (ring, stop) = (ring.clone(), stop.clone());
            std::thread::Builder::new()
                .name("audio-capture".into())
                .spawn(move || source.run(ring, stop, ready_tx))
                .map_err(AudioError::Thread)?
        };
        let mut capture = Capture {
            ring,
            stop,
            thread: Some(thread),
            part_hook,
            truth_hook,
            describe: describe.clone(),
        };
        match ready_rx.recv_timeout(Duration::from_secs(10)) {
            Ok(Ok(())) => Ok(capture),
            Ok(Err(e)) => Err(e),
            Err(_) => {
                capture.stop.store(true, Ordering::Release);
                capture.thread = None; // a device stuck in its open call is left behind
                Err(AudioError::Device {
                    device: describe,
                    detail: "capture did not start within 10 s".into(),
                })
            }
        }
    }
}

impl Drop for Capture {
    fn drop(&mut self) {
        self.stop.store(true, Ordering::Release);
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

/// One part's audio.
pub struct Slice {
    pub samples: Vec<f32>,
    /// Where it came from: the time window, or the replayed file.
    pub origin: String,
}

/// The station's audio input: a live capture (sliced by time) or per-part files.
pub enum AudioInput {
    Live {
        capture: Capture,
        pre: Duration,
        post: Duration,
    },
    PerPart(wav::PerPartFiles),
}

impl AudioInput {
    /// Opens the configured source and starts capturing.
    pub fn open(config: &AudioConfig) -> Result<AudioInput, AudioError> {
        let source: Box<dyn AudioSource> = match &config.source {
            AudioSourceConfig::Microphone { device } => Box::new(cpal::Microphone::new(
                device.clone(),
                config.sample_rate_hz,
                config.channel,
            )),
            AudioSourceConfig::Wav { path, looping } if path.is_dir() => {
                return Ok(AudioInput::PerPart(wav::PerPartFiles::open(
                    path,
                    *looping,
                    config.sample_rate_hz,
                    config.channel,
                )?));
            }
            AudioSourceConfig::Wav { path, looping } => Box::new(wav::Recording::open(
                path,
                *looping,
                config.sample_rate_hz,
                config.channel,
            )?),
            AudioSourceConfig::Synthetic(params) => Box::new(synthetic::SyntheticSound::new(
                params.clone(),
                config.sample_rate_hz,
                Duration::from_millis(config.post_ms),
            )),
        };
        let capture = Capture::start(source, config.ring_s)?;
        // A sound card may deliver its first samples a second or more after the stream starts.
        let until = Instant::now() + Duration::from_secs(5);
        while capture.ring.written() == 0 {
            if Instant::now() > until {
                return Err(AudioError::Device {
                    device: capture.describe.clone(),
                    detail: "no sound arrived within 5 s of starting capture".into(),
                });
            }
            std::thread::sleep(Duration::from_millis(10));
        }
        Ok(AudioInput::Live {
            capture,
            pre: Duration::from_millis(config.pre_ms),
            post: Duration::from_millis(config.post_ms),
        })
    }

    pub fn describe(&self) -> String {
        match self {
            AudioInput::Live { capture, .. } => capture.describe.clone(),
            AudioInput::PerPart(files) => files.describe(),
        }
    }

    pub fn sample_rate_hz(&self) -> u32 {
        match self {
            AudioInput::Live { capture, .. } => capture.ring.sample_rate_hz(),
            AudioInput::PerPart(files) => files.sample_rate_hz,
        }
    }

    /// Tells the source a part was triggered.
    pub fn mark(&self, seq: Seq, at: Instant) {
        if let AudioInput::Live {
            capture:
                Capture {
                    part_hook: Some(hook),
                    ..
                },
            ..
        } = self
        {
            hook(seq, at);
        }
    }

    /// The known truth of part `seq`'s sound, when the source knows it.
    pub fn truth(&self, seq: Seq) -> Option<String> {
        match self {
            AudioInput::Live { capture, .. } => capture.truth_hook.as_ref().map(|h| h(seq)),
            AudioInput::PerPart(_) => None,
        }
    }

    /// Overruns so far (slices that lost samples, device overruns).
    pub fn overruns(&self) -> u64 {
        match self {
            AudioInput::Live { capture, .. } => capture.ring.overruns.load(Ordering::Relaxed),
            AudioInput::PerPart(_) => 0,
        }
    }

    /// Part `seq`'s slice: `[at - pre, at + post]` of the live sound, waiting for it until `give_up`; or the
    /// part's file.
    pub fn slice(&self, seq: Seq, at: Instant, give_up: Instant) -> Result<Slice, AudioError> {
        match self {
            AudioInput::PerPart(files) => files.part(seq),
            AudioInput::Live { capture, pre, post } => {
                let (from, to) = (at.checked_sub(*pre).unwrap_or(at), at + *post);
                if let Some(wait) = to.checked_duration_since(Instant::now()) {
                    std::thread::sleep(wait);
                }
                loop {
                    match capture.ring.slice(from, to) {
                        Ok(samples) => {
                            return Ok(Slice {
                                samples,
                                origin: format!(
                                    "{} [-{} ms, +{} ms]",
                                    capture.describe,
                                    pre.as_millis(),
                                    post.as_millis()
                                ),
                            });
                        }
                        Err(SliceError::Overwritten) => {
                            capture.ring.overruns.fetch_add(1, Ordering::Relaxed);
                            return Err(AudioError::Slice(
                                "its samples were already overwritten (audio ring overrun)".into(),
                            ));
                        }
                        Err(SliceError::BeforeStart) => {
                            return Err(AudioError::Slice(
                                "it starts before the audio capture did".into(),
                            ));
                        }
                        Err(SliceError::NotYet) if Instant::now() >= give_up => {
                            return Err(AudioError::Slice(format!(
                                "the audio source delivered no sound up to {} ms after the trigger (stalled or ended)",
                                post.as_millis()
                            )));
                        }
                        Err(SliceError::NotYet) => std::thread::sleep(Duration::from_millis(2)),
                    }
                }
            }
        }
    }
}

/// Paces a generated or replayed source in real time: every 10 ms, `render(first_index, chunk)` fills the samples
/// due up to `now - latency` (a sound card's buffering), which are pushed with their exact timestamps (sample `i`
/// is due at `start + i / rate`). Stops when `stop` is set or `render` returns false (the end of a replay).
pub(crate) fn run_paced(
    ring: &Ring,
    stop: &AtomicBool,
    start: Instant,
    latency: Duration,
    mut render: impl FnMut(u64, &mut [f32]) -> bool,
) {
    let rate = f64::from(ring.sample_rate_hz());
    let mut done: u64 = 0;
    let mut chunk = Vec::new();
    while !stop.load(Ordering::Acquire) {
        std::thread::sleep(Duration::from_millis(10));
        let due = start.elapsed().saturating_sub(latency).as_secs_f64() * rate;
        let due = due as u64;
        if due <= done {
            continue;
        }
        chunk.clear();
        chunk.resize((due - done) as usize, 0.0);
        if !render(done, &mut chunk) {
            return;
        }
        done = due;
        ring.push(&chunk, start + Duration::from_secs_f64(done as f64 / rate));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_ring_maps_times_to_samples_and_detects_overwrites() {
        let ring = Ring::new(1000, 500);
        let t0 = Instant::now();
        let ms = |n: u64| t0 + Duration::from_millis(n);
        for k in 1..=10u64 {
            let samples: Vec<f32> = ((k - 1) * 100..k * 100).map(|i| i as f32).collect();
            ring.push(&samples, ms(k * 100));
        }
        assert_eq!(ring.written(), 1000);
        assert_eq!(
            ring.slice(ms(700), ms(710)).unwrap(),
            (700..710).map(|i| i as f32).collect::<Vec<_>>()
        );
        assert_eq!(ring.slice(ms(990), ms(1010)), Err(SliceError::NotYet));
        assert_eq!(ring.slice(ms(400), ms(450)), Err(SliceError::Overwritten));
    }
}
