// The dashboard: plain DOM, no framework. Live data comes from system queries over the engine's own
// sync protocol (sync.js); the function runner uses /api/function, the logs /api/stream_function_logs,
// environment variables the CLI's endpoint. Every request carries the admin key from the login box.

import { SyncClient } from "./sync.js";
import { cellText, compact, example, formatTime, pretty, typeText } from "./values.js";

const $ = (sel) => document.querySelector(sel);
const KEY = "convex-engine-admin-key";
const state = { key: null, client: null, unsubs: {}, table: null, docs: [], selected: null, seen: new Set(),
                spec: [], fn: null, logs: [], logCursor: 0, logLoop: null, overview: null };

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k === "class") node.className = v;
    else if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "dataset") Object.assign(node.dataset, v);
    else node.setAttribute(k, v);
  }
  for (const child of children) node.append(child instanceof Node ? child : document.createTextNode(String(child)));
  return node;
}

async function api(path, body, { method = "POST" } = {}) {
  const res = await fetch(path, {
    method, headers: { "Content-Type": "application/json", Authorization: `Convex ${state.key}` },
    body: body === undefined ? undefined : JSON.stringify(body),
  });
  const text = await res.text();
  const json = text ? JSON.parse(text) : null;
  if (!res.ok) throw new Error(json && json.message ? `${json.code}: ${json.message}` : `HTTP ${res.status}`);
  return json;
}

// -- login ------------------------------------------------------------------------------------------

async function login(key) {
  state.key = key;
  try {
    const answer = await api("/api/query", { path: "_system/dashboard/overview", args: {}, format: "convex_encoded_json" });
    if (answer.status !== "success") throw new Error(answer.errorMessage);
  } catch (e) {
    state.key = null;
    throw e;
  }
  sessionStorage.setItem(KEY, key);
  start();
}

function showLogin(message = "") {
  $("#app").hidden = true;
  $("#login").hidden = false;
  $("#login-error").textContent = message;
  $("#admin-key").focus();
}

function logout(message = "") {
  sessionStorage.removeItem(KEY);
  if (state.client) state.client.close();
  state.client = null;
  state.key = null;
  if (state.logLoop) state.logLoop.stop = true;
  showLogin(message);
}

$("#login-form").addEventListener("submit", async (event) => {
  event.preventDefault();
  $("#login-error").textContent = "";
  $("#login-button").disabled = true;
  try {
    await login($("#admin-key").value.trim());
  } catch (e) {
    $("#login-error").textContent = /BadAdminKey|401|invalid/.test(String(e.message))
      ? "That admin key is not valid for this deployment." : String(e.message);
  } finally {
    $("#login-button").disabled = false;
  }
});
$("#logout").addEventListener("click", () => logout());

// -- the app ------------------------------------------------------------------------------------------

function start() {
  $("#login").hidden = true;
  $("#app").hidden = false;
  state.client = new SyncClient(location.origin, state.key, {
    onStatus: (s) => { const n = $("#status"); n.textContent = s; n.className = "status " + (s === "live" ? "live" : ""); },
    onAuthError: () => logout("The admin key was refused; log in again."),
  });
  state.client.subscribe("_system/dashboard/overview", {}, (value) => { state.overview = value; renderTables(); renderSchema(); });
  state.client.subscribe("_system/cli/modules:apiSpec", {}, (value) => { state.spec = value; renderFunctions(); });
  state.client.subscribe("_system/dashboard/scheduled:list", { limit: 200 }, renderScheduled);
  state.client.subscribe("_system/dashboard/crons:list", {}, renderCrons);
  subscribeEnv();
  startLogs();
  route();
}

function route() {
  const view = (location.hash || "#data").slice(1);
  for (const section of document.querySelectorAll(".view")) section.hidden = section.id !== `view-${view}`;
  for (const link of document.querySelectorAll("#nav a")) link.classList.toggle("active", link.dataset.view === view);
  if (view === "logs") renderLogs();
}
window.addEventListener("hashchange", route);

// -- data -----------------------------------------------------------------------------------------------

function renderTables() {
  const list = $("#tables");
  list.replaceChildren();
  for (const t of state.overview.tables) {
    const item = el("li", { dataset: { table: t.name }, onclick: () => openTable(t.name) },
      el("span", {}, t.name), el("span", { class: "tag" }, t.system ? "system" : t.inSchema ? "" : "no schema"));
    if (t.name === state.table) item.classList.add("active");
    list.append(item);
  }
}

