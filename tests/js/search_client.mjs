// The official npm `convex` ConvexClient subscribed to full-text search queries of tests/apps/search,
// against a running engine; prints ONE JSON object with what it observed (tests/test_search_js.py).
//
//   ENGINE_ADMIN_KEY=... node tests/js/search_client.mjs <deploymentUrl>
//
// Re-runs are counted on the server: /metrics' convex_function_executions_total for the search
// function (every re-run of a subscribed query is one execution). A mutation promise resolves only
// after a Transition at or past its commit, which the server sends after re-running every query the
// commit touched, so counting right after a mutation resolves is exact. Nothing sleeps.

import { ConvexClient } from "convex/browser";
import { anyApi } from "convex/server";
import { changed, waitFor } from "./waiting.mjs";

const [url] = process.argv.slice(2);
const adminKey = process.env.ENGINE_ADMIN_KEY;
const api = anyApi;
const RUN = `s${Date.now().toString(36)}${Math.random().toString(36).slice(2, 6)}`;


async function executions(fn) {
  const resp = await fetch(`${url}/metrics`, { headers: { Authorization: `Convex ${adminKey}` } });
  const text = await resp.text();
  let total = 0;
  for (const line of text.split("\n")) {
    if (line.startsWith("convex_function_executions_total{") && line.includes(`function="${fn}"`)) {
      total += Number(line.split(" ").at(-1));
    }
  }
  return total;
}

const clients = [];
function newClient() {
  const c = new ConvexClient(url, { unsavedChangesWarning: false });
  clients.push(c);
  return c;
}

async function live() {
  const channel = `${RUN}-general`;
  const reader = newClient();
  const writer = newClient();
  const values = [];
  reader.onUpdate(api.messages.search, { text: "deploy", channel }, (v) => {
    values.push(v);
    changed();
  });
  await waitFor(() => values.length === 1, "the first result");
  const steps = { initial: values.at(-1) };

  const long = await writer.mutation(api.messages.send, { body: "please deploy the service before the weekend", channel });
  await waitFor(() => values.at(-1).length === 1, "a matching message arrives");
  steps.afterFirst = values.at(-1);
  const short = await writer.mutation(api.messages.send, { body: "deploy deploy", channel });
  await waitFor(() => values.at(-1).length === 2, "a better match arrives");
  steps.inRelevanceOrder = values.at(-1);

  const updates = values.length;
  const before = await executions("messages:search");
  await writer.mutation(api.messages.send, { body: "lunch is ready", channel });
  await writer.mutation(api.messages.send, { body: "deploy now", channel: `${RUN}-elsewhere` });
  const after = await executions("messages:search");
  steps.reRunsForUnrelatedWrites = after - before;
  steps.updatesForUnrelatedWrites = values.length - updates;

  await writer.mutation(api.messages.send, { body: "deploying soon", channel });
  await waitFor(() => values.at(-1).includes("deploying soon"), "a completion of the last word arrives");
  steps.withCompletion = values.at(-1);
  const reRunsForMatch = (await executions("messages:search")) - after;

  await writer.mutation(api.messages.update, { id: short, channel: `${RUN}-elsewhere` });
  await waitFor(() => !values.at(-1).includes("deploy deploy"), "a message moved to another channel leaves");
  steps.afterFilterChange = values.at(-1);
  await writer.mutation(api.messages.update, { id: long, body: "the service is up" });
  await waitFor(() => !values.at(-1).includes("please deploy the service before the weekend"), "an edited message leaves");
  steps.afterEdit = values.at(-1);
  steps.reRunsForMatch = reRunsForMatch;
  return steps;
}

async function paginated() {
  const channel = `${RUN}-pages`;
  const writer = newClient();
  const reader = newClient();
  for (let i = 0; i < 7; i++) {
    await writer.mutation(api.messages.send, { body: "page" + " filler".repeat(i), channel });
  }
  const problems = [];
  const sub = reader.onPaginatedUpdate_experimental(api.messages.searchPage, { text: "page", channel },
    { initialNumItems: 2 }, (r) => {
      const ids = r.results.map((d) => d._id);
      if (new Set(ids).size !== ids.length) problems.push("duplicate rows");
      changed();
    });
  const current = () => sub.getCurrentValue();
  await waitFor(() => current()?.status === "CanLoadMore", "the first page");
  while (current().status !== "Exhausted") {
    const n = current().results.length;
    current().loadMore(2);
    await waitFor(() => current().status === "Exhausted" || (current().status !== "LoadingMore" && current().results.length > n),
      "another page");
  }
  const truth = async () => (await reader.query(api.messages.searchAll, { text: "page", channel }));
  const compare = async (label) => {
    const want = await truth();
    const got = current().results.map((d) => d.body);
    return { label, ok: JSON.stringify(got) === JSON.stringify(want), got, want };
  };
  const comparisons = [await compare("all pages")];
  // New matches land in exactly one page, in relevance order; a removed one leaves.
  await writer.mutation(api.messages.send, { body: "page", channel });
  await writer.mutation(api.messages.send, { body: "page" + " filler".repeat(20), channel });
  await reader.mutation(api.messages.send, { body: "unrelated", channel });
  comparisons.push(await compare("after inserts"));
  const victim = current().results[3];
  await writer.mutation(api.messages.remove, { id: victim._id });
  await reader.mutation(api.messages.send, { body: "unrelated again", channel });
  comparisons.push(await compare("after a delete"));
  return { problems, comparisons, pages: current().results.length };
}

const scenarios = { live, paginated };
let output;
try {
  const value = {};
  for (const [name, run] of Object.entries(scenarios)) value[name] = await run();
  output = { ok: true, value };
} catch (e) {
  output = { ok: false, error: String(e && e.stack ? e.stack : e) };
}
for (const c of clients) await c.close();
console.log(JSON.stringify(output));
process.exit(0);
