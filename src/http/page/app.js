// The box office page: concerts, a live seat map, the waiting room, checkout and an
// operator view. Plain JavaScript, no build step; everything it shows comes from the
// API it is served with.
"use strict";

const $ = (id) => document.getElementById(id);
const state = {
  token: sessionStorage.getItem("token") || "",
  user: null,
  date: null, // {concertId, dateId, title}
  layout: null, // {sections, seatsTotal, seats: [{label, price}] by id}
  statuses: "",
  rects: [],
  picked: new Set(),
  hold: null,
  entry: null,
  mapStream: null,
  queueStream: null,
  countdownTimer: null,
};

const STATUS_WORDS = { A: "available", H: "held", S: "sold" };

// ---------- talking to the API ----------

async function api(method, path, body, headers = {}) {
  const init = { method, headers: { ...headers } };
  if (state.token && !init.headers.Authorization) init.headers.Authorization = `Bearer ${state.token}`;
  if (body !== undefined) {
    init.headers["Content-Type"] = "application/json";
    init.body = JSON.stringify(body);
  }
  const response = await fetch(path, init);
  const text = await response.text();
  const data = text ? JSON.parse(text) : null;
  if (!response.ok) throw { status: response.status, ...(data || {}) };
  return data;
}

function seatLabel(id) {
  const seat = state.layout && seatOf(id);
  return seat ? seat.label : `seat ${id}`;
}

// A sentence for people for every problem code the API answers.
function humanMessage(problem) {
  const seats = (problem.seatIds || []).map(seatLabel).join(", ");
  switch (problem.code) {
    case "SEAT_UNAVAILABLE": return `Sorry, ${seats || "a seat you picked"} was just taken by someone else. Pick another seat.`;
    case "SEAT_NOT_FOUND": return `${seats || "A seat"} does not exist on this date.`;
    case "SEAT_LIMIT_EXCEEDED": return `That is more seats than you may hold. ${problem.detail || ""}`;
    case "NOT_ADMITTED": return "You are not admitted yet: join the waiting room and wait for your turn.";
    case "UNAUTHORIZED": return "Please sign in again: your token was not accepted.";
    case "INSUFFICIENT_BALANCE": return "Your wallet does not hold enough: charge it, then pay.";
    case "RESERVATION_EXPIRED": return "Your hold ran out of time and the seats were released. Hold them again.";
    case "RESERVATION_CANCELLED": return "This hold was cancelled.";
    case "ALREADY_PAID": return "This hold is already paid: see My tickets.";
    case "BALANCE_LIMIT": return "That charge would take your wallet over its limit.";
    case "INVALID_AMOUNT": return "Enter an amount of whole won above zero.";
    case "CONCERT_NOT_FOUND": return "This concert does not exist (any more).";
    case "DATE_NOT_FOUND": return "This date does not exist (any more).";
    case "RESERVATION_NOT_FOUND": return "This hold was not found.";
    case "NOT_IN_QUEUE": return "You are not in the waiting room: join it first.";
    case "IDEMPOTENCY_KEY_REUSED": return "That request was already sent with other details; try again.";
    case "OVERLOADED": return "The box office is very busy right now. Try again in a moment.";
    case "UNAVAILABLE": return "The box office cannot take changes right now. Try again later.";
    case "PAYLOAD_TOO_LARGE": return "That request is too large.";
    case "INVALID_REQUEST": return `The request was not understood: ${problem.detail || ""}`;
    default: return problem.detail || "Something went wrong. Try again.";
  }
}

function say(text, ok = false) {
  const box = $("message");
  box.textContent = text;
  box.className = ok ? "ok" : "";
  box.hidden = !text;
}

function fail(problem) {
  if (problem instanceof Error) { say(`Could not reach the box office (${problem.message}).`); return; }
  say(humanMessage(problem));
  if (problem.code === "SEAT_UNAVAILABLE") {
    // Show the taken seats at once; the stream confirms it.
    for (const id of problem.seatIds || []) { setStatus(id, state.statuses[id - 1] === "S" ? "S" : "H"); state.picked.delete(id); markPicked(id); }
    showPicked();
  }
  if (problem.code === "UNAUTHORIZED") signOut();
}

// ---------- signing in ----------

function userOfToken(token) {
  try {
    const payload = JSON.parse(atob(token.split(".")[1].replace(/-/g, "+").replace(/_/g, "/")));
    return payload.sub;
  } catch { return null; }
}

