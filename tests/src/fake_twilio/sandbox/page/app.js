// The sandbox page: lists what the fake Twilio received, live (server-sent events), and
// talks to the API through the fake (/sandbox/api/…). No framework, no build step.
"use strict";

const $ = (id) => document.getElementById(id);
const state = { selected: null, filter: "", busy: false, again: false };

function el(tag, attrs, ...children) {
  const node = document.createElement(tag);
  for (const [name, value] of Object.entries(attrs || {})) {
    if (value === null || value === undefined || value === false) continue;
    if (name === "class") node.className = value;
    else if (name === "text") node.textContent = value;
    else node.setAttribute(name, value === true ? "" : value);
  }
  for (const child of children) {
    if (child !== null && child !== undefined) node.append(child);
  }
  return node;
}

async function getJson(url) {
  const answer = await fetch(url, { headers: { accept: "application/json" } });
  if (!answer.ok) throw new Error(`${url}: ${answer.status}`);
  return answer.json();
}

function clock(at) {
  const d = new Date(at);
  return isNaN(d) ? at : d.toLocaleTimeString([], { hour12: false });
}

// ---- numbers and threads -------------------------------------------------------------

function renderNumbers(list) {
  const ul = $("numbers");
  ul.replaceChildren(...list.numbers.map((n) => el("li", {},
    el("button", {
      type: "button", class: "number", "data-number": n.number,
      "aria-current": n.number === state.selected ? "true" : "false",
    },
    el("span", { class: "n", text: n.number }),
    el("small", { text: `${clock(n.last_at)} · ${n.items} · ${n.last}` })))));
  $("numbers-empty").hidden = list.numbers.length > 0;
  $("numbers-count").textContent = list.total ? `(${list.total})` : "";
}

function textWithCode(text, code) {
  const p = el("p", { class: "text" });
  const at = code ? text.lastIndexOf(code) : -1;
  if (at < 0) {
    p.textContent = text || "(nothing said yet)";
    return p;
  }
  p.append(text.slice(0, at), el("mark", { class: "code", text: code }), text.slice(at + code.length));
  p.append(el("button", { type: "button", class: "copy", "data-code": code, "aria-label": `Copy code ${code}`, text: "Copy" }));
  return p;
}

const CHANNEL = { sms: "SMS", whatsapp: "WhatsApp", call: "Voice call", fault: "Request failed" };

function renderItem(item) {
  const meta = el("p", { class: "meta" },
    el("time", { datetime: item.at, text: clock(item.at) }),
    el("span", { class: "channel", text: CHANNEL[item.kind] || item.kind }));
  if (item.kind === "fault") {
    meta.append(el("span", { text: `${item.resource} create answered ${item.answer}` }));
    const note = item.created
      ? "Twilio created it all the same; the service must not send it twice."
      : "Nothing was created; the worker retries with backoff.";
    return el("li", { class: "item kind-fault", "data-kind": "fault" }, meta, el("p", { class: "text", text: note }));
  }
  const status = item.error_code ? `${item.status} (${item.error_code})` : item.status;
  meta.append(el("span", { class: "status", "data-status": item.status, text: `Twilio status: ${status}` }));
  const callbacks = (item.callbacks || [])
    .map((c) => `${c.status} → ${c.http_status === null ? "no answer" : c.http_status}`)
    .join(", ");
  return el("li", { class: `item kind-${item.kind}`, "data-kind": item.kind, "data-sid": item.sid },
    meta,
    textWithCode(item.text, item.code),
    el("p", { class: "callbacks", text: callbacks ? `callbacks: ${callbacks}` : "callbacks: none yet" }));
}

function renderThread(thread) {
  $("thread-title").textContent = thread ? `Thread of ${thread.number}` : "Pick a number";
  $("items").replaceChildren(...(thread ? thread.items.map(renderItem) : []));
}

