// Drives the official `ConvexHttpClient` (npm convex, pinned in package.json) against a running engine
// serving tests/apps/basic, and prints ONE JSON object: {scenarioName: outcome}.
//
//   node tests/js/http_conformance.mjs <deploymentUrl> <adminKey>
//
// Every scenario runs even if others fail; an outcome is {ok: true, value, statuses} or
// {ok: false, error, statuses} (statuses: the HTTP status of each request the scenario made).
// Values are shown with their JS types made explicit (see `show`) so the Python side can assert that a
// BigInt arrived as a BigInt and bytes as an ArrayBuffer, not merely that the JSON looks alike.
// The process exits non-zero only if the script itself breaks.

import { ConvexHttpClient } from "convex/browser";
import { ConvexError } from "convex/values";
import { anyApi } from "convex/server";

const [url, adminKey] = process.argv.slice(2);
if (!url || !adminKey) {
  console.error("usage: http_conformance.mjs <deploymentUrl> <adminKey>");
  process.exit(2);
}

// A per-run prefix keeps this run's rows apart from anything else on a shared server.
const RUN = `js${Date.now().toString(36)}${Math.random().toString(36).slice(2, 8)}`;

// Log calls the client makes (it forwards each logLine to logger.log); nothing reaches stdout.
const logCalls = [];
const logger = {
  logVerbose: () => {},
  log: (...args) => logCalls.push({ level: "log", args: args.map(String) }),
  warn: (...args) => logCalls.push({ level: "warn", args: args.map(String) }),
  error: (...args) => logCalls.push({ level: "error", args: args.map(String) }),
};

// Raw HTTP exchanges, so scenarios can also check the wire (e.g. logLines) beneath the client.
const exchanges = [];
async function recordingFetch(input, init) {
  const response = await fetch(input, init);
  let body;
  try {
    body = await response.clone().json();
  } catch {
    body = null;
  }
  exchanges.push({ url: String(input), request: init?.body ? JSON.parse(init.body) : null, status: response.status, body });
  return response;
}

function newClient() {
  return new ConvexHttpClient(url, { logger, fetch: recordingFetch });
}

// JSON-safe rendering that keeps JS types visible.
function show(v) {
  if (v === undefined) return { $undefined: true };
  if (typeof v === "bigint") return { $bigint: v.toString() };
  if (typeof v === "number") {
    if (Number.isNaN(v)) return { $number: "NaN" };
    if (v === Infinity) return { $number: "Infinity" };
    if (v === -Infinity) return { $number: "-Infinity" };
    if (Object.is(v, -0)) return { $number: "-0" };
    return v;
  }
  if (v instanceof ArrayBuffer) return { $arraybuffer: Buffer.from(v).toString("base64") };
  if (Array.isArray(v)) return v.map(show);
  if (v !== null && typeof v === "object") {
    return Object.fromEntries(Object.entries(v).map(([k, x]) => [k, show(x)]));
  }
  return v;
}

function showError(e) {
  return {
    name: e?.constructor?.name ?? typeof e,
    isConvexError: e instanceof ConvexError,
    message: String(e?.message ?? e),
    data: e instanceof ConvexError ? show(e.data) : null,
  };
}

function bytes(...xs) {
  return new Uint8Array(xs).buffer;
}

