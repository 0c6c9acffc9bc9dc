// Campaign dashboard: vanilla JS, no build step, no third-party code.
//
// /ui/                 campaign list (GET /v1/campaigns when the API has it)
// /ui/campaigns/{id}   latest run, live from GET /v1/campaign/{id}/stream
//
// The API key is entered once and kept in sessionStorage. Every call sends it
// as X-API-Key, the stream included: the stream is read with fetch() and a
// ReadableStream (EventSource cannot send headers), so the key never appears
// in a URL. All text is set with textContent: nothing from the API is parsed
// as HTML.
"use strict";

const KEY_NAME = "campaign-analytics-api-key";
const PAGE = 25; // recipients per page (the run detail holds at most 500)
const CAMPAIGN_PAGE = 50;
const REFRESH_MS = 1000; // analytics and run detail: at most once a second
const TERMINAL = new Set(["completed", "failed", "cancelled"]);

const $ = (id) => document.getElementById(id);
const fmt = new Intl.NumberFormat();

// -- key and HTTP -------------------------------------------------------------

function apiKey() {
  return sessionStorage.getItem(KEY_NAME) || "";
}

function showKeyState() {
  const has = apiKey() !== "";
  $("key-form").hidden = has;
  $("key-state").hidden = !has;
}

class ApiError extends Error {
  constructor(status, code, message) {
    super(message);
    this.status = status;
    this.code = code;
  }
}

async function api(path) {
  const resp = await fetch(path, { headers: { "X-API-Key": apiKey() }, cache: "no-store" });
  let body = null;
  try {
    body = await resp.json();
  } catch (e) {
    body = null;
  }
  if (!resp.ok || !body || !body.success) {
    const err = body && body.errors && body.errors[0];
    throw new ApiError(resp.status, err ? err.code : "HTTP_" + resp.status,
                       err ? err.message : resp.statusText);
  }
  return body;
}

function say(text) {
  $("message").textContent = text || "";
  $("message").hidden = !text;
}

function explain(err) {
  if (err.status === 401) return "The API key is missing or invalid: enter it above.";
  if (err.status === 403) return "This key may not read that (" + err.code + ").";
  if (err.status === 404) return "Not found (" + err.code + ").";
  if (err.status === 429) return "Rate limited; retrying shortly.";
  return "Request failed: " + err.message;
}

// -- small DOM helpers ---------------------------------------------------------

function cell(row, text, cls) {
  const td = document.createElement("td");
  td.textContent = text === null || text === undefined ? "–" : String(text);
  if (cls) td.className = cls;
  row.appendChild(td);
  return td;
}

function num(n) {
  return n === null || n === undefined ? "–" : fmt.format(n);
}

function pct(rate) {
  return rate === null || rate === undefined ? "–" : (rate * 100).toFixed(2) + "%";
}

function time(iso) {
  return iso ? iso.replace("T", " ").replace("Z", "") : "–";
}

function setText(id, text) {
  $(id).textContent = text;
}

function pager(el, page, pages, go) {
  const [prev, label, next] = [el.children[0], el.children[1], el.children[2]];
  label.textContent = "page " + (page + 1) + " of " + Math.max(1, pages);
  prev.disabled = page <= 0;
  next.disabled = page >= pages - 1;
  prev.onclick = () => go(page - 1);
  next.onclick = () => go(page + 1);
}

// -- campaign list -------------------------------------------------------------

