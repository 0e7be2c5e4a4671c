// Drives the official npm `convex` clients (ConvexClient, ConvexHttpClient, ConvexReactClient and
// usePaginatedQuery under react-test-renderer) against a running engine serving tests/apps/exact, and
// prints ONE JSON object with what each scenario observed; tests/test_conformance_exact.py asserts on it.
//
//   node tests/js/exact.mjs <deploymentUrl> <scenario>
//   scenarios: errors | logs | paginate | auth | storage | scheduler
//   env: ENGINE_TOKENS (a JSON object of named tokens) for `auth`; ENGINE_SITE_URL for `auth`
//
// Waiting is event-driven: every client callback calls `changed()`, and `waitFor(predicate)`
// re-checks on each change, failing after a timeout. Nothing sleeps.

import React from "react";
import TestRenderer from "react-test-renderer";
import { ConvexClient, ConvexHttpClient } from "convex/browser";
import { ConvexProvider, ConvexReactClient, usePaginatedQuery } from "convex/react";
import { ConvexError } from "convex/values";
import { anyApi } from "convex/server";
import WebSocket from "ws";
import { changed, waitFor } from "./waiting.mjs";

globalThis.IS_REACT_ACT_ENVIRONMENT = false; // updates arrive from the socket, outside act()

const [url, scenario] = process.argv.slice(2);
if (!url || !scenario) {
  console.error("usage: exact.mjs <deploymentUrl> <scenario>");
  process.exit(2);
}
const api = anyApi;
const RUN = `x${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;
let counter = 0;
const uniq = (p = "n") => `${p}-${RUN}-${counter++}`;

const logs = [];
const verbose = []; // what the clients log with `verbose: true` (the auth manager's steps)
const logger = {
  logVerbose: (...a) => verbose.push(a.map(String).join(" ")),
  log: (...a) => logs.push(["log", a.map(String).join(" ")]),
  warn: (...a) => logs.push(["warn", a.map(String).join(" ")]),
  error: (...a) => logs.push(["error", a.map(String).join(" ")]),
};

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
  return {
    isConvexError: e instanceof ConvexError,
    isError: e instanceof Error,
    name: e?.name,
    data: e instanceof ConvexError ? show(e.data) : null,
    hasData: e !== null && typeof e === "object" && "data" in e,
    message: String(e?.message),
  };
}
async function outcome(promise, label) {
  try {
    return { resolved: show(await withTimeout(promise, label)) };
  } catch (e) {
    return describe(e);
  }
}

const closers = [];
function simple() {
  const c = new ConvexClient(url, { logger, unsavedChangesWarning: false });
  closers.push(() => c.close());
  return c;
}
function react() {
  const c = new ConvexReactClient(url, { webSocketConstructor: WebSocket, logger, unsavedChangesWarning: false });
  closers.push(() => c.close());
  return c;
}
function http() {
  return new ConvexHttpClient(url, { logger });
}

// -- errors: Convex's own customErrors test cases, for every client ----------------------------------
const CASES = [
  ["query", "queryThrowingConvexError"],
  ["query", "queryThrowingNormalError"],
  ["query", "queryThrowingConvexErrorSubclass"],
  ["mutation", "mutationThrowingConvexError"],
  ["action", "actionThrowingConvexError"],
  ["action", "actionCallingQueryThrowingConvexError"],
  ["action", "actionCallingQueryThrowingConvexErrorSubclass"],
  ["action", "actionCallingMutationThrowingConvexError"],
  ["action", "actionCallingActionThrowingConvexError"],
  ["action", "actionCallingQueryThrowingNormalError"],
  ["query", "queryThrowingValues"],
];

async function errors() {
  const out = {};
  for (const [clientName, make] of [["ConvexClient", simple], ["ConvexHttpClient", http], ["ConvexReactClient", react]]) {
    const client = make();
    const results = {};
    for (const [kind, fn] of CASES) {
      results[fn] = await outcome(client[kind](api.customErrors[fn], {}), `${clientName} ${fn}`);
    }
    results.missing = await outcome(client.query(api.nope.missing, {}), `${clientName} missing`);
    results.wrongKind = await outcome(client.mutation(api.customErrors.queryThrowingConvexError, {}), "wrong kind");
    results.caught = await outcome(client.action(api.customErrors.actionCatchingNestedConvexError, {}), "caught");
    out[clientName] = results;
  }
  // A live subscription's error reaches onError with the same text.
  const c = simple();
  let seen = null;
  c.onUpdate(api.customErrors.queryThrowingConvexErrorSubclass, {}, () => {}, (e) => {
    seen = describe(e);
    changed();
  });
  await waitFor(() => seen !== null, "the subscription's error");
  out.subscription = seen;
  return out;
}

// -- logs of failed calls ----------------------------------------------------------------------------
async function logsOfFailures() {
  const out = {};
  for (const [clientName, make] of [["ConvexClient", simple], ["ConvexHttpClient", http], ["ConvexReactClient", react]]) {
    const client = make();
    const before = logs.length;
    out[clientName] = {
      query: await outcome(client.query(api.logs.logThenThrow, {}), "query"),
      mutation: await outcome(client.mutation(api.logs.logThenThrowMutation, {}), "mutation"),
      action: await outcome(client.action(api.logs.logThenThrowAction, {}), "action"),
      logs: logs.slice(before).map(([level, text]) => [level, text.replace(/%c/, "").replace(/ color:rgb\([^)]*\)/, "")]),
    };
  }
  return out;
}

// -- usePaginatedQuery: statuses and splits -------------------------------------------------------------
function mountPaginated(client, query, args, initialNumItems) {
  const state = { latest: null, renders: 0 };
  function Probe() {
    state.latest = usePaginatedQuery(query, args, { initialNumItems });
    state.renders++;
    queueMicrotask(changed);
    return null;
  }
  const root = TestRenderer.create(React.createElement(ConvexProvider, { client }, React.createElement(Probe)));
  closers.push(() => root.unmount());
  return state;
}

function recordWatches(client) {
  // usePaginatedQuery subscribes every page (and every split half) through watchQuery.
  // Each distinct page query is recorded once, in the order first seen.
  const watched = [];
  const seen = new Set();
  const original = client.watchQuery.bind(client);
  client.watchQuery = (query, args, options) => {
    const opts = args?.paginationOpts;
    const key = JSON.stringify(opts ?? null);
    if (opts && !seen.has(key)) {
      seen.add(key);
      watched.push({ hasCursor: opts.cursor !== null, hasEndCursor: opts.endCursor !== undefined && opts.endCursor !== null,
        numItems: opts.numItems });
    }
    return original(query, args, options);
  };
  return watched;
}

const ns = (r) => r.results.map((d) => d.n);

async function paginate() {
  const writer = http();
  const out = {};

  // 1. A page that grows past 2 * initialNumItems is split where the server's splitCursor says.
  {
    const list = uniq("grow");
    await writer.mutation(api.pages.fill, { list, count: 4 });
    const client = react();
    const watched = recordWatches(client);
    const state = mountPaginated(client, api.pages.page, { list }, 2);
    await waitFor(() => state.latest?.status === "CanLoadMore", "the first page");
    const firstPage = ns(state.latest);
    for (const n of [0.1, 0.2, 0.3, 0.4, 0.5, 0.6]) await writer.mutation(api.pages.insert, { list, n });
    await waitFor(() => watched.filter((w) => w.hasEndCursor).length >= 2 && state.latest.results.length === 8 &&
      state.latest.status === "CanLoadMore", "the split of the grown page");
    const afterSplit = ns(state.latest);
    state.latest.loadMore(2);
    await waitFor(() => state.latest.status === "CanLoadMore" && state.latest.results.length === 10, "the next page");
    out.grow = { firstPage, afterSplit, afterLoadMore: ns(state.latest), watched };
  }

  // 2. maximumRowsRead cuts a page: SplitRequired, the client shows nothing past it until the split
  //    halves (bounded: no read limits) have loaded, then continues from where the cut page ended.
  {
    const list = uniq("limited");
    await writer.mutation(api.pages.fill, { list, count: 10 });
    const direct = await writer.query(api.pages.pageLimited, { list, maximumRowsRead: 4, paginationOpts: { numItems: 10, cursor: null } });
    const client = react();
    const watched = recordWatches(client);
    const statuses = [];
    const state = mountPaginated(client, api.pages.pageLimited, { list, maximumRowsRead: 4 }, 10);
    await waitFor(() => {
      if (state.latest) statuses.push(`${state.latest.status}:${state.latest.results.length}`);
      return state.latest?.status === "CanLoadMore" && state.latest.results.length === 4;
    }, "the split SplitRequired page");
    const firstRound = ns(state.latest);
    state.latest.loadMore(10);
    await waitFor(() => state.latest.status === "CanLoadMore" && state.latest.results.length === 8, "the second cut page");
    const secondRound = ns(state.latest);
    state.latest.loadMore(10);
    await waitFor(() => state.latest.status === "Exhausted", "the end");
    out.limited = {
      direct: { n: direct.page.map((d) => d.n), isDone: direct.isDone, pageStatus: direct.pageStatus,
        hasSplit: typeof direct.splitCursor === "string", continueIsString: typeof direct.continueCursor === "string" },
      firstRound, secondRound, final: ns(state.latest), watched,
    };
  }

  // 3. The statuses over the HTTP client: soft limits, maximumBytesRead, filtered pages.
  {
    const list = uniq("status");
    await writer.mutation(api.pages.fill, { list, count: 20, keepEvery: 3 });
    const page = (opts, extra = {}) => writer.query(api.pages.page, { list, ...extra, paginationOpts: { cursor: null, ...opts } });
    const summary = (r) => ({ n: r.page.map((d) => d.n), isDone: r.isDone, pageStatus: r.pageStatus, hasSplit: r.splitCursor !== null });
    out.statuses = {
      plain: summary(await page({ numItems: 5 })),
      exact: summary(await page({ numItems: 20 })),
      whole: summary(await page({ numItems: 21 })),
      soft: summary(await page({ numItems: 7, maximumRowsRead: 8 })),
      cut: summary(await page({ numItems: 10, maximumRowsRead: 4 })),
      bytes: summary(await page({ numItems: 10, maximumBytesRead: 1 })),
      filtered: summary(await page({ numItems: 3 }, { onlyKept: true })),
      filteredCut: summary(await page({ numItems: 5, maximumRowsRead: 5 }, { onlyKept: true })),
    };
  }
  return out;
}

// -- auth: Convex's JWT rules and texts over the sync protocol and HTTP ------------------------------------
async function auth() {
  const tokens = JSON.parse(process.env.ENGINE_TOKENS);
  const out = { http: {}, sync: {}, httpAction: {} };
  for (const [name, token] of Object.entries(tokens)) {
    const client = http();
    client.setAuth(token);
    out.http[name] = await outcome(client.query(api.deployment.whoami, {}), `http ${name}`);
    const site = process.env.ENGINE_SITE_URL;
    const response = await fetch(`${site}/whoami`, { headers: { Authorization: `Bearer ${token}` } });
    out.httpAction[name] = { status: response.status, body: await response.json() };
  }
  // The sync clients: onChange reports the outcome; the server's AuthError text reaches the client,
  // which logs it (verbose) as it gives up on the token: `attempting to reauthenticate: <text> [vN]`.
  for (const [clientName, make] of [["ConvexClient", simple], ["ConvexReactClient", react]]) {
    out.sync[clientName] = {};
    for (const [name, token] of Object.entries(tokens)) {
      const client = make();
      const changes = [];
      const before = verbose.length;
      client.setAuth(async () => token, (isAuthenticated) => {
        changes.push(isAuthenticated);
        changed();
      });
      await waitFor(() => changes.length > 0, `${clientName} onChange for ${name}`, 30000);
      const who = show(await withTimeout(client.query(api.deployment.whoami, {}), `${clientName} whoami`));
      const reauth = verbose.slice(before).filter((line) => line.startsWith("attempting to reauthenticate: "))
        .map((line) => line.slice("attempting to reauthenticate: ".length).replace(/ \[v\d+\]$/, ""));
      out.sync[clientName][name] = { changes, who, reauth };
      await client.close();
    }
  }
  out.authLogs = logs.filter(([level]) => level !== "log").map(([, text]) => text);
  return out;
}

// -- storage: upload URL from a mutation, fetch POST, getUrl, GET, delete -----------------------------------
async function storage() {
  const client = simple();
  const size = Number(process.env.ENGINE_UPLOAD_BYTES ?? 3 * 1024 * 1024 + 17);
  const bytes = new Uint8Array(size);
  let x = 12345;
  for (let i = 0; i < size; i++) {
    x = (x * 1103515245 + 12345) & 0x7fffffff;
    bytes[i] = x & 0xff;
  }
  const uploadUrl = await client.mutation(api.files.generateUploadUrl, {});
  const posted = await fetch(uploadUrl, { method: "POST", headers: { "Content-Type": "image/png" }, body: bytes });
  const postBody = await posted.json();
  const storageId = postBody.storageId;
  const fileUrl = await client.query(api.files.url, { storageId });
  const got = await fetch(fileUrl);
  const back = new Uint8Array(await got.arrayBuffer());
  let same = back.length === bytes.length;
  for (let i = 0; same && i < bytes.length; i++) same = back[i] === bytes[i];
  const ranged = await fetch(fileUrl, { headers: { Range: "bytes=10-19" } });
  const rangedBytes = Array.from(new Uint8Array(await ranged.arrayBuffer()));
  const row = await client.query(api.files.row, { storageId });
  const metadata = await client.query(api.files.metadata, { storageId });
  // A live query of the URL turns null when the file is deleted.
  const urls = [];
  client.onUpdate(api.files.url, { storageId }, (v) => {
    urls.push(v);
    changed();
  });
  await waitFor(() => urls.length >= 1, "the live URL");
  await client.mutation(api.files.remove, { storageId });
  await waitFor(() => urls.at(-1) === null, "the URL turning null");
  const afterDelete = await fetch(fileUrl);
  const deleteAgain = await outcome(client.mutation(api.files.remove, { storageId }), "delete again");
  const inAction = await client.action(api.files.storeText, { text: "hello from an action", contentType: "text/plain" });
  const expired = await fetch(uploadUrl.replace(/token=[^&]*/, "token=garbage"), { method: "POST", body: "x" });
  return {
    uploadUrlOrigin: new URL(uploadUrl).origin, uploadPath: new URL(uploadUrl).pathname,
    postStatus: posted.status, postBody, storageIdType: typeof storageId,
    fileUrl, getStatus: got.status, contentType: got.headers.get("content-type"),
    cacheControl: got.headers.get("cache-control"), digest: got.headers.get("digest"),
    contentLength: got.headers.get("content-length"), same, size,
    rangedStatus: ranged.status, contentRange: ranged.headers.get("content-range"), rangedBytes,
    expectedRange: Array.from(bytes.slice(10, 20)),
    row, metadata, urls, afterDeleteStatus: afterDelete.status, afterDeleteBody: await afterDelete.json(),
    deleteAgain, inAction, badToken: { status: expired.status, body: await expired.json() },
  };
}

// -- scheduler: functions that cancel themselves end canceled --------------------------------------------
async function scheduler() {
  const client = simple();
  const out = {};
  for (const which of ["mutation", "action"]) {
    const jobId = await client.mutation(api.sched.schedule, { which });
    const states = [];
    let latest = null;
    client.onUpdate(api.sched.job, { id: jobId }, (job) => {
      latest = job;
      if (job && states.at(-1) !== job.state.kind) states.push(job.state.kind);
      changed();
    });
    await waitFor(() => latest?.state?.kind === "canceled", `the ${which} job ending canceled`);
    out[which] = { states, job: show(latest) };
  }
  out.events = await client.query(api.sched.events, {});
  out.urls = await client.query(api.deployment.urls, {});
  return out;
}

const scenarios = { errors, logs: logsOfFailures, paginate, auth, storage, scheduler };
let output;
try {
  output = { ok: true, value: await scenarios[scenario]() };
} catch (e) {
  output = { ok: false, error: String(e && e.stack ? e.stack : e), logs };
}
for (const close of closers.reverse()) {
  try {
    await close();
  } catch {
    // closing is best-effort
  }
}
console.log(JSON.stringify(output));
process.exit(0);