function openTable(name) {
  if (state.unsubs.table) state.unsubs.table();
  state.table = name;
  state.docs = [];
  state.seen = new Set();
  closeDoc();
  renderTables();
  $("#table-title").textContent = name;
  $("#table-count").textContent = "loading…";
  const system = name.startsWith("_");
  $("#doc-add").hidden = system;
  state.unsubs.table = state.client.subscribe("_system/cli/tableData",
    { table: name, order: "desc", paginationOpts: { numItems: 200, cursor: null } },
    (page) => { state.docs = page.page; renderDocuments(!page.isDone); },
    (error) => { $("#table-count").textContent = error; });
}

function renderDocuments(more) {
  const docs = state.docs;
  const columns = ["_id", "_creationTime"];
  for (const d of docs) for (const k of Object.keys(d)) if (!columns.includes(k)) columns.push(k);
  $("#documents thead").replaceChildren(el("tr", {}, ...columns.map((c) => el("th", {}, c))));
  const body = $("#documents tbody");
  body.replaceChildren();
  const first = state.seen.size === 0;
  for (const d of docs) {
    const row = el("tr", { dataset: { id: d._id }, onclick: () => openDoc(d) },
      ...columns.map((c) => el("td", { title: c in d ? compact(d[c]) : "" },
        c === "_creationTime" ? formatTime(d[c]) : cellText(d[c]))));
    if (!first && !state.seen.has(d._id)) row.classList.add("fresh");
    if (state.selected === d._id) row.classList.add("selected");
    body.append(row);
  }
  state.seen = new Set(docs.map((d) => d._id));
  $("#table-count").textContent = `${docs.length}${more ? "+" : ""} document${docs.length === 1 ? "" : "s"}, newest first`;
  if (state.selected && !state.seen.has(state.selected) && state.selected !== "new") closeDoc();
}

function openDoc(doc) {
  state.selected = doc ? doc._id : "new";
  $("#doc-panel").hidden = false;
  $("#doc-title").textContent = doc ? doc._id : `New document in ${state.table}`;
  $("#doc-json").value = pretty(doc || {});
  $("#doc-save").textContent = doc ? "Save" : "Insert";
  $("#doc-delete").hidden = !doc || state.table.startsWith("_");
  $("#doc-save").hidden = state.table.startsWith("_");
  $("#doc-error").textContent = "";
  for (const row of document.querySelectorAll("#documents tbody tr")) row.classList.toggle("selected", row.dataset.id === state.selected);
}

function closeDoc() {
  state.selected = null;
  $("#doc-panel").hidden = true;
}

$("#doc-add").addEventListener("click", () => openDoc(null));
$("#doc-close").addEventListener("click", closeDoc);
$("#doc-save").addEventListener("click", async () => {
  $("#doc-error").textContent = "";
  let document_;
  try {
    document_ = JSON.parse($("#doc-json").value);
  } catch (e) {
    $("#doc-error").textContent = `Not valid JSON: ${e.message}`;
    return;
  }
  try {
    if (state.selected === "new") {
      const id = await state.client.mutation("_system/dashboard/documents:insert", { table: state.table, document: document_ });
      state.selected = id;
      $("#doc-title").textContent = id;
    } else {
      await state.client.mutation("_system/dashboard/documents:replace", { id: state.selected, document: document_ });
    }
    $("#doc-error").textContent = "";
    $("#doc-save").textContent = "Saved";
    setTimeout(() => { $("#doc-save").textContent = "Save"; }, 1200);
  } catch (e) {
    $("#doc-error").textContent = e.message;
  }
});
$("#doc-delete").addEventListener("click", async () => {
  if (!state.selected || state.selected === "new") return;
  try {
    await state.client.mutation("_system/dashboard/documents:remove", { ids: [state.selected] });
    closeDoc();
  } catch (e) {
    $("#doc-error").textContent = e.message;
  }
});

// -- functions --------------------------------------------------------------------------------------------

function fnName(spec) {
  const [module, name] = spec.identifier.split(":");
  return `${module.replace(/\.js$/, "")}:${name}`;
}

function renderFunctions() {
  const filter = $("#fn-filter").value.toLowerCase();
  const list = $("#functions");
  list.replaceChildren();
  for (const spec of state.spec) {
    if (spec.functionType === "HttpAction") continue;
    const name = fnName(spec);
    if (filter && !name.toLowerCase().includes(filter)) continue;
    const item = el("li", { dataset: { fn: name }, onclick: () => openFunction(spec) },
      el("span", {}, name), el("span", { class: "tag" }, `${spec.functionType[0]}${spec.visibility.kind === "internal" ? " · internal" : ""}`));
    if (state.fn && fnName(state.fn) === name) item.classList.add("active");
    list.append(item);
  }
}
$("#fn-filter").addEventListener("input", renderFunctions);

