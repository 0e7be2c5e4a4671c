"""Durability: a mutation the server acknowledged survives a SIGKILL of the server.

Client threads stream `items:add` mutations over HTTP (POST /api/mutation) and record every one
the server acknowledged; once enough are acknowledged (and more are in flight) the server gets
SIGKILL, with no chance to flush or close anything. After a restart on the same database file every
acknowledged document is there, nothing is duplicated, and commit timestamps continue above every
timestamp observed before the crash.
"""

from __future__ import annotations

import threading

import httpx
import pytest

from engine.http_api import decode_ts

pytestmark = pytest.mark.slow

THREADS = 4
KILL_AFTER_ACKS = 300
RANKS_PER_THREAD = 1_000_000  # thread t uses ranks t*RANKS_PER_THREAD + i: each rank names one request


class Stream:
    def __init__(self, url: str) -> None:
        self.url = url
        self.lock = threading.Lock()
        self.acked: dict[float, str] = {}  # rank -> document id, for acknowledged mutations
        self.max_ts_seen = 0
        self.enough = threading.Event()
        self.errors: list[str] = []

    def run(self, thread: int) -> None:
        with httpx.Client(base_url=self.url, timeout=10.0) as http:
            for i in range(RANKS_PER_THREAD):
                rank = float(thread * RANKS_PER_THREAD + i)
                try:
                    response = http.post("/api/mutation", json={
                        "path": "items:add", "args": {"group": "crash", "rank": rank}, "format": "json"})
                    if i % 16 == 0:
                        ts = decode_ts(http.post("/api/query_ts", json={}).json()["ts"])
                        with self.lock:
                            self.max_ts_seen = max(self.max_ts_seen, ts)
                except httpx.TransportError:
                    return  # the server is gone: this request was never acknowledged
                body = response.json()
                if response.status_code != 200 or body.get("status") != "success":
                    with self.lock:
                        self.errors.append(f"{response.status_code} {body}")
                    return
                with self.lock:
                    self.acked[rank] = body["value"]
                    if len(self.acked) >= KILL_AFTER_ACKS:
                        self.enough.set()


def test_acknowledged_mutations_survive_sigkill(server_factory) -> None:
    server = server_factory("core")
    stream = Stream(server.url)
    threads = [threading.Thread(target=stream.run, args=(t,), daemon=True) for t in range(THREADS)]
    for t in threads:
        t.start()
    assert stream.enough.wait(timeout=120), f"only {len(stream.acked)} mutations acknowledged: {stream.errors}"
    server.kill()  # mid-stream: every thread has a request in flight or about to be sent
    for t in threads:
        t.join(timeout=30)
        assert not t.is_alive()
    assert not stream.errors, stream.errors
    acked, ts_before = dict(stream.acked), stream.max_ts_seen
    assert len(acked) >= KILL_AFTER_ACKS and ts_before > 0

    server.start()  # same database file, same ports
    with httpx.Client(base_url=server.url, timeout=30.0) as http:
        ts_after_restart = decode_ts(http.post("/api/query_ts", json={}).json()["ts"])
        assert ts_after_restart >= ts_before

        body = http.post("/api/query", json={"path": "items:byRank", "args": {"group": "crash"},
                                             "format": "json"}).json()
        assert body["status"] == "success", body
        stored = {doc["rank"]: doc["_id"] for doc in body["value"]}
        assert len(stored) == len(body["value"]), "a mutation was applied twice"
        missing = sorted(set(acked) - set(stored))
        assert not missing, f"{len(missing)} acknowledged mutations lost, e.g. ranks {missing[:5]}"
        assert all(stored[rank] == doc_id for rank, doc_id in acked.items())
        # At most the requests in flight at the kill committed without an acknowledgement.
        assert len(stored) - len(acked) <= THREADS

        after = http.post("/api/mutation", json={"path": "items:add", "args": {"group": "after", "rank": 0.0},
                                                 "format": "json"}).json()
        assert after["status"] == "success", after
        ts_new = decode_ts(http.post("/api/query_ts", json={}).json()["ts"])
        assert ts_new > ts_before and ts_new > ts_after_restart
