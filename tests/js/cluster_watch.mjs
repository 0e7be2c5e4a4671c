// Cross-node reactivity with the official npm ConvexClient (tests/test_cluster.py, bench/cluster.py).
//
//   node cluster_watch.mjs '{"write": URL_A, "watch": [URL_B, ...], "name": "c1", "rounds": 5,
//                            "subscribers": 1}'
//
// `subscribers` ConvexClients per watch URL subscribe to counters:get {name}; then, `rounds`
// times, a ConvexClient on `write` sets the counter to the round number and the script waits
// until every subscriber has seen that value, timing mutation-start -> last update seen (and each
// subscriber's own latency). Waiting is event-driven; nothing sleeps.
// Prints {"rounds", "seen": [value list of the first subscriber], "latencyMs": [per round, every
// subscriber], "firstMs": [per round, the first subscriber]}.

import { ConvexClient } from "convex/browser";
import WebSocket from "ws";
import { changed, waitFor as waitForChange } from "./waiting.mjs";

const cfg = JSON.parse(process.argv[2]);
const options = { webSocketConstructor: WebSocket, unsavedChangesWarning: false };
const watchUrls = Array.isArray(cfg.watch) ? cfg.watch : [cfg.watch];
const perUrl = cfg.subscribers ?? 1;
const waitFor = (predicate, label, ms = 30000) => waitForChange(predicate, label, ms);
const rounds = cfg.rounds ?? 5;
const name = cfg.name;


const subs = [];
for (const url of watchUrls) {
  for (let i = 0; i < perUrl; i++) {
    const client = new ConvexClient(url, options);
    const sub = { client, url, values: [], at: new Map() };
    client.onUpdate("counters:get", { name }, (v) => {
      sub.values.push(v);
      if (!sub.at.has(v)) sub.at.set(v, performance.now());
      changed();
    });
    subs.push(sub);
  }
}
const writer = new ConvexClient(cfg.write, options);
await writer.mutation("counters:set", { name, value: 0 });
await waitFor(() => subs.every((s) => s.values.at(-1) === 0), "every subscriber sees 0");

const latencyMs = [];
const firstMs = [];
for (let r = 1; r <= rounds; r++) {
  const started = performance.now();
  await writer.mutation("counters:set", { name, value: r });
  await waitFor(() => subs.every((s) => s.at.has(r)), `every subscriber sees ${r}`);
  for (const s of subs) latencyMs.push(s.at.get(r) - started);
  firstMs.push(subs[0].at.get(r) - started);
}
await Promise.all([writer.close(), ...subs.map((s) => s.client.close())]);
process.stdout.write(JSON.stringify({ rounds, seen: subs[0].values, latencyMs, firstMs }) + "\n");
