// Tidepool Tasks: a small offline-first app on the Tidepool browser client.
//
// Tasks live in IndexedDB (store "tasks"), sync through the hub that serves this page, and work
// offline. The analytics bridge writes back two kinds of results: a `size` field on every task
// (a Tez "enrich" DAG) and one record per project in "project_stats" (a Tez "aggregate" DAG).
//
// URL parameters: `?user=NAME` picks the local database (several users can share one browser),
// `#token=JWT` the hub token (kept in localStorage, so a reload needs no token in the URL). The
// choice to stay offline is kept in localStorage too.

import init, { Tidepool } from "./pkg/tidepool_wasm.js";

const STORES = [
  { name: "tasks", indexes: [{ name: "byProject", keyPath: "project" }] },
  { name: "project_stats" },
];
const LOG_LENGTH = 30;

const $ = (selector) => document.querySelector(selector);

function settings() {
  const query = new URLSearchParams(location.search);
  const fragment = new URLSearchParams(location.hash.slice(1));
  const user = query.get("user") || "me";
  const db = query.get("db") || "app";
  const remembered = `tidepool-demo-token/${db}`;
  let token = fragment.get("token");
  if (token) {
    localStorage.setItem(remembered, token);
    history.replaceState(null, "", location.pathname + location.search);
  } else {
    token = localStorage.getItem(remembered);
  }
  const scheme = location.protocol === "https:" ? "wss" : "ws";
  return { user, db, token, hub: `${scheme}://${location.host}/v1/sync` };
}

function showProblem(error) {
  const problem = $("#problem");
  problem.hidden = false;
  problem.textContent = error && error.code ? `${error.code}: ${error.message}` : String(error);
  problem.dataset.code = (error && error.code) || "error";
}

/** Runs an action and shows its error instead of losing it in the console. */
function guarded(action) {
  return async (...args) => {
    try {
      await action(...args);
    } catch (error) {
      showProblem(error);
    }
  };
}

function element(tag, props = {}, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(props)) {
    if (name === "dataset") Object.assign(node.dataset, value);
    else if (name in node) node[name] = value;
    else node.setAttribute(name, value);
  }
  node.append(...children);
  return node;
}

/** The pill says what the user can act on: offline by choice, or trying to reach the hub. */
function describeStatus(status, wantOnline) {
  const pending = status.pending === 0
    ? "all synced"
    : status.pending === 1 ? "1 change to sync" : `${status.pending} changes to sync`;
  if (!wantOnline) return `offline (your choice) · ${status.pending === 0 ? "nothing to sync" : pending}`;
  if (status.connection === "online") return `online · ${status.synced || status.pending > 0 ? pending : "catching up…"}`;
  if (status.connection === "connecting") return `connecting… · ${status.pending === 0 ? "no local changes" : pending}`;
  return `hub unreachable, retrying · ${status.pending === 0 ? "no local changes" : pending}`;
}

function renderStatus(status, wantOnline) {
  const node = $("#status");
  node.dataset.connection = status.connection;
  node.dataset.pending = String(status.pending);
  node.dataset.synced = String(status.synced);
  node.dataset.choice = wantOnline ? "online" : "offline";
  node.textContent = describeStatus(status, wantOnline);
  // The hub's last complaint, in words, for whoever hovers: codes are for programs.
  node.title = status.error ? status.error.message : "";
  const toggle = $("#toggle-online");
  toggle.textContent = wantOnline ? "Go offline" : "Go online";
  toggle.setAttribute("aria-pressed", String(!wantOnline));
}

/** Task titles by key, so the activity list can name a deleted task too. */
const titles = new Map();

async function renderTasks(db) {
  const tasks = await db.getAll("tasks");
  const keys = await db.getAllKeys("tasks");
  const rows = keys.map((key, i) => ({ key, task: tasks[i] }));
  for (const { key, task } of rows) titles.set(JSON.stringify(key), task.title);
  rows.sort((a, b) => (a.task.created ?? 0) - (b.task.created ?? 0));
  const list = $("#tasks");
  list.replaceChildren(
    ...rows.map(({ key, task }) => {
      const done = element("input", { type: "checkbox", className: "done", checked: Boolean(task.done), "aria-label": `done: ${task.title}` });
      // An update of the one field: a put of this (possibly stale) copy would revert what
      // another device or the analytics bridge changed since the list was drawn.
      done.addEventListener("change", guarded(() => db.update("tasks", key, { done: done.checked })));
      const more = element("button", { type: "button", className: "more", textContent: "+1h", "aria-label": `one more hour for ${task.title}` });
      more.addEventListener("click", guarded(() => db.increment("tasks", key, "hours", 1)));
      const remove = element("button", { type: "button", className: "remove", textContent: "✕", "aria-label": `delete ${task.title}` });
      remove.addEventListener("click", guarded(() => db.delete("tasks", key)));
      const size = task.size
        ? element("span", { className: "size", title: "computed by Tez", textContent: task.size })
        : "";
      return element(
        "li",
        { dataset: { key: String(key), title: task.title, hours: String(task.hours), done: String(Boolean(task.done)), size: task.size ?? "" } },
        done,
        element("span", { className: "title", textContent: task.title }),
        element("span", { className: "project", textContent: task.project }),
        element("span", { className: "hours", textContent: `${task.hours}h` }),
        size,
        more,
        remove,
      );
    }),
  );
}

