"""Running user code: a step driver that knows when a function suspends, and its execution limits.

    value = await run_user_code(handler(ctx, args), limit=QUERY_MUTATION_LIMIT, on_suspend=view.freeze)

`run_user_code` drives the function's coroutine itself, one step at a time, passing every future it
waits on through to the asyncio task, so it behaves exactly like `await handler(...)`. Driving it
buys two things:

- `on_suspend()` runs at the function's first real suspension, before any other task can run:
  a mutation that never suspends ran inside one event-loop step (engine.tail relies on this).
- The time the function's own steps spend on the CPU is known, so Convex's execution limits can be
  applied to it: queries and mutations get 1 second of execution (Convex: "user code, not database
  operations"; here each step counts from when it is resumed to when it suspends or returns, the
  engine's reads included, the garbage collector's pauses not), actions 10 minutes of wall time
  (Convex's Node runtime).

A step that overruns is interrupted by the watchdog thread: it delivers SIGUSR2 to the main thread
(whose handler raises `UserTimeout` inside the running step, at the next bytecode boundary), so a
`while True: pass` in a query stops after its second and every other client keeps being served. The
signal is only acted on while the same step of the same function is still on the CPU; anywhere
else it is ignored. Where signals cannot be used (a thread other than the main one, or a host
process that owns SIGUSR2), a step's overrun is still detected when it ends.
"""

from __future__ import annotations

import asyncio
import gc
import os
import signal
import sys
import threading
import time
from collections.abc import Callable, Coroutine, Generator
from typing import Any

from .errors import EngineError

__all__ = ["run_user_code", "UserTimeout", "SystemTimeout", "StepTimeout", "QUERY_MUTATION_LIMIT_S",
           "QUERY_MUTATION_WALL_S", "ACTION_LIMIT_S", "ACTION_STEP_LIMIT_S", "Watchdog"]


def _knob(name: str, default: float) -> float:
    # Convex's self-hosted backend reads the same names (crates/common/src/knobs.rs).
    try:
        return float(os.environ.get(name, default))
    except ValueError:
        return default


QUERY_MUTATION_LIMIT_S = _knob("DATABASE_UDF_USER_TIMEOUT_SECONDS", 1.0)
# The user second plus Convex's DATABASE_UDF_SYSTEM_TIMEOUT (15 s) of time spent suspended.
QUERY_MUTATION_WALL_S = QUERY_MUTATION_LIMIT_S + _knob("DATABASE_UDF_SYSTEM_TIMEOUT_SECONDS", 15.0)
ACTION_LIMIT_S = _knob("NODE_ACTION_USER_TIMEOUT_SECS", 600.0)  # Convex's Node runtime
# Ours: actions share the event loop with every client, so one stretch of an action's code between
# two awaits may run at most this long (Convex runs actions in isolates of their own).
ACTION_STEP_LIMIT_S = _knob("ENGINE_ACTION_STEP_TIMEOUT_SECS", 5.0)


def _limit_text(seconds: float) -> str:
    # Rust's Debug form of a Duration, as Convex prints it: 1s, 600s, 1.5s.
    return f"{seconds:g}s"


class UserTimeout(EngineError):
    """A function ran past its execution limit. Reported as Convex reports it (no code prefix)."""

    bare = True  # clients see the message alone, as Convex words a terminated isolate

    def __init__(self, seconds: float) -> None:
        super().__init__("UserTimeout", f"Function execution timed out (maximum duration: {_limit_text(seconds)})")
        self.seconds = seconds


class StepTimeout(EngineError):
    """An action's code ran too long without awaiting anything."""

    bare = True

    def __init__(self, seconds: float) -> None:
        super().__init__("UserTimeout", f"Function execution timed out: the action ran for more than "
                         f"{_limit_text(seconds)} without awaiting, holding up every other client of this "
                         "server (run long computations with asyncio.to_thread)")
        self.seconds = seconds


class SystemTimeout(EngineError):
    """A query or mutation spent too long suspended (Convex's system-time limit)."""

    def __init__(self) -> None:
        super().__init__("SystemTimeoutError", "Your request timed out performing too many system operations.")


