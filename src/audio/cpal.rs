//! Microphone capture through `cpal` (ALSA on Linux; through the ALSA pulse plugin when a sound server runs).
//!
//! The device is chosen by name (its ALSA id such as `default` or `hw:1,0`, `alsa:<id>`, or its description) or
//! is the default input. The `cpal` stream lives on the capture thread (streams cannot move between threads);
//! its callback takes the configured channel and pushes into the ring, stamped with the callback's arrival.
//! Device overruns reported by the stream are counted. No device, or one that refuses the sample rate, is a
//! clear error at start, listing the inputs that exist.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::mpsc::SyncSender;
use std::time::{Duration, Instant};

use ::cpal::traits::{DeviceTrait, HostTrait, StreamTrait};
use ::cpal::{Device, ErrorKind, SampleFormat, StreamConfig};

use super::{AudioError, AudioSource, Ring};

pub struct Microphone {
    device: Option<String>,
    sample_rate_hz: u32,
    channel: u16,
}

impl Microphone {
    pub fn new(device: Option<String>, sample_rate_hz: u32, channel: u16) -> Self {
        Self {
            device,
            sample_rate_hz,
            channel,
        }
    }

    fn wanted(&self) -> String {
        self.device
            .clone()
            .unwrap_or_else(|| "default input".into())
    }
}

fn names(device: &Device) -> (String, String) {
    let id = device.id().map(|i| i.to_string()).unwrap_or_default();
    let name = device
        .description()
        .map(|d| d.name().to_string())
        .unwrap_or_default();
    (id, name)
}

/// The input devices this host lists, as `id (name)`.
pub fn input_devices() -> Vec<String> {
    let host = ::cpal::default_host();
    host.input_devices()
        .map(|devs| {
            devs.map(|d| {
                let (id, name) = names(&d);
                format!("{id} ({name})")
            })
            .collect()
        })
        .unwrap_or_default()
}

fn find(wanted: Option<&str>) -> Result<Device, AudioError> {
    let host = ::cpal::default_host();
    let found = match wanted {
        None => host.default_input_device(),
        Some(w) => host.input_devices().ok().and_then(|mut devs| {
            devs.find(|d| {
                let (id, name) = names(d);
                id == w || id.split_once(':').is_some_and(|(_, pcm)| pcm == w) || name == w
            })
        }),
    };
    found.ok_or_else(|| {
        AudioError::NoDevice(format!(
            "{} not found; inputs: [{}]",
            wanted.unwrap_or("the default input"),
            input_devices().join(", ")
        ))
    })
}

impl Microphone {
    fn open_stream(&self, ring: &Arc<Ring>) -> Result<::cpal::Stream, AudioError> {
        let device = find(self.device.as_deref())?;
        let dev_err = |detail: String| AudioError::Device {
            device: self.wanted(),
            detail,
        };
        let default = device
            .default_input_config()
            .map_err(|e| dev_err(format!("no usable input configuration: {e}")))?;
        let channels = default.channels().max(self.channel + 1);
        let config = StreamConfig {
            channels,
            sample_rate: self.sample_rate_hz,
            buffer_size: ::cpal::BufferSize::Default,
        };
        let (step, offset) = (channels as usize, self.channel as usize);
        let on_error = {
            let ring = ring.clone();
            move |e: ::cpal::Error| {
                if e.kind() == ErrorKind::Xrun {
                    ring.overruns.fetch_add(1, Ordering::Relaxed);
                } else {
                    tracing::warn!("audio stream: {e}");
                }
            }
        };
        let build = |format: SampleFormat| match format {
            SampleFormat::I16 => {
                let ring = ring.clone();
                let mut mono = Vec::new();
                device.build_input_stream::<i16, _, _>(
                    config,
                    move |data, _| {
                        mono.clear();
                        mono.extend(
                            data.iter()
                                .skip(offset)
                                .step_by(step)
                                .map(|s| f32::from(*s) / 32768.0),
                        );
                        ring.push(&mono, Instant::now());
                    },
                    on_error.clone(),
                    Some(Duration::from_secs(5)),
                )
            }
            _ => {
                let ring = ring.clone();
                let mut mono = Vec::new();
                device.build_input_stream::<f32, _, _>(
                    config,
                    move |data, _| {
                        mono.clear();
                        mono.extend(data.iter().skip(offset).step_by(step));
                        ring.push(&mono, Instant::now());
                    },
                    on_error.clone(),
                    Some(Duration::from_secs(5)),
                )
            }
        };
        let stream = build(SampleFormat::F32)
            .or_else(|_| build(SampleFormat::I16))
            .map_err(|e| {
                dev_err(format!(
                    "cannot capture {channels} channel(s) at {} Hz: {e}",
                    self.sample_rate_hz
                ))
            })?;
        stream
            .play()
            .map_err(|e| dev_err(format!("cannot start capture: {e}")))?;
        Ok(stream)
    }
}

impl AudioSource for Microphone {
    fn describe(&self) -> String {
        format!(
            "microphone {} channel {} at {} Hz",
            self.wanted(),
            self.channel,
            self.sample_rate_hz
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
        let stream = match self.open_stream(&ring) {
            Ok(s) => s,
            Err(e) => {
                let _ = ready.send(Err(e));
                return;
            }
        };
        let _ = ready.send(Ok(()));
        while !stop.load(Ordering::Acquire) {
            std::thread::sleep(Duration::from_millis(20));
        }
        drop(stream);
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn an_unknown_device_is_a_clear_error_listing_the_inputs() {
        let mic = Box::new(Microphone::new(Some("no-such-device".into()), 48_000, 0));
        let err = super::super::Capture::start(mic, 1)
            .err()
            .expect("no such device");
        let text = err.to_string();
        assert!(
            text.contains("no audio input device: no-such-device not found; inputs: ["),
            "{text}"
        );
    }
}
