"""The physical limit for bench/transfer.py: a bank transfer in raw SQLite behind a minimal HTTP server.

    python -m bench.transfer_baseline --db /tmp/base.sqlite3 --port 0 --accounts 100000 --balance 1000000000

One asyncio process, one SQLite connection (WAL, synchronous=NORMAL: the engine's durability) used
inline on the event loop: each request is parsed (HTTP/1.1 keep-alive, Content-Length bodies only),
its JSON decoded, and the transfer run as one transaction (two primary-key reads, two updates,
commit) before the answer goes out. It speaks just enough of `/api/mutation` for the load generator:
`{"path": "transfer:transfer", "args": {amount, from_id, to_id}}` -> `{"status":"success","value":null}`,
and `transfer:balances` (`{start, count}` -> [[id, balance], ...]) for the conservation check.
Sockets get TCP_NODELAY, as any server answering small requests should.
"""

from __future__ import annotations

import argparse
import asyncio
import socket
import sqlite3
import sys
from typing import Any

import msgspec

_decode = msgspec.json.decode
_encode = msgspec.json.encode
OK_NULL = b'{"status":"success","value":null}'


class Bank:
    def __init__(self, path: str) -> None:
        self.db = sqlite3.connect(path, isolation_level=None, check_same_thread=False)
        self.db.execute("PRAGMA journal_mode=WAL")
        self.db.execute("PRAGMA synchronous=NORMAL")
        self.db.execute("CREATE TABLE IF NOT EXISTS accounts (id INTEGER PRIMARY KEY, balance INTEGER NOT NULL)")

    def seed(self, n: int, balance: int) -> None:
        self.db.execute("BEGIN")
        self.db.execute("DELETE FROM accounts")
        self.db.executemany("INSERT INTO accounts VALUES (?, ?)", ((i, balance) for i in range(n)))
        self.db.execute("COMMIT")

    def transfer(self, amount: int, src: int, dst: int) -> None:
        if src == dst or amount <= 0:
            return
        db = self.db
        db.execute("BEGIN IMMEDIATE")
        try:
            a = db.execute("SELECT balance FROM accounts WHERE id = ?", (src,)).fetchone()
            b = db.execute("SELECT balance FROM accounts WHERE id = ?", (dst,)).fetchone()
            if a is not None and b is not None and a[0] >= amount:
                db.execute("UPDATE accounts SET balance = ? WHERE id = ?", (a[0] - amount, src))
                db.execute("UPDATE accounts SET balance = ? WHERE id = ?", (b[0] + amount, dst))
            db.execute("COMMIT")
        except BaseException:
            db.execute("ROLLBACK")
            raise

    def balances(self, start: int, count: int) -> list[list[int]]:
        rows = self.db.execute("SELECT id, balance FROM accounts WHERE id >= ? AND id < ? ORDER BY id",
                               (start, start + count)).fetchall()
        return [list(r) for r in rows]


def split_requests(buf: bytes) -> tuple[list[bytes], bytes]:
    """The complete HTTP/1.1 requests' bodies in `buf` (Content-Length bodies only), and the rest."""
    bodies: list[bytes] = []
    while True:
        end = buf.find(b"\r\n\r\n")
        if end < 0:
            return bodies, buf
        length = 0
        for line in buf[:end].decode("latin-1").split("\r\n")[1:]:
            name, _, value = line.partition(":")
            if name.strip().lower() == "content-length":
                length = int(value)
        if len(buf) < end + 4 + length:
            return bodies, buf
        bodies.append(buf[end + 4:end + 4 + length])
        buf = buf[end + 4 + length:]


def http_response(status: bytes, out: bytes) -> bytes:
    return b"HTTP/1.1 %s\r\ncontent-type: application/json\r\ncontent-length: %d\r\n\r\n%s" % (status, len(out), out)


def error_body(e: Exception) -> bytes:
    return _encode({"code": "Error", "message": str(e)})


def set_nodelay(transport: asyncio.BaseTransport) -> None:
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


def run(main: Any) -> None:
    """Run a baseline server on the same event loop as `engine serve --loop auto`, so the two differ
    only in what they do."""
    try:
        try:
            import uvloop
        except ImportError:
            asyncio.run(main)
        else:
            uvloop.run(main)
    except KeyboardInterrupt:
        pass


class HttpProtocol(asyncio.Protocol):
    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self.buf = b""
        self.transport: asyncio.Transport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)

    def data_received(self, data: bytes) -> None:
        bodies, self.buf = split_requests(self.buf + data)
        for body in bodies:
            self.respond(body)

    def respond(self, body: bytes) -> None:
        try:
            req = _decode(body)
            args = req["args"]
            if req["path"] == "transfer:balances":
                out = b'{"status":"success","value":%s}' % _encode(self.bank.balances(int(args["start"]), int(args["count"])))
            else:
                self.bank.transfer(int(args["amount"]), int(args["from_id"]), int(args["to_id"]))
                out = OK_NULL
            status = b"200 OK"
        except Exception as e:  # noqa: BLE001 - a baseline: report and keep serving
            out, status = error_body(e), b"400 Bad Request"
        assert self.transport is not None
        self.transport.write(http_response(status, out))


async def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--db", required=True)
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--accounts", type=int, default=100_000)
    p.add_argument("--balance", type=int, default=1_000_000_000)
    args = p.parse_args(argv)
    bank = Bank(args.db)
    bank.seed(args.accounts, args.balance)
    await serve(lambda: HttpProtocol(bank), args.port)


async def serve(protocol: Any, port: int) -> None:
    """Listen on 127.0.0.1:`port` (0: any), say where on stdout (the load driver reads it), serve."""
    server = await asyncio.get_running_loop().create_server(protocol, "127.0.0.1", port)
    print(f"listening on http://127.0.0.1:{server.sockets[0].getsockname()[1]}", flush=True)
    async with server:
        await server.serve_forever()


if __name__ == "__main__":
    run(main(sys.argv[1:]))
