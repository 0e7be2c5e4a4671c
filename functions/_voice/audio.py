"""PCM audio frames: the unit every stage of the voice pipeline passes along.

A `Frame` is interleaved signed 16-bit little-endian PCM (what LiveKit's AudioFrame carries), with its
sample rate and channel count. The worker speaks and listens at 48 kHz mono (LiveKit's native rate);
frames are 10 or 20 ms long (480 or 960 samples). Pure Python (`array`), no numpy needed.
"""

from __future__ import annotations

import math
import sys
from array import array
from collections.abc import Iterator
from dataclasses import dataclass

SAMPLE_RATE = 48_000
CHANNELS = 1
FRAME_MS = 20
INT16_MAX = 32767
_BIG_ENDIAN = sys.byteorder == "big"


@dataclass(frozen=True, slots=True)
class Frame:
    """`data` holds samples_per_channel * channels int16 samples, little-endian, interleaved."""

    data: bytes
    sample_rate: int = SAMPLE_RATE
    channels: int = CHANNELS

    def __post_init__(self) -> None:
        if self.sample_rate <= 0 or self.channels <= 0:
            raise ValueError(f"bad audio format: {self.sample_rate} Hz, {self.channels} channels")
        if len(self.data) % (2 * self.channels):
            raise ValueError(f"{len(self.data)} bytes is not a whole number of {self.channels}-channel int16 samples")

    @property
    def samples_per_channel(self) -> int:
        return len(self.data) // (2 * self.channels)

    @property
    def duration_ms(self) -> float:
        return self.samples_per_channel * 1000 / self.sample_rate

    def samples(self) -> array:
        out = array("h", self.data)
        if _BIG_ENDIAN:
            out.byteswap()
        return out

    @classmethod
    def from_samples(cls, samples: array | list[int], sample_rate: int = SAMPLE_RATE, channels: int = CHANNELS) -> Frame:
        pcm = samples if isinstance(samples, array) and samples.typecode == "h" else array("h", samples)
        if _BIG_ENDIAN:
            pcm = array("h", pcm)
            pcm.byteswap()
        return cls(pcm.tobytes(), sample_rate, channels)


def samples_per_frame(sample_rate: int = SAMPLE_RATE, frame_ms: int = FRAME_MS) -> int:
    if (sample_rate * frame_ms) % 1000:
        raise ValueError(f"{frame_ms} ms is not a whole number of samples at {sample_rate} Hz")
    return sample_rate * frame_ms // 1000


def rms_dbfs(frame: Frame) -> float:
    """Root-mean-square level relative to full scale: 0 dBFS is a full-scale square wave, a
    full-scale sine is about -3 dBFS, digital silence is -inf."""
    samples = frame.samples()
    if not samples:
        return float("-inf")
    mean_square = sum(s * s for s in samples) / len(samples)
    if mean_square == 0:
        return float("-inf")
    return 10 * math.log10(mean_square / (INT16_MAX * INT16_MAX))


def silence(duration_ms: int, *, sample_rate: int = SAMPLE_RATE, channels: int = CHANNELS,
            frame_ms: int = FRAME_MS) -> Iterator[Frame]:
    n = samples_per_frame(sample_rate, frame_ms)
    blank = Frame(bytes(2 * n * channels), sample_rate, channels)
    for _ in range(_frame_count(duration_ms, frame_ms)):
        yield blank


def tone(duration_ms: int, *, frequency: float = 440.0, amplitude: float = 0.3, sample_rate: int = SAMPLE_RATE,
         channels: int = CHANNELS, frame_ms: int = FRAME_MS) -> Iterator[Frame]:
    """A sine of `amplitude` (fraction of full scale) cut into frames; phase runs on across frames."""
    n = samples_per_frame(sample_rate, frame_ms)
    peak = amplitude * INT16_MAX
    step = 2 * math.pi * frequency / sample_rate
    t = 0
    for _ in range(_frame_count(duration_ms, frame_ms)):
        mono = [int(round(peak * math.sin(step * (t + i)))) for i in range(n)]
        t += n
        yield Frame.from_samples([s for s in mono for _ in range(channels)], sample_rate, channels)


def _frame_count(duration_ms: int, frame_ms: int) -> int:
    if duration_ms % frame_ms:
        raise ValueError(f"{duration_ms} ms is not a whole number of {frame_ms} ms frames")
    return duration_ms // frame_ms
