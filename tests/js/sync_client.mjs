// Drives the official npm `convex` WebSocket clients (ConvexClient from "convex/browser", and
// BaseConvexClient with the `ws` constructor) against a running engine serving tests/apps/sync, and
// prints ONE JSON object with what each scenario observed; tests/test_sync_js.py asserts on it.
//
//   node tests/js/sync_client.mjs <deploymentUrl> <scenario>
//   scenarios: basic | errors | auth | base | paginated
//   env: ENGINE_TOKEN (a valid JWT), ENGINE_BAD_TOKEN (one the server must refuse) for `auth`
//
// Waiting is event-driven: every client callback calls `changed()`, and `waitFor(predicate)`
// re-checks on each change, failing after a timeout. Nothing sleeps.

import { ConvexClient, BaseConvexClient } from "convex/browser";
import { ConvexError } from "convex/values";
import { anyApi } from "convex/server";
import WebSocket from "ws";
import { changed, waitFor } from "./waiting.mjs";

const [url, scenario] = process.argv.slice(2);
if (!url || !scenario) {
  console.error("usage: sync_client.mjs <deploymentUrl> <scenario>");
  process.exit(2);
}
const api = anyApi;
const RUN = `js${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
let counter = 0;
const uniq = (p = "n") => `${p}-${RUN}-${counter++}`;

const logs = [];
const logger = {
  logVerbose: () => {},
  log: (...a) => logs.push(["log", a.map(String).join(" ")]),
  warn: (...a) => logs.push(["warn", a.map(String).join(" ")]),
  error: (...a) => logs.push(["error", a.map(String).join(" ")]),
};

// -- event-driven waiting ----------------------------------------------------------------------
function withTimeout(promise, label, ms = 20000) {
  let timer;
  return Promise.race([
    promise.finally(() => clearTimeout(timer)),
    new Promise((_, reject) => {
      timer = setTimeout(() => reject(new Error(`timed out: ${label}`)), ms);
    }),
  ]);
}

function show(v) {
  return JSON.parse(JSON.stringify(v ?? null, (_k, x) => (typeof x === "bigint" ? { $bigint: x.toString() } : x)));
}
function describe(e) {
  return { isConvexError: e instanceof ConvexError, data: e instanceof ConvexError ? show(e.data) : null, message: String(e.message) };
}
const clients = [];
function newClient(options = {}) {
  const c = new ConvexClient(url, { logger, unsavedChangesWarning: false, ...options });
  clients.push(c);
  return c;
}

// -- scenarios ---------------------------------------------------------------------------------
async function basic() {
  const name = uniq();
  const a = newClient();
  const b = newClient();
  const values = [];
  const sub = a.onUpdate(api.counters.get, { name }, (v) => {
    values.push(v);
    changed();
  });
  await waitFor(() => values.length >= 1, "the first result");
  const fromB = await withTimeout(b.mutation(api.counters.increment, { name }), "B's mutation");
  await waitFor(() => values.at(-1) === 1, "A sees B's increment");
  await withTimeout(b.mutation(api.counters.set, { name, value: 5 }), "B's set");
  await waitFor(() => values.at(-1) === 5, "A sees B's set");
  const fromA = await withTimeout(a.mutation(api.counters.increment, { name }), "A's mutation");
  const seenWhenResolved = sub.getCurrentValue(); // read your own writes: already 6
  const query = await withTimeout(a.query(api.counters.get, { name }), "one-shot query");
  const action = await withTimeout(a.action(api.actions.echo, { x: 1, big: 5n }), "action");
  const viaAction = await withTimeout(a.action(api.actions.incrementTwice, { name }), "action with mutations");
  await waitFor(() => values.at(-1) === 8, "A sees the action's writes");
  // One client's mutations run in the order they were called (the first one is slow).
  const stream = uniq("s");
  const seqs = await withTimeout(Promise.all([
    a.mutation(api.events.append, { stream, tag: "a", delayMs: 200 }),
    a.mutation(api.events.append, { stream, tag: "b" }),
    a.mutation(api.events.append, { stream, tag: "c" }),
  ]), "three queued mutations");
  const events = await withTimeout(a.query(api.events.list, { stream }), "events");
  return { values, fromB, fromA, seenWhenResolved, query, action: show(action), viaAction, seqs, events };
}

async function errors() {
  const c = newClient();
  const out = {};
  const attempt = async (key, promise) => {
    try {
      out[key] = { resolved: show(await withTimeout(promise, key)) };
    } catch (e) {
      out[key] = describe(e);
    }
  };
  await attempt("mutation", c.mutation(api.errors.convexMutation, {}));
  await attempt("action", c.action(api.errors.convexAction, {}));
  await attempt("query", c.query(api.errors.convexQuery, {}));
  await attempt("plainMutation", c.mutation(api.errors.plainMutation, {}));
  await attempt("plainQuery", c.query(api.errors.plainQuery, {}));
  // A subscription's error goes to onError; when the data changes, the value comes back.
  const name = uniq();
  await c.mutation(api.counters.set, { name, value: -3 });
  const seen = [];
  c.onUpdate(
    api.errors.maybe,
    { name },
    (v) => {
      seen.push({ value: v });
      changed();
    },
    (e) => {
      seen.push({ error: describe(e) });
      changed();
    },
  );
  await waitFor(() => seen.length >= 1, "the subscription's error");
  await c.mutation(api.counters.set, { name, value: 2 });
  await waitFor(() => seen.at(-1)?.value === 2, "the subscription recovers");
  out.subscription = seen;
  return out;
}

async function auth() {
  const token = process.env.ENGINE_TOKEN;
  const bad = process.env.ENGINE_BAD_TOKEN;
  const good = newClient();
  const changes = [];
  good.setAuth(async () => token, (isAuthenticated) => {
    changes.push(isAuthenticated);
    changed();
  });
  const who = [];
  good.onUpdate(api.whoami.whoami, {}, (v) => {
    who.push(v);
    changed();
  });
  await waitFor(() => changes.includes(true), "onChange(true)");
  await waitFor(() => who.at(-1) != null, "whoami with the identity");
  const viaAction = await withTimeout(good.action(api.whoami.whoamiAction, {}), "whoamiAction");
  const refused = newClient();
  const badChanges = [];
  let fetches = 0;
  refused.setAuth(
    async () => {
      fetches++;
      return bad;
    },
    (isAuthenticated) => {
      badChanges.push(isAuthenticated);
      changed();
    },
  );
  await waitFor(() => badChanges.length > 0, "onChange for the bad token", 30000);
  // The refused client carries on unauthenticated.
  const afterRefusal = await withTimeout(refused.query(api.whoami.whoami, {}), "whoami after refusal");
  return { changes, who: who.at(-1), viaAction, badChanges, fetches, afterRefusal };
}

async function base() {
  const name = uniq();
  const updates = [];
  const client = new BaseConvexClient(url, (tokens) => {
    updates.push(tokens.length);
    changed();
  }, { webSocketConstructor: WebSocket, logger, unsavedChangesWarning: false });
  const { unsubscribe } = client.subscribe("counters:get", { name });
  await waitFor(() => client.localQueryResult("counters:get", { name }) !== undefined, "first result");
  const initial = client.localQueryResult("counters:get", { name });
  const result = await withTimeout(client.mutation("counters:increment", { name, by: 2 }), "mutation");
  const atResolve = client.localQueryResult("counters:get", { name });
  const other = newClient();
  await other.mutation(api.counters.set, { name, value: 9 });
  await waitFor(() => client.localQueryResult("counters:get", { name }) === 9, "another client's write");
  const action = await withTimeout(client.action("actions:read", { name }), "action");
  const state = client.connectionState();
  unsubscribe();
  await client.close();
  return { initial, result, atResolve, action, updates: updates.length, connected: state.isWebSocketConnected };
}

function rank(doc) {
  return doc.rank;
}

async function paginated() {
  const list = uniq("list");
  const writer = newClient();
  const reader = newClient();
  const scratch = uniq("scratch");
  const ranks = Array.from({ length: 12 }, (_, i) => i * 10 + 5);
  await writer.mutation(api.items.addMany, { list, ranks });
  const problems = [];
  let callbacks = 0;
  const check = (results, where) => {
    const ids = results.map((d) => d._id);
    if (new Set(ids).size !== ids.length) problems.push(`${where}: duplicate rows`);
    for (let i = 1; i < results.length; i++) {
      if (rank(results[i - 1]) > rank(results[i])) problems.push(`${where}: out of order at ${i}`);
    }
  };
  const sub = reader.onPaginatedUpdate_experimental(api.items.page, { list }, { initialNumItems: 3 }, (r) => {
    callbacks++;
    check(r.results, `callback ${callbacks}`);
    changed();
  });
  const current = () => sub.getCurrentValue();
  await waitFor(() => current()?.status === "CanLoadMore", "the first page");
  current().loadMore(3);
  await waitFor(() => current()?.status === "CanLoadMore" && current().results.length >= 6, "a second page");
  current().loadMore(3);
  await waitFor(() => current()?.status === "CanLoadMore" && current().results.length >= 9, "a third page");

  // The reader's own mutation resolves only after a Transition at or past its commit, which is after
  // every writer commit awaited before it: then its pages must match the table exactly.
  const sync = async () => {
    await reader.mutation(api.counters.increment, { name: scratch });
    const truth = await reader.query(api.items.all, { list });
    return truth;
  };
  const comparisons = [];
  const compare = (truth, label, whole) => {
    const got = current().results.map((d) => d._id);
    const want = truth.map((d) => d._id);
    const prefix = whole ? want : want.slice(0, got.length);
    const ok = JSON.stringify(got) === JSON.stringify(prefix);
    comparisons.push({ label, ok, got: got.length, total: want.length, status: current().status });
    if (!ok) problems.push(`${label}: pages ${JSON.stringify(current().results.map(rank))} vs table ${JSON.stringify(truth.map(rank))}`);
  };
  let seed = 7;
  const random = () => {
    seed = (seed * 1103515245 + 12345) % 2147483648;
    return seed / 2147483648;
  };
  for (let round = 0; round < 8; round++) {
    const truthBefore = await reader.query(api.items.all, { list });
    const writes = [];
    for (let k = 0; k < 3; k++) writes.push(writer.mutation(api.items.add, { list, rank: Math.floor(random() * 130) }));
    if (round % 2 === 1 && truthBefore.length > 0) {
      const victim = truthBefore[Math.floor(random() * truthBefore.length)];
      writes.push(writer.mutation(api.items.remove, { id: victim._id }));
    }
    await withTimeout(Promise.all(writes), `writes of round ${round}`);
    compare(await sync(), `round ${round}`, false);
  }
  // Load everything: the concatenated pages are then the whole list, and stay so under writes.
  while (current().status !== "Exhausted") {
    const before = current().results.length;
    current().loadMore(5);
    await waitFor(() => current().status !== "LoadingMore" && (current().status === "Exhausted" || current().results.length > before), "more pages");
  }
  compare(await sync(), "exhausted", true);
  await Promise.all([
    writer.mutation(api.items.add, { list, rank: -1 }),
    writer.mutation(api.items.add, { list, rank: 1000 }),
    writer.mutation(api.items.add, { list, rank: 55 }),
  ]);
  compare(await sync(), "after inserts at both ends", true);
  return { problems, comparisons, callbacks, finalCount: current().results.length };
}

const scenarios = { basic, errors, auth, base, paginated };
let output;
try {
  output = { ok: true, value: await scenarios[scenario]() };
} catch (e) {
  output = { ok: false, error: String(e && e.stack ? e.stack : e) };
}
output.logs = logs;
for (const c of clients) await c.close();
console.log(JSON.stringify(output));
process.exit(0);
