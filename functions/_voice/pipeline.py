"""The agent's side of a voice conversation: hear an utterance, understand it, answer it, say it.

    frames of one speaker -> Segmenter -> Utterance -> SpeechToText -> transcript
        -> Responder -> reply text -> (queue) -> TextToSpeech -> frames -> AudioOutput

Each stage is a small Protocol so a real engine (a streaming STT, the agent's LLM, a neural TTS) can
replace the offline implementations here, which need no network and no model:
- EnergySegmenter: an energy-threshold voice activity detector that cuts a speaker's stream into
  utterances (start after `start_ms` of sound, end after `hangover_ms` of quiet).
- DurationStt: NOT speech recognition — it reports "[no speech recognition] speech of N ms".
- TemplateResponder / EchoResponder: a templated or echoed reply.
- ToneTts / SilenceTts: NOT speech — one beep per word, or the same length of silence.
Invariants: one Segmenter per speaker (they never share state); replies are spoken one at a time,
in the order they were produced, by a single speaker task (`Conversation.run_speaker`), so listening
never waits for speaking.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator, Callable
from dataclasses import dataclass
from typing import Protocol

from .audio import CHANNELS, FRAME_MS, SAMPLE_RATE, Frame, rms_dbfs, silence, tone

log = logging.getLogger("nova.voice")


@dataclass(frozen=True, slots=True)
class Utterance:
    """One stretch of speech of one speaker: its PCM (trailing quiet trimmed) and where it began in
    that speaker's stream."""

    speaker: str
    pcm: bytes
    sample_rate: int
    channels: int
    start_ms: float
    duration_ms: float


@dataclass(frozen=True, slots=True)
class Turn:
    """What the agent heard and answered (reply None: it chose to stay quiet)."""

    speaker: str
    utterance: Utterance
    transcript: str
    reply: str | None


# --- the interfaces ---------------------------------------------------------------------------------


class Segmenter(Protocol):
    def push(self, frame: Frame) -> list[Utterance]:
        """Feed one frame; the utterances it completed (usually none)."""
        ...

    def flush(self) -> list[Utterance]:
        """The stream ended: the utterance in progress, if long enough."""
        ...


class SpeechToText(Protocol):
    async def transcribe(self, utterance: Utterance) -> str: ...


class Responder(Protocol):
    async def reply(self, speaker: str, transcript: str) -> str | None: ...


class TextToSpeech(Protocol):
    def synthesize(self, text: str) -> AsyncIterator[Frame]: ...


class AudioOutput(Protocol):
    async def capture(self, frame: Frame) -> None:
        """Queue one frame for playout (the published track)."""


# --- offline implementations ------------------------------------------------------------------------


class EnergySegmenter:
    """Voice activity by level: a frame at or above `threshold_dbfs` is "voiced".

    Speech starts once voiced frames have lasted `start_ms` without a break (those frames belong to
    the utterance); it ends after `hangover_ms` of unvoiced frames (trimmed off). Utterances shorter
    than `min_speech_ms` (clicks, coughs) are dropped; one longer than `max_speech_ms` is cut there
    and speech continues in a new one."""

    def __init__(self, speaker: str, *, threshold_dbfs: float = -45.0, start_ms: float = 60.0,
                 hangover_ms: float = 400.0, min_speech_ms: float = 200.0, max_speech_ms: float = 15_000.0) -> None:
        self.speaker = speaker
        self.threshold_dbfs = threshold_dbfs
        self.start_ms = start_ms
        self.hangover_ms = hangover_ms
        self.min_speech_ms = min_speech_ms
        self.max_speech_ms = max_speech_ms
        self._position_ms = 0.0  # stream time at the end of the last frame pushed
        self._frames: list[Frame] = []  # the onset (idle) or the utterance so far (speaking)
        self._speaking = False
        self._quiet: list[Frame] = []  # unvoiced frames since the last voiced one, while speaking
        self._start_ms = 0.0

    def push(self, frame: Frame) -> list[Utterance]:
        voiced = rms_dbfs(frame) >= self.threshold_dbfs
        begin = self._position_ms
        self._position_ms += frame.duration_ms
        if not self._speaking:
            if not voiced:
                self._frames.clear()
                return []
            if not self._frames:
                self._start_ms = begin
            self._frames.append(frame)
            if sum(f.duration_ms for f in self._frames) >= self.start_ms:
                self._speaking = True
            return []
        if voiced:
            self._frames.extend(self._quiet)  # a short pause inside speech is part of it
            self._quiet.clear()
            self._frames.append(frame)
            if self._speech_ms() >= self.max_speech_ms:
                done = self._finish()
                self._speaking, self._start_ms = True, self._position_ms  # speech goes on
                return done
            return []
        self._quiet.append(frame)
        if sum(f.duration_ms for f in self._quiet) >= self.hangover_ms:
            return self._finish()
        return []

    def flush(self) -> list[Utterance]:
        return self._finish() if self._speaking else []

    def _speech_ms(self) -> float:
        return sum(f.duration_ms for f in self._frames)

    def _finish(self) -> list[Utterance]:
        frames, self._frames, self._quiet, self._speaking = self._frames, [], [], False
        duration = sum(f.duration_ms for f in frames)
        if not frames or duration < self.min_speech_ms:
            return []
        first = frames[0]
        return [Utterance(self.speaker, b"".join(f.data for f in frames), first.sample_rate, first.channels,
                          self._start_ms, duration)]