async function showList(offset) {
  $("list-view").hidden = false;
  const note = $("list-note");
  if (!apiKey()) {
    note.textContent = "Enter an API key above to list your workspace's campaigns.";
    note.hidden = false;
    return;
  }
  try {
    const body = await api("/v1/campaigns?limit=" + CAMPAIGN_PAGE + "&offset=" + offset);
    const tbody = $("campaigns").querySelector("tbody");
    tbody.replaceChildren();
    for (const c of body.data) {
      const tr = document.createElement("tr");
      const a = document.createElement("a");
      a.href = "/ui/campaigns/" + encodeURIComponent(c.campaign_id);
      a.textContent = c.name || c.campaign_id;
      cell(tr, "").replaceChildren(a);
      cell(tr, c.campaign_id, "mono");
      cell(tr, c.run_count);
      cell(tr, c.latest_run ? c.latest_run.status : "NO_RUN");
      cell(tr, time(c.last_run_at));
      tbody.appendChild(tr);
    }
    const meta = body.meta || { total: body.data.length, limit: CAMPAIGN_PAGE, offset: 0 };
    $("campaigns").hidden = false;
    note.hidden = body.data.length > 0;
    note.textContent = "No campaigns in this workspace yet.";
    const pages = Math.ceil(meta.total / CAMPAIGN_PAGE);
    $("campaigns-pager").hidden = pages <= 1;
    pager($("campaigns-pager"), Math.floor(offset / CAMPAIGN_PAGE), pages,
          (p) => showList(p * CAMPAIGN_PAGE));
  } catch (err) {
    if (err.status === 404 || err.status === 405) {
      note.textContent = "This API has no campaign list: type a campaign id to open it.";
    } else {
      note.textContent = explain(err);
    }
    note.hidden = false;
  }
}

// -- campaign view ---------------------------------------------------------------

const view = {
  id: null,
  status: null, // last status payload
  position: null, // its id (the campaign's position)
  points: [], // {t, sent, delivered} for the chart
  recipients: [],
  page: 0,
  ended: false,
  refreshing: false,
  dirty: false,
  lastRefresh: 0,
};

function showCampaign(id) {
  view.id = id;
  $("campaign-view").hidden = false;
  setText("c-title", id);
  document.title = "Campaign " + id;
  if (!apiKey()) {
    say("Enter an API key above to watch this campaign.");
    return;
  }
  stream(id);
}

function onStatus(payload, position) {
  view.status = payload;
  view.position = position;
  const s = payload;
  setText("c-status", s.status);
  $("c-status").className = "badge " + s.status.toLowerCase();
  setText("c-run", s.campaign_run_id ? "run " + s.campaign_run_id : "no run yet");
  setText("c-updated", time(s.updated_at));
  const done = s.current_batch || 0;
  const total = s.total_batches || 0;
  setText("c-batches", done + " / " + total + " batches");
  $("bar-fill").style.width = (total ? Math.min(100, (100 * done) / total) : 0) + "%";
  setText("n-recipients", num(s.recipient_count));
  setText("n-sent", num(s.sent));
  setText("n-failed", num(s.failed));
  setText("n-skipped", num(s.skipped));
  setText("n-delivered", num(s.delivered));
  if (s.campaign_run_id) {
    view.points.push({ t: Date.now(), sent: s.sent || 0, delivered: s.delivered || 0 });
    if (view.points.length > 2000) view.points.splice(0, view.points.length - 2000);
    drawChart();
  }
  refreshSoon();
}

function setLive(text, cls) {
  setText("c-live", text);
  $("c-live").className = "live " + (cls || "");
}

// Server-sent events over fetch: parse "event:", "id:", "data:" lines; a blank
// line ends an event; lines starting with ":" are comments (heartbeats).
async function stream(id) {
  let delay = 1000;
  while (!view.ended) {
    const headers = { "X-API-Key": apiKey(), Accept: "text/event-stream" };
    if (view.position !== null) headers["Last-Event-ID"] = String(view.position);
    try {
      const resp = await fetch("/v1/campaign/" + encodeURIComponent(id) + "/stream",
                               { headers, cache: "no-store" });
      if (resp.status === 204) { // we already hold the final payload
        finish();
        return;
      }
      if (!resp.ok) {
        let code = "HTTP_" + resp.status;
        try {
          code = (await resp.json()).errors[0].code;
        } catch (e) { /* not JSON */ }
        const err = new ApiError(resp.status, code, resp.statusText);
        if (resp.status !== 429 && resp.status < 500) { // retrying will not help
          setLive("stopped", "bad");
          say(explain(err));
          return;
        }
        throw err;
      }
      setLive("live", "ok");
      say("");
      delay = 1000;
      await readEvents(resp.body, (ev) => {
        if (ev.event === "status") onStatus(JSON.parse(ev.data), Number(ev.id));
        else if (ev.event === "end") finish();
      });
    } catch (err) {
      if (err instanceof ApiError) say(explain(err));
    }
    if (view.ended) return;
    setLive("reconnecting", "warn");
    await new Promise((r) => setTimeout(r, delay));
    delay = Math.min(delay * 2, 15000);
  }
}

