// A live kanban through the official `ConvexClient` (npm convex, WebSocket sync) against a running
// engine serving the Nova Command app (the repo root), already seeded with `seed:run`.
//
//   node tests/js/app_kanban.mjs <deploymentUrl> <adminKey>
//
// Subscribes to `tasks:board`, then creates a task, assigns it to Friday and moves it to in_progress
// and done, waiting after each step for the subscription to show the task in its new column.
// Prints ONE JSON object: {columns: [column of the task after each update that moved it],
// initialInbox: [titles], lastBoard: {column: [titles]}}. Exits non-zero on a timeout or failure.

import { ConvexClient } from "convex/browser";
import { anyApi } from "convex/server";
import WebSocket from "ws";

const [url, adminKey] = process.argv.slice(2);
if (!url || !adminKey) {
  console.error("usage: app_kanban.mjs <deploymentUrl> <adminKey>");
  process.exit(2);
}
const STEP_TIMEOUT_MS = 15000;
const TITLE = `Live kanban ${Date.now().toString(36)}`;

const client = new ConvexClient(url, { webSocketConstructor: globalThis.WebSocket ?? WebSocket });
client.setAdminAuth(adminKey);

const columnsSeen = [];
let latest = null;
const waiters = [];
function columnOf(board, title) {
  for (const [column, tasks] of Object.entries(board)) {
    if (tasks.some((t) => t.title === title)) return column;
  }
  return null;
}
function titles(board) {
  return Object.fromEntries(Object.entries(board).map(([c, ts]) => [c, ts.map((t) => t.title)]));
}
client.onUpdate(anyApi.tasks.board, {}, (board) => {
  latest = board;
  const column = columnOf(board, TITLE);
  if (column !== null && columnsSeen[columnsSeen.length - 1] !== column) columnsSeen.push(column);
  for (const w of [...waiters]) w();
}, (error) => {
  console.error(`subscription failed: ${error}`);
  process.exit(1);
});

function until(predicate, what) {
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => reject(new Error(`timed out waiting for ${what}`)), STEP_TIMEOUT_MS);
    const check = () => {
      if (latest !== null && predicate(latest)) {
        clearTimeout(timer);
        waiters.splice(waiters.indexOf(check), 1);
        resolve(latest);
      }
    };
    waiters.push(check);
    check();
  });
}

try {
  const initial = await until(() => true, "the first board");
  const friday = await client.query(anyApi.agents.get, { sessionKey: "agent:developer:main" });
  const taskId = await client.mutation(anyApi.tasks.create, { title: TITLE });
  await until((b) => columnOf(b, TITLE) === "inbox", "the task in inbox");
  await client.mutation(anyApi.tasks.assign, { taskId, agentId: friday._id });
  await until((b) => columnOf(b, TITLE) === "assigned", "the task in assigned");
  await client.mutation(anyApi.tasks.move, { id: taskId, status: "in_progress" });
  await until((b) => columnOf(b, TITLE) === "in_progress", "the task in in_progress");
  await client.mutation(anyApi.tasks.move, { id: taskId, status: "done" });
  const last = await until((b) => columnOf(b, TITLE) === "done", "the task in done");
  console.log(JSON.stringify({ columns: columnsSeen, initialInbox: titles(initial).inbox, lastBoard: titles(last) }));
  await client.close();
  process.exit(0);
} catch (error) {
  console.error(String(error?.stack ?? error));
  await client.close();
  process.exit(1);
}
