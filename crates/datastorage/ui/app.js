// The audit explorer: search, a remediation's timeline, an event verified in the browser, and
// the log's state. Plain ES modules, no build step; every view's state is in the URL's hash.

import { verifyProof } from "./verify.js";

const config = JSON.parse(document.getElementById("config").textContent);
const main = document.getElementById("main");
const TOKEN = "audit-explorer-token";
const PINNED = "audit-explorer-pinned-key";

// ---- the API ------------------------------------------------------------------------------

function headers() {
  const h = { Accept: "application/json", Prefer: "answers=native" };
  const token = sessionStorage.getItem(TOKEN);
  if (token) h.Authorization = `Bearer ${token}`;
  return h;
}

class ApiError extends Error {
  constructor(status, problem) {
    super(problem?.detail || problem?.title || `HTTP ${status}`);
    this.status = status;
    this.problem = problem;
  }
}

async function api(path, init = {}) {
  const response = await fetch(path, { ...init, headers: { ...headers(), ...(init.headers || {}) } });
  const text = await response.text();
  let body = null;
  try {
    body = text ? JSON.parse(text) : null;
  } catch {
    body = { detail: text };
  }
  if (!response.ok) throw new ApiError(response.status, body);
  return body;
}

// ---- small helpers ------------------------------------------------------------------------

function el(tag, attrs = {}, ...children) {
  const node = document.createElement(tag);
  for (const [k, v] of Object.entries(attrs)) {
    if (v === undefined || v === null || v === false) continue;
    if (k.startsWith("on")) node.addEventListener(k.slice(2), v);
    else if (k === "text") node.textContent = v;
    else node.setAttribute(k, v === true ? "" : v);
  }
  append(node, ...children);
  return node;
}

// Appends children, leaving out null and undefined ones (a plain `append` writes them as text).
function append(node, ...children) {
  for (const c of children.flat()) {
    if (c !== null && c !== undefined) node.append(c instanceof Node ? c : document.createTextNode(String(c)));
  }
}

const SVG = "http://www.w3.org/2000/svg";
function svg(tag, attrs = {}, ...children) {
  const node = document.createElementNS(SVG, tag);
  for (const [k, v] of Object.entries(attrs)) node.setAttribute(k, v);
  for (const c of children) node.append(c);
  return node;
}

function link(hash, text) {
  return el("a", { href: hash }, text);
}

function ms(duration) {
  if (duration === null || duration === undefined) return "open";
  if (duration < 1000) return `${duration} ms`;
  if (duration < 60000) return `${(duration / 1000).toFixed(1)} s`;
  if (duration < 3600000) return `${(duration / 60000).toFixed(1)} min`;
  return `${(duration / 3600000).toFixed(1)} h`;
}

function show(title, ...content) {
  document.title = `${title} · Audit explorer`;
  main.replaceChildren(el("h1", { text: title }));
  append(main, ...content);
  main.focus();
}

function failure(error) {
  const auth = error instanceof ApiError && (error.status === 401 || error.status === 403);
  return el("p", { class: "error", role: "alert" },
    auth ? "Not allowed: paste a token (top right) with the reader role. " : "",
    error.message);
}

// ---- routing ------------------------------------------------------------------------------

