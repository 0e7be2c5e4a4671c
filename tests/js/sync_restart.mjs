// A ConvexClient (npm convex) that stays connected while tests/test_sync_js.py restarts and kills the
// server under it. Line protocol: this script prints one JSON object per line ({"step": ...}) and
// reads one word per line on stdin ("go", "restarted", "killed", "started") from the test.
//
//   node tests/js/sync_restart.mjs <deploymentUrl> <counterName>
//
// Every increment it makes must count exactly once, whatever was in flight when the server went
// away: the client re-sends unacknowledged mutations with the same (sessionId, requestId).

import { ConvexClient } from "convex/browser";
import { anyApi as api } from "convex/server";
import readline from "node:readline";

const [url, name] = process.argv.slice(2);
const logs = [];
const logger = {
  logVerbose: () => {},
  log: (...a) => logs.push(a.map(String).join(" ")),
  warn: (...a) => logs.push(a.map(String).join(" ")),
  error: (...a) => logs.push(a.map(String).join(" ")),
};
const say = (obj) => console.log(JSON.stringify(obj));

const lines = [];
let lineWaiter = null;
readline.createInterface({ input: process.stdin }).on("line", (line) => {
  lines.push(line.trim());
  if (lineWaiter) lineWaiter();
});
async function hear(word) {
  while (true) {
    if (lines.length) {
      const got = lines.shift();
      if (got !== word) throw new Error(`expected "${word}" on stdin, got "${got}"`);
      return;
    }
    await new Promise((resolve) => (lineWaiter = resolve));
    lineWaiter = null;
  }
}

let waiters = [];
const changed = () => {
  const w = waiters;
  waiters = [];
  w.forEach((f) => f());
};
function waitFor(predicate, label, ms = 30000) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for: ${label}`)), ms);
    const check = () => (predicate() ? (clearTimeout(timer), resolve()) : waiters.push(check));
    check();
  });
}
function withTimeout(promise, label, ms = 30000) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => (timer = setTimeout(() => reject(new Error(`timed out: ${label}`)), ms))),
  ]);
}

const client = new ConvexClient(url, { logger, unsavedChangesWarning: false });
const values = [];
client.onUpdate(api.counters.get, { name }, (v) => {
  values.push(v);
  changed();
});
const states = [];
client.subscribeToConnectionState((s) => {
  states.push(s.isWebSocketConnected);
  changed();
});

try {
  await waitFor(() => values.length > 0, "the first result");
  const results = [await withTimeout(client.mutation(api.counters.increment, { name }), "first increment")];
  say({ step: "ready", values });

  // 1. A slow mutation in flight, then a graceful restart (SIGTERM, same port and database).
  await hear("go");
  const inflight = client.mutation(api.counters.increment, { name, delayMs: 300 });
  say({ step: "inflight" });
  await hear("restarted");
  const afterRestart = client.mutation(api.counters.increment, { name });
  results.push(await withTimeout(inflight, "the in-flight mutation after the restart"));
  results.push(await withTimeout(afterRestart, "a mutation after the restart"));
  await waitFor(() => values.at(-1) === 3, "the subscription resumes at 3");
  say({ step: "resumed", values });

  // 2. A crash (SIGKILL) with a mutation in flight, then a mutation sent while the server is down.
  await hear("go");
  const crashed = client.mutation(api.counters.increment, { name, delayMs: 300 });
  say({ step: "inflight" });
  await hear("killed");
  await waitFor(() => states.at(-1) === false, "the client notices the server is gone");
  const whileDown = client.mutation(api.counters.increment, { name });
  say({ step: "queued" });
  await hear("started");
  results.push(await withTimeout(crashed, "the mutation in flight at the crash"));
  results.push(await withTimeout(whileDown, "the mutation sent while down"));
  await waitFor(() => values.at(-1) === 5, "the subscription resumes at 5");
  const query = await withTimeout(client.query(api.counters.get, { name }), "a one-shot query");
  const state = client.connectionState();
  say({ step: "done", ok: true, values, results, query, connectionCount: state.connectionCount, logs });
} catch (e) {
  say({ step: "done", ok: false, error: String(e && e.stack ? e.stack : e), values, logs });
}
await client.close();
process.exit(0);
