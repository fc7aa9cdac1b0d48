// Spool dashboard: plain JS on the public API, no build step, no third-party code.
// Live data come from GET /v1/events read with fetch() streaming (so the bearer token is
// sent as a header, which EventSource cannot do). Server text is only ever set through
// textContent, never parsed as HTML.
"use strict";

const TOKEN_KEY = "spool.token";
const HISTORY = 300; // one point a second: five minutes of rates
const STATUSES = ["scheduled", "queued", "running", "retrying", "dead"];
const SERIES = ["published", "succeeded", "failed"];

const state = {
  token: sessionStorage.getItem(TOKEN_KEY) || "",
  scopes: new Set(),
  queues: new Map(), // name -> {card, history: [{t, published, succeeded, failed}]}
  deadQueue: "",
  lookupId: "",
  stream: null, // AbortController of the open stream
};

const $ = (sel) => document.querySelector(sel);

function el(tag, attrs = {}, ...children) {
  const node = document.createElementNS(
    tag === "svg" || tag === "polyline" ? "http://www.w3.org/2000/svg" : "http://www.w3.org/1999/xhtml", tag);
  for (const [key, value] of Object.entries(attrs)) {
    if (key === "text") node.textContent = value;
    else if (key.startsWith("on")) node.addEventListener(key.slice(2), value);
    else node.setAttribute(key, value);
  }
  for (const child of children) node.append(child);
  return node;
}

class ApiError extends Error {
  constructor(status, detail) { super(detail); this.status = status; }
}

function headers(extra = {}) {
  const h = { Accept: "application/json", ...extra };
  if (state.token) h.Authorization = `Bearer ${state.token}`;
  return h;
}

async function api(method, path, body) {
  const init = { method, headers: headers(body === undefined ? {} : { "Content-Type": "application/json" }) };
  if (body !== undefined) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const doc = await response.json().catch(() => ({}));
  if (!response.ok) {
    if (response.status === 401) askForToken(state.token ? "That token was not accepted." : "");
    throw new ApiError(response.status, doc.detail || `${response.status} ${response.statusText}`);
  }
  return doc;
}

function notice(text) {
  const box = $("#notice");
  box.textContent = text;
  box.hidden = !text;
}

function setConn(text, cls) {
  const conn = $("#conn");
  conn.textContent = text;
  conn.className = `conn ${cls || ""}`;
}

// ------------------------------------------------------------------ token
function askForToken(error) {
  stopStream();
  $("#token-panel").hidden = false;
  $("#token-error").textContent = error || "";
  setConn("signed out", "down");
  $("#token").focus();
}

$("#token-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.token = $("#token").value.trim();
  sessionStorage.setItem(TOKEN_KEY, state.token);
  $("#token").value = "";
  $("#token-panel").hidden = true;
  start();
});

$("#signout").addEventListener("click", () => {
  sessionStorage.removeItem(TOKEN_KEY);
  state.token = "";
  $("#signout").hidden = true;
  askForToken("");
});

// ------------------------------------------------------------------ start
async function start() {
  notice("");
  let node;
  try {
    node = await api("GET", "/v1/node");
  } catch (err) {
    if (err.status !== 401) notice(`Cannot load the node: ${err.message}`);
    if (err.status !== 401 && err.status !== 403) setTimeout(start, 3000);
    return;
  }
  state.scopes = new Set(node.scopes);
  $("#signout").hidden = !node.auth;
  applyScopes();
  renderNode(node);
  if (!can("read")) {
    notice("This token has no read scope: only message lookup is available.");
    setConn("no read scope", "down");
    return;
  }
  try {
    const doc = await api("GET", "/v1/queues");
    renderQueues(doc.queues);
    loadDead();
  } catch (err) {
    notice(`Cannot load the queues: ${err.message}`);
  }
  follow();
}

function can(scope) {
  return state.scopes.has("admin") || state.scopes.has(scope);
}

function applyScopes() {
  for (const button of document.querySelectorAll("button.admin")) {
    button.disabled = !can("admin");
    button.title = can("admin") ? "" : "needs a token with the admin scope";
  }
}

// ------------------------------------------------------------------ events stream
function stopStream() {
  if (state.stream) state.stream.abort();
  state.stream = null;
}

