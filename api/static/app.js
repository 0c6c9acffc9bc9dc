// Campaign dashboard: vanilla JS, no build step. The one third-party script is
// uPlot (MIT, v1.6.32, vendor/uPlot.iife.min.js, its LICENSE beside it), which
// draws the timeline chart.
//
// /ui/                 campaign list (GET /v1/campaigns when the API has it)
// /ui/campaigns/{id}   latest run, live from GET /v1/campaign/{id}/stream; its
//                      timeline, failure reasons and latency from the insight
//                      views, its recipients page by page from /recipients
//
// The API key is entered once and kept in sessionStorage. Every call sends it
// as X-API-Key, the stream included: the stream is read with fetch() and a
// ReadableStream (EventSource cannot send headers), so the key never appears
// in a URL. All text is set with textContent: nothing from the API (failure
// reasons and error codes are producer text) is parsed as HTML.
"use strict";

const KEY_NAME = "campaign-analytics-api-key";
const PAGE = 25; // recipients per page, read from /runs/{run_id}/recipients
const CAMPAIGN_PAGE = 50;
const REFRESH_MS = 1000; // analytics and run detail: at most once a second
const INSIGHT_MS = 2000; // timeline, failures, latency, recipients: at most every 2 s
const LATE_MS = 10000; // after the stream's end: the status re-read this often
const CHART_HEIGHT = 240;
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
      cell(tr, pct(c.delivery_rate));
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
  timeline: null, // the last /timeline payload of the status's run
  chart: null, // the uPlot instance, once there is something to draw
  page: 0, // the recipients page asked for (kept while its request is in flight)
  filter: "", // recipient_status filter, "" for all
  recipientsSeq: 0, // only the newest recipients request is shown
  ended: false,
  refreshing: false,
  dirty: false,
  lastRefresh: 0,
  insightAt: 0,
  insightDue: false,
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
  setText("n-overdue", num(s.receipt_overdue));
  if (s.campaign_run_id) drawChart(); // the stream's payload extends the timeline
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
  if (view.ended) return;
  view.ended = true;
  setLive("final", "done");
  refreshSoon(true);
  followLate();
}

// The stream ends with the run's terminal payload, but delivery reports go on
// coming after it: the status is re-read now and then, and a change redraws.
async function followLate() {
  for (;;) {
    await new Promise((r) => setTimeout(r, LATE_MS));
    try {
      const s = (await api("/v1/campaign/" + encodeURIComponent(view.id) + "/status")).data;
      if (!view.status || s.updated_at !== view.status.updated_at
          || s.delivered !== view.status.delivered) onStatus(s, view.position);
    } catch (err) {
      if (err.status === 401 || err.status === 403) return;
    }
  }
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
  const due = view.ended || view.lastRefresh - view.insightAt >= INSIGHT_MS;
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
    if (due) {
      view.insightAt = Date.now();
      await Promise.all([loadTimeline(run), loadFailures(run), loadLatency(run),
                         loadRecipients(view.page)]);
    }
  }
  // A skipped insight read is made up for shortly, even when no event follows.
  view.insightDue = Boolean(run) && !due;
  view.refreshing = false;
  if (view.dirty || view.insightDue) refreshSoon();
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
  const sum = d.recipient_summary;
  setText("recipients-note", num(sum.total) + " · pending " + num(sum.pending)
    + " · sent " + num(sum.sent) + " · delivered " + num(sum.delivered)
    + " · failed " + num(sum.failed));
}

function runPath(run) {
  return "/v1/campaign/" + encodeURIComponent(view.id) + "/runs/" + encodeURIComponent(run);
}

// The whole run, a page at a time, from the paged endpoint (the run detail
// holds only its first 500 recipients).
async function loadRecipients(page) {
  const run = view.status && view.status.campaign_run_id;
  if (!run) return;
  view.page = Math.max(0, page);
  const seq = ++view.recipientsSeq;
  let q = "?limit=" + PAGE + "&offset=" + view.page * PAGE;
  if (view.filter) q += "&status=" + encodeURIComponent(view.filter);
  let body;
  try {
    body = await api(runPath(run) + "/recipients" + q);
  } catch (err) {
    if (seq === view.recipientsSeq && err.status !== 404) say(explain(err));
    return;
  }
  if (seq !== view.recipientsSeq) return; // a newer page was asked for meanwhile
  const pages = Math.max(1, Math.ceil(body.meta.total / PAGE));
  if (view.page >= pages) { // the filter or the run shrank below this page
    await loadRecipients(pages - 1);
    return;
  }
  const tbody = $("recipients").querySelector("tbody");
  tbody.replaceChildren();
  for (const r of body.data) {
    const tr = document.createElement("tr");
    cell(tr, r.recipient_id, "mono");
    cell(tr, r.phone_number, "mono");
    cell(tr, r.recipient_status, "st " + r.recipient_status);
    cell(tr, r.message_status);
    cell(tr, time(r.sent_at));
    tbody.appendChild(tr);
  }
  pager($("recipients-pager"), view.page, pages, loadRecipients);
}

// -- delivery insight: failure reasons and latency -----------------------------

// Reads of analytics:read views; without that scope they show "n/a".
async function insight(path, show, noteId) {
  try {
    show((await api(path)).data);
  } catch (err) {
    if (err.status === 403) setText(noteId, "n/a: " + explain(err));
    else if (err.status !== 404) say(explain(err));
  }
}

function loadFailures(run) {
  const path = "/v1/campaign/" + encodeURIComponent(view.id) + "/failures?run_id="
    + encodeURIComponent(run);
  return insight(path, showFailures, "failures-note");
}

