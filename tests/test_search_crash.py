"""Search indexes survive a SIGKILL of a real server: the index holds exactly the committed
documents (it is written in their transactions), every acknowledged one included, and the vector
index, whose in-memory graph died with the process (SQLite), answers from its table after the
restart (the graph's rebuild itself is tested in-process, tests/test_search_vector.py). On SQLite
and on PostgreSQL."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import httpx
import pytest

pytestmark = pytest.mark.slow

APP = Path(__file__).resolve().parent / "apps" / "search"


def call(http: httpx.Client, kind: str, path: str, args: dict[str, Any]) -> Any:
    response = http.post(f"/api/{kind}", json={"path": path, "args": args, "format": "json"})
    body = response.json()
    assert response.status_code == 200 and body["status"] == "success", body
    return body["value"]


@pytest.mark.parametrize("store", ["sqlite", "postgres"])
def test_search_and_vector_indexes_after_sigkill(server_factory: Any, store: str, request: pytest.FixtureRequest,
                                                 tmp_path: Path) -> None:
    if store == "postgres":  # entries, term table and vectors are rows of the commit's transaction
        from conftest import TEST_ADMIN_KEY, ServerProcess, _live_servers, app_path

        server = ServerProcess(app_path(APP), request.getfixturevalue("pg_url"),  # type: ignore[arg-type]
                               tmp_path / "pg-server.log", admin_key=TEST_ADMIN_KEY).start()

        def stop() -> None:
            server.stop()
            if server in _live_servers:
                _live_servers.remove(server)

        request.addfinalizer(stop)
    else:
        server = server_factory(APP)
    acked: list[str] = []
    enough = threading.Event()

    def writer(t: int) -> None:
        with httpx.Client(base_url=server.url, timeout=10.0) as http:
            for i in range(100_000):
                try:
                    response = http.post("/api/mutation", json={"path": "messages:send", "format": "json", "args": {
                        "body": f"crash word{t}x{i} shared", "channel": "c"}})
                except httpx.TransportError:
                    return
                if response.status_code != 200 or response.json().get("status") != "success":
                    return
                acked.append(f"crash word{t}x{i} shared")
                if len(acked) >= 200:
                    enough.set()

    with httpx.Client(base_url=server.url, timeout=10.0) as http:
        for i in range(30):
            call(http, "mutation", "foods:add", {"description": f"f{i}", "cuisine": "Thai",
                                                 "embedding": [float(i), 1.0, 0.0, 0.5]})
    threads = [threading.Thread(target=writer, args=(t,)) for t in range(3)]
    for th in threads:
        th.start()
    assert enough.wait(60)
    server.kill()
    for th in threads:
        th.join()
    server.start()
    with httpx.Client(base_url=server.url, timeout=10.0) as http:
        found = set(call(http, "query", "messages:searchAll", {"text": "crash"}))
        assert set(acked) <= found  # every acknowledged message is searchable ...
        for body in found:  # ... and nothing is there that was never written
            assert call(http, "query", "messages:search", {"text": body.split()[1] + " zzzz", "limit": 5.0}) == [body]
        top = call(http, "action", "foods:similar", {"vector": [29.0, 1.0, 0.0, 0.5], "limit": 1.0})
        assert top[0]["description"] == "f29"
