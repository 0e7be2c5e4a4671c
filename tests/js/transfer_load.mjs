// Load generator for bench/transfer.py: keynote-2's bank-transfer workload against one server.
//
//   node transfer_load.mjs '{"url": "http://127.0.0.1:3210", "transport": "http"|"ws",
//                            "connections": 50, "accounts": 100000, "alpha": 1.5,
//                            "warmupS": 5, "measureS": 20, "seed": 1}'
//
// Each connection keeps exactly one `transfer:transfer` in flight (amount 1 between two distinct
// accounts drawn from a Zipf(alpha) over the ids; alpha 0 is uniform), as keynote-2's runner does.
// "http" posts to /api/mutation?format=json with plain fetch, as keynote-2's Convex connector does
// (one keep-alive connection per worker); "ws" uses one official ConvexClient per connection.
// A failed transfer is counted and never retried. Prints one JSON object: counts and latencies of
// the measured window, and the net balance change of every account over ALL acknowledged transfers
// (warm-up included), which bench/transfer.py checks against the stored balances.


const cfg = JSON.parse(process.argv[2]);
const N = cfg.accounts;

function mulberry32(seed) {
  let t = seed >>> 0;
  return () => {
    t = (t + 0x6d2b79f5) >>> 0;
    let r = Math.imul(t ^ (t >>> 15), 1 | t);
    r ^= r + Math.imul(r ^ (r >>> 7), 61 | r);
    return ((r ^ (r >>> 14)) >>> 0) / 4294967296;
  };
}

// Zipf over 0..N-1 with exponent s: P(k) proportional to 1/(k+1)^s; a CDF table and a binary search.
function zipf(n, s, rng) {
  if (s <= 0) return () => Math.floor(rng() * n);
  const cdf = new Float64Array(n);
  let sum = 0;
  for (let i = 0; i < n; i++) sum += 1 / Math.pow(i + 1, s);
  let acc = 0;
  for (let i = 0; i < n; i++) {
    acc += 1 / Math.pow(i + 1, s) / sum;
    cdf[i] = acc;
  }
  cdf[n - 1] = 1;
  return () => {
    const u = rng();
    let lo = 0, hi = n - 1;
    while (lo < hi) {
      const mid = (lo + hi) >>> 1;
      if (cdf[mid] < u) lo = mid + 1; else hi = mid;
    }
    return lo;
  };
}

const rng = mulberry32(cfg.seed ?? 1);
const pick = zipf(N, cfg.alpha, rng);
function pair() {
  const a = pick();
  let b = pick();
  for (let spins = 0; b === a && spins < 64; spins++) b = pick();
  if (b === a) b = (a + 1) % N;
  return [a, b];
}

const delta = new Int32Array(N);
const latencies = [];
let ok = 0, failed = 0, okAll = 0;
const errors = new Map();
let measuring = false;
let stopping = false;

function noteError(message) {
  const key = String(message).slice(0, 200);
  errors.set(key, (errors.get(key) ?? 0) + 1);
}

async function makeHttpWorker() {
  const url = cfg.url.replace(/\/$/, "") + "/api/mutation?format=json";
  return async (from, to) => {
    const res = await fetch(url, {
      method: "POST",
      headers: { "content-type": "application/json" },
      body: JSON.stringify({ path: "transfer:transfer", args: { amount: 1, from_id: from, to_id: to } }),
    });
    let json = {};
    try { json = await res.json(); } catch {}
    if (res.ok && json.status === "success") return;
    throw new Error(json.errorMessage ?? json.message ?? `HTTP ${res.status}`);
  };
}

let clients = [];
async function makeWsWorker() {
  const { ConvexClient } = await import("convex/browser");
  const { default: WebSocket } = await import("ws");
  const client = new ConvexClient(cfg.url, { webSocketConstructor: WebSocket, unsavedChangesWarning: false });
  clients.push(client);
  return async (from, to) => {
    await client.mutation("transfer:transfer", { amount: 1, from_id: from, to_id: to });
  };
}

async function worker(call) {
  while (!stopping) {
    const [from, to] = pair();
    const t0 = performance.now();
    try {
      await call(from, to);
      okAll++;
      delta[from] -= 1;
      delta[to] += 1;
      if (measuring) {
        ok++;
        latencies.push(performance.now() - t0);
      }
    } catch (e) {
      // Not acknowledged: it must not have moved anything (checked by the caller).
      if (measuring) failed++;
      noteError(e?.message ?? e);
    }
  }
}

function pct(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor(p * sorted.length))];
}

const make = cfg.transport === "ws" ? makeWsWorker : makeHttpWorker;
const calls = [];
for (let i = 0; i < cfg.connections; i++) calls.push(await make());
const runs = calls.map((c) => worker(c));
await new Promise((r) => setTimeout(r, cfg.warmupS * 1000));
measuring = true;
const t0 = performance.now();
await new Promise((r) => setTimeout(r, cfg.measureS * 1000));
measuring = false;
const elapsed = (performance.now() - t0) / 1000;
stopping = true;
await Promise.all(runs);
for (const c of clients) await c.close();

latencies.sort((a, b) => a - b);
const moved = [];
for (let i = 0; i < N; i++) if (delta[i] !== 0) moved.push([i, delta[i]]);
process.stdout.write(JSON.stringify({
  ok, failed, acknowledged: okAll, elapsed_s: elapsed, tps: ok / elapsed,
  p50_ms: pct(latencies, 0.5), p99_ms: pct(latencies, 0.99),
  errors: Object.fromEntries(errors), moved,
}) + "\n");