class _CollectorPauses:
    """The time the cyclic garbage collector has held the process so far. A full collection walks
    every object of the process (~0.2 s with 1 000 clients connected; up to 1.3 s in the test
    suite's process, 1.4 million objects), on whichever thread allocated last. The function step it
    lands in did not cause it, so execution limits leave it out: a one-millisecond mutation once
    failed with "Function execution timed out" that way (Convex runs each function in an isolate
    whose heap is that function's alone). Fed by `gc.callbacks`.

    Left out up to COLLECTOR_ALLOWANCE_S per step: a step that is nearly all collection (say
    `gc.collect()` in a loop) is still stopped, a few seconds later than its limit."""

    __slots__ = ("total", "since")

    def __init__(self) -> None:
        self.total = 0.0  # seconds of finished collections
        self.since = 0.0  # when the running collection started; 0.0 when none runs

    def on_gc(self, phase: str, info: dict[str, int]) -> None:
        now = time.monotonic()
        if phase == "start":
            self.since = now
        elif self.since:
            self.total += now - self.since
            self.since = 0.0

    def clock(self, now: float) -> float:
        """`now` (time.monotonic()) with every collection until then, a running one too, taken out."""
        # `since` before `total` (on_gc writes them the other way round): read from the watchdog's
        # thread as a collection ends, the clock can only lag, never count the collection.
        since = self.since
        total = self.total
        return now - total - (now - since if since else 0.0)


PAUSES = _CollectorPauses()
gc.callbacks.append(PAUSES.on_gc)
_ON_GC_CODE = _CollectorPauses.on_gc.__code__
# At most this much of the collector's time is left out of one step (see _CollectorPauses).
COLLECTOR_ALLOWANCE_S = 5.0


class _Budget:
    __slots__ = ("limit", "step_limit", "used", "step_started", "step_wall", "last_step")

    def __init__(self, limit: float, step_limit: float | None = None) -> None:
        self.limit = limit
        self.step_limit = step_limit if step_limit is not None else limit
        self.used = 0.0
        self.step_started = 0.0  # PAUSES.clock() when the running step began
        self.step_wall = 0.0  # time.monotonic() then
        self.last_step = 0.0

    def step_time(self) -> float:
        """The running step's time so far: the collector's pauses left out, up to the allowance."""
        now = time.monotonic()
        return max(PAUSES.clock(now) - self.step_started, now - self.step_wall - COLLECTOR_ALLOWANCE_S)

    def over(self) -> bool:
        return self.used > self.limit or self.last_step > self.step_limit

    def error(self, step: float) -> EngineError:
        if step > self.step_limit and self.step_limit < self.limit:
            return StepTimeout(self.step_limit)
        return UserTimeout(self.limit)


class Watchdog:
    """One background thread watching the user-code step on the CPU. Steps nest (an action's
    `ctx.run_query` runs inside the action's step), so the running ones form a stack and the
    innermost is watched; `begin`/`end` are a push and a pop. The thread polls every POLL_S."""

    POLL_S = 0.05

    def __init__(self) -> None:
        self._stack: list[_Budget] = []
        self._step = 0  # increments at every begin(): identifies the step a signal was meant for
        self._fired_for = -1
        self._thread: threading.Thread | None = None
        self._main = threading.main_thread().ident
        self._installed = False
        self._lock = threading.Lock()

    def _ensure(self) -> None:
        if self._thread is not None:
            return
        with self._lock:
            if self._thread is not None:
                return
            if threading.current_thread() is threading.main_thread():
                try:
                    previous = signal.getsignal(signal.SIGUSR2)
                    if previous in (signal.SIG_DFL, None):
                        signal.signal(signal.SIGUSR2, self._on_signal)
                        self._installed = True
                except (ValueError, OSError):  # not the main interpreter
                    self._installed = False
            thread = threading.Thread(target=self._watch, name="engine-watchdog", daemon=True)
            thread.start()
            self._thread = thread

    def begin(self, budget: _Budget) -> None:
        if self._thread is None:
            self._ensure()
        self._step += 1
        budget.step_wall = now = time.monotonic()
        budget.step_started = PAUSES.clock(now)
        self._stack.append(budget)

    def end(self, budget: _Budget) -> None:
        stack = self._stack
        if stack and stack[-1] is budget:
            stack.pop()
            self._step += 1  # whatever was running before is a new step for the watchdog
            budget.last_step = budget.step_time()
            budget.used += budget.last_step

    def _watch(self) -> None:
        while True:
            time.sleep(self.POLL_S)
            stack, step = self._stack, self._step
            if not stack or not self._installed or self._fired_for == step:
                continue
            budget = stack[-1]
            step_time = budget.step_time()
            if budget.used + step_time > budget.limit or step_time > budget.step_limit:
                self._fired_for = step
                signal.pthread_kill(self._main, signal.SIGUSR2)  # type: ignore[arg-type]

    def _on_signal(self, signum: int, frame: Any) -> None:
        # Only the step the watchdog measured, and only while it is still on the CPU.
        if self._stack and self._fired_for == self._step:
            if _swallows(frame):
                self._raise_later(frame)
                return
            budget = self._stack[-1]
            self.end(budget)
            raise budget.error(budget.last_step)

    def _raise_later(self, frame: Any) -> None:
        """The signal landed in the collector's callback or in a finalizer, which swallow exceptions
        (and a step that is all collections lands there every time): raise from the first line the
        step runs outside them instead, with a one-shot trace function (as a debugger stops)."""
        step, previous, fired = self._step, sys.gettrace(), False

        def trace(f: Any, event: str, arg: Any) -> Any:
            nonlocal fired
            if fired:
                return None
            if _swallows(f):
                return trace
            fired = True
            sys.settrace(previous)
            if self._stack and self._fired_for == step == self._step:
                budget = self._stack[-1]
                self.end(budget)
                raise budget.error(budget.last_step)
            return None

        f = frame
        while f is not None:  # frames already running get their next line traced too
            f.f_trace = trace
            f = f.f_back
        sys.settrace(trace)


