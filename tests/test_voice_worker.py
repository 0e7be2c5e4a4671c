"""The agent voice worker (functions/_voice), short of a LiveKit server.

- audio pipeline: generated 48 kHz mono int16 frames (10 and 20 ms) through the energy segmenter, the
  stand-in STT, the templated reply and the tone TTS;
- reconnect logic: fake connectors that fail N times, sessions that drop, permanent token errors;
  sleeping and time are injected, so nothing here waits on a clock;
- token fetching from a real engine server process (admin key on the Convex HTTP API, and a user JWT
  on POST /voice/token);
- the real `livekit` SDK: its room connect is attempted against a loopback stand-in for LiveKit's
  signal endpoint, which records the URL and the bearer token and answers 401 — in-process, and
  through the worker's command line against a real engine.
"""

from __future__ import annotations

import asyncio
import base64
import json
import math
import random
import sys
import time
from collections.abc import AsyncIterator
from pathlib import Path

import jwt
import pytest
from cryptography.hazmat.primitives.asymmetric import ec
from jwt.algorithms import ECAlgorithm
from livekit.api import TokenVerifier

from functions._voice.audio import Frame, rms_dbfs, samples_per_frame, silence, tone
from functions._voice.media import LiveKitConnector, RemoteAudio
from functions._voice.pipeline import (Conversation, DurationStt, EchoResponder, EnergySegmenter, SilenceTts,
                                       TemplateResponder, ToneTts, Turn)
from functions._voice.reconnect import Backoff
from functions._voice.tokens import EngineTokenSource, TokenError, VoiceGrant
from functions._voice.worker import GaveUp, VoiceWorker

REPO_ROOT = Path(__file__).resolve().parent.parent
KEY, SECRET = "APInova", "s3cr3t-" + "x" * 32
WAIT = 10.0  # upper bound for awaiting an event that the test itself causes


def frames(*parts: tuple[str, int], frame_ms: int = 20, amplitude: float = 0.3) -> list[Frame]:
    out: list[Frame] = []
    for kind, ms in parts:
        out += list(tone(ms, amplitude=amplitude, frame_ms=frame_ms) if kind == "tone" else silence(ms, frame_ms=frame_ms))
    return out


async def stream(items: list[Frame]) -> AsyncIterator[Frame]:
    for item in items:
        yield item


# --- audio ----------------------------------------------------------------------------------------------


def test_frames_and_levels():
    assert samples_per_frame(48_000, 10) == 480 and samples_per_frame(48_000, 20) == 960
    [frame] = list(tone(20, amplitude=1.0))
    assert (frame.sample_rate, frame.channels, frame.samples_per_channel, frame.duration_ms) == (48_000, 1, 960, 20)
    assert len(frame.data) == 960 * 2
    assert rms_dbfs(frame) == pytest.approx(-3.01, abs=0.05)  # a full-scale sine
    assert rms_dbfs(next(silence(10, frame_ms=10))) == -math.inf
    assert rms_dbfs(next(tone(20, amplitude=0.01))) == pytest.approx(-43.0, abs=0.1)
    # Stereo is interleaved; the level is the same.
    [stereo] = list(tone(20, amplitude=1.0, channels=2))
    assert stereo.samples_per_channel == 960 and rms_dbfs(stereo) == pytest.approx(-3.01, abs=0.05)
    with pytest.raises(ValueError):
        Frame(b"\x00" * 3)
    with pytest.raises(ValueError):
        samples_per_frame(44_100, 15)


@pytest.mark.parametrize("frame_ms", [10, 20])
def test_segmenter_cuts_speech_out_of_silence(frame_ms):
    seg = EnergySegmenter("alice")
    out = []
    for f in frames(("silence", 300), ("tone", 600), ("silence", 500), ("tone", 100), ("silence", 500),
                    frame_ms=frame_ms):
        out += seg.push(f)
    out += seg.flush()
    [utt] = out  # the 100 ms blip is below min_speech_ms
    assert (utt.speaker, utt.start_ms, utt.duration_ms) == ("alice", 300, 600)
    assert len(utt.pcm) == 48 * 600 * 2 and (utt.sample_rate, utt.channels) == (48_000, 1)


