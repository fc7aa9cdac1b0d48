// Spool dashboard, panels: queue cards (depth, rates chart, latency), dead letters, lookup.
// Uses state, $, el, api, notice and applyScopes from dashboard.js (loaded first).
"use strict";

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
  // Kept with the messages on memory and sqlite; on amqp derived from the events stream,
  // so they cover only the events it still holds (README, "amqp backend").
  const kept = document.body.dataset.backend === "amqp" ? " (events still on the stream)" : "";
  fact(`Published / succeeded / failed${kept}`, "totals");
  const card = el("article", { class: "queue", "data-queue": name, "aria-labelledby": `${id}-t` },
    el("header", {},
      el("h3", { id: `${id}-t`, text: name }),
      el("span", { class: "badge paused", hidden: "", text: "paused" }),
      el("span", { class: "actions" }, pause, dead)),
    el("div", { class: "scroll" }, el("table", { class: "depth" }, el("caption", { text: "Depth by status" }), el("thead", {}, headRow), el("tbody", {}, depthRow))),
    chart, legend, facts);
  return card;
}

function renderQueues(list, histories = new Map()) {
  const grid = $("#queues");
  const select = $("#dead-queue");
  for (const q of list) {
    let entry = state.queues.get(q.name);
    if (!entry) {
      entry = { card: queueCard(q.name), history: histories.get(q.name) || [] };
      state.queues.set(q.name, entry);
      grid.append(entry.card);
      select.append(el("option", { value: q.name, text: q.name }));
      applyScopes();
    }
    updateCard(entry, q);
    // The shown dead letters follow the queue (at most once a second): a new failure moves
    // `failed`, a redrive moves `dead`, so the pair changes whenever the list does.
    const deadMark = `${q.depth.dead}/${q.counts.failed}`;
    if (q.name === state.deadQueue && entry.deadMark !== undefined && entry.deadMark !== deadMark) loadDead();
    entry.deadMark = deadMark;
  }
  if (!state.deadQueue && list.length) {
    // First shown: the dead letters of the first queue that has any, not an empty list.
    const first = list.find((q) => q.depth.dead > 0) || list[0];
    state.deadQueue = select.value = first.name;
  }
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
  }
  if (!entry.drawn || history[history.length - 1] !== entry.drawn) {
    entry.drawn = history[history.length - 1];
    drawChart(entry);  // once per new point (a history loaded at open included)
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
      el("td", { class: "time", "data-k": "finished_at", text: m.finished_at || "" }),
      el("td", { text: String(m.attempts) }),
      el("td", { text: m.error ? m.error.type : "" }),
      el("td", { text: m.error ? m.error.message : "" }),
      el("td", {}, button)));
  }
  $("#dead-empty").textContent = `No dead letters in ${name}.`;  // which queue, never ambiguous
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

const TIMES = new Set(["Created", "Scheduled for", "Started", "Finished"]);

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
    const cls = label === "Status" ? `status-${value}` : TIMES.has(label) ? "time" : "";
    nodes.push(el("dt", { text: label }), el("dd", { text: value, "data-k": label.toLowerCase(), class: cls }));
  }
  if (m.progress) {
    const detail = m.progress.detail === null ? "" : ` ${JSON.stringify(m.progress.detail)}`;
    const text = `${Math.round(m.progress.fraction * 100)} %${detail}`;
    nodes.push(el("dt", { text: "Progress" }), el("dd", { "data-k": "progress", text, title: m.progress.at }));
  }
  if (m.error) nodes.push(el("dt", { text: "Error" }), el("dd", { "data-k": "error", text: `${m.error.type}: ${m.error.message}` }));
  if (m.result !== null) nodes.push(el("dt", { text: "Result" }), el("dd", { "data-k": "result" }, el("pre", { text: JSON.stringify(m.result, null, 2) })));
  nodes.push(el("dt", { text: "Body" }), el("dd", {}, el("pre", { text: JSON.stringify(m.body, null, 2) })));
  out.replaceChildren(...nodes);
}