def _swallows(frame: Any) -> bool:
    """Whether an exception raised in `frame` would be swallowed: a collection is running (its
    callbacks and finalizers run inside it), or the frame is a finalizer."""
    if PAUSES.since:
        return True
    return frame is not None and (frame.f_code is _ON_GC_CODE or frame.f_code.co_name == "__del__")


WATCHDOG = Watchdog()


class _Deadline:
    """A wall-clock limit, armed only once the function first suspends (most never do)."""

    __slots__ = ("expired", "handle")

    def __init__(self, seconds: float) -> None:
        self.expired = False
        task = asyncio.current_task()
        self.handle = asyncio.get_running_loop().call_later(seconds, self._expire, task)

    def _expire(self, task: asyncio.Task[Any] | None) -> None:
        self.expired = True
        if task is not None:
            task.cancel()


def _drive(coro: Coroutine[Any, Any, Any], budget: _Budget | None, wall_limit: float | None,
           on_suspend: Callable[[], None] | None) -> Generator[Any, Any, Any]:
    system_after = budget.limit if budget is not None and wall_limit is not None and budget.limit < wall_limit else None
    watchdog = WATCHDOG
    send: Any = None
    throw: BaseException | None = None
    deadline: _Deadline | None = None
    suspended = False
    try:
        while True:
            if budget is not None:
                watchdog.begin(budget)
            try:
                try:
                    if throw is not None:
                        yielded = coro.throw(throw)
                    else:
                        yielded = coro.send(send)
                finally:
                    if budget is not None:
                        watchdog.end(budget)
            except StopIteration as done:
                if budget is not None and budget.over():
                    raise budget.error(budget.last_step) from None
                return done.value
            except asyncio.CancelledError:
                if deadline is not None and deadline.expired:
                    # Actions' whole run is user time; a query or mutation past its wall limit
                    # was suspended too long, Convex's "system" time.
                    raise (UserTimeout(wall_limit) if system_after is None else SystemTimeout()) from None  # type: ignore[arg-type]
                raise
            if budget is not None and budget.over():
                coro.close()
                raise budget.error(budget.last_step)
            if not suspended:  # the first real suspension
                suspended = True
                if wall_limit is not None:
                    deadline = _Deadline(wall_limit)
                if on_suspend is not None:
                    on_suspend()
            try:
                send = yield yielded
                throw = None
            except GeneratorExit:
                coro.close()
                raise
            except BaseException as e:  # delivered into the function, as the task would
                throw = e
                send = None
    finally:
        if deadline is not None:
            deadline.handle.cancel()


class _Driven:
    __slots__ = ("_gen",)

    def __init__(self, gen: Generator[Any, Any, Any]) -> None:
        self._gen = gen

    def __await__(self) -> Generator[Any, Any, Any]:
        return self._gen


async def run_user_code(coro: Coroutine[Any, Any, Any], *, limit: float | None = None,
                        wall_limit: float | None = None, step_limit: float | None = None,
                        on_suspend: Callable[[], None] | None = None) -> Any:
    """Await `coro` (a user function's coroutine) under an execution-time `limit` (seconds on the
    CPU) and/or a `wall_limit` (seconds in all), calling `on_suspend` at its first suspension.
    Past `wall_limit`, a query or mutation fails with SystemTimeout, an action with UserTimeout."""
    budget = _Budget(limit, step_limit) if limit is not None else None
    return await _Driven(_drive(coro, budget, wall_limit, on_suspend))