def test_segmenter_pauses_long_speech_and_quiet_noise():
    seg = EnergySegmenter("bob", max_speech_ms=2_000)
    out = []
    # A 200 ms pause inside speech is part of it; then 5 s of speech is cut at 2 s; quiet hiss is no speech.
    for f in frames(("tone", 400), ("silence", 200), ("tone", 400), ("silence", 600), ("tone", 5_000)):
        out += seg.push(f)
    for f in frames(("tone", 1_000), amplitude=0.001):  # about -63 dBFS: below the threshold
        out += seg.push(f)
    out += seg.flush()
    assert [(u.start_ms, u.duration_ms) for u in out] == [(0, 1000), (1600, 2000), (3600, 2000), (5600, 1000)]
    assert EnergySegmenter("x").flush() == []


async def test_conversation_answers_each_speaker_through_one_voice():
    class Output:
        def __init__(self) -> None:
            self.frames: list[Frame] = []

        async def capture(self, frame: Frame) -> None:
            self.frames.append(frame)

    output, turns = Output(), []
    conversation = Conversation(stt=DurationStt(), responder=TemplateResponder("Friday", "{agent} to {speaker}: ok"),
                                tts=ToneTts(), output=output, on_turn=turns.append)
    speaker = asyncio.create_task(conversation.run_speaker())
    alice = frames(("silence", 100), ("tone", 600), ("silence", 500))
    bob = frames(("tone", 1_000), ("silence", 400), ("tone", 240), ("silence", 400), frame_ms=10)
    await asyncio.gather(conversation.listen("alice", stream(alice)), conversation.listen("bob", stream(bob)))
    await asyncio.wait_for(conversation.drain(), WAIT)
    speaker.cancel()
    await asyncio.gather(speaker, return_exceptions=True)

    assert sorted((t.speaker, t.transcript, t.reply) for t in turns) == [
        ("alice", "[no speech recognition] speech of 600 ms", "Friday to alice: ok"),
        ("bob", "[no speech recognition] speech of 1000 ms", "Friday to bob: ok"),
        ("bob", "[no speech recognition] speech of 240 ms", "Friday to bob: ok")]
    # Three replies of four words: per word 120 ms of tone + 60 ms of silence, in 20 ms frames.
    assert len(output.frames) == conversation.frames_spoken == 3 * 4 * (6 + 3)
    assert {(f.sample_rate, f.channels, f.samples_per_channel) for f in output.frames} == {(48_000, 1, 960)}
    assert rms_dbfs(output.frames[0]) == pytest.approx(20 * math.log10(0.2 / math.sqrt(2)), abs=0.1)
    assert rms_dbfs(output.frames[6]) == -math.inf


async def test_replies_are_optional_and_failures_do_not_silence_the_agent():
    class Quiet:
        async def reply(self, speaker, transcript):
            return None

    class Flaky(SilenceTts):
        calls = 0

        async def synthesize(self, text):
            Flaky.calls += 1
            if Flaky.calls == 1:
                raise RuntimeError("synthesis failed")
            async for frame in super().synthesize(text):
                yield frame

    spoken: list[Frame] = []

    class Output:
        async def capture(self, frame):
            spoken.append(frame)

    turns: list[Turn] = []
    quiet = Conversation(stt=DurationStt(), responder=Quiet(), tts=ToneTts(), output=Output(), on_turn=turns.append)
    await quiet.listen("alice", stream(frames(("tone", 300))))
    assert [t.reply for t in turns] == [None] and quiet._replies.empty()

    flaky = Conversation(stt=DurationStt(), responder=EchoResponder(), tts=Flaky(), output=Output())
    task = asyncio.create_task(flaky.run_speaker())
    await flaky.listen("alice", stream(frames(("tone", 300), ("silence", 400), ("tone", 300))))
    await asyncio.wait_for(flaky.drain(), WAIT)
    task.cancel()
    await asyncio.gather(task, return_exceptions=True)
    # The first reply failed, the second ("[no speech recognition] speech of 300 ms": 7 words) was said.
    assert len(spoken) == 7 * 9 and all(rms_dbfs(f) == -math.inf for f in spoken)


