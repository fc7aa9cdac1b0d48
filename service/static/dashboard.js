// Spool dashboard: plain JS on the public API, no build step, no third-party code.
// This file: state, API calls, the token, the events stream, the node figures.
// panels.js: the queue cards and their charts, dead letters, message lookup.
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
  loadedAt: null, // when the first view was drawn from the API
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
  // The first view comes from the API, not the stream: every queue with its figures and
  // its last five minutes of counts (so the charts are full at once), and the dead letters.
  try {
    const doc = await api("GET", "/v1/queues");
    const histories = await Promise.all(doc.queues.map((q) => loadHistory(q.name)));
    renderQueues(doc.queues, new Map(doc.queues.map((q, i) => [q.name, histories[i]])));
    loadDead();
    loadSchedules();
    state.loadedAt = new Date();
  } catch (err) {
    notice(`Cannot load the queues: ${err.message}`);
  }
  follow();
}

// A queue's counts once a second over the last five minutes (GET /v1/queues/{q}/history),
// as chart points; [] if the server cannot say (the chart then starts from now).
async function loadHistory(name) {
  let doc;
  try {
    doc = await api("GET", `/v1/queues/${encodeURIComponent(name)}/history`);
  } catch (err) {
    return [];
  }
  const points = doc.samples.map((s) => ({ t: Date.parse(s.t) / 1000, ...Object.fromEntries(SERIES.map((k) => [k, s[k]])) }));
  if (!points.length) return points;
  // Live points are timed by this browser's clock, the history by the server's: shift the
  // history so its last sample is now, keeping its spacing, so a skew between the two
  // clocks can neither reorder the points nor hold the chart still.
  const shift = Date.now() / 1000 - points[points.length - 1].t;
  for (const point of points) point.t += shift;
  return points.slice(-(HISTORY + 1));
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
      // Once the first view is drawn, say what it shows while the stream connects: the
      // figures as loaded, not "connecting" over figures that are already right.
      setConn(state.loadedAt ? `as of ${state.loadedAt.toLocaleTimeString()} · live updates connecting…` : "connecting…");
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

function dispatch(event, doc) {
  if (event === "queues") {
    renderQueues(doc.queues);
    if (doc.node) renderNode(doc.node);
  } else if ((event === "message" || event === "progress") && doc.id === state.lookupId) {
    lookup(doc.id);  // a looked-up message's new status or progress report
  }
}

// ------------------------------------------------------------------ node
function renderNode(node) {
  // The queue cards label their totals by what they cover, which depends on the backend.
  document.body.dataset.backend = node.backend;
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

// Deferred scripts have all run (panels.js included) when the DOM is ready.
document.addEventListener("DOMContentLoaded", start);
