"""Prometheus metrics (prometheus-client) and the /health and /metrics endpoints.

    GET /health    200 {"status": "ok", ...} while the deployment serves; 503 once its committer
                   stopped. Open: load balancers and `docker healthcheck` probe it without a key.
    GET /metrics   the Prometheus text format; needs the admin key (`Authorization: Convex <key>`,
                   which a Prometheus scrape config sends with `authorization: {type: Convex,
                   credentials: <key>}`), since it names every function and its traffic.

What is counted, and where it is counted (each a single call at the event, no restructuring):

| metric | type | labels | fed by |
|---|---|---|---|
| `convex_function_executions_total` | counter | function, type, status | every execution (engine.executions) |
| `convex_function_errors_total` | counter | function, type | failed executions |
| `convex_function_duration_seconds` | histogram | function, type | every execution |
| `convex_occ_retries_total` | counter | function | a mutation re-run after a conflict (runner) |
| `convex_commits_total` | counter | | every durable commit (committer) |
| `convex_commit_latency_seconds` | histogram | | a mutation's commit, sequenced to durable (runner) |
| `convex_live_subscriptions` | gauge | | subscribed query ids over every socket |
| `convex_live_queries` | gauge | | distinct live queries (shared ones count once) |
| `convex_websocket_connections` | gauge | | open sync sessions |
| `convex_committer_queue_depth` | gauge | | commits sequenced, not yet durable |
| `convex_sync_mutation_queue_depth` | gauge | | mutations waiting in sockets' queues |
| `convex_sync_outbox_depth` | gauge | | frames waiting to be sent, over every socket |
| `convex_scheduled_functions_running` | gauge | | scheduled functions and cron runs in progress |
| `convex_scheduled_functions_due` | gauge | | due and not yet started at the loop's last pass (the backlog) |
| `convex_function_log_entries` | gauge | | executions held in the log ring |

Gauges are read from the deployment when scraped (a custom collector), so nothing is maintained
on the hot path for them. Function labels only ever name functions the app defines (calls of
unknown paths are not executions), so the label set is bounded by the app.
"""

from __future__ import annotations

import time
import weakref
from collections.abc import Iterator
from typing import Any

from prometheus_client import CollectorRegistry, Counter, Histogram, generate_latest
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

__all__ = ["REGISTRY", "function_finished", "occ_retry", "commits_durable", "commit_latency", "attach",
           "render", "CONTENT_TYPE"]

CONTENT_TYPE = "text/plain; version=0.0.4; charset=utf-8"
REGISTRY = CollectorRegistry(auto_describe=True)

_TYPES = {"query": "query", "mutation": "mutation", "action": "action", "http": "httpAction"}
_DURATION_BUCKETS = (0.0005, 0.001, 0.0025, 0.005, 0.01, 0.025, 0.05, 0.1, 0.25, 0.5, 1.0, 2.5, 5.0, 10.0, 30.0,
                     60.0)

_executions = Counter("convex_function_executions", "Function executions, by function, type and outcome.",
                      ["function", "type", "status"], registry=REGISTRY)
_errors = Counter("convex_function_errors", "Function executions that failed.", ["function", "type"],
                  registry=REGISTRY)
_duration = Histogram("convex_function_duration_seconds", "Function execution time.", ["function", "type"],
                      buckets=_DURATION_BUCKETS, registry=REGISTRY)
_occ = Counter("convex_occ_retries", "Mutation attempts re-run after an optimistic concurrency conflict.",
               ["function"], registry=REGISTRY)
_commits = Counter("convex_commits", "Transactions made durable.", registry=REGISTRY)
_commit_latency = Histogram("convex_commit_latency_seconds",
                            "Time from a mutation's commit being sequenced to it being durable.",
                            buckets=_DURATION_BUCKETS, registry=REGISTRY)
_START = time.time()


# The labelled series of each (function, type, outcome), looked up once: `labels()` builds and
# locks on every call, and this runs for every execution. Bounded like the label set itself.
_series: dict[tuple[str, str, bool], tuple[Any, Any, Any]] = {}


def function_finished(kind: str, path: str, success: bool, duration: float) -> None:
    series = _series.get((path, kind, success))
    if series is None:
        label = _TYPES.get(kind, kind)
        series = _series[(path, kind, success)] = (
            _executions.labels(path, label, "success" if success else "failure"),
            None if success else _errors.labels(path, label), _duration.labels(path, label))
    executions, errors, duration_series = series
    executions.inc()
    if errors is not None:
        errors.inc()
    duration_series.observe(duration)


def occ_retry(path: str) -> None:
    _occ.labels(path).inc()