# --- reconnect ------------------------------------------------------------------------------------------


def test_backoff_grows_caps_and_jitters():
    exact = Backoff(initial=0.5, factor=2, maximum=4, jitter=0)
    assert [exact.delay(n) for n in range(1, 7)] == [0.5, 1, 2, 4, 4, 4]
    assert exact.delay(10_000) == 4
    jittered = Backoff(initial=1, factor=3, maximum=60, jitter=0.5, rng=random.Random(7))
    for n in range(1, 10):
        base = min(60, 3 ** (n - 1))
        assert base * 0.5 <= jittered.delay(n) <= base
    with pytest.raises(ValueError):
        Backoff(jitter=1)
    with pytest.raises(ValueError):
        exact.delay(0)


class Tokens:
    def __init__(self, failures: list[TokenError] | None = None) -> None:
        self.failures = list(failures or [])
        self.issued = 0

    async def fetch(self) -> VoiceGrant:
        if self.failures:
            raise self.failures.pop(0)
        self.issued += 1
        return VoiceGrant(f"tok-{self.issued}", "wss://lk.test", "channel-c1", "agent-1")


class FakeSession:
    def __init__(self) -> None:
        self.tracks: asyncio.Queue[RemoteAudio] = asyncio.Queue()
        self.ended = asyncio.Event()
        self.reason = ""
        self.published: list[Frame] = []
        self.heard_frame = asyncio.Event()
        self.closed = False

    async def publish_audio(self, sample_rate, channels):
        session = self

        class Output:
            async def capture(self, frame):
                session.published.append(frame)
                session.heard_frame.set()

        return Output()

    async def remote_audio(self):
        while True:
            yield await self.tracks.get()

    async def wait_closed(self):
        await self.ended.wait()
        return self.reason

    async def close(self):
        self.closed = True

    def drop(self, reason: str) -> None:
        self.reason = reason
        self.ended.set()


class Connector:
    def __init__(self, fail: int = 0) -> None:
        self.fail = fail
        self.calls: list[tuple[str, str]] = []
        self.sessions: list[FakeSession] = []
        self.new_session = asyncio.Event()

    async def connect(self, url, token):
        self.calls.append((url, token))
        if len(self.calls) <= self.fail:
            raise ConnectionError("connection refused")
        session = FakeSession()
        self.sessions.append(session)
        self.new_session.set()
        return session

    async def next_session(self) -> FakeSession:
        await asyncio.wait_for(self.new_session.wait(), WAIT)
        self.new_session.clear()
        return self.sessions[-1]


def make_worker(tokens, connector, **kwargs) -> tuple[VoiceWorker, list[float]]:
    slept: list[float] = []

    async def sleep(seconds: float) -> None:
        slept.append(seconds)

    def conversation(output):
        return Conversation(stt=DurationStt(), responder=TemplateResponder("Friday"), tts=ToneTts(), output=output)

    kwargs.setdefault("backoff", Backoff(initial=0.5, factor=2, maximum=4, jitter=0))
    return VoiceWorker(tokens, connector, conversation, sleep=sleep, **kwargs), slept