function renderFaults(f) {
  const next = f.next.map((n) => (typeof n === "string" ? n : JSON.stringify(n)));
  $("fault-state").textContent =
    `In force: latency ${f.latency_ms} ms, fault rate ${f.fault_rate}, next: ${next.length ? next.join(", ") : "none"}`;
  if (document.activeElement !== $("fault-latency")) $("fault-latency").value = f.latency_ms;
  if (document.activeElement !== $("fault-rate")) $("fault-rate").value = f.fault_rate;
}

// What was drawn last, so that an answer like it changes nothing on the page.
const drawn = {};
function changed(what, value) {
  const text = JSON.stringify(value);
  if (drawn[what] === text) return false;
  drawn[what] = text;
  return true;
}

// Redrawing a list replaces its buttons: the keyboard focus goes back to the button that
// stands for the same number (or the same message's copy button) afterwards.
function keepingFocus(redraw) {
  const focused = document.activeElement;
  const number = focused && focused.dataset ? focused.dataset.number : undefined;
  const item = focused && focused.closest ? focused.closest("li[data-sid]") : null;
  const sid = item && focused.classList.contains("copy") ? item.dataset.sid : undefined;
  redraw();
  let again = null;
  if (number) again = document.querySelector(`button.number[data-number="${CSS.escape(number)}"]`);
  if (sid) again = document.querySelector(`li[data-sid="${CSS.escape(sid)}"] button.copy`);
  if (again && again !== document.activeElement) again.focus();
}

// One refresh at a time; a change during one asks for another after it.
async function refresh() {
  if (state.busy) { state.again = true; return; }
  state.busy = true;
  try {
    do {
      state.again = false;
      const filter = encodeURIComponent(state.filter);
      const [numbers, thread, faults] = await Promise.all([
        getJson(`/sandbox/numbers?limit=100&filter=${filter}`),
        state.selected ? getJson(`/sandbox/thread?number=${encodeURIComponent(state.selected)}`) : null,
        getJson("/_fake/faults"),
      ]);
      keepingFocus(() => {
        if (changed("numbers", numbers)) renderNumbers(numbers);
        if (changed("thread", thread)) renderThread(thread);
      });
      renderFaults(faults);
    } while (state.again);
  } catch (e) {
    $("live").textContent = `could not read the fake: ${e.message}`;
  } finally {
    state.busy = false;
  }
}

function select(number) {
  state.selected = number;
  history.replaceState(null, "", `#${encodeURIComponent(number)}`);
  refresh();
}

function listen() {
  const events = new EventSource("/sandbox/stream");
  events.addEventListener("open", () => { $("live").textContent = "live"; $("live").classList.add("on"); });
  events.addEventListener("error", () => { $("live").textContent = "reconnecting…"; $("live").classList.remove("on"); });
  events.addEventListener("change", refresh);
}

// ---- the API, through the fake -------------------------------------------------------

async function api(method, path, body) {
  const headers = { accept: "application/json" };
  if (body) headers["content-type"] = "application/json";
  if (method === "POST" && window.crypto && crypto.randomUUID) headers["idempotency-key"] = crypto.randomUUID();
  const answer = await fetch(`/sandbox/api/v1/${path}`, { method, headers, body: body && JSON.stringify(body) });
  let json = null;
  try { json = await answer.json(); } catch (_) { /* not JSON */ }
  return { status: answer.status, json };
}

function show(output, good, text) {
  output.textContent = text;
  output.className = `result ${good ? "good" : "bad"}`;
}

function failure(answer) {
  const error = answer.json && answer.json.error;
  return error ? `${answer.status} ${error.code}: ${error.message}` : `${answer.status}`;
}

async function start(event) {
  event.preventDefault();
  const number = $("try-number").value.trim();
  const channels = $("try-channels").value;
  const body = { phone_number: number };
  if (channels) body.channels = channels.split(",");
  show($("try-result"), true, "sending…");
  const answer = await api("POST", "verifications", body);
  if (answer.status === 202) {
    show($("try-result"), true, `202: verification ${answer.json.id} is ${answer.json.status}; the message shows in the thread.`);
    $("check-result").textContent = "";
    select(number);
  } else {
    show($("try-result"), false, failure(answer));
  }
}