async function follow() {
  stopStream();
  const controller = new AbortController();
  state.stream = controller;
  let backoff = 1000;
  while (state.stream === controller) {
    try {
      setConn("connecting…");
      const response = await fetch("/v1/events", { headers: headers({ Accept: "text/event-stream" }), signal: controller.signal });
      if (response.status === 401) { askForToken("That token was not accepted."); return; }
      if (response.status === 403) { notice("This token may not read the events stream."); return; }
      if (!response.ok || !response.body) throw new Error(`${response.status}`);
      await readStream(response.body, () => { backoff = 1000; setConn("live", "live"); });
    } catch (err) {
      if (controller.signal.aborted) return;
    }
    if (state.stream !== controller) return;
    setConn(`reconnecting in ${Math.round(backoff / 1000)} s…`, "down");
    await new Promise((resolve) => setTimeout(resolve, backoff));
    backoff = Math.min(backoff * 2, 10000);
  }
}

async function readStream(body, onData) {
  const reader = body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += value.replace(/\r\n?/g, "\n");
    let end;
    while ((end = buffer.indexOf("\n\n")) >= 0) {
      const block = buffer.slice(0, end);
      buffer = buffer.slice(end + 2);
      let event = "message";
      const data = [];
      for (const line of block.split("\n")) {
        if (line.startsWith("event:")) event = line.slice(6).trim();
        else if (line.startsWith("data:")) data.push(line.slice(5).replace(/^ /, ""));
      }
      if (!data.length) continue;
      onData();
      dispatch(event, JSON.parse(data.join("\n")));
    }
  }
}

let deadRefresh = null;
function dispatch(event, doc) {
  if (event === "queues") {
    renderQueues(doc.queues);
    if (doc.node) renderNode(doc.node);
  } else if (event === "message") {
    if (doc.id === state.lookupId) lookup(doc.id);
    if (doc.queue === state.deadQueue && (doc.status === "failed" || doc.status === "queued")) {
      clearTimeout(deadRefresh);
      deadRefresh = setTimeout(loadDead, 300);
    }
  }
}

// ------------------------------------------------------------------ node
function renderNode(node) {
  const set = (key, text, bad) => {
    const dd = $(`#node dd[data-k="${key}"]`);
    dd.textContent = text;
    dd.classList.toggle("bad", Boolean(bad));
  };
  set("backend", node.draining ? `${node.backend} (draining)` : node.backend, node.draining);
  set("lag", `${Number(node.loop_lag_ms).toFixed(1)} ms`, node.loop_lag_ms >= node.max_loop_lag_ms);
  for (const kind of ["thread", "process"]) {
    const ex = node.executors[kind];
    set(kind, `${ex.busy} / ${ex.size}`);
  }
}

// ------------------------------------------------------------------ queues
function fmtSeconds(value) {
  if (value === null || value === undefined) return "–";
  return value < 1 ? `${(value * 1000).toFixed(value < 0.01 ? 2 : 0)} ms` : `${value.toFixed(2)} s`;
}

function queueCard(name) {
  const id = `q-${name.replace(/[^a-z0-9]/g, "_")}`;
  const depthRow = el("tr");
  const headRow = el("tr");
  for (const status of STATUSES) {
    headRow.append(el("th", { scope: "col", text: status }));
    depthRow.append(el("td", { "data-k": status, text: "0" }));
  }
  const pause = el("button", { type: "button", class: "admin pause", "aria-describedby": `${id}-t`, onclick: () => togglePause(name) }, "Pause");
  const dead = el("button", { type: "button", class: "show-dead", onclick: () => showDead(name) }, "Dead letters");
  const chart = el("svg", { class: "chart", viewBox: `0 0 ${HISTORY} 100`, preserveAspectRatio: "none", role: "img", "aria-label": `${name}: rates over the last five minutes` });
  for (const series of SERIES) chart.append(el("polyline", { class: series, points: "" }));
  const legend = el("p", { class: "legend", "aria-live": "off" });
  for (const series of SERIES) legend.append(el("span", { class: series }, `${series} `, el("b", { "data-k": series, text: "0.0" }), "/s"));
  const facts = el("dl", { class: "facts" });
  const fact = (label, key) => facts.append(el("dt", { text: label }), el("dd", { "data-k": key, text: "–" }));
  fact("Consumers", "consumers");
  fact("Wait p50 / p95", "wait");
  fact("Processing p50 / p95", "processing");
  fact("Published / succeeded / failed", "totals");
  const card = el("article", { class: "queue", "data-queue": name, "aria-labelledby": `${id}-t` },
    el("header", {},
      el("h3", { id: `${id}-t`, text: name }),
      el("span", { class: "badge paused", hidden: "", text: "paused" }),
      el("span", { class: "actions" }, pause, dead)),
    el("div", { class: "scroll" }, el("table", { class: "depth" }, el("caption", { text: "Depth by status" }), el("thead", {}, headRow), el("tbody", {}, depthRow))),
    chart, legend, facts);
  return card;
}

