// Spool dashboard, schedules panel: each [schedules.NAME] with its last and next run and
// a pause / resume button (admin). Read from GET /v1/schedules every few seconds (the
// events stream carries queues, not schedules). Uses $, el, api, notice, can, applyScopes.
"use strict";

const SCHEDULES_EVERY_MS = 5000;
let schedulesTimer = null; // one poll at a time, however often start() runs

function runText(iso) {
  return iso ? new Date(iso).toLocaleString() : "–";
}

function renderSchedules(schedules) {
  const body = $("#schedules-table tbody");
  body.replaceChildren();
  $("#schedules-panel").hidden = schedules.length === 0;
  for (const s of schedules) {
    const button = el("button", { type: "button", class: "admin", onclick: () => toggleSchedule(s) }, s.paused ? "Resume" : "Pause");
    body.append(el("tr", { "data-schedule": s.name },
      el("th", { scope: "row", text: s.name }),
      el("td", { text: `${s.cron} (${s.timezone})` }),
      el("td", { text: s.queue }),
      el("td", { "data-k": "last", text: runText(s.last_run) }),
      el("td", { "data-k": "next", text: s.paused ? "paused" : runText(s.next_run) }),
      el("td", {}, button)));
  }
  applyScopes();
}

async function loadSchedules() {
  clearTimeout(schedulesTimer);
  try {
    renderSchedules((await api("GET", "/v1/schedules")).schedules);
  } catch (err) {
    if (err.status !== 401 && err.status !== 403) notice(`Cannot load the schedules: ${err.message}`);
    return;
  }
  schedulesTimer = setTimeout(loadSchedules, SCHEDULES_EVERY_MS);
}

async function toggleSchedule(s) {
  const action = s.paused ? "resume" : "pause";
  try {
    await api("POST", `/v1/schedules/${encodeURIComponent(s.name)}/${action}`);
    renderSchedules((await api("GET", "/v1/schedules")).schedules);
    notice("");
  } catch (err) {
    notice(`Cannot ${action} schedule ${s.name}: ${err.message}`);
  }
}