async function signIn(token) {
  state.token = token.trim();
  state.user = userOfToken(state.token);
  if (!state.user) { say("That is not a token (three dot-separated parts)."); state.token = ""; return; }
  try {
    await refreshWallet();
  } catch (problem) { state.token = ""; state.user = null; fail(problem); return; }
  sessionStorage.setItem("token", state.token);
  $("whoami").textContent = `Signed in as user ${state.user}`;
  $("signed-out").hidden = true;
  $("signed-in").hidden = false;
  $("tickets-panel").hidden = false;
  say("");
  refreshTickets();
  if (state.date) watchQueue();
  updateHoldButton();
}

function signOut() {
  state.token = ""; state.user = null; state.entry = null;
  sessionStorage.removeItem("token");
  $("signed-out").hidden = false;
  $("signed-in").hidden = true;
  $("tickets-panel").hidden = true;
  stopQueue();
  showEntry(null);
}

async function refreshWallet() {
  const wallet = await api("GET", "/api/v1/wallet");
  $("balance").textContent = wallet.balance.toLocaleString("en");
}

async function demoCheck() {
  // A demo start answers 400 to a bad demo request; any other start has no such path.
  const response = await fetch("/api/v1/demo/tokens", {
    method: "POST", headers: { "Content-Type": "application/json" }, body: JSON.stringify({ userId: 0 }),
  });
  $("demo-users").hidden = response.status === 404;
  $("demo-users").dataset.checked = "true";
}

// ---------- concerts ----------

async function refreshConcerts() {
  let concerts;
  try { concerts = await api("GET", "/api/v1/concerts"); } catch { return; }
  const list = $("concerts");
  const items = concerts.map((c) => {
    const li = document.createElement("li");
    li.innerHTML = `<strong></strong> <span class="muted"></span>`;
    li.firstChild.textContent = c.title;
    li.lastChild.textContent = c.venue;
    for (const d of c.dates) {
      const row = document.createElement("div");
      row.className = "date";
      const when = new Date(d.startsAt).toLocaleString("en", { dateStyle: "medium", timeStyle: "short" });
      row.innerHTML = `<span></span><span class="muted" data-available-date="${d.id}"></span><button type="button" data-date-id="${d.id}">Seats</button>`;
      row.children[0].textContent = when;
      row.children[1].textContent = `${d.seatsAvailable.toLocaleString("en")} of ${d.seatsTotal.toLocaleString("en")} seats available`;
      row.children[2].addEventListener("click", () => openDate(c, d));
      li.appendChild(row);
    }
    return li;
  });
  list.replaceChildren(...items);
  if (!concerts.length) list.innerHTML = "<li>No concerts yet.</li>";
}

// ---------- the seat map ----------

function seatOf(id) {
  for (const s of state.layout.sections) {
    const count = s.rows * s.seatsPerRow;
    if (id >= s.firstSeatId && id < s.firstSeatId + count) {
      const offset = id - s.firstSeatId;
      const row = Math.floor(offset / s.seatsPerRow) + 1;
      const number = (offset % s.seatsPerRow) + 1;
      return { label: `${s.name}-${row}-${number}`, price: s.price, section: s };
    }
  }
  return null;
}

async function openDate(concert, date) {
  if (state.mapStream) state.mapStream.close();
  state.date = { concertId: concert.id, dateId: date.id, title: concert.title };
  state.picked.clear();
  $("date-title").textContent = `${concert.title}, ${new Date(date.startsAt).toLocaleString("en", { dateStyle: "medium", timeStyle: "short" })}`;
  $("date-panel").hidden = false;
  const base = `/api/v1/concerts/${concert.id}/dates/${date.id}`;
  try { state.layout = await api("GET", `${base}/layout`); } catch (problem) { fail(problem); return; }
  drawMap();
  showPicked();
  state.mapStream = new EventSource(`${base}/seats/stream`);
  state.mapStream.addEventListener("map", (e) => applyMap(JSON.parse(e.data)));
  state.mapStream.addEventListener("change", (e) => applyChange(JSON.parse(e.data)));
  if (state.token) watchQueue();
  showEntry(state.entry);
  $("date-panel").scrollIntoView({ block: "start" });
}

const SEAT = 10, GAP = 2, STEP = SEAT + GAP, LABEL_W = 28, SECTION_GAP = 22;

