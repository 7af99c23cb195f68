/* pruneserve console: API key, API calls, small DOM helpers, routing and the job list.
   Everything goes through the REST API with the user's key; nothing is loaded from elsewhere. */
"use strict";
const PS = (window.PS = {});
const KEY = "pruneserve-api-key";
const API = new URL("../v1/", document.baseURI).pathname;
const TERMINAL = ["succeeded", "failed", "cancelled"];

PS.key = () => sessionStorage.getItem(KEY) || "";

PS.api = async function (path, options = {}) {
  const headers = { Authorization: "Bearer " + PS.key(), ...(options.headers || {}) };
  const resp = await fetch(API + path, { ...options, headers });
  if (!resp.ok) {
    let detail = resp.statusText;
    try { detail = (await resp.json()).detail || detail; } catch (e) { /* not JSON */ }
    const err = new Error(detail);
    err.status = resp.status;
    throw err;
  }
  if (options.blob) return resp.blob();
  return resp.status === 204 ? null : resp.json();
};

PS.el = function (tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (v !== undefined && v !== null && v !== false) node.setAttribute(k, v);
  }
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : String(c));
  }
  return node;
};

PS.table = function (header, rows, id) {
  const el = PS.el;
  return el("table", { id },
    header ? el("thead", {}, el("tr", {}, header.map((h) => el("th", {}, h)))) : null,
    el("tbody", {}, rows.map((r) => el("tr", { class: r.cls }, (r.cells || r).map((c) =>
      typeof c === "number" ? el("td", { class: "num" }, PS.num(c)) :
        el("td", {}, c === null || c === undefined ? "—" : c))))));
};

PS.num = (x, digits = 3) => (x === null || x === undefined ? "n/a" : Number(x).toFixed(digits));
PS.pct = (x) => (x === null || x === undefined ? "n/a" : (100 * x).toFixed(2) + "%");
PS.bar = (percent) => PS.el("span", { class: "bar", title: percent.toFixed(1) + "%" },
  PS.el("span", { style: `width:${Math.min(100, percent)}%` }));
PS.stateCell = (state) => PS.el("span", { class: "state state-" + state }, state);
PS.terminal = (state) => TERMINAL.includes(state);

PS.error = function (err) {
  const box = document.getElementById("error");
  box.hidden = !err;
  box.textContent = err ? (err.message || String(err)) : "";
};

PS.timer = null;
PS.repeat = function (fn, ms) {  // one poller for the page on screen
  clearTimeout(PS.timer);
  const tick = async () => {
    let again = false;
    try { again = await fn(); PS.error(null); } catch (e) { PS.error(e); }
    if (again) PS.timer = setTimeout(tick, ms);
  };
  tick();
};

PS.download = async function (jobId, path) {
  const blob = await PS.api(`jobs/${jobId}/artifacts/${path.split("/").map(encodeURIComponent).join("/")}`, { blob: true });
  const url = URL.createObjectURL(blob);
  const a = PS.el("a", { href: url, download: path.split("/").pop() });
  document.body.append(a);
  a.click();
  a.remove();
  setTimeout(() => URL.revokeObjectURL(url), 10000);
};

// -- the job list --------------------------------------------------------------------------
function listView(view) {
  const el = PS.el;
  const body = el("div", { id: "job-list" });
  const compare = el("button", { id: "compare", type: "button", onclick: () => {
    const ids = [...view.querySelectorAll("input.pick:checked")].map((c) => c.value);
    if (ids.length < 2) return PS.error(new Error("pick two or more jobs to compare"));
    location.hash = "#/compare/" + ids.join(",");
  } }, "Compare selected");
  view.replaceChildren(el("h1", {}, "Jobs"), body, compare);
  PS.repeat(async () => {
    const picked = new Set([...view.querySelectorAll("input.pick:checked")].map((c) => c.value));
    const jobs = (await PS.api("jobs?limit=100")).items;
    const rows = jobs.map((j) => ({ cls: "job", cells: [
      el("input", { type: "checkbox", class: "pick", value: j.id, checked: picked.has(j.id) }),
      el("a", { href: "#/job/" + j.id, class: "job-link" }, j.id),
      PS.stateCell(j.state), j.progress.stage, el("span", {}, PS.bar(j.progress.percent), " ",
        j.progress.percent.toFixed(1) + "%"),
      j.spec.model, j.spec.method, String(j.spec.sparsity), new Date(j.created_at).toLocaleString(),
    ] }));
    body.replaceChildren(jobs.length ? PS.table(["", "job", "state", "stage", "progress",
      "model", "method", "sparsity", "created"], rows, "jobs") : el("p", { id: "no-jobs" }, "No jobs."));
    return jobs.some((j) => !PS.terminal(j.state));
  }, 2000);
}

// -- key and routing -----------------------------------------------------------------------
function showKeyState() {
  const set = !!PS.key();
  document.getElementById("key-form").hidden = set;
  document.getElementById("key-state").hidden = !set;
}

function route() {
  const view = document.getElementById("view");
  clearTimeout(PS.timer);
  PS.error(null);
  showKeyState();
  if (!PS.key()) {
    view.replaceChildren(PS.el("p", { id: "need-key" }, "Enter your API key to see your jobs."));
    return;
  }
  const [, page, arg] = location.hash.split("/");
  if (page === "job" && arg) PS.jobView(view, decodeURIComponent(arg));
  else if (page === "compare" && arg) PS.compareView(view, arg.split(",").map(decodeURIComponent));
  else listView(view);
}

document.getElementById("key-form").addEventListener("submit", (e) => {
  e.preventDefault();
  const input = document.getElementById("key-input");
  sessionStorage.setItem(KEY, input.value.trim());
  input.value = "";
  route();
});
document.getElementById("key-forget").addEventListener("click", () => {
  sessionStorage.removeItem(KEY);
  location.hash = "#/";
  route();
});
window.addEventListener("hashchange", route);
window.addEventListener("DOMContentLoaded", route);
