// The dashboard in headless Chromium (Debian's /usr/bin/chromium, driven by playwright-core; no
// browser is downloaded): log in with the admin key, open a table, see a row another client inserts
// appear live, edit it, delete it, run a function, see its execution in the logs, and visit every
// page. Prints one JSON object of what it saw; takes a screenshot of each page into SHOT_DIR.
//
//   node dashboard.mjs URL ADMIN_KEY SHOT_DIR

import { chromium } from "playwright-core";
import { ConvexHttpClient } from "convex/browser";
import path from "node:path";

const [url, adminKey, shotDir] = process.argv.slice(2);
const FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic", "--no-first-run",
               "--disable-background-networking", "--disable-component-update", "--disable-sync"];
const TIMEOUT = 30_000;

const browser = await chromium.launch({ executablePath: process.env.CHROMIUM ?? "/usr/bin/chromium", args: FLAGS });
const out = { consoleErrors: [] };
try {
  const page = await browser.newPage({ viewport: { width: 1440, height: 880 } });
  page.setDefaultTimeout(TIMEOUT);
  page.on("pageerror", (e) => out.consoleErrors.push(String(e)));
  page.on("console", (m) => { if (m.type() === "error") out.consoleErrors.push(m.text()); });
  const shot = (name) => page.screenshot({ path: path.join(shotDir, `${name}.png`) });
  const text = (sel) => page.locator(sel).innerText();

  // Login: a wrong key is refused, the right one opens the app.
  await page.goto(`${url}/dashboard`);
  await page.waitForSelector("#login-form");
  await shot("login");
  await page.fill("#admin-key", "not-the-key");
  await page.click("#login-button");
  await page.waitForFunction(() => document.querySelector("#login-error").textContent.length > 0);
  out.wrongKey = await text("#login-error");
  await page.fill("#admin-key", adminKey);
  await page.click("#login-button");
  await page.waitForSelector("#status.live");
  out.loggedIn = true;
  // The browser logs the refused login's 401 as a console error; from here on nothing may fail.
  out.consoleErrors = out.consoleErrors.filter((e) => !e.includes("status of 401"));

  // Data: a table, live.
  await page.click('#tables li[data-table="tasks"]');
  await page.waitForSelector("#documents tbody tr");
  out.rowsBefore = await page.locator("#documents tbody tr").count();
  const other = new ConvexHttpClient(url);
  const id = await other.mutation("tasks:create", { title: "Inserted by another client", priority: "high" });
  await page.waitForSelector(`#documents tbody tr[data-id="${id}"]`);
  out.liveRow = await text(`#documents tbody tr[data-id="${id}"]`);
  out.rowsAfter = await page.locator("#documents tbody tr").count();
  out.firstRowId = await page.locator("#documents tbody tr").first().getAttribute("data-id");
  await shot("data");

  // Edit the new row in the document panel.
  await page.click(`#documents tbody tr[data-id="${id}"]`);
  await page.waitForSelector("#doc-panel:not([hidden])");
  const doc = JSON.parse(await page.inputValue("#doc-json"));
  doc.title = "Edited in the dashboard";
  await page.fill("#doc-json", JSON.stringify(doc, null, 2));
  await page.click("#doc-save");
  await page.waitForFunction((docId) =>
    document.querySelector(`#documents tbody tr[data-id="${docId}"]`)?.textContent.includes("Edited in the dashboard"), id);
  out.editedTitle = (await other.query("tasks:get", { id })).task.title;
  await shot("document");
  // A document the schema refuses is not written, and the panel says why.
  await page.fill("#doc-json", JSON.stringify({ ...doc, priority: "whenever" }, null, 2));
  await page.click("#doc-save");
  await page.waitForFunction(() => document.querySelector("#doc-error").textContent.length > 0);
  out.refusedEdit = await text("#doc-error");
  out.titleAfterRefusal = (await other.query("tasks:get", { id })).task.title;

  // Run a function from the function spec.
  await page.click('#nav a[data-view="functions"]');
  await page.click('#functions li[data-fn="tasks:board"]');
  await page.waitForFunction(() => !document.querySelector("#fn-run").disabled);
  out.signature = await text("#fn-signature");
  await page.click("#fn-run");
  await page.waitForFunction(() => document.querySelector("#fn-result").textContent.length > 0);
  out.runResult = JSON.parse(await text("#fn-result"));
  await shot("functions");
  // An internal action that prints: the runner shows its log line, and so will the logs.
  await page.fill("#fn-filter", "cleanup");
  await page.click('#functions li[data-fn="maintenance:cleanup"]');
  await page.waitForFunction(() => !document.querySelector("#fn-run").disabled);
  await page.fill("#fn-args", "{}");
  await page.click("#fn-run");
  await page.waitForFunction(() => document.querySelector("#fn-result").textContent.includes("retentionDays"));
  out.runnerLogLines = await text("#fn-logs");

  // Their executions, in the logs.
  await page.click('#nav a[data-view="logs"]');
  await page.waitForSelector('#logs tbody tr[data-function="tasks:board"]');
  out.logRow = await text('#logs tbody tr[data-function="tasks:board"]');
  await page.waitForSelector('#logs tbody tr[data-function="maintenance:cleanup"]');
  out.printingLogRow = await text('#logs tbody tr[data-function="maintenance:cleanup"]');
  out.logHasSystemFunctions = await page.locator('#logs tbody tr[data-function^="_system"]').count();
  await shot("logs");

  // Delete the edited document from the data page.
  await page.click('#nav a[data-view="data"]');
  await page.click(`#documents tbody tr[data-id="${id}"]`);
  await page.click("#doc-delete");
  await page.waitForSelector(`#documents tbody tr[data-id="${id}"]`, { state: "detached" });
  out.deleted = (await other.query("tasks:list", {})).every((t) => t._id !== id);

  // Schedules, environment, schema.
  await page.click('#nav a[data-view="schedules"]');
  await page.waitForSelector("#crons tbody tr[data-name]");
  out.crons = await page.locator("#crons tbody tr[data-name]").evaluateAll((rows) => rows.map((r) => r.dataset.name));
  out.scheduled = await page.locator("#scheduled tbody tr[data-id]").evaluateAll((rows) =>
    rows.map((r) => ({ id: r.dataset.id, state: r.dataset.state })));
  // (The Schedules picture is taken by dashboard_cancel.mjs, with scheduled functions to cancel.)

  await page.click('#nav a[data-view="environment"]');
  await page.fill("#env-name", "DASHBOARD_SETTING");
  await page.fill("#env-value", "set from the dashboard");
  await page.click('#env-form button[type="submit"]');
  await page.waitForSelector('#env tbody tr[data-name="DASHBOARD_SETTING"]');
  await page.check("#env-show");
  out.envRow = await text('#env tbody tr[data-name="DASHBOARD_SETTING"]');
  await shot("environment");

  await page.click('#nav a[data-view="schema"]');
  await page.waitForSelector('#schema .table-card[data-table="tasks"]');
  out.schemaTasks = await text('#schema .table-card[data-table="tasks"]');
  await shot("schema");

  // Log out: the key is forgotten.
  await page.click("#logout");
  await page.waitForSelector("#login-form");
  out.afterLogout = await page.evaluate(() => sessionStorage.length);
} finally {
  await browser.close();
}
console.log(JSON.stringify(out));