function renderQueues(list) {
  const grid = $("#queues");
  const select = $("#dead-queue");
  for (const q of list) {
    let entry = state.queues.get(q.name);
    if (!entry) {
      entry = { card: queueCard(q.name), history: [] };
      state.queues.set(q.name, entry);
      grid.append(entry.card);
      select.append(el("option", { value: q.name, text: q.name }));
      applyScopes();
    }
    updateCard(entry, q);
  }
  if (!state.deadQueue && list.length) state.deadQueue = select.value = list[0].name;
}

function updateCard(entry, q) {
  const card = entry.card;
  const put = (key, text) => { card.querySelector(`[data-k="${key}"]`).textContent = text; };
  for (const status of STATUSES) put(status, String(q.depth[status] ?? 0));
  put("consumers", String(q.consumers));
  put("totals", `${q.counts.published} / ${q.counts.succeeded} / ${q.counts.failed}`);
  if (q.latency) {
    put("wait", `${fmtSeconds(q.latency.wait_s.p50)} / ${fmtSeconds(q.latency.wait_s.p95)}`);
    put("processing", `${fmtSeconds(q.latency.processing_s.p50)} / ${fmtSeconds(q.latency.processing_s.p95)}`);
  }
  card.querySelector(".badge.paused").hidden = !q.paused;
  card.dataset.paused = String(q.paused);
  const pause = card.querySelector("button.pause");
  pause.textContent = q.paused ? "Resume" : "Pause";
  card.querySelector("button.show-dead").textContent = `Dead letters (${q.depth.dead ?? 0})`;

  const history = entry.history;
  const now = Date.now() / 1000;
  const last = history[history.length - 1];
  if (!last || now - last.t >= 0.9) {
    history.push({ t: now, ...Object.fromEntries(SERIES.map((s) => [s, q.counts[s]])) });
    if (history.length > HISTORY + 1) history.shift();
    drawChart(entry);
  }
}

function rates(history, series) {
  const out = [];
  for (let i = 1; i < history.length; i++) {
    const dt = history[i].t - history[i - 1].t;
    out.push(dt > 0 ? Math.max(0, history[i][series] - history[i - 1][series]) / dt : 0);
  }
  return out;
}

function drawChart(entry) {
  const all = Object.fromEntries(SERIES.map((s) => [s, rates(entry.history, s)]));
  const top = Math.max(1, ...SERIES.flatMap((s) => all[s]));
  for (const series of SERIES) {
    const values = all[series];
    // The x axis spans at least a minute, and grows to five minutes as history builds up.
    const span = Math.max(60, values.length);
    const step = HISTORY / (span - 1);
    const offset = span - values.length;
    const points = values.map((v, i) => `${((offset + i) * step).toFixed(1)},${(100 - (v / top) * 96).toFixed(1)}`).join(" ");
    entry.card.querySelector(`polyline.${series}`).setAttribute("points", points);
    const recent = values.slice(-5);
    const avg = recent.length ? recent.reduce((a, b) => a + b, 0) / recent.length : 0;
    entry.card.querySelector(`.legend [data-k="${series}"]`).textContent = avg.toFixed(1);
  }
}