function showFailures(f) {
  const tbody = $("failures").querySelector("tbody");
  tbody.replaceChildren();
  const row = (why, detail, count) => {
    const tr = document.createElement("tr");
    cell(tr, why, "why");
    cell(tr, detail); // producer text: textContent only (cell)
    cell(tr, num(count));
    tbody.appendChild(tr);
  };
  for (const g of f.submits.items) {
    row(g.outcome === "skipped" ? "skipped" : "submit failed", g.reason || "(no reason)", g.count);
  }
  if (f.submits.other.count) {
    row("submit", "other (" + num(f.submits.other.groups) + " reasons)", f.submits.other.count);
  }
  for (const g of f.reports.items) {
    row(g.status, g.error_code ? "code " + g.error_code : "(no code)", g.count);
  }
  if (f.reports.other.count) {
    row("report", "other (" + num(f.reports.other.groups) + " codes)", f.reports.other.count);
  }
  setText("failures-note", f.submits.total + f.reports.total === 0 ? "No failures."
    : num(f.submits.total) + " failed or skipped submits · " + num(f.reports.total)
      + " failed deliveries");
}

function duration(ms) {
  if (ms === null || ms === undefined) return "–";
  if (ms < 1000) return ms + " ms";
  if (ms < 60000) return (ms / 1000).toFixed(1) + " s";
  if (ms < 3600000) return (ms / 60000).toFixed(1) + " min";
  return (ms / 3600000).toFixed(1) + " h";
}

function loadLatency(run) {
  return insight(runPath(run) + "/latency", showLatency, "latency-note");
}

function showLatency(l) {
  setText("lat-p50", duration(l.p50_ms));
  setText("lat-p90", duration(l.p90_ms));
  setText("lat-p99", duration(l.p99_ms));
  setText("lat-max", duration(l.max_ms));
  setText("latency-note", "from send to delivery report, over " + num(l.delivered)
    + " delivered" + (l.clock_skewed ? " (" + num(l.clock_skewed) + " reported before sent)" : ""));
}

// -- chart: the run's timeline, extended by the stream ------------------------

// The run's timeline is read on load and again as events come (INSIGHT_MS), so
// a page opened after the run ended draws it whole. In between, each stream
// payload moves the line's end to its counters at its event time.
async function loadTimeline(run) {
  try {
    const t = (await api(runPath(run) + "/timeline")).data;
    view.timeline = t;
    drawChart();
  } catch (err) {
    if (err.status === 403) setText("chart-note", "n/a: " + explain(err));
    else if (err.status !== 404) say(explain(err));
  }
}

// [x seconds, cumulative sent, cumulative delivered]: a zero at the first
// bucket's start, then each bucket's cumulative counts at its end, the last one
// at the run's latest event time (F8's updated_at) when that falls inside it.
function chartData() {
  const xs = [], sent = [], delivered = [];
  const s = view.status;
  const t = view.timeline;
  if (!t || !s || t.run_id !== s.campaign_run_id || t.buckets.length === 0) return [xs, sent, delivered];
  const now = s.updated_at ? Date.parse(s.updated_at) / 1000 : Infinity;
  xs.push(Date.parse(t.buckets[0].start) / 1000);
  sent.push(0);
  delivered.push(0);
  for (const b of t.buckets) {
    const start = Date.parse(b.start) / 1000;
    const end = start + t.bucket_seconds;
    xs.push(now >= start && now < end ? now : end);
    sent.push(b.cumulative.sent);
    delivered.push(b.cumulative.delivered);
  }
  const last = xs.length - 1;
  if (now !== Infinity && now >= xs[last]) { // the stream is as new as the timeline, or newer
    if (now > xs[last]) {
      xs.push(now);
      sent.push(0);
      delivered.push(0);
    }
    sent[xs.length - 1] = s.sent || 0;
    delivered[xs.length - 1] = s.delivered || 0;
  }
  return [xs, sent, delivered];
}

function drawChart() {
  const el = $("chart");
  const data = chartData();
  el.dataset.points = String(data[0].length);
  const t = view.timeline;
  if (t) setText("chart-note", "per " + t.bucket + " of event time, UTC");
  if (data[0].length === 0) {
    if (!view.chart && !el.querySelector(".empty")) {
      const p = document.createElement("p");
      p.className = "empty";
      p.textContent = "Nothing sent yet.";
      el.replaceChildren(p);
    }
    return;
  }
  if (typeof uPlot === "undefined") {
    setText("chart-note", "(the chart library did not load)");
    return;
  }
  if (view.chart) {
    view.chart.setData(data);
    return;
  }
  el.replaceChildren();
  const css = getComputedStyle(document.documentElement);
  view.chart = new uPlot({
    width: chartWidth(),
    height: CHART_HEIGHT,
    tzDate: (ts) => uPlot.tzDate(new Date(ts * 1000), "Etc/UTC"),
    scales: { x: { time: true } },
    series: [
      {},
      { label: "sent", stroke: css.getPropertyValue("--accent").trim(), width: 2,
        value: (u, v) => num(v) },
      { label: "delivered", stroke: css.getPropertyValue("--deliv").trim(), width: 2,
        value: (u, v) => num(v) },
    ],
    axes: [{}, { size: 60, values: (u, vals) => vals.map((v) => fmt.format(v)) }],
  }, data, el);
}

function chartWidth() {
  return Math.max(280, $("chart").clientWidth - 16);
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
  $("recipients-filter").addEventListener("change", (e) => {
    view.filter = e.target.value;
    loadRecipients(0);
  });
  window.addEventListener("resize", () => {
    if (view.chart) view.chart.setSize({ width: chartWidth(), height: CHART_HEIGHT });
  });
  const m = location.pathname.match(/^\/ui\/campaigns\/([^/]+)\/?$/);
  if (m) showCampaign(decodeURIComponent(m[1]));
  else showList(0);
}

main();
