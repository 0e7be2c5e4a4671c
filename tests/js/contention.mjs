// Many official clients incrementing one counter at once (tests/test_contention.py).
//
//   node contention.mjs '{"url": "...", "transport": "ws"|"http", "clients": 50, "perClient": 200,
//                         "fn": "counters:increment", "name": "c1", "readFrom": URL (default: url)}'
//
// "ws": one ConvexClient per client, each firing all its mutations at once (the client sends them
// down its socket in order). "http": one ConvexHttpClient per client, each keeping one mutation in
// flight at a time. Prints {"ok", "failed", "errors": {message: count}, "final"}.

import { ConvexClient, ConvexHttpClient } from "convex/browser";
import WebSocket from "ws";

const cfg = JSON.parse(process.argv[2]);
let ok = 0, failed = 0;
const errors = {};
function note(e) {
  failed++;
  const key = String(e?.message ?? e).slice(0, 300);
  errors[key] = (errors[key] ?? 0) + 1;
}

const args = { name: cfg.name };
if (cfg.transport === "ws") {
  const clients = Array.from({ length: cfg.clients },
    () => new ConvexClient(cfg.url, { webSocketConstructor: WebSocket, unsavedChangesWarning: false }));
  await Promise.all(clients.map((c) => Promise.all(Array.from({ length: cfg.perClient },
    () => c.mutation(cfg.fn, args).then(() => { ok++; }, note)))));
  await Promise.all(clients.map((c) => c.close()));
} else {
  const clients = Array.from({ length: cfg.clients }, () => new ConvexHttpClient(cfg.url));
  await Promise.all(clients.map(async (c) => {
    for (let i = 0; i < cfg.perClient; i++) {
      try { await c.mutation(cfg.fn, args); ok++; } catch (e) { note(e); }
    }
  }));
}
const reader = new ConvexHttpClient(cfg.readFrom ?? cfg.url);
// The load may end while the database is still restarting (tests of a PostgreSQL restart): the
// server then answers DatabaseUnavailable ("try again"), and so does this read, for a bounded time.
async function readFinal() {
  for (let attempt = 0; ; attempt++) {
    try {
      return await reader.query("counters:get", { name: cfg.name });
    } catch (e) {
      if (attempt >= 100 || !String(e?.message ?? e).includes("DatabaseUnavailable")) throw e;
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  }
}
const final = await readFinal();
process.stdout.write(JSON.stringify({ ok, failed, errors, final }) + "\n");