function openFunction(spec) {
  state.fn = spec;
  renderFunctions();
  $("#fn-title").textContent = fnName(spec);
  $("#fn-meta").textContent = `${spec.functionType} · ${spec.visibility.kind}`;
  $("#fn-signature").textContent = `args: ${typeText(spec.args)}\nreturns: ${typeText(spec.returns)}`;
  $("#fn-args").value = pretty(example(spec.args));
  $("#fn-result").textContent = "";
  $("#fn-logs").textContent = "";
  $("#fn-time").textContent = "";
  $("#fn-run").disabled = false;
}

$("#fn-run").addEventListener("click", async () => {
  let args;
  try {
    args = JSON.parse($("#fn-args").value || "{}");
  } catch (e) {
    $("#fn-result").textContent = `Arguments are not valid JSON: ${e.message}`;
    $("#fn-result").className = "code fail";
    return;
  }
  $("#fn-run").disabled = true;
  const started = performance.now();
  try {
    const answer = await api("/api/function", { path: fnName(state.fn), args, format: "convex_encoded_json" });
    $("#fn-time").textContent = `${Math.round(performance.now() - started)} ms`;
    if (answer.status === "success") {
      $("#fn-result").textContent = pretty(answer.value === undefined ? null : answer.value);
      $("#fn-result").className = "code ok";
    } else {
      $("#fn-result").textContent = answer.errorMessage + (answer.errorData !== undefined ? `\n${pretty(answer.errorData)}` : "");
      $("#fn-result").className = "code fail";
    }
    $("#fn-logs").textContent = (answer.logLines || []).join("\n");
  } catch (e) {
    $("#fn-result").textContent = e.message;
    $("#fn-result").className = "code fail";
  } finally {
    $("#fn-run").disabled = false;
  }
});

// -- logs ------------------------------------------------------------------------------------------------------

function startLogs() {
  const loop = { stop: false };
  state.logLoop = loop;
  (async () => {
    let failures = 0;
    while (!loop.stop) {
      try {
        const answer = await api(`/api/stream_function_logs?cursor=${state.logCursor}&format=engine`, undefined, { method: "GET" });
        if (loop.stop) return;
        state.logCursor = answer.newCursor;
        failures = 0;
        if (answer.entries.length) {
          state.logs.push(...answer.entries);
          if (state.logs.length > 1000) state.logs.splice(0, state.logs.length - 1000);
          if (!$("#view-logs").hidden) renderLogs();
        }
      } catch (e) {
        failures += 1;
        await new Promise((r) => setTimeout(r, Math.min(500 * 2 ** failures, 10000)));
      }
    }
  })();
}

function renderLogs() {
  const filter = $("#log-filter").value.toLowerCase();
  const failuresOnly = $("#log-failures").checked;
  const body = $("#logs tbody");
  body.replaceChildren();
  for (const e of [...state.logs].reverse()) {
    if (filter && !e.function.toLowerCase().includes(filter)) continue;
    if (failuresOnly && e.status === "success") continue;
    const lines = [...(e.error ? [e.error] : []), ...e.logLines].join("\n");
    body.append(el("tr", { dataset: { function: e.function, status: e.status } },
      el("td", {}, formatTime(e.timestamp * 1000)), el("td", {}, e.type), el("td", { class: "mono" }, e.function),
      el("td", { class: e.status === "success" ? "ok" : "fail" }, e.status + (e.occRetries ? ` (${e.occRetries} OCC retries)` : "")),
      el("td", {}, `${e.durationMs.toFixed(1)} ms`), el("td", { class: "mono" }, e.requestId),
      el("td", { class: "lines mono" }, lines)));
  }
}
$("#log-filter").addEventListener("input", renderLogs);
$("#log-failures").addEventListener("change", renderLogs);
$("#log-clear").addEventListener("click", () => { state.logs = []; renderLogs(); });

// -- schedules ------------------------------------------------------------------------------------------------