class DurationStt:
    """A stand-in for speech recognition: reports only how long the speech was."""

    async def transcribe(self, utterance: Utterance) -> str:
        return f"[no speech recognition] speech of {round(utterance.duration_ms)} ms"


class TemplateResponder:
    """`template.format(agent=..., speaker=..., transcript=...)`."""

    def __init__(self, agent: str, template: str = "{agent} heard {speaker}: {transcript}") -> None:
        self.agent = agent
        self.template = template

    async def reply(self, speaker: str, transcript: str) -> str | None:
        return self.template.format(agent=self.agent, speaker=speaker, transcript=transcript)


class EchoResponder:
    async def reply(self, speaker: str, transcript: str) -> str | None:
        return transcript or None


class ToneTts:
    """A stand-in for speech synthesis: one `word_ms` beep per word, `gap_ms` of silence after each."""

    def __init__(self, *, word_ms: int = 120, gap_ms: int = 60, frequency: float = 440.0, amplitude: float = 0.2,
                 sample_rate: int = SAMPLE_RATE, channels: int = CHANNELS, frame_ms: int = FRAME_MS) -> None:
        self.word_ms, self.gap_ms = word_ms, gap_ms
        self.frequency, self.amplitude = frequency, amplitude
        self.sample_rate, self.channels, self.frame_ms = sample_rate, channels, frame_ms

    async def synthesize(self, text: str) -> AsyncIterator[Frame]:
        fmt = {"sample_rate": self.sample_rate, "channels": self.channels, "frame_ms": self.frame_ms}
        for _ in text.split():
            for frame in tone(self.word_ms, frequency=self.frequency, amplitude=self.amplitude, **fmt):
                yield frame
            for frame in silence(self.gap_ms, **fmt):
                yield frame


class SilenceTts(ToneTts):
    """As long as ToneTts would speak, but silent (keeps the track alive without sound)."""

    def __init__(self, **kwargs) -> None:
        super().__init__(amplitude=0.0, **kwargs)


# --- the conversation ---------------------------------------------------------------------------------


class Conversation:
    """Listens to any number of speakers at once and answers them through one voice."""

    def __init__(self, *, stt: SpeechToText, responder: Responder, tts: TextToSpeech, output: AudioOutput,
                 segmenter: Callable[[str], Segmenter] = EnergySegmenter,
                 on_turn: Callable[[Turn], None] | None = None) -> None:
        self.stt, self.responder, self.tts, self.output = stt, responder, tts, output
        self.segmenter = segmenter
        self.on_turn = on_turn
        self._replies: asyncio.Queue[str] = asyncio.Queue()
        self.frames_spoken = 0

    async def listen(self, speaker: str, frames: AsyncIterator[Frame]) -> None:
        """Consume one speaker's stream until it ends (the track went away)."""
        segmenter = self.segmenter(speaker)
        async for frame in frames:
            for utterance in segmenter.push(frame):
                await self._answer(utterance)
        for utterance in segmenter.flush():
            await self._answer(utterance)

    async def _answer(self, utterance: Utterance) -> None:
        transcript = await self.stt.transcribe(utterance)
        reply = await self.responder.reply(utterance.speaker, transcript)
        turn = Turn(utterance.speaker, utterance, transcript, reply)
        log.info("heard %s for %d ms: %r -> %r", turn.speaker, utterance.duration_ms, transcript, reply)
        if self.on_turn is not None:
            self.on_turn(turn)
        if reply:
            self._replies.put_nowait(reply)

    async def run_speaker(self) -> None:
        """Speak queued replies, one after another, until cancelled."""
        while True:
            text = await self._replies.get()
            try:
                async for frame in self.tts.synthesize(text):
                    await self.output.capture(frame)
                    self.frames_spoken += 1
            except asyncio.CancelledError:
                raise
            except Exception:  # one failed reply must not silence the agent for good
                log.exception("speaking a reply failed")
            finally:
                self._replies.task_done()

    async def drain(self) -> None:
        """Wait until every queued reply has been spoken (needs run_speaker running)."""
        await self._replies.join()