async def test_worker_retries_connects_then_serves_and_reconnects_after_a_drop():
    now = [1000.0]
    tokens, connector = Tokens(), Connector(fail=3)
    worker, slept = make_worker(tokens, connector, clock=lambda: now[0], stable_after=30,
                                ignore_speaker=lambda who: who == "agent-2")
    run = asyncio.create_task(worker.run())

    session = await connector.next_session()
    # Three refused connects, each with a fresh token from the engine, then the fourth joins.
    assert connector.calls == [("wss://lk.test", f"tok-{n}") for n in range(1, 5)]
    assert slept == [0.5, 1.0, 2.0] and worker.sessions == 1
    await asyncio.wait_for(worker.connected.wait(), WAIT)

    # A human speaks: the agent answers on its published track. Another agent is not listened to.
    await session.tracks.put(RemoteAudio("agent-2", "TR_2", stream(frames(("tone", 600), ("silence", 500)))))
    await session.tracks.put(RemoteAudio("alice", "TR_1", stream(frames(("tone", 600), ("silence", 500)))))
    await asyncio.wait_for(session.heard_frame.wait(), WAIT)
    assert session.published[0].samples_per_channel == 960

    # The session lasted (per the injected clock) and then dropped: a quick reconnect, new token.
    now[0] += 60
    session.drop("server shutting down")
    second = await connector.next_session()
    assert session.closed and worker.sessions == 2
    assert slept == [0.5, 1.0, 2.0, 0.5] and connector.calls[-1] == ("wss://lk.test", "tok-5")

    # A session that drops at once counts as a failure: the delay grows.
    second.drop("kicked")
    third = await connector.next_session()
    assert slept[-1] == 1.0

    worker.stop()
    await asyncio.wait_for(run, WAIT)
    assert third.closed and not worker.connected.is_set()


async def test_worker_gives_up_or_stops_on_permanent_errors():
    worker, slept = make_worker(Tokens(), Connector(fail=100), max_attempts=4)
    with pytest.raises(GaveUp, match="4 consecutive failures"):
        await asyncio.wait_for(worker.run(), WAIT)
    assert slept == [0.5, 1.0, 2.0]

    # A session whose track cannot be published counts as a failure too, and is closed.
    class Mute(FakeSession):
        async def publish_audio(self, sample_rate, channels):
            raise RuntimeError("PublishTrackError: engine is closed")

    class MuteConnector(Connector):
        async def connect(self, url, token):
            self.calls.append((url, token))
            self.sessions.append(Mute())
            return self.sessions[-1]

    mute = MuteConnector()
    worker, slept = make_worker(Tokens(), mute, max_attempts=3)
    with pytest.raises(GaveUp, match="publish failed"):
        await asyncio.wait_for(worker.run(), WAIT)
    assert len(mute.calls) == 3 and all(s.closed for s in mute.sessions) and slept == [0.5, 1.0]

    # Transient token errors are retried; a permanent one ends the worker before any connect.
    connector = Connector()
    tokens = Tokens([TokenError("engine down", permanent=False),
                     TokenError("Invalid voice channel", permanent=True, code="INVALID_VOICE_CHANNEL")])
    worker, slept = make_worker(tokens, connector)
    with pytest.raises(TokenError) as info:
        await asyncio.wait_for(worker.run(), WAIT)
    assert info.value.code == "INVALID_VOICE_CHANNEL" and slept == [0.5] and connector.calls == []

    # stop() during a back-off wait (the default, interruptible sleep) ends run() at once.
    worker = VoiceWorker(Tokens(), Connector(fail=100), lambda output: None, backoff=Backoff(initial=3600, maximum=3600))
    run = asyncio.create_task(worker.run())
    while not worker.delays:
        await asyncio.sleep(0)  # let run() reach its first back-off wait
    worker.stop()
    await asyncio.wait_for(run, WAIT)


# --- tokens from a real engine ------------------------------------------------------------------------


def user_env() -> tuple[ec.EllipticCurvePrivateKey, dict[str, str]]:
    key = ec.generate_private_key(ec.SECP256R1())
    jwk = json.loads(ECAlgorithm.to_jwk(key.public_key()))
    jwks = base64.b64encode(json.dumps({"keys": [{**jwk, "kid": "k1", "alg": "ES256"}]}).encode()).decode()
    provider = {"type": "customJwt", "issuer": "https://auth.nova.test", "algorithm": "ES256",
                "jwks": "data:application/json;base64," + jwks}
    return key, {"CONVEX_AUTH_PROVIDERS": json.dumps([provider])}


