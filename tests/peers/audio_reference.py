"""Reference features for the acoustic tests, computed with numpy/scipy.

usage: audio_reference.py FILE.wav NPERSEG NOVERLAP HIGHPASS_HZ
Prints JSON: {"welch": [...], "envelope": [...]} where
  welch    = scipy.signal.welch(x, fs, window="hann", nperseg, noverlap, detrend="constant", scaling="density")
  envelope = |rfft(|hilbert(highpass(x))| - mean)| / n, the high-pass done by zeroing FFT bins below HIGHPASS_HZ.
"""
import json
import sys

import numpy as np
from scipy import signal
from scipy.io import wavfile

path, nperseg, noverlap, highpass = sys.argv[1], int(sys.argv[2]), int(sys.argv[3]), float(sys.argv[4])
fs, x = wavfile.read(path)
x = x.astype(np.float64)
_, psd = signal.welch(x, fs, window="hann", nperseg=nperseg, noverlap=noverlap, detrend="constant",
                      scaling="density")
n = len(x)
spec = np.fft.rfft(x)
spec[: int(np.ceil(highpass * n / fs))] = 0
hp = np.fft.irfft(spec, n)
env = np.abs(signal.hilbert(hp))
env_spec = np.abs(np.fft.rfft(env - env.mean())) / n
print(json.dumps({"welch": psd.tolist(), "envelope": env_spec.tolist()}))