async function check(event) {
  event.preventDefault();
  const body = { phone_number: $("try-number").value.trim(), code: $("check-code").value.trim() };
  const answer = await api("POST", "verifications/check", body);
  if (answer.status === 200) {
    show($("check-result"), answer.json.status === "approved", `${answer.json.status}`);
  } else {
    show($("check-result"), false, failure(answer));
  }
}

// The send queue in full; its delay queues as one figure; the dead letters.
function summary(list) {
  const send = list[0];
  if (!send) return [["no queues yet", false]];
  const retry = list.filter((q) => q.name.startsWith(`${send.name}.retry`));
  const dead = list.find((q) => q.name === `${send.name}.dead`);
  const age = send.oldest_queued_age_seconds;
  const waiting = retry.reduce((n, q) => n + q.messages_ready, 0);
  const parts = [[`${send.name}: ${send.messages_ready} waiting, ${send.consumers} consumers, ` +
    `oldest ${age === null ? "none" : `${age.toFixed(1)} s`}`, send.messages_ready > 0]];
  parts.push([`retrying: ${waiting}`, waiting > 0]);
  if (dead) parts.push([`dead letters: ${dead.messages_ready}`, dead.messages_ready > 0]);
  const events = list.find((q) => q.name === `${send.name}.events`);
  if (events) parts.push([`events: ${events.messages_ready} waiting`, events.messages_ready > 0]);
  return parts;
}

async function queues() {
  try {
    const answer = await api("GET", "ops/queues");
    if (answer.status !== 200) { $("queues").textContent = `queues: ${failure(answer)}`; return; }
    $("queues").replaceChildren(...summary(answer.json.queues).map(([text, busy]) =>
      el("span", { class: busy ? "queue busy" : "queue", text })));
  } catch (e) {
    $("queues").textContent = `queues: ${e.message}`;
  }
}

// ---- faults ----------------------------------------------------------------------------

async function setFaults(body) {
  const answer = await fetch("/_fake/faults", {
    method: "POST", headers: { "content-type": "application/json" }, body: JSON.stringify(body),
  });
  $("fault-state").textContent = answer.ok ? "applied" : `refused: ${answer.status}`;
}

function applyFaults(event) {
  event.preventDefault();
  setFaults({ latency_ms: Number($("fault-latency").value) || 0, fault_rate: Number($("fault-rate").value) || 0 });
}

function queueFaults(event) {
  event.preventDefault();
  const count = Math.max(1, Math.min(20, Number($("next-count").value) || 1));
  setFaults({ next: Array(count).fill($("next-kind").value) });
}

// ---- wiring ----------------------------------------------------------------------------

document.addEventListener("DOMContentLoaded", () => {
  $("try-form").addEventListener("submit", start);
  $("check-form").addEventListener("submit", check);
  $("fault-form").addEventListener("submit", applyFaults);
  $("next-form").addEventListener("submit", queueFaults);
  $("numbers").addEventListener("click", (e) => {
    const button = e.target.closest("button.number");
    if (button) select(button.dataset.number);
  });
  $("items").addEventListener("click", (e) => {
    const button = e.target.closest("button.copy");
    if (!button) return;
    const code = button.dataset.code;
    if (navigator.clipboard) navigator.clipboard.writeText(code).catch(() => { /* the field below has it */ });
    $("check-code").value = code;
    $("check-code").focus();
    button.textContent = "Copied";
  });
  $("numbers-filter").addEventListener("input", (e) => { state.filter = e.target.value.trim(); refresh(); });
  if (location.hash.length > 1) state.selected = decodeURIComponent(location.hash.slice(1));
  listen();
  refresh();
  queues();
  setInterval(queues, 2000);
});
