//! WAV replay: one long recording played into the ring in real time (once or looping), or a folder of WAV files
//! with one recorded slice per part (sorted by name; part `n` gets file `n`). Also reading and writing mono WAV
//! for training, evaluation and the tests.

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::sync::atomic::AtomicBool;
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use super::{AudioError, AudioSource, Ring, Slice, run_paced};
use crate::part::Seq;

/// Reads one channel of a WAV file as f32 in [-1, 1], with its sample rate.
pub fn read(path: &Path, channel: u16) -> Result<(Vec<f32>, u32), AudioError> {
    let err = |detail: String| AudioError::File {
        path: path.display().to_string(),
        detail,
    };
    let reader = hound::WavReader::open(path).map_err(|e| err(format!("cannot read WAV: {e}")))?;
    let spec = reader.spec();
    if channel >= spec.channels {
        return Err(err(format!(
            "channel {channel} asked for, but the file has {} channel(s)",
            spec.channels
        )));
    }
    let (step, offset) = (spec.channels as usize, channel as usize);
    let samples: Result<Vec<f32>, hound::Error> = match spec.sample_format {
        hound::SampleFormat::Float => reader
            .into_samples::<f32>()
            .skip(offset)
            .step_by(step)
            .collect(),
        hound::SampleFormat::Int => {
            let scale = 1.0 / (1u64 << (spec.bits_per_sample - 1)) as f32;
            reader
                .into_samples::<i32>()
                .skip(offset)
                .step_by(step)
                .map(|s| s.map(|v| v as f32 * scale))
                .collect()
        }
    };
    let samples = samples.map_err(|e| err(format!("corrupt WAV data: {e}")))?;
    Ok((samples, spec.sample_rate))
}

/// Reads a WAV and checks its sample rate.
pub fn read_at(path: &Path, channel: u16, sample_rate_hz: u32) -> Result<Vec<f32>, AudioError> {
    let (samples, rate) = read(path, channel)?;
    if rate != sample_rate_hz {
        return Err(AudioError::File {
            path: path.display().to_string(),
            detail: format!("sample rate is {rate} Hz, expected {sample_rate_hz} Hz"),
        });
    }
    Ok(samples)
}

/// Writes mono 32-bit float WAV.
pub fn write(path: &Path, samples: &[f32], sample_rate_hz: u32) -> Result<(), AudioError> {
    let err = |e: hound::Error| AudioError::File {
        path: path.display().to_string(),
        detail: format!("cannot write WAV: {e}"),
    };
    let spec = hound::WavSpec {
        channels: 1,
        sample_rate: sample_rate_hz,
        bits_per_sample: 32,
        sample_format: hound::SampleFormat::Float,
    };
    let mut w = hound::WavWriter::create(path, spec).map_err(err)?;
    for &s in samples {
        w.write_sample(s).map_err(err)?;
    }
    w.finalize().map_err(err)
}

/// The `.wav` files of a folder, sorted by name.
pub fn list(dir: &Path) -> Result<Vec<PathBuf>, AudioError> {
    let entries = std::fs::read_dir(dir).map_err(|e| AudioError::File {
        path: dir.display().to_string(),
        detail: format!("cannot list: {e}"),
    })?;
    let mut files: Vec<PathBuf> = entries
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|x| x.eq_ignore_ascii_case("wav")))
        .collect();
    files.sort();
    Ok(files)
}

/// One long recording, replayed in real time into the ring.
pub struct Recording {
    path: PathBuf,
    samples: Vec<f32>,
    sample_rate_hz: u32,
    looping: bool,
}

impl Recording {
    pub fn open(
        path: &Path,
        looping: bool,
        sample_rate_hz: u32,
        channel: u16,
    ) -> Result<Recording, AudioError> {
        let samples = read_at(path, channel, sample_rate_hz)?;
        if samples.is_empty() {
            return Err(AudioError::File {
                path: path.display().to_string(),
                detail: "holds no samples".into(),
            });
        }
        Ok(Recording {
            path: path.to_path_buf(),
            samples,
            sample_rate_hz,
            looping,
        })
    }
}

impl AudioSource for Recording {
    fn describe(&self) -> String {
        format!(
            "WAV recording {} ({:.1} s at {} Hz{})",
            self.path.display(),
            self.samples.len() as f64 / f64::from(self.sample_rate_hz),
            self.sample_rate_hz,
            if self.looping { ", looping" } else { "" }
        )
    }

    fn sample_rate_hz(&self) -> u32 {
        self.sample_rate_hz
    }

    fn run(
        self: Box<Self>,
        ring: Arc<Ring>,
        stop: Arc<AtomicBool>,
        ready: SyncSender<Result<(), AudioError>>,
    ) {
        let _ = ready.send(Ok(()));
        let n = self.samples.len() as u64;
        run_paced(
            &ring,
            &stop,
            Instant::now(),
            Duration::from_millis(10),
            |first, out| {
                if !self.looping && first >= n {
                    tracing::info!("{}: end of the recording", self.path.display());
                    return false;
                }
                for (j, y) in out.iter_mut().enumerate() {
                    let i = first + j as u64;
                    *y = if self.looping || i < n {
                        self.samples[(i % n) as usize]
                    } else {
                        0.0
                    };
                }
                true
            },
        );
    }
}

/// A folder of WAV files, one recorded slice per part.
pub struct PerPartFiles {
    dir: PathBuf,
    files: Vec<PathBuf>,
    looping: bool,
    channel: u16,
    pub sample_rate_hz: u32,
}

impl PerPartFiles {
    pub fn open(
        dir: &Path,
        looping: bool,
        sample_rate_hz: u32,
        channel: u16,
    ) -> Result<PerPartFiles, AudioError> {
        let files = list(dir)?;
        if files.is_empty() {
            return Err(AudioError::File {
                path: dir.display().to_string(),
                detail: "holds no .wav files".into(),
            });
        }
        Ok(PerPartFiles {
            dir: dir.to_path_buf(),
            files,
            looping,
            channel,
            sample_rate_hz,
        })
    }

    pub fn describe(&self) -> String {
        format!(
            "WAV files, one per part, from {} ({} files{})",
            self.dir.display(),
            self.files.len(),
            if self.looping { ", looping" } else { "" }
        )
    }

    /// Part `seq`'s file (parts count from 1).
    pub fn part(&self, seq: Seq) -> Result<Slice, AudioError> {
        let index = seq.saturating_sub(1) as usize;
        let path = if self.looping {
            &self.files[index % self.files.len()]
        } else {
            self.files.get(index).ok_or_else(|| {
                AudioError::Slice(format!(
                    "no file for part {seq}: {} holds {} files",
                    self.dir.display(),
                    self.files.len()
                ))
            })?
        };
        Ok(Slice {
            samples: read_at(path, self.channel, self.sample_rate_hz)?,
            origin: path.display().to_string(),
        })
    }
}
