"""The PostgreSQL limit for bench/transfer.py: a bank transfer in raw asyncpg behind a minimal HTTP server.

    python -m bench.transfer_baseline_pg --url postgresql://... --port 0 --accounts 100000 --balance 1000000000

One asyncio process with a small asyncpg pool (`--pool`, default 16 connections; the engine's own
Postgres pool holds up to 24). Each request is parsed (HTTP/1.1 keep-alive, Content-Length bodies
only; requests pipelined on one connection are answered in order), its JSON decoded, and the transfer
run as one transaction on a pooled connection: `SELECT ... ORDER BY id FOR UPDATE` of the two
accounts (Postgres locks rows in the sorted order, so two transfers over the same pair never
deadlock), one `UPDATE` of both balances, COMMIT. Durability is the server's default
(synchronous_commit on), as for the engine on the same server. It speaks the same shapes as
bench/transfer_baseline.py: `{"path": "transfer:transfer", "args": {amount, from_id, to_id}}` ->
`{"status":"success","value":null}`, and `transfer:balances` (`{start, count}` -> [[id, balance], ...])
for the conservation check. Sockets get TCP_NODELAY.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any

import asyncpg

from bench.transfer_baseline import (OK_NULL, _decode, _encode, error_body, http_response, run, serve, set_nodelay,
                                     split_requests)

LOCK = "SELECT id, balance FROM accounts WHERE id = $1 OR id = $2 ORDER BY id FOR UPDATE"
UPDATE = ("UPDATE accounts AS a SET balance = v.balance FROM (VALUES ($1::int, $2::bigint), ($3::int, $4::bigint)) "
          "AS v(id, balance) WHERE a.id = v.id")


class Bank:
    def __init__(self, pool: Any) -> None:
        self.pool = pool

    @classmethod
    async def open(cls, url: str, pool_size: int) -> "Bank":
        pool = await asyncpg.create_pool(url, min_size=pool_size, max_size=pool_size)
        async with pool.acquire() as conn:
            await conn.execute("CREATE TABLE IF NOT EXISTS accounts (id INT PRIMARY KEY, balance BIGINT NOT NULL)")
        return cls(pool)

    async def seed(self, n: int, balance: int) -> None:
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                await conn.execute("TRUNCATE accounts")
                await conn.copy_records_to_table("accounts", records=((i, balance) for i in range(n)))
            await conn.execute("ANALYZE accounts")

    async def transfer(self, amount: int, src: int, dst: int) -> None:
        if src == dst or amount <= 0:
            return
        async with self.pool.acquire() as conn:
            async with conn.transaction():
                rows = await conn.fetch(LOCK, src, dst)
                if len(rows) != 2:
                    return
                by_id = {r[0]: r[1] for r in rows}
                if by_id[src] >= amount:
                    await conn.execute(UPDATE, src, by_id[src] - amount, dst, by_id[dst] + amount)

    async def balances(self, start: int, count: int) -> list[list[int]]:
        async with self.pool.acquire() as conn:
            rows = await conn.fetch("SELECT id, balance FROM accounts WHERE id >= $1 AND id < $2 ORDER BY id",
                                    start, start + count)
        return [[r[0], r[1]] for r in rows]


class HttpProtocol(asyncio.Protocol):
    def __init__(self, bank: Bank) -> None:
        self.bank = bank
        self.buf = b""
        self.transport: asyncio.Transport | None = None
        self.queue: list[bytes] = []
        self.busy = False

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        set_nodelay(transport)

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None

    def data_received(self, data: bytes) -> None:
        bodies, self.buf = split_requests(self.buf + data)
        self.queue.extend(bodies)
        if self.queue and not self.busy:
            self.busy = True
            asyncio.ensure_future(self.drain())

    async def drain(self) -> None:
        # One request at a time per connection, so answers go out in request order.
        try:
            while self.queue:
                status, out = await self.respond(self.queue.pop(0))
                if self.transport is None:
                    return
                self.transport.write(http_response(status, out))
        finally:
            self.busy = False

    async def respond(self, body: bytes) -> tuple[bytes, bytes]:
        try:
            req = _decode(body)
            args = req["args"]
            if req["path"] == "transfer:balances":
                rows = await self.bank.balances(int(args["start"]), int(args["count"]))
                return b"200 OK", b'{"status":"success","value":%s}' % _encode(rows)
            await self.bank.transfer(int(args["amount"]), int(args["from_id"]), int(args["to_id"]))
            return b"200 OK", OK_NULL
        except Exception as e:  # noqa: BLE001 - a baseline: report and keep serving
            return b"400 Bad Request", error_body(e)


async def main(argv: list[str] | None = None) -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--url", required=True, help="postgresql://user:password@host:port/db")
    p.add_argument("--port", type=int, default=0)
    p.add_argument("--accounts", type=int, default=100_000)
    p.add_argument("--balance", type=int, default=1_000_000_000)
    p.add_argument("--pool", type=int, default=16)
    args = p.parse_args(argv)
    bank = await Bank.open(args.url, args.pool)
    await bank.seed(args.accounts, args.balance)
    await serve(lambda: HttpProtocol(bank), args.port)


if __name__ == "__main__":
    run(main(sys.argv[1:]))