function route() {
  const hash = location.hash.replace(/^#/, "") || "/search";
  const [path, query] = hash.split("?");
  const params = new URLSearchParams(query || "");
  const parts = path.split("/").filter(Boolean).map(decodeURIComponent);
  stopLive();
  const page = {
    search: () => searchPage(params),
    remediation: () => remediationPage(parts[1]),
    event: () => eventPage(parts[1]),
    log: () => logPage(),
  }[parts[0]];
  (page || (() => searchPage(params)))().catch((e) => show("Error", failure(e)));
}

// ---- search -------------------------------------------------------------------------------

const FILTERS = [
  ["correlation_id", "Correlation (remediation) id"],
  ["event_type", "Event type"],
  ["event_category", "Category"],
  ["event_outcome", "Outcome"],
  ["actor_id", "Actor"],
  ["resource_type", "Resource type"],
  ["resource_id", "Resource id"],
  ["submitted_by", "Writer"],
  ["since", "Since (RFC 3339 or 30m, 24h, 7d)"],
  ["until", "Until"],
];

async function searchPage(params) {
  const form = el("form", { class: "filters", "aria-label": "Search filters" });
  for (const [name, label] of FILTERS) {
    const id = `f-${name}`;
    const input = name === "event_outcome"
      ? el("select", { id, name }, el("option", { value: "" }, "any"),
        ...["success", "failure", "pending"].map((o) => el("option", { value: o, selected: params.get(name) === o }, o)))
      : el("input", { id, name, value: params.get(name) || "", autocomplete: "off" });
    form.append(el("label", { for: id }, label), input);
  }
  form.append(el("button", { type: "submit" }, "Search"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    const q = new URLSearchParams();
    for (const [k, v] of new FormData(form)) if (v) q.set(k, v);
    location.hash = `#/search?${q}`;
  });

  const query = new URLSearchParams();
  for (const [name] of FILTERS) if (params.get(name)) query.set(name, params.get(name));
  query.set("limit", "50");
  if (params.get("cursor")) query.set("cursor", params.get("cursor"));
  const results = el("section", { "aria-label": "Results" });
  show("Search", form, results);
  const page = await api(`/api/v1/audit/events?${query}`);
  const rows = page.data.map((e) => el("tr", {},
    el("td", {}, link(`#/event/${e.event_id}`, e.event_timestamp)),
    el("td", {}, e.event_type),
    el("td", { class: `outcome ${e.event_outcome}` }, e.event_outcome),
    el("td", {}, e.actor_id),
    el("td", {}, `${e.resource_type}/${e.resource_id}`),
    el("td", {}, link(`#/remediation/${encodeURIComponent(e.correlation_id)}`, e.correlation_id)),
    el("td", { class: "num" }, e.seq)));
  const next = new URLSearchParams(params);
  if (page.next_cursor) next.set("cursor", page.next_cursor);
  const exportQuery = new URLSearchParams();
  for (const [k] of FILTERS) if (params.get(k)) exportQuery.set(k, params.get(k));
  append(results,
    el("p", {}, `${page.pagination.total} events match. `,
      el("a", { href: `/api/v1/audit/export?${exportQuery}&format=ndjson`, download: "audit-export.ndjson",
        onclick: (e) => download(e, `/api/v1/audit/export?${exportQuery}&format=ndjson`, "audit-export.ndjson") },
      "Export (NDJSON with proofs)"), " · ",
      el("a", { href: "#", onclick: (e) => { e.preventDefault(); exportCsv(query); } }, "Export (CSV)")),
    el("table", {},
      el("thead", {}, el("tr", {}, ...["Time", "Type", "Outcome", "Actor", "Resource", "Remediation", "Seq"].map((h) => el("th", { scope: "col" }, h)))),
      el("tbody", {}, rows)),
    page.next_cursor ? el("p", {}, link(`#/search?${next}`, "Next page →")) : null);
}

// Downloads with the page's credentials (a plain link would go without the token).
async function download(event, path, name) {
  event.preventDefault();
  const response = await fetch(path, { headers: headers() });
  if (!response.ok) return alert(`Export failed: HTTP ${response.status}`);
  const url = URL.createObjectURL(await response.blob());
  el("a", { href: url, download: name }).click();
  URL.revokeObjectURL(url);
}

const CSV_COLUMNS = ["seq", "event_id", "event_timestamp", "event_type", "event_category", "event_action",
  "event_outcome", "actor_type", "actor_id", "resource_type", "resource_id", "correlation_id", "namespace"];

async function exportCsv(query) {
  const lines = [CSV_COLUMNS.join(",")];
  const q = new URLSearchParams(query);
  q.set("limit", "1000");
  for (let pages = 0; pages < 100; pages++) {
    const page = await api(`/api/v1/audit/events?${q}`);
    for (const e of page.data) {
      lines.push(CSV_COLUMNS.map((c) => {
        const v = e[c] === undefined || e[c] === null ? "" : String(e[c]);
        return /[",\n]/.test(v) ? `"${v.replace(/"/g, '""')}"` : v;
      }).join(","));
    }
    if (!page.next_cursor) break;
    q.set("cursor", page.next_cursor);
  }
  const url = URL.createObjectURL(new Blob([lines.join("\n") + "\n"], { type: "text/csv" }));
  el("a", { href: url, download: "audit-events.csv" }).click();
  URL.revokeObjectURL(url);
}

// ---- remediation --------------------------------------------------------------------------

let live = null;
function stopLive() {
  if (live) live.abort();
  live = null;
}

async function remediationPage(id) {
  const [timeline, holds] = await Promise.all([
    api(`/api/v1/audit/remediations/${encodeURIComponent(id)}/timeline`),
    api(`/api/v1/audit/legal-hold?correlation_id=${encodeURIComponent(id)}`).catch(() => null),
  ]);
  performance.mark("timeline-fetched");
  const s = timeline.summary;
  const summary = el("dl", { class: "summary" },
    el("dt", {}, "First event"), el("dd", {}, s.first_event_at),
    el("dt", {}, "Last event"), el("dd", {}, s.last_event_at),
    el("dt", {}, "Duration"), el("dd", {}, ms(s.duration_ms)),
    el("dt", {}, "Events"), el("dd", {}, s.event_count, timeline.truncated ? " (the first 100 000 drawn)" : ""),
    el("dt", {}, "Completeness"), el("dd", { class: s.completeness === 100 ? "good" : "bad" }, `${s.completeness} %`, s.findings ? ` (${s.findings} findings)` : ""),
    ...Object.entries(s.outcomes).flatMap(([service, outcome]) =>
      [el("dt", {}, service), el("dd", { class: `outcome ${outcome}` }, outcome)]));
  show(`Remediation ${id}`, summary, holdPanel(id, holds), lanes(timeline), findingsList(timeline),
    el("p", {}, link(`#/search?correlation_id=${encodeURIComponent(id)}`, "All its events")));
  // When the lanes are built, and when they are painted (the benchmark reads both).
  performance.mark("lanes-built");
  requestAnimationFrame(() => setTimeout(() => performance.mark("lanes-drawn")));
  follow(id);
}

// Redraws when new events of the remediation arrive on the live stream.
function follow(id) {
  const controller = new AbortController();
  live = controller;
  const after = new URLSearchParams({ correlation_id: id });
  let pending = null;
  (async () => {
    const response = await fetch(`/api/v1/audit/events/stream?${after}`, { headers: headers(), signal: controller.signal });
    if (!response.ok || !response.body) return;
    const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
    let buffer = "";
    for (;;) {
      const { value, done } = await reader.read();
      if (done) return;
      buffer += value;
      if (buffer.includes("\n\n") && /(^|\n)id:/.test(buffer)) {
        buffer = buffer.slice(buffer.lastIndexOf("\n\n") + 2);
        clearTimeout(pending);
        pending = setTimeout(() => { if (live === controller) route(); }, 500);
      }
    }
  })().catch(() => {});
}

function holdPanel(id, holds) {
  const active = holds?.data?.find((h) => !h.hold.released_at);
  const panel = el("section", { class: "hold", "aria-label": "Legal hold" });
  const reason = el("input", { id: "hold-reason", required: true });
  const form = el("form", {},
    el("label", { for: "hold-reason" }, active ? "Release reason" : "Reason for a legal hold"), reason,
    el("button", { type: "submit" }, active ? "Release the hold" : "Place a legal hold"));
  form.addEventListener("submit", async (e) => {
    e.preventDefault();
    try {
      if (active) {
        await api(`/api/v1/audit/legal-hold/${encodeURIComponent(id)}`, {
          method: "DELETE", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ release_reason: reason.value }),
        });
      } else {
        await api("/api/v1/audit/legal-hold", {
          method: "POST", headers: { "Content-Type": "application/json" },
          body: JSON.stringify({ correlation_id: id, reason: reason.value }),
        });
      }
      route();
    } catch (error) {
      panel.append(failure(error));
    }
  });
  append(panel, el("p", {}, holds === null ? "Legal hold: unknown (not allowed to read holds)."
    : active ? `Under legal hold since ${active.hold.placed_at} (${active.hold.reason}, by ${active.hold.placed_by}).`
      : "No legal hold."), form);
  return panel;
}

const LANE = 34;
const LABEL = 210;

// The lifecycles as lanes on a time axis: phases as bars, events as ticks, failures and
// findings marked.
function lanes(timeline) {
  const start = Date.parse(timeline.summary.first_event_at);
  const span = Math.max(1, Date.parse(timeline.summary.last_event_at) - start);
  const width = 1000;
  const x = (t) => LABEL + ((Date.parse(t) - start) / span) * (width - LABEL - 10);
  const drawn = timeline.lifecycles.slice(0, 200);
  const chart = svg("svg", {
    viewBox: `0 0 ${width} ${(drawn.length + 1) * LANE}`, class: "lanes", role: "img",
    "aria-label": `Timeline: ${drawn.length} lifecycles from ${timeline.summary.first_event_at} to ${timeline.summary.last_event_at}`,
  });
  const findingsByEvent = new Map();
  timeline.lifecycles.forEach((l) => l.findings.forEach((f) => f.event_id && findingsByEvent.set(f.event_id, f)));
  const ticks = new Map();
  for (const e of timeline.events) {
    if (e.lifecycle === null || e.lifecycle === undefined || e.lifecycle >= drawn.length) continue;
    if (!ticks.has(e.lifecycle)) ticks.set(e.lifecycle, []);
    ticks.get(e.lifecycle).push(e);
  }
  drawn.forEach((l, i) => {
    const y = i * LANE;
    const lane = svg("g", { class: `lane ${l.service} ${l.outcome}`, "data-service": l.service, "data-subject": l.subject });
    lane.append(svg("text", { x: 4, y: y + 21, class: "lane-label" }, document.createTextNode(
      `${l.service}${l.service === "notification" ? " " + l.subject.slice(0, 12) : ""} · ${l.outcome}`)));
    const x0 = x(l.started_at);
    lane.append(svg("rect", { x: x0, y: y + LANE / 2 - 1, width: Math.max(1, x(l.ended_at || l.last_event_at) - x0), height: 2, class: "span" }));
    l.phases.forEach((p, k) => {
      const x0 = x(p.entered_at);
      const x1 = p.left_at ? x(p.left_at) : x(l.ended_at || l.last_event_at);
      const bar = svg("rect", { x: x0, y: y + 6, width: Math.max(2, x1 - x0), height: LANE - 12, class: `phase p${k % 6}`, "data-phase": p.phase });
      bar.append(svg("title", {}, document.createTextNode(`${p.phase}: ${ms(p.duration_ms)}`)));
      lane.append(bar);
      if (x1 - x0 > 70) {
        lane.append(svg("text", { x: x0 + 4, y: y + 21, class: "phase-label" },
          document.createTextNode(`${p.phase} ${p.duration_ms === null || p.duration_ms === undefined ? "" : ms(p.duration_ms)}`)));
      }
    });
    for (const tick of bucketed(ticks.get(i) || [], x, y, findingsByEvent)) lane.append(tick);
    chart.append(lane);
  });
  const axisY = drawn.length * LANE + 20;
  chart.append(svg("text", { x: LABEL, y: axisY, class: "axis" }, document.createTextNode(timeline.summary.first_event_at)));
  chart.append(svg("text", { x: width - 10, y: axisY, class: "axis end" }, document.createTextNode(timeline.summary.last_event_at)));
  // On a narrow window the chart keeps a readable width and scrolls on its own.
  const figure = el("figure", { class: "chart", tabindex: "0", "aria-label": "Timeline lanes (scrolls sideways on a narrow window)" }, chart);
  if (timeline.lifecycles.length > drawn.length) {
    append(figure, el("figcaption", {}, `The first ${drawn.length} of ${timeline.lifecycles.length} lifecycles are drawn.`));
  }
  return figure;
}

// A lane's events as ticks, one per 2-unit column of the axis and kind (finding, failure, other):
// a 10 000-event lane draws at most a few hundred links rather than one per event. Each tick
// opens the column's first event of that kind and names how many it stands for.
function bucketed(events, x, y, findingsByEvent) {
  const columns = new Map();
  for (const e of events) {
    const finding = findingsByEvent.get(e.event_id);
    const kind = finding ? "finding" : e.event_outcome === "failure" ? "failure" : "";
    const at = x(e.event_timestamp);
    const key = `${Math.floor(at / 2)} ${kind}`;
    const column = columns.get(key);
    if (column) column.count += 1;
    else columns.set(key, { first: e, at, kind, finding, count: 1 });
  }
  return [...columns.values()].map(({ first, at, kind, finding, count }) => {
    const a = svg("a", { href: `#/event/${first.event_id}` });
    const t = svg("rect", { x: at - 1.5, y: y + 3, width: kind ? 4 : 2, height: LANE - 6, class: kind ? `tick ${kind}` : "tick" });
    const more = count > 1 ? ` and ${count - 1} more` : "";
    t.append(svg("title", {}, document.createTextNode(`${first.event_type} (seq ${first.seq})${more}${finding ? " — " + finding.message : ""}`)));
    a.append(t);
    return a;
  });
}

function findingsList(timeline) {
  const items = timeline.lifecycles.flatMap((l) => l.findings.map((f) =>
    el("li", { class: "finding" }, el("strong", {}, `${l.service}: ${f.rule}`), " — ", f.message, " ",
      f.event_id ? link(`#/event/${f.event_id}`, "event") : null)));
  return el("section", { "aria-label": "Completeness findings" },
    el("h2", {}, "Completeness findings"),
    items.length ? el("ul", { class: "findings" }, items) : el("p", {}, "None: every lifecycle is complete."));
}

// ---- event --------------------------------------------------------------------------------

function pinnedKey() {
  return localStorage.getItem(PINNED) || config.public_key || null;
}

async function eventPage(id) {
  let proof = null;
  let event;
  try {
    proof = await api(`/api/v1/audit/events/${encodeURIComponent(id)}/proof`);
    event = proof.event;
  } catch (error) {
    if (!(error instanceof ApiError) || error.status !== 404) throw error;
    event = (await api(`/api/v1/audit/events/${encodeURIComponent(id)}`));
  }
  const badge = el("p", { class: "badge checking", role: "status", "aria-live": "polite" }, "Verifying…");
  const fields = el("dl", { class: "fields" });
  for (const [k, v] of Object.entries(event)) {
    if (k === "event_data") continue;
    const value = k === "correlation_id" ? link(`#/remediation/${encodeURIComponent(v)}`, v) : String(v);
    fields.append(el("dt", {}, k), el("dd", {}, value));
  }
  show(`Event ${id}`, badge, fields, el("h2", {}, "event_data"),
    el("pre", { class: "json", tabindex: "0" }, JSON.stringify(event.event_data, null, 2)));
  if (!proof) {
    badge.className = "badge pending";
    badge.textContent = "Not verified yet: no signed checkpoint covers this event yet.";
    return;
  }
  const verdict = await verifyProof(proof, pinnedKey());
  if (verdict.ok) {
    badge.className = "badge verified";
    badge.textContent = `Verified in this browser: content hashed, included in the signed checkpoint of ${verdict.treeSize} events.`;
  } else {
    badge.className = "badge failed";
    badge.dataset.step = verdict.step;
    badge.textContent = `Verification failed (${verdict.step}): ${verdict.why}.`;
  }
}

// ---- log ----------------------------------------------------------------------------------

async function logPage() {
  const [latest, page, witnessed, dlq] = await Promise.all([
    api("/api/v1/audit/checkpoints/latest").catch((e) => e),
    api("/api/v1/audit/checkpoints?since=1h&limit=1000").catch(() => null),
    api("/api/v1/audit/checkpoints/latest?witnessed=true").catch((e) => e),
    api("/api/v1/admin/dlq").catch((e) => e),
  ]);
  const list = el("dl", { class: "summary" });
  const add = (k, v) => list.append(el("dt", {}, k), el("dd", {}, v));
  if (latest instanceof Error) add("Newest checkpoint", latest.message);
  else {
    add("Newest checkpoint", `${latest.tree_size} events`);
    add("Signed", `${latest.timestamp} (${ms(Date.now() - Date.parse(latest.timestamp))} ago)`);
  }
  const checkpoints = page?.data || [];
  if (checkpoints.length > 1) {
    const first = checkpoints[0];
    const last = checkpoints[checkpoints.length - 1];
    const seconds = (Date.parse(last.timestamp) - Date.parse(first.timestamp)) / 1000;
    if (seconds > 0) add("Ingest rate (last hour's checkpoints)", `${((last.tree_size - first.tree_size) / seconds).toFixed(1)} events/s`);
  }
  add("Newest witnessed checkpoint", witnessed instanceof Error ? witnessed.message : `${witnessed.tree_size} events`);
  add("Dead-letter queue", dlq instanceof Error ? dlq.message : `${dlq.depth} waiting (${dlq.backend}, capacity ${dlq.capacity})`);
  add("Pinned log key", pinnedKey() || "none");
  const keyInput = el("input", { id: "pin", value: localStorage.getItem(PINNED) || "", size: 60 });
  const form = el("form", {}, el("label", { for: "pin" }, "Pin another log key (kept in this browser)"), keyInput,
    el("button", { type: "submit" }, "Pin"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (keyInput.value.trim()) localStorage.setItem(PINNED, keyInput.value.trim());
    else localStorage.removeItem(PINNED);
    route();
  });
  show("Log", list, form);
}

// ---- the token ----------------------------------------------------------------------------

function authForm() {
  const input = el("input", { id: "token", type: "password", autocomplete: "off", placeholder: "Bearer token" });
  const form = el("form", { id: "auth", "aria-label": "Authentication" },
    el("label", { for: "token", class: "visually-hidden" }, "Token"), input,
    el("button", { type: "submit" }, sessionStorage.getItem(TOKEN) ? "Replace token" : "Use token"));
  form.addEventListener("submit", (e) => {
    e.preventDefault();
    if (input.value) sessionStorage.setItem(TOKEN, input.value.trim());
    else sessionStorage.removeItem(TOKEN);
    input.value = "";
    route();
  });
  return form;
}

document.querySelector("header").append(authForm());
window.addEventListener("hashchange", route);
// A live stream left open would hold one of the browser's few connections to the service.
window.addEventListener("pagehide", stopLive);
route();