async function readEvents(body, handle) {
  const reader = body.getReader();
  const decoder = new TextDecoder();
  let buffer = "";
  let ev = {};
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return;
    buffer += decoder.decode(value, { stream: true });
    let nl;
    while ((nl = buffer.indexOf("\n")) >= 0) {
      const line = buffer.slice(0, nl).replace(/\r$/, "");
      buffer = buffer.slice(nl + 1);
      if (line === "") {
        if (ev.event || ev.data !== undefined) handle(ev);
        ev = {};
      } else if (!line.startsWith(":")) {
        const i = line.indexOf(":");
        const field = i < 0 ? line : line.slice(0, i);
        const value = i < 0 ? "" : line.slice(i + 1).replace(/^ /, "");
        ev[field] = field === "data" && ev.data !== undefined ? ev.data + "\n" + value : value;
      }
    }
  }
}

function finish() {
  view.ended = true;
  setLive("final", "done");
  refreshSoon(true);
}

// Analytics and run detail follow the stream: refreshed after each event, at
// most once a second, never two at a time.
function refreshSoon(now) {
  view.dirty = true;
  if (view.refreshing) return;
  const wait = now ? 0 : Math.max(0, view.lastRefresh + REFRESH_MS - Date.now());
  view.refreshing = true;
  setTimeout(refresh, wait);
}

async function refresh() {
  view.dirty = false;
  view.lastRefresh = Date.now();
  const id = encodeURIComponent(view.id);
  try {
    const a = await api("/v1/campaign/" + id + "/analytics");
    setText("r-delivery", pct(a.data.delivery_rate));
    setText("r-failure", pct(a.data.failure_rate));
  } catch (err) {
    if (err.status === 403) {
      setText("r-delivery", "n/a");
      setText("r-failure", "n/a");
    }
  }
  const run = view.status && view.status.campaign_run_id;
  if (run) {
    try {
      const d = await api("/v1/campaign/" + id + "/runs/" + encodeURIComponent(run));
      showRunDetail(d.data);
    } catch (err) {
      if (err.status !== 404) say(explain(err));
    }
  }
  view.refreshing = false;
  if (view.dirty) refreshSoon();
}

function showRunDetail(d) {
  if (d.campaign_name) setText("c-title", d.campaign_name);
  const tbody = $("batches").querySelector("tbody");
  tbody.replaceChildren();
  for (const b of d.batches) {
    const tr = document.createElement("tr");
    cell(tr, b.batch_sequence);
    cell(tr, b.status, "st " + b.status);
    cell(tr, num(b.recipient_count));
    cell(tr, num(b.sent_count));
    cell(tr, num(b.failed_count));
    cell(tr, time(b.started_at));
    cell(tr, time(b.completed_at));
    tbody.appendChild(tr);
  }
  view.recipients = d.recipients;
  const sum = d.recipient_summary;
  setText("recipients-note", (d.recipients_truncated ? "first " + d.recipients.length + " of " : "")
    + num(sum.total) + " · pending " + num(sum.pending) + " · sent " + num(sum.sent)
    + " · delivered " + num(sum.delivered) + " · failed " + num(sum.failed));
  showRecipients(view.page);
}