def commits_durable(count: int) -> None:
    _commits.inc(count)


def commit_latency(seconds: float) -> None:
    _commit_latency.observe(seconds)


class _DeploymentCollector(Collector):
    """The gauges, read from the attached deployments at scrape time."""

    def __init__(self) -> None:
        self.deployments: weakref.WeakSet[Any] = weakref.WeakSet()

    def describe(self) -> list[Any]:
        return []  # names are fixed; describing would read the deployments at registration

    def collect(self) -> Iterator[GaugeMetricFamily]:
        from .executions import executions

        values = {"subs": 0, "queries": 0, "sockets": 0, "commits": 0, "mutations": 0, "outbox": 0, "running": 0,
                  "due": 0}
        for dep in list(self.deployments):
            manager = getattr(dep, "subscriptions", None)
            if manager is not None:
                sessions = list(getattr(manager, "sessions", ()))
                values["sockets"] += len(sessions)
                values["queries"] += len(getattr(manager, "entries", ()))
                for session in sessions:
                    values["subs"] += len(getattr(session, "queries", ()))
                    values["mutations"] += len(getattr(session, "_mutations", ()))
                    values["outbox"] += len(getattr(session, "_outbox", ()))
            committer = getattr(dep, "committer", None)
            if committer is not None:
                values["commits"] += len(getattr(committer, "_queue", ()))
            for loop in (getattr(dep, "scheduler", None), getattr(dep, "crons", None)):
                values["running"] += len(getattr(loop, "_running", ()) or ())
                values["due"] += getattr(loop, "due_waiting", 0)
        for name, key, text in (
            ("convex_live_subscriptions", "subs", "Subscribed queries over every WebSocket."),
            ("convex_live_queries", "queries", "Distinct live queries (a query shared by sockets counts once)."),
            ("convex_websocket_connections", "sockets", "Open WebSocket sync sessions."),
            ("convex_committer_queue_depth", "commits", "Commits sequenced and not yet durable."),
            ("convex_sync_mutation_queue_depth", "mutations", "Mutations waiting in the sockets' queues."),
            ("convex_sync_outbox_depth", "outbox", "Frames waiting to be sent, over every socket."),
            ("convex_scheduled_functions_running", "running", "Scheduled functions and cron runs in progress."),
            ("convex_scheduled_functions_due", "due", "Scheduled functions and cron runs due and not yet started "
                                                      "(the scheduler's backlog at its last pass; counted up to 100 "
                                                      "past a full loop)."),
        ):
            yield GaugeMetricFamily(name, text, value=values[key])
        yield GaugeMetricFamily("convex_function_log_entries", "Executions held in the function log ring.",
                                value=len(executions._entries))
        yield GaugeMetricFamily("convex_process_uptime_seconds", "Seconds since the engine was imported.",
                                value=time.time() - _START)


_collector = _DeploymentCollector()
REGISTRY.register(_collector)


def attach(dep: Any) -> None:
    """Report this deployment's gauges (Deployment.open calls it; a closed one drops out)."""
    _collector.deployments.add(dep)


def detach(dep: Any) -> None:
    _collector.deployments.discard(dep)


def render() -> bytes:
    return generate_latest(REGISTRY)


# --- the endpoints ---------------------------------------------------------------------------------


async def _health(dep: Any, req: Any) -> Any:
    from .http_api import json_response

    committer = getattr(dep, "committer", None)
    task = getattr(committer, "_task", None)
    alive = committer is not None and task is not None and not task.done()
    body = {
        "status": "ok" if alive else "unavailable",
        "ready": alive,
        "latestTs": str(committer.durable_ts) if committer is not None else None,
        "functions": len(getattr(getattr(dep, "app", None), "functions", {}) or {}),
        "uptimeSeconds": round(time.time() - _START, 3),
    }
    response = json_response(200 if alive else 503, body)
    response.headers.append(("cache-control", "no-store"))
    return response


async def _metrics(dep: Any, req: Any) -> Any:
    from .errors import EngineError
    from .http_api import HttpResponse, resolve_auth

    auth = await resolve_auth(dep, req.headers, req.query)
    if not auth.admin:
        raise EngineError("Unauthenticated", "/metrics requires the admin key (`Authorization: Convex <key>`).",
                          status=401)
    return HttpResponse(200, render(), [("content-type", CONTENT_TYPE), ("cache-control", "no-store")])


def register_routes() -> None:
    from .http_api import ROUTES

    ROUTES["/health"] = {"GET": _health}
    ROUTES["/metrics"] = {"GET": _metrics}
