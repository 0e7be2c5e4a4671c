"""The agent voice worker process: keep an agent in a voice channel's LiveKit room.

    python -m functions._voice.worker --channel <channelId> --agent <sessionKey> --url <engine url>
        [--admin-key KEY | $CONVEX_ADMIN_KEY]            token via the Convex HTTP API (the default)
        [--user-token JWT | $NOVA_VOICE_USER_TOKEN] [--site-url URL]   token via POST /voice/token
        [--reply-template T] [--tts tone|silence] [--vad-threshold DBFS] [--max-attempts N]

Loop: fetch a fresh token from the engine -> connect -> publish the agent's audio track -> listen to
every remote audio track (one Conversation listener each) -> when the session ends, reconnect with
back-off. Consecutive failures (token fetch, connect, or a session that dropped before
`stable_after` seconds) grow the delay; a session that lasted resets it. A permanent token error
(bad channel, unknown agent, rejected credentials) or `max_attempts` consecutive failures end `run`
with an exception; `stop()` ends it cleanly. Time and sleeping are injected so tests need no waits.
Speech recognition, replies and speech synthesis are the offline stand-ins of pipeline.py unless
other implementations are passed in.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from typing import Protocol

from .audio import CHANNELS, SAMPLE_RATE
from .media import LiveKitConnector, RoomConnector, RoomSession
from .pipeline import (AudioOutput, Conversation, DurationStt, EnergySegmenter, SilenceTts, TemplateResponder,
                       ToneTts)
from .reconnect import Backoff
from .tokens import EngineTokenSource, TokenError, VoiceGrant

log = logging.getLogger("nova.voice")

# Failures the worker retries; anything else is a bug and propagates.
RETRYABLE = (ConnectionError, TimeoutError, OSError)


class GaveUp(RuntimeError):
    """`max_attempts` consecutive attempts failed."""


class TokenSource(Protocol):  # the part of EngineTokenSource the worker uses (tests pass their own)
    async def fetch(self) -> VoiceGrant: ...


class VoiceWorker:
    def __init__(self, tokens: TokenSource, connector: RoomConnector,
                 conversation: Callable[[AudioOutput], Conversation], *, backoff: Backoff | None = None,
                 max_attempts: int | None = None, stable_after: float = 30.0,
                 sleep: Callable[[float], Awaitable[None]] | None = None, clock: Callable[[], float] = time.monotonic,
                 ignore_speaker: Callable[[str], bool] = lambda identity: False,
                 sample_rate: int = SAMPLE_RATE, channels: int = CHANNELS) -> None:
        self.tokens, self.connector, self.conversation = tokens, connector, conversation
        self.backoff = backoff or Backoff()
        self.max_attempts = max_attempts
        self.stable_after = stable_after
        self._sleep = sleep or self._interruptible_sleep
        self._clock = clock
        self.ignore_speaker = ignore_speaker
        self.sample_rate, self.channels = sample_rate, channels
        self._stop = asyncio.Event()
        # Observable state (logs, tests)
        self.failures = 0  # consecutive
        self.delays: list[float] = []
        self.sessions = 0
        self.connected = asyncio.Event()  # set while a session is up

    def stop(self) -> None:
        self._stop.set()

    async def _interruptible_sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._stop.wait(), seconds)
        except asyncio.TimeoutError:
            pass

    async def run(self) -> None:
        while not self._stop.is_set():
            try:
                grant = await self.tokens.fetch()
                session = await self.connector.connect(grant.server_url, grant.token)
            except TokenError as e:
                if e.permanent:
                    log.error("giving up: %s", e)
                    raise
                await self._failed(f"token: {e}")
                continue
            except RETRYABLE as e:
                await self._failed(f"connect: {e}")
                continue
            started = self._clock()
            self.sessions += 1
            log.info("in room %s as %s (session %d)", grant.room, grant.identity, self.sessions)
            reason = await self._serve(session)
            if self._stop.is_set():
                break
            if self._clock() - started >= self.stable_after:
                self.failures = 0
            await self._failed(f"session ended: {reason}")

    async def _failed(self, why: str) -> None:
        self.failures += 1
        if self.max_attempts is not None and self.failures >= self.max_attempts:
            raise GaveUp(f"{self.failures} consecutive failures, the last: {why}")
        delay = self.backoff.delay(self.failures)
        self.delays.append(delay)
        log.warning("%s; retrying in %.1f s (failure %d)", why, delay, self.failures)
        await self._sleep(delay)

    async def _serve(self, session: RoomSession) -> str:
        tasks: set[asyncio.Task] = set()
        try:
            try:
                output = await session.publish_audio(self.sample_rate, self.channels)
            except Exception as e:  # the SDK has its own error types; a session that cannot speak is retried
                log.exception("publishing the agent's track failed")
                return f"publish failed: {e}"
            conversation = self.conversation(output)
            self.connected.set()
            tasks.add(asyncio.create_task(conversation.run_speaker(), name="voice-speaker"))
            tasks.add(asyncio.create_task(self._accept(session, conversation, tasks), name="voice-accept"))
            closed = asyncio.create_task(session.wait_closed(), name="voice-closed")
            stopping = asyncio.create_task(self._stop.wait(), name="voice-stop")
            tasks |= {closed, stopping}  # cancelled and awaited below, whichever wins
            await asyncio.wait({closed, stopping}, return_when=asyncio.FIRST_COMPLETED)
            return closed.result() if closed.done() else "stopped"
        finally:
            self.connected.clear()
            for task in tasks:
                task.cancel()
            await asyncio.gather(*tasks, return_exceptions=True)
            try:
                await session.close()
            except Exception:  # the session is over either way
                log.exception("closing the session failed")

    async def _accept(self, session: RoomSession, conversation: Conversation, tasks: set[asyncio.Task]) -> None:
        async for remote in session.remote_audio():
            if self.ignore_speaker(remote.participant):
                log.info("not listening to %s", remote.participant)
                continue
            task = asyncio.create_task(conversation.listen(remote.participant, remote.frames),
                                       name=f"voice-listen-{remote.participant}")
            tasks.add(task)
            task.add_done_callback(lambda t: (tasks.discard(t), _report(t)))


def _report(task: asyncio.Task) -> None:
    if not task.cancelled() and task.exception() is not None:
        log.error("listening failed in %s", task.get_name(), exc_info=task.exception())


# --- the command line -------------------------------------------------------------------------------


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m functions._voice.worker", description=(__doc__ or "").split("\n\n")[0])
    p.add_argument("--channel", required=True, help="the voice channel's id")
    p.add_argument("--agent", required=True, help="the agent's sessionKey (e.g. agent:main:main)")
    p.add_argument("--url", required=True, help="the engine's URL (Convex HTTP API, e.g. http://127.0.0.1:3210)")
    p.add_argument("--admin-key", default=os.environ.get("CONVEX_ADMIN_KEY"),
                   help="the deployment's admin key (default $CONVEX_ADMIN_KEY)")
    p.add_argument("--user-token", default=os.environ.get("NOVA_VOICE_USER_TOKEN"),
                   help="a user JWT instead of the admin key: the token comes from POST /voice/token")
    p.add_argument("--site-url", help="the site origin serving /voice/token (default: --url)")
    p.add_argument("--reply-template", default="{agent} heard {speaker}: {transcript}")
    p.add_argument("--tts", choices=("tone", "silence"), default="tone")
    p.add_argument("--vad-threshold", type=float, default=-45.0, help="voiced above this level (dBFS)")
    p.add_argument("--listen-to-agents", action="store_true",
                   help="also answer other agents in the room (by default they are ignored, so two agents "
                        "do not talk to each other forever)")
    p.add_argument("--max-attempts", type=int, default=None, help="give up after N consecutive failures")
    p.add_argument("--log-level", default="INFO")
    args = p.parse_args(argv)
    if not args.admin_key and not args.user_token:
        p.error("pass --admin-key (or set CONVEX_ADMIN_KEY) or --user-token (or set NOVA_VOICE_USER_TOKEN)")
    return args


def build_worker(args: argparse.Namespace, connector: RoomConnector | None = None,
                 agent_ids: frozenset[str] = frozenset()) -> VoiceWorker:
    tokens = EngineTokenSource(args.url, args.channel, args.agent, admin_key=args.admin_key,
                               user_token=None if args.admin_key else args.user_token, site_url=args.site_url)
    tts = ToneTts() if args.tts == "tone" else SilenceTts()

    def conversation(output: AudioOutput) -> Conversation:
        return Conversation(stt=DurationStt(), responder=TemplateResponder(args.agent, args.reply_template), tts=tts,
                            output=output,
                            segmenter=lambda speaker: EnergySegmenter(speaker, threshold_dbfs=args.vad_threshold))

    return VoiceWorker(tokens, connector or LiveKitConnector(), conversation, max_attempts=args.max_attempts,
                       ignore_speaker=lambda identity: identity in agent_ids)


async def amain(args: argparse.Namespace) -> int:
    agents: frozenset[str] = frozenset()
    if not args.listen_to_agents:
        probe = EngineTokenSource(args.url, args.channel, args.agent, admin_key=args.admin_key,
                                  user_token=None if args.admin_key else args.user_token, site_url=args.site_url)
        try:
            agents = await probe.agent_ids()
        except TokenError as e:
            print(f"voice worker: cannot list the agents to ignore ({e}); listening to everyone", file=sys.stderr)
    worker = build_worker(args, agent_ids=agents)
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, worker.stop)
    try:
        await worker.run()
    except (TokenError, GaveUp) as e:
        print(f"voice worker: {e}", file=sys.stderr)
        return 1
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    return asyncio.run(amain(args))


def exit_process(code: int) -> None:
    """End the worker process without interpreter finalization.

    The LiveKit SDK runs a native (Rust/tokio) runtime whose threads may still be finishing a
    connection attempt when we decide to stop, e.g. the signal client's fallback retry after a
    refused join. Python's normal exit disposes that runtime from an atexit hook while those
    threads run, which occasionally aborts the process with a native panic (exit status -6
    instead of ours). The worker holds nothing that needs finalizers, so flush what we wrote and
    leave with os._exit: the exit status is always the one we chose."""
    logging.shutdown()
    for stream in (sys.stdout, sys.stderr):
        try:
            stream.flush()
        except (OSError, ValueError):
            pass
    os._exit(code)


if __name__ == "__main__":
    exit_process(main())