async function renderStats(db, arrived) {
  const stats = await db.getAll("project_stats");
  // The bridge stamps every result with its snapshot's time (the job's computed_at_field).
  const computed = stats.map((s) => s.computed_at).filter((t) => typeof t === "string").sort().pop();
  const when = computed ? new Date(computed) : null;
  if (when && !Number.isNaN(when.getTime())) {
    $("#stats-when").textContent = `computed ${when.toLocaleString()} from the tasks as they were then`;
    $("#stats-when").dataset.computedAt = computed;
  } else if (arrived) $("#stats-when").textContent = `results received ${arrived.toLocaleTimeString()}`;
  else if (stats.length > 0 && !$("#stats-when").textContent) $("#stats-when").textContent = "results from an earlier visit";
  stats.sort((a, b) => String(a.project).localeCompare(String(b.project)));
  $("#stats tbody").replaceChildren(
    ...stats.map((s) =>
      element(
        "tr",
        { dataset: { project: String(s.project), count: String(s.count), sum: String(s.sum_hours) } },
        element("td", { textContent: s.project }),
        element("td", { textContent: String(s.count) }),
        element("td", { textContent: String(s.sum_hours ?? "") }),
        element("td", { textContent: s.avg_hours == null ? "" : s.avg_hours.toFixed(1) }),
      ),
    ),
  );
}

function describeChange(store, change) {
  const id = JSON.stringify(change.key);
  const name = store === "tasks"
    ? (change.value && change.value.title) || titles.get(id) || id
    : (change.value && change.value.project) || id;
  return `${change.type === "delete" ? "deleted" : "saved"} “${name}”`;
}

function logEvent(event) {
  const what = event.changes.map((c) => describeChange(event.store, c)).join(", ");
  const at = new Date().toLocaleTimeString();
  const entry = element("li", { dataset: { origin: event.origin, store: event.store } }, `${at} · ${event.origin} · ${event.store} · ${what}`);
  const log = $("#log");
  log.prepend(entry);
  while (log.children.length > LOG_LENGTH) log.lastElementChild.remove();
}

async function main() {
  const { user, db: name, token, hub } = settings();
  $("#user").textContent = user;
  if (!token) {
    showProblem("no hub token: open the address `make run` printed (it ends in #token=…)");
  }
  const choice = `tidepool-demo-online/${name}/${user}`;
  let wantOnline = localStorage.getItem(choice) !== "false";
  await init();
  const options = { name, localName: `tidepool-demo-${name}-${user}`, stores: STORES, hub, token, online: wantOnline };
  // Every tab of the app opens the database; one of them syncs for all.
  const db = await Tidepool.open(options);
  db.onStatus((status) => renderStatus(status, wantOnline));
  renderStatus(db.status(), wantOnline);

  db.subscribe("tasks", (event) => {
    logEvent(event);
    renderTasks(db).catch(showProblem);
  });
  db.subscribe("project_stats", (event) => {
    logEvent(event);
    renderStats(db, new Date()).catch(showProblem);
  });
  await Promise.all([renderTasks(db), renderStats(db)]);

  $("#new-task").addEventListener(
    "submit",
    guarded(async (e) => {
      e.preventDefault();
      const form = e.target;
      const task = {
        title: form.title.value.trim(),
        project: form.project.value.trim(),
        hours: Number(form.hours.value),
        done: false,
        created: Date.now(),
      };
      await db.put("tasks", crypto.randomUUID(), task);
      form.title.value = "";
      form.title.focus();
    }),
  );
  $("#toggle-online").addEventListener("click", () => {
    wantOnline = !wantOnline;
    localStorage.setItem(choice, String(wantOnline));
    db.setOnline(wantOnline);
    renderStatus(db.status(), wantOnline);
  });
  // Another tab of this user toggled (Tidepool passes the choice to every tab): show it here too.
  window.addEventListener("storage", (event) => {
    if (event.key !== choice) return;
    wantOnline = event.newValue !== "false";
    renderStatus(db.status(), wantOnline);
  });
  $("#add").disabled = false;
  $("#toggle-online").disabled = false;
  document.body.dataset.ready = "true";
}

// The app shell (this page, its script, styles and the client module) is cached by a service
// worker, so the page opens, with its local tasks, while the network or the hub is down.
if ("serviceWorker" in navigator) {
  navigator.serviceWorker.register("sw.js").catch((error) => console.warn("no offline app shell:", error));
}

main().catch(showProblem);