def engine_env(livekit_url: str) -> dict[str, str]:
    return {"LIVEKIT_API_KEY": KEY, "LIVEKIT_API_SECRET": SECRET, "LIVEKIT_URL": livekit_url,
            "NOVA_AGENT_TENANT": "default", "NOVA_LOCAL_TENANT": "", "NOVA_TENANT_CLAIM": ""}


async def seed(server) -> dict[str, str]:
    source = EngineTokenSource(server.url, "-", "-", admin_key=server.admin_key)
    await asyncio.to_thread(source._call, "mutation", "seed:run", {})
    agents = await asyncio.to_thread(source._call, "query", "agents:list", {})
    channels = await asyncio.to_thread(source._call, "query", "channels:list", {})
    ids = {a["name"]: a["_id"] for a in agents} | {f"#{c['name']}": c["_id"] for c in channels}
    ids["key:Friday"] = next(a["sessionKey"] for a in agents if a["name"] == "Friday")
    return ids


@pytest.mark.slow
async def test_token_fetching_from_a_real_engine(server_factory):
    user_key, auth_env = user_env()
    server = server_factory(REPO_ROOT, extra_env={**engine_env("wss://lk.nova.test"), **auth_env})
    ids = await seed(server)
    room, friday = ids["#war-room"], ids["Friday"]

    admin = EngineTokenSource(server.url, room, ids["key:Friday"], admin_key=server.admin_key)
    grant = await admin.fetch()
    assert (grant.server_url, grant.room, grant.identity) == ("wss://lk.nova.test", f"channel-{room}", friday)
    claims = TokenVerifier(KEY, SECRET).verify(grant.token)
    assert claims.identity == friday and claims.name == "Friday" and claims.video.room == f"channel-{room}"
    assert grant.token not in repr(grant)
    assert await admin.agent_ids() == {v for k, v in ids.items() if not k.startswith(("#", "key:"))}

    now = int(time.time())
    user_jwt = jwt.encode({"iss": "https://auth.nova.test", "sub": "alice", "iat": now, "exp": now + 600,
                           "tenantId": "default"}, user_key, algorithm="ES256", headers={"kid": "k1"})
    as_user = EngineTokenSource(server.url, room, ids["key:Friday"], user_token=user_jwt, site_url=server.site_url)
    grant = await as_user.fetch()
    assert grant.identity == friday and TokenVerifier(KEY, SECRET).verify(grant.token).video.room == f"channel-{room}"

    failures = [
        (EngineTokenSource(server.url, ids["#general"], ids["key:Friday"], admin_key=server.admin_key),
         True, "INVALID_VOICE_CHANNEL"),
        (EngineTokenSource(server.url, room, "agent:nobody:here", admin_key=server.admin_key), True, "NOT_FOUND"),
        (EngineTokenSource(server.url, room, ids["key:Friday"], admin_key="wrong-key"), True, "BadAdminKey"),
        (EngineTokenSource(server.url, ids["#general"], ids["key:Friday"], user_token=user_jwt,
                           site_url=server.site_url), True, "INVALID_VOICE_CHANNEL"),
        (EngineTokenSource(server.url, room, ids["key:Friday"], user_token="expired-or-garbage",
                           site_url=server.site_url), True, "UNAUTHENTICATED"),
    ]
    for source, permanent, code in failures:
        with pytest.raises(TokenError) as info:
            await source.fetch()
        assert (info.value.permanent, info.value.code) == (permanent, code), info.value
    server.stop()
    with pytest.raises(TokenError) as info:
        await EngineTokenSource(server.url, room, ids["key:Friday"], admin_key=server.admin_key, timeout=2).fetch()
    assert info.value.permanent is False  # the engine is down: try again later


# --- the real SDK against a stand-in for LiveKit's signal endpoint -------------------------------------