function showRecipients(page) {
  const pages = Math.max(1, Math.ceil(view.recipients.length / PAGE));
  view.page = Math.min(Math.max(0, page), pages - 1);
  const tbody = $("recipients").querySelector("tbody");
  tbody.replaceChildren();
  for (const r of view.recipients.slice(view.page * PAGE, (view.page + 1) * PAGE)) {
    const tr = document.createElement("tr");
    cell(tr, r.recipient_id, "mono");
    cell(tr, r.phone_number, "mono");
    cell(tr, r.recipient_status, "st " + r.recipient_status);
    cell(tr, r.message_status);
    cell(tr, time(r.sent_at));
    tbody.appendChild(tr);
  }
  pager($("recipients-pager"), view.page, pages, showRecipients);
}

// -- chart: two polylines in an SVG, drawn by hand ------------------------------

const SVG = "http://www.w3.org/2000/svg";

function svg(name, attrs, text) {
  const el = document.createElementNS(SVG, name);
  for (const [k, v] of Object.entries(attrs)) el.setAttribute(k, String(v));
  if (text !== undefined) el.textContent = text;
  return el;
}

function drawChart() {
  const chart = $("chart");
  const W = 720, H = 220, L = 56, R = 12, T = 12, B = 28;
  const pts = view.points;
  chart.replaceChildren();
  if (pts.length === 0) return;
  const t0 = pts[0].t;
  const t1 = Math.max(pts[pts.length - 1].t, t0 + 1000);
  const ymax = Math.max(1, ...pts.map((p) => p.sent), (view.status && view.status.recipient_count) || 0);
  const x = (t) => L + ((t - t0) / (t1 - t0)) * (W - L - R);
  const y = (v) => H - B - (v / ymax) * (H - T - B);
  for (const f of [0, 0.5, 1]) {
    const v = Math.round(ymax * f);
    chart.appendChild(svg("line", { x1: L, x2: W - R, y1: y(v), y2: y(v), class: "grid" }));
    chart.appendChild(svg("text", { x: L - 6, y: y(v) + 4, "text-anchor": "end" }, fmt.format(v)));
  }
  const secs = Math.round((t1 - t0) / 1000);
  chart.appendChild(svg("text", { x: L, y: H - 8 }, "0 s"));
  chart.appendChild(svg("text", { x: W - R, y: H - 8, "text-anchor": "end" }, secs + " s"));
  for (const [key, cls] of [["sent", "sent"], ["delivered", "delivered"]]) {
    // A step line: counters hold their value until the next event.
    let d = "M" + x(pts[0].t).toFixed(1) + "," + y(pts[0][key]).toFixed(1);
    for (const p of pts.slice(1)) d += "H" + x(p.t).toFixed(1) + "V" + y(p[key]).toFixed(1);
    chart.appendChild(svg("path", { d, class: "line " + cls }));
  }
  chart.appendChild(svg("text", { x: L + 8, y: T + 10, class: "legend sent" }, "● sent"));
  chart.appendChild(svg("text", { x: L + 70, y: T + 10, class: "legend delivered" }, "● delivered"));
}

// -- start ---------------------------------------------------------------------

function main() {
  showKeyState();
  $("key-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const key = $("key-input").value.trim();
    if (!key) return;
    sessionStorage.setItem(KEY_NAME, key);
    $("key-input").value = "";
    location.reload();
  });
  $("key-forget").addEventListener("click", () => {
    sessionStorage.removeItem(KEY_NAME);
    location.reload();
  });
  $("open-form").addEventListener("submit", (e) => {
    e.preventDefault();
    const id = $("open-id").value.trim();
    if (id) location.href = "/ui/campaigns/" + encodeURIComponent(id);
  });
  const m = location.pathname.match(/^\/ui\/campaigns\/([^/]+)\/?$/);
  if (m) showCampaign(decodeURIComponent(m[1]));
  else showList(0);
}

main();