// Draws every seat once as an SVG rect by section, row and number; statuses are then
// only attributes, so a change touches one element.
function drawMap() {
  const svg = $("map");
  const ns = "http://www.w3.org/2000/svg";
  const fragment = document.createDocumentFragment();
  const rects = new Array(state.layout.seatsTotal + 1);
  let y = 4, width = 0;
  for (const s of state.layout.sections) {
    const title = document.createElementNS(ns, "text");
    title.setAttribute("x", 2); title.setAttribute("y", y + 10);
    title.textContent = `Section ${s.name} · ${s.price.toLocaleString("en")} won`;
    fragment.appendChild(title);
    y += 16;
    for (let r = 1; r <= s.rows; r++) {
      const rowLabel = document.createElementNS(ns, "text");
      rowLabel.setAttribute("x", 2); rowLabel.setAttribute("y", y + 8);
      rowLabel.textContent = r;
      fragment.appendChild(rowLabel);
      for (let n = 1; n <= s.seatsPerRow; n++) {
        const id = s.firstSeatId + (r - 1) * s.seatsPerRow + (n - 1);
        const rect = document.createElementNS(ns, "rect");
        rect.setAttribute("x", LABEL_W + (n - 1) * STEP);
        rect.setAttribute("y", y);
        rect.setAttribute("width", SEAT);
        rect.setAttribute("height", SEAT);
        rect.setAttribute("rx", 2);
        rect.setAttribute("class", "seat");
        rect.setAttribute("role", "gridcell");
        rect.setAttribute("tabindex", "-1");
        rect.dataset.seat = id;
        rect.dataset.label = `${s.name}-${r}-${n}`;
        rect.dataset.status = "A";
        rect.setAttribute("aria-pressed", "false");
        rects[id] = rect;
        fragment.appendChild(rect);
      }
      width = Math.max(width, LABEL_W + s.seatsPerRow * STEP);
      y += STEP;
    }
    y += SECTION_GAP - GAP;
  }
  svg.replaceChildren(fragment);
  svg.setAttribute("viewBox", `0 0 ${width + 4} ${y}`);
  svg.style.minWidth = `${Math.min(width, 320)}px`;
  // Seats stay a comfortable size: no larger than 2.5 times their drawn size.
  svg.style.maxWidth = `${(width + 4) * 2.5}px`;
  state.rects = rects;
  state.statuses = "A".repeat(state.layout.seatsTotal);
  if (rects[1]) rects[1].setAttribute("tabindex", "0");
  for (let id = 1; id < rects.length; id++) labelSeat(id);
}

function labelSeat(id) {
  const rect = state.rects[id];
  const seat = seatOf(id);
  const status = rect.dataset.status;
  const picked = state.picked.has(id) ? ", picked" : "";
  rect.setAttribute("aria-label", `${rect.dataset.label}, ${seat.price} won, ${STATUS_WORDS[status]}${picked}`);
}

function setStatus(id, status) {
  const rect = state.rects[id];
  if (!rect || rect.dataset.status === status) return;
  rect.dataset.status = status;
  const s = state.statuses;
  state.statuses = s.slice(0, id - 1) + status + s.slice(id);
  labelSeat(id);
}

function applyMap(map) {
  const statuses = map.statuses;
  for (let id = 1; id < state.rects.length; id++) {
    const status = statuses[id - 1];
    const rect = state.rects[id];
    if (rect.dataset.status !== status) { rect.dataset.status = status; labelSeat(id); }
  }
  state.statuses = statuses;
  showCounts();
}

function applyChange(change) {
  for (const [id, status] of change.seats) setStatus(id, status);
  showCounts();
}

function showCounts() {
  let a = 0, h = 0, s = 0;
  for (const c of state.statuses) { if (c === "A") a++; else if (c === "H") h++; else s++; }
  $("map-info").textContent = `${a.toLocaleString("en")} available · ${h.toLocaleString("en")} held · ${s.toLocaleString("en")} sold`;
  const label = document.querySelector(`[data-available-date="${state.date && state.date.dateId}"]`);
  if (label) label.textContent = `${a.toLocaleString("en")} of ${state.layout.seatsTotal.toLocaleString("en")} seats available`;
}

function toggleSeat(id) {
  const rect = state.rects[id];
  if (!rect) return;
  if (rect.dataset.status !== "A" && !state.picked.has(id)) {
    say(`${rect.dataset.label} is already ${STATUS_WORDS[rect.dataset.status]}: someone else has it. Pick another seat.`);
    return;
  }
  if (state.picked.has(id)) state.picked.delete(id); else state.picked.add(id);
  markPicked(id);
  showPicked();
}