class SignalStandIn:
    """Accepts TCP connections, records each HTTP request line and its Authorization header, and
    answers 401, as a LiveKit server does for a token it rejects."""

    def __init__(self) -> None:
        self.requests: list[tuple[str, str]] = []
        self.seen = asyncio.Event()
        self.server: asyncio.Server | None = None

    async def __aenter__(self) -> "SignalStandIn":
        self.server = await asyncio.start_server(self._handle, "127.0.0.1", 0)
        return self

    async def __aexit__(self, *exc) -> None:
        assert self.server is not None
        self.server.close()
        await self.server.wait_closed()

    @property
    def url(self) -> str:
        assert self.server is not None
        return f"ws://127.0.0.1:{self.server.sockets[0].getsockname()[1]}"

    async def _handle(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        try:
            head = (await reader.readuntil(b"\r\n\r\n")).decode("latin-1")
            line, *headers = head.split("\r\n")
            auth = next((h.split(":", 1)[1].strip() for h in headers if h.lower().startswith("authorization:")), "")
            self.requests.append((line, auth))
            self.seen.set()
            writer.write(b"HTTP/1.1 401 Unauthorized\r\ncontent-length: 0\r\nconnection: close\r\n\r\n")
            await writer.drain()
        except (asyncio.IncompleteReadError, ConnectionError):
            pass
        finally:
            writer.close()

    def tokens(self) -> list[str]:
        return [auth.removeprefix("Bearer ") for line, auth in self.requests if line.startswith("GET /rtc")]


async def test_sdk_connect_goes_to_the_url_with_the_token():
    async with SignalStandIn() as livekit:
        with pytest.raises(ConnectionError, match="cannot join the LiveKit room"):
            await LiveKitConnector(connect_timeout=WAIT).connect(livekit.url, "the-token")
        assert livekit.requests and livekit.requests[0][0].startswith("GET /rtc")
        assert set(livekit.tokens()) == {"the-token"}


async def test_sdk_audio_source_takes_the_pipeline_frames():
    from functions._voice.media import LiveKitAudioOutput, load_rtc

    rtc = load_rtc()
    source = rtc.AudioSource(48_000, 1, queue_size_ms=2_000)
    output = LiveKitAudioOutput(rtc, source, 48_000, 1)
    try:
        async for frame in ToneTts().synthesize("hello there"):
            await output.capture(frame)
        with pytest.raises(ValueError, match="48000 Hz x1"):
            await output.capture(next(tone(20, sample_rate=16_000)))
    finally:
        await output.aclose()


@pytest.mark.slow
async def test_worker_command_line_joins_with_an_engine_token(server_factory):
    async with SignalStandIn() as livekit:
        server = server_factory(REPO_ROOT, extra_env=engine_env(livekit.url))
        ids = await seed(server)
        room = ids["#war-room"]
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "functions._voice.worker", "--channel", room, "--agent", ids["key:Friday"],
            "--url", server.url, "--max-attempts", "2", "--log-level", "WARNING",
            cwd=REPO_ROOT, env={"CONVEX_ADMIN_KEY": server.admin_key, "PATH": "/usr/bin:/bin"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 1, err.decode()
        assert "2 consecutive failures" in err.decode()
        # Two attempts, each with a token fetched for it (two tokens minted within the same second
        # are byte-identical JWTs, so count the attempts rather than distinct strings).
        tokens = livekit.tokens()
        assert len(tokens) >= 2
        for token in tokens:
            claims = TokenVerifier(KEY, SECRET).verify(token)
            assert claims.identity == ids["Friday"] and claims.video.room == f"channel-{room}"
            assert claims.video.room_join and claims.video.can_publish and claims.video.can_subscribe

        # A channel that is not a voice channel ends the worker at once, without retrying.
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "functions._voice.worker", "--channel", ids["#general"], "--agent",
            ids["key:Friday"], "--url", server.url, "--admin-key", server.admin_key,
            cwd=REPO_ROOT, env={"PATH": "/usr/bin:/bin"},
            stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE)
        out, err = await asyncio.wait_for(proc.communicate(), 60)
        assert proc.returncode == 1 and "Invalid voice channel" in err.decode()