function renderScheduled(jobs) {
  const body = $("#scheduled tbody");
  body.replaceChildren();
  if (!jobs.length) body.append(el("tr", {}, el("td", { colspan: "5", class: "muted" }, "No scheduled functions.")));
  for (const job of jobs) {
    const kind = job.state.kind;
    const cancel = el("button", { class: "danger", onclick: async () => {
      try { await state.client.mutation("_system/dashboard/scheduled:cancel", { id: job._id }); } catch (e) { alert(e.message); }
    } }, "Cancel");
    body.append(el("tr", { dataset: { id: job._id, state: kind } },
      el("td", { class: "mono" }, job.name), el("td", {}, formatTime(job.scheduledTime)),
      el("td", { class: kind === "failed" ? "fail" : kind === "success" ? "ok" : "" }, kind + (job.state.error ? `: ${job.state.error}` : "")),
      el("td", { class: "mono", title: compact(job.args) }, compact(job.args[0] ?? {})),
      el("td", {}, kind === "pending" || kind === "inProgress" ? cancel : "")));
  }
}

function renderCrons(jobs) {
  const body = $("#crons tbody");
  body.replaceChildren();
  if (!jobs.length) body.append(el("tr", {}, el("td", { colspan: "6", class: "muted" }, "No cron jobs (crons.py).")));
  for (const job of jobs) {
    const last = job.lastRun ? `${formatTime(job.lastRun.scheduledTime ?? job.lastRun.ts)} · ${job.lastRun.outcome ?? ""}` : "never";
    body.append(el("tr", { dataset: { name: job.name } },
      el("td", {}, job.name), el("td", { class: "mono" }, job.function ?? ""),
      el("td", { class: "mono" }, compact(job.schedule)), el("td", {}, job.nextRun ? formatTime(job.nextRun) : ""),
      el("td", {}, last), el("td", {}, job.state?.kind ?? compact(job.state))));
  }
}

// -- environment ------------------------------------------------------------------------------------------------

function subscribeEnv() {
  refreshEnv();
}

function renderEnv(vars) {
  state.env = vars;
  const show = $("#env-show").checked;
  const body = $("#env tbody");
  body.replaceChildren();
  if (!vars.length) body.append(el("tr", {}, el("td", { colspan: "3", class: "muted" }, "No environment variables set.")));
  for (const { name, value } of vars) {
    body.append(el("tr", { dataset: { name } }, el("td", { class: "mono" }, name),
      el("td", { class: "mono" }, show ? value : "••••••••"),
      el("td", {}, el("button", { class: "link", onclick: () => changeEnv([{ name, value: null }]) }, "Remove"))));
  }
}
$("#env-show").addEventListener("change", () => state.env && renderEnv(state.env));

async function changeEnv(changes) {
  $("#env-error").textContent = "";
  try {
    await api("/api/update_environment_variables", { changes });
    refreshEnv();
  } catch (e) {
    $("#env-error").textContent = e.message;
  }
}

function refreshEnv() {
  // The env file is not a table, so this query is not reactive: subscribe afresh after each change.
  if (state.unsubs.env) state.unsubs.env();
  state.unsubs.env = state.client.subscribe("_system/cli/queryEnvironmentVariables", {}, renderEnv,
    (e) => { $("#env-error").textContent = e; });
}

$("#env-form").addEventListener("submit", (event) => {
  event.preventDefault();
  changeEnv([{ name: $("#env-name").value.trim(), value: $("#env-value").value }]).then(() => {
    $("#env-name").value = "";
    $("#env-value").value = "";
  });
});

// -- schema --------------------------------------------------------------------------------------------------------

function renderSchema() {
  const box = $("#schema");
  box.replaceChildren();
  const o = state.overview;
  box.append(el("p", { class: "muted" },
    `${o.tables.length} tables · ${o.functions} functions · ${o.httpRoutes.length} HTTP routes · ${o.crons.length} cron jobs` +
    (o.schema ? (o.schema.schemaValidation ? " · schema validation on" : " · schema validation off") : " · no schema.py")));
  for (const t of o.tables) {
    const card = el("div", { class: "table-card", dataset: { table: t.name } },
      el("h3", {}, t.name, el("span", { class: "pill" }, t.system ? "system" : t.inSchema ? "schema" : "no schema")));
    const rows = t.indexes.map((ix) => el("tr", {}, el("td", { class: "mono" }, ix.name), el("td", { class: "mono" }, ix.fields.join(", "))));
    card.append(el("table", { class: "grid" }, el("thead", {}, el("tr", {}, el("th", {}, "Index"), el("th", {}, "Fields"))), el("tbody", {}, ...rows)));
    if (t.documentType) card.append(el("pre", { class: "code" }, typeText(t.documentType)));
    box.append(card);
  }
}

// -- boot -----------------------------------------------------------------------------------------------------------

const saved = sessionStorage.getItem(KEY);
if (saved) login(saved).catch(() => showLogin());
else showLogin();