function markPicked(id) {
  const rect = state.rects[id];
  if (!rect) return;
  rect.setAttribute("aria-pressed", state.picked.has(id) ? "true" : "false");
  labelSeat(id);
}

function showPicked() {
  const ids = [...state.picked].sort((a, b) => a - b);
  const total = ids.reduce((sum, id) => sum + seatOf(id).price, 0);
  $("picked").textContent = ids.length ? `${ids.map(seatLabel).join(", ")} (${total.toLocaleString("en")} won)` : "none";
  updateHoldButton();
}

function focusSeat(id) {
  const target = state.rects[id];
  if (!target) return;
  for (const r of document.querySelectorAll('#map rect[tabindex="0"]')) r.setAttribute("tabindex", "-1");
  target.setAttribute("tabindex", "0");
  target.focus();
}

// Arrow keys move between seats (left/right in a row, up/down between rows of a
// section); Enter or Space picks.
function onMapKey(event) {
  const rect = event.target.closest && event.target.closest("rect.seat");
  if (!rect) return;
  const id = Number(rect.dataset.seat);
  const s = seatOf(id).section;
  const step = { ArrowLeft: -1, ArrowRight: 1, ArrowUp: -s.seatsPerRow, ArrowDown: s.seatsPerRow }[event.key];
  if (step !== undefined) {
    event.preventDefault();
    focusSeat(Math.min(Math.max(id + step, 1), state.layout.seatsTotal));
  } else if (event.key === "Enter" || event.key === " ") {
    event.preventDefault();
    toggleSeat(id);
  }
}

// ---------- the waiting room ----------

function stopQueue() {
  if (state.queueStream) state.queueStream.close();
  state.queueStream = null;
}

async function watchQueue() {
  stopQueue();
  if (!state.date || !state.token) return;
  const concertId = state.date.concertId;
  let ticket;
  try {
    ticket = await api("POST", `/api/v1/concerts/${concertId}/queue/stream-ticket`);
  } catch (problem) { fail(problem); return; }
  const stream = new EventSource(`/api/v1/concerts/${concertId}/queue/stream?ticket=${encodeURIComponent(ticket.ticket)}`);
  state.queueStream = stream;
  stream.addEventListener("entry", (e) => {
    const entry = JSON.parse(e.data);
    showEntry(entry);
    // A final entry never changes again: the server ends the stream; do not reopen it.
    if (!["WAITING", "ACTIVE"].includes(entry.status)) { state.queueStream = null; stream.close(); }
  });
  stream.addEventListener("gone", () => { showEntry(null); stream.close(); });
  stream.onerror = () => {
    // The ticket opens a stream once; reconnect with a fresh one.
    stream.close();
    if (state.queueStream === stream) setTimeout(() => { if (state.queueStream === stream) watchQueue(); }, 1000);
  };
}

function showEntry(entry) {
  state.entry = entry;
  const p = $("queue-status");
  const join = $("join-queue");
  if (!state.token) {
    p.dataset.status = "NONE"; p.textContent = "Sign in and join the waiting room to pick seats."; join.hidden = true;
  } else if (!entry) {
    p.dataset.status = "NONE"; p.textContent = "Join the waiting room to hold seats."; join.hidden = false;
  } else {
    p.dataset.status = entry.status;
    join.hidden = !["EXPIRED", "COMPLETED"].includes(entry.status);
    if (entry.status === "WAITING") {
      const minutes = Math.ceil(entry.estimatedWaitSeconds / 60);
      p.textContent = `You are in line: number ${entry.position}. Estimated wait: ${entry.estimatedWaitSeconds < 60 ? "under a minute" : `about ${minutes} min`}. Keep this page open.`;
    } else if (entry.status === "ACTIVE") {
      p.textContent = `It is your turn! Pick your seats and hold them before ${new Date(entry.expiresAt).toLocaleTimeString("en")}.`;
    } else if (entry.status === "COMPLETED") {
      p.textContent = "You have paid: enjoy the show. Join again to buy more.";
    } else if (entry.status === "SOLD_OUT") {
      p.textContent = "Sold out: no seats are left.";
    } else {
      p.textContent = "Your turn has ended. Join the waiting room again.";
    }
  }
  updateHoldButton();
}

async function joinQueue() {
  if (!state.date) return;
  try {
    showEntry(await api("POST", `/api/v1/concerts/${state.date.concertId}/queue`));
    watchQueue();
  } catch (problem) { fail(problem); }
}