async function togglePause(name) {
  const card = state.queues.get(name).card;
  const action = card.dataset.paused === "true" ? "resume" : "pause";
  try {
    const q = await api("POST", `/v1/queues/${encodeURIComponent(name)}/${action}`);
    updateCard(state.queues.get(name), q);
    notice("");
  } catch (err) {
    notice(`Cannot ${action} ${name}: ${err.message}`);
  }
}

// ------------------------------------------------------------------ dead letters
function showDead(name) {
  state.deadQueue = name;
  $("#dead-queue").value = name;
  loadDead();
  $("#dead-title").scrollIntoView({ block: "start" });
  $("#dead-queue").focus();
}

$("#dead-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.deadQueue = $("#dead-queue").value;
  loadDead();
});

$("#redrive-all").addEventListener("click", () => redrive(state.deadQueue, null));

async function loadDead() {
  const name = state.deadQueue;
  if (!name) return;
  let page;
  try {
    page = await api("GET", `/v1/queues/${encodeURIComponent(name)}/dead?limit=100`);
  } catch (err) {
    notice(`Cannot load the dead letters of ${name}: ${err.message}`);
    return;
  }
  $("#dead-caption").textContent = `Dead letters of ${name}, newest first`;
  const body = $("#dead-table tbody");
  body.replaceChildren();
  for (const m of page.messages) {
    const button = el("button", { type: "button", class: "admin", "aria-label": `Redrive ${m.id}`, onclick: () => redrive(name, [m.id]) }, "Redrive");
    body.append(el("tr", { "data-id": m.id },
      el("td", { class: "mono", text: m.id }),
      el("td", { text: m.finished_at || "" }),
      el("td", { text: String(m.attempts) }),
      el("td", { text: m.error ? m.error.type : "" }),
      el("td", { text: m.error ? m.error.message : "" }),
      el("td", {}, button)));
  }
  $("#dead-empty").hidden = page.messages.length > 0;
  $("#dead-table").hidden = page.messages.length === 0;
  applyScopes();
}

async function redrive(name, ids) {
  if (!name) return;
  try {
    const done = await api("POST", `/v1/queues/${encodeURIComponent(name)}/dead/redrive`, ids ? { ids } : {});
    notice("");
    setConn(`redriven ${done.redriven} from ${name}`, "live");
  } catch (err) {
    notice(`Cannot redrive ${name}: ${err.message}`);
  }
  loadDead();
}

// ------------------------------------------------------------------ lookup
$("#lookup-form").addEventListener("submit", (event) => {
  event.preventDefault();
  state.lookupId = $("#lookup-id").value.trim();
  lookup(state.lookupId);
});

function ms(from, to) {
  if (!from || !to) return "–";
  return fmtSeconds((Date.parse(to) - Date.parse(from)) / 1000);
}

async function lookup(id) {
  const out = $("#lookup-result");
  let m;
  try {
    m = await api("GET", `/v1/messages/${encodeURIComponent(id)}`);
  } catch (err) {
    out.replaceChildren(el("dt", { text: "Error" }), el("dd", { class: "error", text: err.message }));
    return;
  }
  const rows = [
    ["Id", m.id], ["Queue", m.queue], ["Status", m.status], ["Attempts", String(m.attempts)],
    ["Created", m.created_at], ["Scheduled for", m.scheduled_for || "–"],
    ["Started", m.started_at || "–"], ["Finished", m.finished_at || "–"],
    ["Processing", ms(m.started_at, m.finished_at)],
  ];
  const nodes = [];
  for (const [label, value] of rows) {
    nodes.push(el("dt", { text: label }), el("dd", { text: value, "data-k": label.toLowerCase(), class: label === "Status" ? `status-${value}` : "" }));
  }
  if (m.error) nodes.push(el("dt", { text: "Error" }), el("dd", { "data-k": "error", text: `${m.error.type}: ${m.error.message}` }));
  if (m.result !== null) nodes.push(el("dt", { text: "Result" }), el("dd", { "data-k": "result" }, el("pre", { text: JSON.stringify(m.result, null, 2) })));
  nodes.push(el("dt", { text: "Body" }), el("dd", {}, el("pre", { text: JSON.stringify(m.body, null, 2) })));
  out.replaceChildren(...nodes);
}

start();