const scenarios = {
  async query_missing_counter() {
    return await newClient().query("counters:get", { name: `${RUN}-missing` });
  },
  async mutation_then_query() {
    const c = newClient();
    const name = `${RUN}-counter`;
    const first = await c.mutation("counters:increment", { name });
    const second = await c.mutation("counters:increment", { name, by: 2.5 });
    const read = await c.query("counters:get", { name });
    return { first, second, read };
  },
  async queued_mutations_in_order() {
    // ConvexHttpClient queues mutations one at a time; each sees the previous one's write.
    const c = newClient();
    const name = `${RUN}-queued`;
    return await Promise.all([1, 2, 3, 4, 5].map(() => c.mutation("counters:increment", { name })));
  },
  async action_run_query() {
    return await newClient().action("echo:echoAction", { s: "x", n: 5n, b: bytes(7, 8), f: 1.5 });
  },
  async int64_round_trip() {
    return await newClient().query("echo:echo", {
      one: 1n,
      neg: -5n,
      zero: 0n,
      big: 2n ** 62n,
      max: 2n ** 63n - 1n,
      min: -(2n ** 63n),
    });
  },
  async bytes_round_trip() {
    return await newClient().query("echo:echo", { b: bytes(0, 1, 2, 254, 255), empty: bytes() });
  },
  async float_round_trip() {
    return await newClient().query("echo:echo", {
      whole: 5,
      frac: 0.1,
      neg: -2.5,
      nan: NaN,
      inf: Infinity,
      ninf: -Infinity,
      negzero: -0,
      huge: 1e300,
    });
  },
  async nested_values_round_trip() {
    return await newClient().query("echo:echo", {
      arr: [1, "two", null, true, [3n], { k: bytes(9) }],
      obj: { a: { b: { c: "deep" } }, "with space": 1 },
      empty_obj: {},
      empty_arr: [],
    });
  },
  async no_args_round_trip() {
    return await newClient().query("echo:echo");
  },
  async documents_with_int64_and_bytes() {
    const c = newClient();
    const author = `${RUN}-docs`;
    const id = await c.mutation("messages:send", { author, body: "hi", n: 42n, blob: bytes(1, 2, 3) });
    const docs = await c.query("messages:list", { author });
    return { id, docs };
  },
  async pagination() {
    const c = newClient();
    const author = `${RUN}-pages`;
    for (let i = 0; i < 7; i++) {
      await c.mutation("messages:send", { author, body: `m${i}`, n: BigInt(i) });
    }
    const pages = [];
    let cursor = null;
    for (let guard = 0; guard < 20; guard++) {
      const page = await c.query("messages:listPaginated", { author, paginationOpts: { numItems: 3, cursor } });
      pages.push({
        bodies: page.page.map((d) => d.body),
        isDone: page.isDone,
        continueCursorType: typeof page.continueCursor,
      });
      if (page.isDone) break;
      cursor = page.continueCursor;
    }
    return pages;
  },
  async convex_error_query() {
    return await newClient().query("errors:convexQuery");
  },
  async convex_error_mutation() {
    return await newClient().mutation("errors:convexMutation");
  },
  async convex_error_action() {
    return await newClient().action("errors:convexAction");
  },
  async convex_error_string_data() {
    return await newClient().query("errors:convexString");
  },
  async plain_error_query() {
    return await newClient().query("errors:plainQuery");
  },
  async plain_error_mutation() {
    return await newClient().mutation("errors:plainMutation");
  },
  async missing_function() {
    return await newClient().query("nope:nothing");
  },
  async argument_validation_error() {
    return await newClient().mutation("counters:increment", { name: 5 });
  },
  async internal_refused_without_admin() {
    return await newClient().mutation("counters:reset", { name: `${RUN}-internal` });
  },
  async internal_allowed_with_admin() {
    const name = `${RUN}-internal`;
    const c = newClient();
    await c.mutation("counters:increment", { name, by: 4 });
    c.setAdminAuth(adminKey);
    const reset = await c.mutation("counters:reset", { name });
    const after = await c.query("counters:get", { name });
    return { reset, after };
  },
  async admin_function_endpoint() {
    // `function()` posts to /api/function, which runs any function type for an admin.
    const c = newClient();
    c.setAdminAuth(adminKey);
    return await c.function("echo:echo", undefined, { via: "function" });
  },
  async default_export_by_module() {
    return await newClient().query("defaults");
  },
  async default_export_explicit() {
    return await newClient().query("defaults:default");
  },
  async default_export_any_api() {
    return await newClient().query(anyApi.defaults.default);
  },
  async nested_any_api() {
    return await newClient().query(anyApi.nested.deep.fn);
  },
  async consistent_query() {
    // query_ts then query_at_ts.
    const c = newClient();
    const name = `${RUN}-consistent`;
    await c.mutation("counters:increment", { name, by: 3 });
    const first = await c.consistentQuery("counters:get", { name });
    // The client keeps its first timestamp: later writes stay invisible to its consistent reads
    // (the server keeps ~30 s of history), while a plain query sees them.
    await newClient().mutation("counters:increment", { name, by: 4 });
    await newClient().mutation("counters:increment", { name: `${name}-new`, by: 1 });
    return {
      first,
      again: await c.consistentQuery("counters:get", { name }),
      created_later: await c.consistentQuery("counters:get", { name: `${name}-new` }),
      latest: await c.query("counters:get", { name }),
    };
  },
  async log_lines() {
    const before = exchanges.length;
    const logsBefore = logCalls.length;
    const value = await newClient().query("echo:logHello");
    const mine = exchanges.slice(before).find((x) => x.request?.path === "echo:logHello");
    return { value, wireLogLines: mine?.body?.logLines ?? null, logCalls: logCalls.slice(logsBefore) };
  },
};

const results = {};
for (const [name, run] of Object.entries(scenarios)) {
  const first = exchanges.length;
  try {
    results[name] = { ok: true, value: show(await run()) };
  } catch (e) {
    results[name] = { ok: false, error: showError(e) };
  }
  // HTTP status of every request the scenario made, in order.
  results[name].statuses = exchanges.slice(first).map((x) => x.status);
}
results._meta = { run: RUN, requests: exchanges.length };
process.stdout.write(JSON.stringify(results) + "\n");