// ---------- checkout ----------

function updateHoldButton() {
  const active = state.entry && state.entry.status === "ACTIVE";
  $("hold").disabled = !(state.token && active && state.picked.size > 0 && !state.hold);
}

async function hold() {
  const seatIds = [...state.picked].sort((a, b) => a - b);
  try {
    const reservation = await api("POST", "/api/v1/reservations", { dateId: state.date.dateId, seatIds });
    state.picked.clear();
    for (const id of seatIds) { markPicked(id); setStatus(id, "H"); }
    showPicked();
    showHold(reservation);
    say(`Held ${seatIds.map(seatLabel).join(", ")}. Pay before the time runs out.`, true);
  } catch (problem) { fail(problem); }
}

function showHold(reservation) {
  state.hold = reservation;
  clearInterval(state.countdownTimer);
  $("hold-box").hidden = !reservation;
  updateHoldButton();
  if (!reservation) return;
  $("held-seats").textContent = reservation.seats.map((s) => s.label).join(", ");
  $("held-amount").textContent = reservation.amount.toLocaleString("en");
  const tick = () => {
    const left = Math.max(0, Math.round((new Date(reservation.expiresAt) - Date.now()) / 1000));
    $("countdown").textContent = `${Math.floor(left / 60)}:${String(left % 60).padStart(2, "0")}`;
    $("countdown").dataset.seconds = left;
    if (left === 0) { clearInterval(state.countdownTimer); say("Your hold ran out of time and the seats were released."); showHold(null); }
  };
  tick();
  state.countdownTimer = setInterval(tick, 250);
}

async function pay() {
  if (!state.hold) return;
  try {
    await api("POST", "/api/v1/payments", { reservationId: state.hold.id }, { "Idempotency-Key": `pay-${state.hold.id}` });
    say(`Paid: ${state.hold.seats.map((s) => s.label).join(", ")} are yours.`, true);
    showHold(null);
    refreshWallet().catch(() => {});
    refreshTickets();
  } catch (problem) {
    fail(problem);
    if (["RESERVATION_EXPIRED", "RESERVATION_CANCELLED", "ALREADY_PAID"].includes(problem.code)) showHold(null);
  }
}

async function cancelHold() {
  if (!state.hold) return;
  try {
    await api("DELETE", `/api/v1/reservations/${state.hold.id}`);
    say("Your hold was cancelled and the seats released.", true);
    showHold(null);
  } catch (problem) { fail(problem); }
}

async function charge(event) {
  event.preventDefault();
  const amount = Number($("charge-amount").value);
  try {
    const result = await api("POST", "/api/v1/wallet/charges", { amount }, { "Idempotency-Key": crypto.randomUUID ? crypto.randomUUID() : `${Date.now()}-${Math.random()}` });
    $("balance").textContent = result.balance.toLocaleString("en");
    say(`Added ${amount.toLocaleString("en")} won to your wallet.`, true);
  } catch (problem) { fail(problem); }
}

async function refreshTickets() {
  if (!state.token) return;
  let reservations;
  try { reservations = await api("GET", "/api/v1/reservations"); } catch { return; }
  const paid = reservations.filter((r) => r.status === "PAID");
  const list = $("tickets");
  list.replaceChildren(...paid.flatMap((r) => r.seats.map((s) => {
    const li = document.createElement("li");
    li.dataset.seat = s.id;
    li.textContent = `${s.label}, ${s.price.toLocaleString("en")} won (date ${r.dateId})`;
    return li;
  })));
  if (!paid.length) list.innerHTML = "<li>No tickets yet.</li>";
  const held = reservations.find((r) => r.status === "HELD" && new Date(r.expiresAt) > Date.now());
  if (held && !state.hold) showHold(held);
}

// ---------- the operator view ----------

const ops = { key: "", timer: null, last: null, holds: [], payments: [] };

async function watchSale(event) {
  event.preventDefault();
  ops.key = $("admin-key").value.trim();
  clearInterval(ops.timer);
  ops.last = null; ops.holds = []; ops.payments = [];
  await readOverview();
  ops.timer = setInterval(readOverview, 1000);
}

