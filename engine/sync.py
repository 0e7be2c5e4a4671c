"""One WebSocket sync session: the Convex client protocol's state machine (reference §1, §2, §5, §10).

The session owns the connection's versions. Its invariants:

- Messages are handled in arrival order. ModifyQuerySet and Authenticate only record what changed
  and ask the `SubscriptionManager` for a round; the manager applies them at one snapshot and hands
  back modifications, and `push_transition` chains `startVersion` to the one authoritative current
  version. Nothing else creates Transitions.
- Mutations run one at a time in arrival order (a queue and one worker); actions run concurrently.
  Every response is queued before the session asks for the Transition that follows it, so a client
  always sees MutationResponse(ts=T) before a Transition with endVersion.ts >= T.
- The outbox is bounded in practice: a Transition that has not gone out yet absorbs later ones
  (start stays, end and modifications move forward — the newest state wins), so a slow socket holds
  at most one pending Transition plus its responses and never delays anyone else.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections import deque
from collections.abc import Awaitable, Callable
from typing import TYPE_CHECKING, Any

import msgspec

from .errors import EngineError
from .loader import canonicalize_path
from .protocol import (
    PING,
    Action,
    Add,
    Authenticate,
    ClientMessage,
    Connect,
    Event,
    ModifyQuerySet,
    Mutation,
    ProtocolError,
    Remove,
    StateVersion,
    action_response,
    auth_error,
    decode_client_message,
    decode_ts,
    fatal_error,
    mutation_response,
)
from .runner import Auth, Idempotency, request_id
from .values import from_wire, to_wire

if TYPE_CHECKING:
    from .deployment import Deployment, Outcome
    from .subscriptions import QueryEntry, SubscriptionManager

__all__ = ["SyncSession", "CloseConnection"]

log = logging.getLogger("engine.sync")
MAX_QUEUED_MUTATIONS = 1000
MAX_INFLIGHT_ACTIONS = 1000
CHUNK_THRESHOLD = 5_000_000
CHUNK_SIZE = 1_000_000


class CloseConnection(Exception):
    """End the connection: optionally send `message` first, then close with `code`/`reason`."""

    def __init__(self, code: int, reason: str, message: bytes | None = None) -> None:
        super().__init__(reason)
        self.code = code
        self.reason = reason
        self.message = message


class _Transition:
    __slots__ = ("start", "end", "frags")

    def __init__(self, start: StateVersion, end: StateVersion, frags: dict[int, bytes]) -> None:
        self.start = start
        self.end = end
        self.frags = frags

    def encode(self, clock_skew: float | None) -> bytes:
        mods = b",".join(self.frags[q] for q in sorted(self.frags))
        skew = b"null" if clock_skew is None else str(clock_skew).encode()
        return (b'{"type":"Transition","startVersion":%s,"endVersion":%s,"modifications":[%s],'
                b'"clientClockSkew":%s,"serverTs":%d}' % (
                    self.start.encode(), self.end.encode(), mods, skew, time.time_ns()))


def _removed(query_id: int) -> bytes:
    return b'{"type":"QueryRemoved","queryId":%d}' % query_id


# With a buffering `send`, frames queued together go out in one write, at most this many at a time
# (a slow reader still applies backpressure between bursts).
FLUSH_EVERY_FRAMES = 64


class SyncSession:
    def __init__(self, dep: Deployment, manager: SubscriptionManager, send: Callable[[bytes], Awaitable[None]], *,
                 npm: bool, flush: Callable[[], Awaitable[None]] | None = None) -> None:
        """`send(frame)` sends one message; with `flush`, `send` only buffers and `flush()` writes
        what was buffered (one write for a burst of frames) and waits while the socket is full."""
        self.dep = dep
        self.manager = manager
        self._send = send
        self._write_out = flush
        self.npm = npm
        self.closed = False
        self.session_id: str | None = None
        self._reconnected = True  # set by Connect: False on a session's first connection
        self.clock_skew: float | None = None
        # Versions: what the client sent (received_*), what a Transition has applied (applied_*).
        self.version = StateVersion(0, 0, 0)
        self.received_qs = 0
        self.received_identity = 0
        self.applied_qs = 0
        self.applied_identity = 0
        self.auth = Auth()  # the identity queries run as (applied in a round)
        self.request_auth = Auth()  # the identity mutations/actions run as (applied on receipt)
        self._pending_auth: tuple[Auth, int] | None = None
        self._pending_mods: list[tuple[Add | Remove, int]] = []
        self.live_ids: set[int] = set()
        self.queries: dict[int, QueryEntry] = {}
        self.changed_queries: set[int] = set()
        self._force = False
        # Outgoing frames, written by one sender task at a time; the task exists only while there
        # is something to send (idle connections hold no task, queue or event: see _kick_sender).
        self._outbox: deque[bytes | _Transition] = deque()
        self._sender: asyncio.Task[None] | None = None
        self._send_failed = False
        self._drain_waiters: list[asyncio.Future[None]] | None = None  # see wait_drained
        self.last_sent = time.monotonic()
        # Mutations run one at a time in arrival order, by a worker that exists while any wait.
        self._mutations: deque[tuple[Mutation, Auth]] = deque()
        self._mutation_worker_task: asyncio.Task[None] | None = None
        self._actions: set[asyncio.Task[None]] = set()
        self._tasks: list[asyncio.Task[None]] = []
        self._fatal: CloseConnection | None = None
        self._close: Callable[[int, str], Awaitable[None]] | None = None
        self.expires_at: float | None = None  # when the user token expires (unix seconds)
        self.closing = False
        self.specs: dict[int, Add] = {}  # every live query as the client added it
        self.resubscribe_all = False  # set when the app's code changed (dev mode)
        manager.sessions.add(self)

    # -- lifecycle --------------------------------------------------------------------------------
    async def run(self, receive: Callable[[], Awaitable[str | bytes | None]],
                  close: Callable[[int, str], Awaitable[None]]) -> None:
        self._close = close
        self._kick_sender()  # anything queued before the loop started
        try:
            while self._fatal is None:
                frame = await receive()
                if frame is None:
                    break
                try:
                    await self.handle(decode_client_message(frame))
                except ProtocolError as e:
                    raise CloseConnection(1000, "FatalError", fatal_error(str(e))) from None
            if self._fatal is not None:
                raise self._fatal
        except CloseConnection as c:
            if c.message is not None:
                self.enqueue(c.message)
            await self._flush()
            try:
                await close(c.code, c.reason)
            except Exception:
                pass
        finally:
            self.shutdown()

    def shutdown(self) -> None:
        if self.closed:
            return
        self.closed = True
        for task in [*self._tasks, *self._actions, self._sender, self._mutation_worker_task]:
            if task is not None:
                task.cancel()
        self.manager.forget(self)
        self._outbox.clear()
        for waiter in self._drain_waiters or ():
            if not waiter.done():
                waiter.set_result(None)
        self._drain_waiters = None

    async def _flush(self) -> None:
        """Send whatever is queued (used right before closing)."""
        if self._sender is not None:
            await asyncio.wait({self._sender})  # it owns the write side until it is done
        try:
            while self._outbox:
                await self._send_item(self._outbox.popleft())
            if self._write_out is not None:
                await self._write_out()
        except Exception:
            return

    # -- incoming ---------------------------------------------------------------------------------
    async def handle(self, msg: ClientMessage) -> None:
        if isinstance(msg, ModifyQuerySet):
            self._modify_query_set(msg)
        elif isinstance(msg, Mutation):
            if len(self._mutations) >= MAX_QUEUED_MUTATIONS:
                raise CloseConnection(1013, "TooManyConcurrentMutations")
            self._mutations.append((msg, self.request_auth))
            if self._mutation_worker_task is None:
                self._mutation_worker_task = asyncio.create_task(self._mutation_worker())
        elif isinstance(msg, Action):
            if len(self._actions) >= MAX_INFLIGHT_ACTIONS:
                raise CloseConnection(1013, "TooManyConcurrentActions")
            task = asyncio.create_task(self._run_action(msg, self.request_auth))
            self._actions.add(task)
            task.add_done_callback(self._actions.discard)
        elif isinstance(msg, Authenticate):
            await self._authenticate(msg)
        elif isinstance(msg, Connect):
            self._connect(msg)
        elif isinstance(msg, Event):
            pass  # client telemetry
        else:  # pragma: no cover - the union is exhaustive
            raise ProtocolError(f"unexpected message {msg!r}")

    def _connect(self, msg: Connect) -> None:
        self.session_id = msg.sessionId
        # A client's first open of its session (the npm client keeps one session id across
        # reconnects and counts them): none of its mutations can have run yet.
        self._reconnected = msg.connectionCount != 0
        if msg.clientTs:
            self.clock_skew = msg.clientTs - time.time() * 1000
        if msg.maxObservedTimestamp:
            try:
                observed = decode_ts(msg.maxObservedTimestamp)
            except Exception:
                raise ProtocolError("maxObservedTimestamp is not a valid timestamp") from None
            # A client a little ahead of us (a restart elsewhere, a clock step) must not be locked
            # out: move the clock past what it has seen. Further ahead than the bounded skew, the
            # value is not trusted and only ignored: no client may push the shared clock.
            if not self.dep.committer.advance_to(observed):
                log.info("ignoring a maxObservedTimestamp %.0f s ahead of this server's clock",
                         (observed - time.time_ns()) / 1e9)

    def _modify_query_set(self, msg: ModifyQuerySet) -> None:
        if msg.baseVersion != self.received_qs:
            raise CloseConnection(1000, "BaseVersionMismatch", fatal_error(
                f"BaseVersionMismatch: ModifyQuerySet baseVersion {msg.baseVersion} does not match the "
                f"server's query set version {self.received_qs}."))
        if msg.newVersion <= msg.baseVersion:
            raise CloseConnection(1000, "BadRequest", fatal_error(
                f"ModifyQuerySet newVersion {msg.newVersion} must be greater than baseVersion {msg.baseVersion}."))
        for mod in msg.modifications:
            if isinstance(mod, Add):
                if mod.queryId in self.live_ids:
                    raise CloseConnection(1011, "InternalServerError")  # "Duplicate query ID"
                self.live_ids.add(mod.queryId)
            else:
                if mod.queryId not in self.live_ids:
                    raise CloseConnection(1011, "InternalServerError")  # removing an unknown query
                self.live_ids.discard(mod.queryId)
            self._pending_mods.append((mod, msg.newVersion))
        self.received_qs = msg.newVersion
        if not msg.modifications:
            self._pending_mods.append((None, msg.newVersion))  # type: ignore[arg-type]
        self.manager.request(self)

    async def _authenticate(self, msg: Authenticate) -> None:
        if msg.baseVersion != self.received_identity:
            raise CloseConnection(1000, "BaseVersionMismatch", fatal_error(
                f"BaseVersionMismatch: Authenticate baseVersion {msg.baseVersion} does not match the "
                f"server's identity version {self.received_identity}."))
        try:
            auth, self.expires_at = await self._resolve_auth(msg)
        except EngineError as e:
            raise CloseConnection(1000, "AuthError", auth_error(e.message, self.received_identity, True)) from None
        self.received_identity += 1
        self.request_auth = auth
        self._pending_auth = (auth, self.received_identity)
        self.manager.request(self)

    async def _resolve_auth(self, msg: Authenticate) -> tuple[Auth, float | None]:
        from .auth import authenticate_with_expiry

        return await authenticate_with_expiry(self.dep, msg.tokenType, msg.value,
                                              impersonating=msg.impersonating or msg.acting_as)

    def _check_expiry(self, now: float) -> bool:
        """A user token that expired while connected: AuthError (not attempted) and close, like Convex."""
        if self.expires_at is None or now < self.expires_at or self.closing:
            return False
        from .auth import token_expired_error

        self.enqueue(auth_error(token_expired_error().message, self.received_identity, False))
        self.fail(1000, "TokenExpired")
        return True

    async def _close_after_flush(self, code: int, reason: str) -> None:
        while self._sender is not None and not self.closed:
            await asyncio.wait({self._sender})  # the sender owns the socket's write side
        if self._close is not None and not self.closed:
            try:
                await self._close(code, reason)
            except Exception:
                pass

    def fail(self, code: int, reason: str) -> None:
        """Close this connection from outside its receive loop (the client reconnects)."""
        if self.closing or self.closed:
            return
        self.closing = True
        self._tasks.append(asyncio.create_task(self._close_after_flush(code, reason)))

    # -- applied by the manager, inside a round -----------------------------------------------------
    async def apply_pending(self, manager: SubscriptionManager, snapshot: Any, frags: dict[int, bytes]) -> None:
        self._force = True  # whatever asked for this round is answered by a Transition
        resubscribe = self.resubscribe_all
        self.resubscribe_all = False
        if self._pending_auth is not None:
            auth, version = self._pending_auth
            self._pending_auth = None
            self.auth = auth
            self.applied_identity = version
            resubscribe = True
        if resubscribe:
            # A new identity (or new code) re-runs every query (shared ones are reused); paths are
            # resolved again, since what is visible (internal functions) depends on who asks.
            for qid, entry in list(self.queries.items()):
                manager.unsubscribe(self, qid, entry)
                spec = self.specs[qid]
                new = await self._subscribe(manager, spec, snapshot, journal=entry.journal)
                self.queries[qid] = new
                # The client holds the old entry's result: send only what differs from it.
                if new.tail != entry.tail or new.failed != entry.failed:
                    frags[qid] = new.fragment(qid)
        mods, self._pending_mods = self._pending_mods, []
        for mod, version in mods:
            if isinstance(mod, Add):
                entry = await self._subscribe(manager, mod, snapshot)
                self.specs[mod.queryId] = mod
                self.queries[mod.queryId] = entry
                frags[mod.queryId] = entry.fragment(mod.queryId)
            elif isinstance(mod, Remove):
                entry = self.queries.pop(mod.queryId, None)
                self.specs.pop(mod.queryId, None)
                if entry is not None:
                    manager.unsubscribe(self, mod.queryId, entry)
                frags[mod.queryId] = _removed(mod.queryId)
            self.applied_qs = version
        for qid in self.changed_queries:
            entry = self.queries.get(qid)
            if entry is not None:
                frags[qid] = entry.fragment(qid)
        self.changed_queries.clear()

    async def _subscribe(self, manager: SubscriptionManager, mod: Add, snapshot: Any,
                         journal: str | None = None) -> QueryEntry:
        from .deployment import _NotFound

        error = None
        fn = None
        args: Any = None
        try:
            path = canonicalize_path(mod.udfPath)
            args = _decode_args(mod.args)
            fn = self.dep.lookup(path, kind="query", auth=self.auth)
        except _NotFound as e:
            error = e.client_message(request_id())
            path = mod.udfPath
        except (EngineError, ValueError) as e:
            error = e.message if isinstance(e, EngineError) else str(e)
            path = mod.udfPath
        return await manager.subscribe(self, mod.queryId, path, fn, args, self.auth,
                                       journal or mod.journal or None, snapshot, error=error)

    def push_transition(self, ts: int, frags: dict[int, bytes]) -> None:
        end = StateVersion(self.applied_qs, self.applied_identity, max(ts, self.version.ts))
        if not frags and not self._force and end == self.version:
            self.flush_soon()  # a mutation's response waiting for this round
            return
        self._force = False
        start, self.version = self.version, end
        last = self._outbox[-1] if self._outbox else None
        if isinstance(last, _Transition):
            last.end = end
            last.frags.update(frags)
        else:
            self._outbox.append(_Transition(start, end, frags))
            self._kick_sender()

    # -- outgoing ---------------------------------------------------------------------------------
    def flush_soon(self) -> None:
        """Send whatever waits in the outbox (a mutation's response held for its Transition)."""
        if self._outbox:
            self._kick_sender()

    def enqueue(self, data: bytes) -> None:
        self._outbox.append(data)
        self._kick_sender()

    async def _send_item(self, item: bytes | _Transition) -> None:
        data = item if isinstance(item, bytes) else item.encode(self.clock_skew)
        self.last_sent = time.monotonic()
        if self.npm and len(data) > CHUNK_THRESHOLD and isinstance(item, _Transition):
            text = data.decode()
            parts = [text[i:i + CHUNK_SIZE] for i in range(0, len(text), CHUNK_SIZE)]
            for n, part in enumerate(parts):
                await self._send(msgspec.json.encode({
                    "type": "TransitionChunk", "chunk": part, "partNumber": n, "totalParts": len(parts),
                    "transitionId": str(len(text))}))
            return
        await self._send(data)

    def _kick_sender(self) -> None:
        if self._sender is None and self._close is not None and not self.closed and not self._send_failed:
            self._sender = asyncio.create_task(self._send_all())

    async def _send_all(self) -> None:
        try:
            while self._outbox:
                burst = 0
                while self._outbox and burst < FLUSH_EVERY_FRAMES:
                    await self._send_item(self._outbox.popleft())
                    burst += 1
                if self._write_out is not None:
                    await self._write_out()
        except Exception as e:  # the socket is gone; the receive loop ends on its own
            log.debug("sync send failed: %s", e)
            self._send_failed = True
            self._outbox.clear()
        finally:
            # No await between the last emptiness check and this: a frame queued after it finds
            # no sender and starts one.
            self._sender = None
            waiters, self._drain_waiters = self._drain_waiters, None
            for waiter in waiters or ():
                if not waiter.done():
                    waiter.set_result(None)

    async def wait_drained(self, *, after_next_send: bool = False) -> None:
        """Return once nothing is queued and no send is in flight; with `after_next_send`, once
        that happens again after the next send (in-process tests step a conversation with it)."""
        if self.closed or self._send_failed or (not after_next_send and self._sender is None and not self._outbox):
            return
        waiter = asyncio.get_running_loop().create_future()
        if self._drain_waiters is None:
            self._drain_waiters = []
        self._drain_waiters.append(waiter)
        await waiter

    def ping_if_idle(self, now: float, interval: float) -> None:
        if self._check_expiry(time.time()):
            return
        if not self._outbox and now - self.last_sent >= interval:
            self.last_sent = now
            self.enqueue(PING)

    # -- requests -----------------------------------------------------------------------------------
    async def _mutation_worker(self) -> None:
        try:
            while self._mutations:
                msg, auth = self._mutations.popleft()
                try:
                    await self._run_mutation(msg, auth)
                except Exception:  # a bug of ours, not the function's (those are outcomes)
                    log.exception("mutation %s (request %s) could not be answered", msg.udfPath, msg.requestId)
        finally:
            self._mutation_worker_task = None

    async def _run_mutation(self, msg: Mutation, auth: Auth) -> None:
        outcome = await self._call(msg.udfPath, msg.args, "mutation", auth,
                                   idempotency=Idempotency(self.session_id, msg.requestId, self._reconnected)
                                   if self.session_id else None)
        response = (mutation_response(msg.requestId, True, outcome.wire, outcome.ts, outcome.log_lines)
                    if outcome.success else self._failure(mutation_response, msg.requestId, outcome))
        # Convex schedules a Transition after every mutation (the JS promise resolves on it). The
        # response waits in the outbox for it: the next round's push_transition sends both at once.
        self._outbox.append(response)
        self.manager.request(self)

    async def _run_action(self, msg: Action, auth: Auth) -> None:
        outcome = await self._call(msg.udfPath, msg.args, "action", auth)
        if outcome.success:
            self.enqueue(action_response(msg.requestId, True, outcome.wire, outcome.log_lines))
        else:
            self.enqueue(self._failure(action_response, msg.requestId, outcome))
        self.manager.request(self)

    async def _call(self, path: str, raw_args: list[Any], kind: str, auth: Auth,
                    idempotency: Idempotency | None = None) -> Outcome:
        from .deployment import Outcome

        try:
            args = _decode_args(raw_args)
        except ValueError as e:
            return Outcome(False, error_message=str(e))
        try:
            return await self.dep.call(path, args, kind=kind, auth=auth, idempotency=idempotency)
        except EngineError as e:
            return Outcome(False, error_message=f"{e.code}: {e.message}")

    @staticmethod
    def _failure(build: Callable[..., bytes], request_id: int, outcome: Outcome) -> bytes:
        """A failed Mutation/ActionResponse; `errorData` only for a ConvexError (protocol §1.3)."""
        from .deployment import MISSING

        kwargs = {} if outcome.error_data is MISSING else {"error_data": to_wire(outcome.error_data)}
        if build is mutation_response:
            return mutation_response(request_id, False, outcome.error_message, None, outcome.log_lines, **kwargs)
        return action_response(request_id, False, outcome.error_message, outcome.log_lines, **kwargs)

def _decode_args(raw: Any) -> dict[str, Any]:
    """`args` on the wire is a one-element array holding the encoded arguments object."""
    if not isinstance(raw, list) or len(raw) != 1:
        raise ValueError("ArgumentValidationError: args must be an array holding exactly one object")
    args = from_wire(raw[0])
    if not isinstance(args, dict):
        raise ValueError("ArgumentValidationError: the arguments must be an object")
    return args
