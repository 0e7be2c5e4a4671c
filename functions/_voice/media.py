"""The room, as the worker sees it: connect, publish one audio track, receive the others' audio.

    session = await connector.connect(url, token)          # ConnectionError when the room is unreachable
    output = await session.publish_audio(48_000, 1)         # -> AudioOutput.capture(frame)
    async for remote in session.remote_audio():             # one RemoteAudio per subscribed audio track
        ... remote.participant, remote.frames ...
    reason = await session.wait_closed()                    # the server or the network ended it
    await session.close()

`LiveKitConnector` implements this with the `livekit` realtime SDK (rtc.Room, rtc.AudioSource +
rtc.LocalAudioTrack, rtc.AudioStream). The SDK (a native library) is imported only inside
`connect`, so the rest of the worker — and its tests — run without it; tests use fake connectors.
Only remote participants' tracks arrive here: the agent never hears itself.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Any, Protocol

from .audio import Frame
from .pipeline import AudioOutput

log = logging.getLogger("nova.voice")


@dataclass(slots=True)
class RemoteAudio:
    participant: str  # the LiveKit identity: a user id, or an agent id
    track_sid: str
    frames: AsyncIterator[Frame]


class RoomSession(Protocol):
    async def publish_audio(self, sample_rate: int, channels: int) -> AudioOutput: ...

    def remote_audio(self) -> AsyncIterator[RemoteAudio]: ...

    async def wait_closed(self) -> str:
        """Returns (a description of) why the session ended."""
        ...

    async def close(self) -> None: ...


class RoomConnector(Protocol):
    async def connect(self, url: str, token: str) -> RoomSession: ...


class SdkUnavailable(RuntimeError):
    """The `livekit` package (or its native library) cannot be loaded on this machine."""


def load_rtc() -> Any:
    try:
        from livekit import rtc
    except ImportError as e:  # also covers the native library failing to load
        raise SdkUnavailable(f"the livekit realtime SDK is not usable here: {e} (pip install 'livekit>=1.0')") from e
    return rtc


class LiveKitAudioOutput:
    """Frames -> rtc.AudioSource (which paces them out on the published track)."""

    def __init__(self, rtc: Any, source: Any, sample_rate: int, channels: int) -> None:
        self._rtc, self.source = rtc, source
        self.sample_rate, self.channels = sample_rate, channels

    async def capture(self, frame: Frame) -> None:
        if (frame.sample_rate, frame.channels) != (self.sample_rate, self.channels):
            raise ValueError(f"the track plays {self.sample_rate} Hz x{self.channels}, "
                             f"got a frame of {frame.sample_rate} Hz x{frame.channels}")
        await self.source.capture_frame(self._rtc.AudioFrame(frame.data, frame.sample_rate, frame.channels,
                                                             frame.samples_per_channel))

    async def aclose(self) -> None:
        await self.source.aclose()


class LiveKitSession:
    def __init__(self, rtc: Any, room: Any, *, sample_rate: int, channels: int) -> None:
        self._rtc, self.room = rtc, room
        self.sample_rate, self.channels = sample_rate, channels
        self._tracks: asyncio.Queue[RemoteAudio] = asyncio.Queue()
        self._seen: set[str] = set()
        self._closed = asyncio.Event()
        self._reason = "closed"
        self._outputs: list[LiveKitAudioOutput] = []

    # SDK event handlers (called on the event loop by the SDK)
    def on_track_subscribed(self, track: Any, publication: Any, participant: Any) -> None:
        if track.kind != self._rtc.TrackKind.KIND_AUDIO or publication.sid in self._seen:
            return
        self._seen.add(publication.sid)
        stream = self._rtc.AudioStream(track, sample_rate=self.sample_rate, num_channels=self.channels)
        self._tracks.put_nowait(RemoteAudio(participant.identity, publication.sid, self._frames(stream)))

    def on_disconnected(self, reason: Any = None) -> None:
        self._reason = f"disconnected ({reason})"
        self._closed.set()

    async def _frames(self, stream: Any) -> AsyncIterator[Frame]:
        try:
            async for event in stream:
                f = event.frame
                yield Frame(f.data.tobytes(), f.sample_rate, f.num_channels)
        finally:
            await stream.aclose()

    def adopt_existing_tracks(self) -> None:
        """Audio already subscribed when connect() returned (participants who were there first)."""
        for participant in self.room.remote_participants.values():
            for publication in participant.track_publications.values():
                if publication.track is not None and publication.subscribed:
                    self.on_track_subscribed(publication.track, publication, participant)

    # RoomSession
    async def publish_audio(self, sample_rate: int, channels: int) -> AudioOutput:
        rtc = self._rtc
        source = rtc.AudioSource(sample_rate, channels)
        track = rtc.LocalAudioTrack.create_audio_track("agent-voice", source)
        options = rtc.TrackPublishOptions()
        options.source = rtc.TrackSource.SOURCE_MICROPHONE
        await self.room.local_participant.publish_track(track, options)
        output = LiveKitAudioOutput(rtc, source, sample_rate, channels)
        self._outputs.append(output)
        return output

    async def remote_audio(self) -> AsyncIterator[RemoteAudio]:
        while True:
            yield await self._tracks.get()

    async def wait_closed(self) -> str:
        await self._closed.wait()
        return self._reason

    async def close(self) -> None:
        try:
            await self.room.disconnect()
        finally:
            for output in self._outputs:
                await output.aclose()
            self._closed.set()


class LiveKitConnector:
    def __init__(self, *, sample_rate: int = 48_000, channels: int = 1, connect_timeout: float | None = 20.0) -> None:
        self.sample_rate, self.channels = sample_rate, channels
        self.connect_timeout = connect_timeout

    async def connect(self, url: str, token: str) -> LiveKitSession:
        rtc = load_rtc()
        room = rtc.Room()
        session = LiveKitSession(rtc, room, sample_rate=self.sample_rate, channels=self.channels)
        room.on("track_subscribed", session.on_track_subscribed)
        room.on("disconnected", session.on_disconnected)
        try:
            await asyncio.wait_for(room.connect(url, token, rtc.RoomOptions(auto_subscribe=True)), self.connect_timeout)
        except (rtc.ConnectError, asyncio.TimeoutError) as e:
            # Retryable from the worker's point of view, whatever the SDK calls it.
            raise ConnectionError(f"cannot join the LiveKit room at {url}: {e or 'timed out'}") from e
        session.adopt_existing_tracks()
        log.info("joined LiveKit room %s", getattr(room, "name", "?"))
        return session