async function readOverview() {
  let overview;
  try {
    overview = await api("GET", "/api/v1/admin/overview", undefined, { Authorization: `Bearer ${ops.key}` });
  } catch (problem) {
    clearInterval(ops.timer);
    say(problem.code === "UNAUTHORIZED" ? "That admin key was not accepted." : humanMessage(problem));
    return;
  }
  say("");
  $("overview").hidden = false;
  const now = Date.now();
  if (ops.last) {
    const secs = Math.max((now - ops.last.at) / 1000, 0.001);
    ops.holds.push((overview.holdsTotal - ops.last.holds) / secs);
    ops.payments.push((overview.paymentsTotal - ops.last.payments) / secs);
    ops.holds = ops.holds.slice(-60); ops.payments = ops.payments.slice(-60);
  }
  ops.last = { at: now, holds: overview.holdsTotal, payments: overview.paymentsTotal };
  $("date-bars").replaceChildren(...overview.dates.map((d) => barRow(
    `date ${d.dateId}`,
    [["S", d.sold, "sold"], ["H", d.held, "held"], ["A", d.available, "available"]],
    d.seatsTotal,
    { overviewDate: d.dateId, sold: d.sold, held: d.held, available: d.available },
  )));
  $("room-bars").replaceChildren(...overview.rooms.map((r) => barRow(
    r.title,
    [["Ac", r.active, "active"], ["W", r.waiting, "waiting"]],
    Math.max(r.active + r.waiting, 1),
    { overviewRoom: r.concertId, active: r.active, waiting: r.waiting },
  )));
  drawChart($("chart-holds"), ops.holds);
  drawChart($("chart-payments"), ops.payments);
  $("rate-holds").textContent = (ops.holds.at(-1) || 0).toFixed(1);
  $("rate-payments").textContent = (ops.payments.at(-1) || 0).toFixed(1);
}

function barRow(name, parts, total, data) {
  const row = document.createElement("div");
  row.className = "bars";
  const inner = document.createElement("div");
  inner.className = "bar-row";
  Object.assign(row.dataset, data);
  const label = document.createElement("span");
  label.textContent = name;
  const stack = document.createElement("div");
  stack.className = "stack";
  stack.setAttribute("role", "img");
  stack.setAttribute("aria-label", parts.map(([, n, word]) => `${n} ${word}`).join(", "));
  stack.title = stack.getAttribute("aria-label");
  for (const [cls, n] of parts) {
    const span = document.createElement("span");
    span.className = cls;
    span.style.width = `${(100 * n) / total}%`;
    stack.appendChild(span);
  }
  const caption = document.createElement("div");
  caption.className = "muted";
  caption.textContent = stack.title;
  const right = document.createElement("div");
  right.append(stack, caption);
  inner.append(label, right);
  row.appendChild(inner);
  return row;
}

function drawChart(svg, values) {
  const max = Math.max(1, ...values);
  const points = values.map((v, i) => `${(i * 120) / 59},${38 - (v / max) * 34}`).join(" ");
  svg.innerHTML = `<polyline points="${points}"></polyline><text x="2" y="9" font-size="8">${max.toFixed(1)}/s</text>`;
}

// ---------- wiring ----------

function showTab(operator) {
  $("sale").hidden = operator;
  $("operator").hidden = !operator;
  $("show-sale").setAttribute("aria-pressed", String(!operator));
  $("show-operator").setAttribute("aria-pressed", String(operator));
}

function start() {
  $("token-form").addEventListener("submit", (e) => { e.preventDefault(); signIn($("token-input").value); });
  for (const button of document.querySelectorAll("[data-demo-user]")) {
    button.addEventListener("click", async () => {
      try {
        const { token } = await api("POST", "/api/v1/demo/tokens", { userId: Number(button.dataset.demoUser) });
        signIn(token);
      } catch (problem) { fail(problem); }
    });
  }
  $("sign-out").addEventListener("click", signOut);
  $("charge-form").addEventListener("submit", charge);
  $("join-queue").addEventListener("click", joinQueue);
  $("hold").addEventListener("click", hold);
  $("pay").addEventListener("click", pay);
  $("cancel-hold").addEventListener("click", cancelHold);
  $("map").addEventListener("click", (e) => {
    const rect = e.target.closest("rect.seat");
    if (rect) { focusSeat(Number(rect.dataset.seat)); toggleSeat(Number(rect.dataset.seat)); }
  });
  $("map").addEventListener("keydown", onMapKey);
  $("show-sale").addEventListener("click", () => showTab(false));
  $("show-operator").addEventListener("click", () => showTab(true));
  $("admin-form").addEventListener("submit", watchSale);
  demoCheck();
  refreshConcerts();
  setInterval(refreshConcerts, 2000);
  showEntry(null);
  if (state.token) signIn(state.token);
}

start();
