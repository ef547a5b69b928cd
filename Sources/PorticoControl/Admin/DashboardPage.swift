//===----------------------------------------------------------------------===//
// This source file is part of the Portico open source project
// SPDX-License-Identifier: Apache-2.0
//===----------------------------------------------------------------------===//

/// `GET /` on the admin listener: the live dashboard. Plain HTML, CSS and JavaScript in one page, no build step
/// and nothing fetched from elsewhere; it polls `GET /stats` every second and computes rates, error shares and
/// latency percentiles over the last five seconds from the differences of cumulative counters (the chart: per
/// second).
enum DashboardPage {
    static let html = #"""
<!doctype html>
<html lang="en">
<head>
<meta charset="utf-8">
<meta name="viewport" content="width=device-width, initial-scale=1">
<title>Portico</title>
<style>
  :root {
    --bg: #0f1419; --panel: #171e26; --line: #243040; --text: #e6edf3; --muted: #8b98a5;
    --ok: #3fb950; --warn: #d29922; --bad: #f85149; --off: #6e7681; --accent: #58a6ff;
  }
  * { box-sizing: border-box; }
  body { margin: 0; background: var(--bg); color: var(--text); font: 14px/1.45 system-ui, -apple-system, "Segoe UI", Roboto, sans-serif; }
  header { display: flex; align-items: baseline; gap: 16px; padding: 18px 28px; border-bottom: 1px solid var(--line); }
  header h1 { margin: 0; font-size: 20px; letter-spacing: .5px; }
  header .meta { color: var(--muted); font-size: 13px; }
  header .live { margin-left: auto; color: var(--muted); font-size: 13px; }
  header .live::before { content: "●"; color: var(--ok); margin-right: 6px; }
  header .live.stale::before { color: var(--bad); }
  main { padding: 22px 28px; display: grid; gap: 22px; }
  .tiles { display: grid; grid-template-columns: repeat(6, minmax(140px, 1fr)); gap: 14px; }
  .tile { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 14px 16px; }
  .tile .label { color: var(--muted); font-size: 12px; text-transform: uppercase; letter-spacing: .6px; }
  .tile .value { font-size: 26px; font-weight: 600; margin-top: 4px; font-variant-numeric: tabular-nums; }
  .tile .value small { font-size: 13px; color: var(--muted); font-weight: 400; margin-left: 4px; }
  .panel { background: var(--panel); border: 1px solid var(--line); border-radius: 10px; padding: 16px 18px; }
  .panel h2 { margin: 0 0 12px; font-size: 14px; color: var(--muted); text-transform: uppercase; letter-spacing: .6px; font-weight: 600; }
  canvas { width: 100%; height: 120px; display: block; }
  table { width: 100%; border-collapse: collapse; font-variant-numeric: tabular-nums; }
  th { text-align: left; color: var(--muted); font-weight: 500; font-size: 12px; padding: 6px 10px; border-bottom: 1px solid var(--line); }
  td { padding: 7px 10px; border-bottom: 1px solid #1d2631; }
  td.num, th.num { text-align: right; }
  tr:last-child td { border-bottom: none; }
  .pill { display: inline-block; padding: 1px 8px; border-radius: 999px; font-size: 12px; background: #213044; color: var(--accent); }
  .clusters { display: grid; grid-template-columns: repeat(auto-fill, minmax(560px, 1fr)); gap: 16px; }
  .clusters h2 { display: flex; align-items: center; gap: 10px; }
  .clusters h2 .stats { margin-left: auto; text-transform: none; letter-spacing: 0; font-weight: 400; }
  td.host { white-space: nowrap; }
  .dot { display: inline-block; width: 9px; height: 9px; border-radius: 50%; margin-right: 8px; vertical-align: middle; }
  .ok { background: var(--ok); } .warn { background: var(--warn); } .bad { background: var(--bad); } .off { background: var(--off); }
  .err { color: var(--bad); } .muted { color: var(--muted); }
  .bar { height: 6px; background: #0b1016; border-radius: 3px; overflow: hidden; min-width: 80px; }
  .bar span { display: block; height: 100%; background: var(--accent); }
</style>
</head>
<body>
<header>
  <h1>Portico</h1>
  <span class="meta" id="meta">connecting…</span>
  <span class="live" id="live">live</span>
</header>
<main>
  <section class="tiles">
    <div class="tile"><div class="label">Requests / s</div><div class="value" id="rps">–</div></div>
    <div class="tile"><div class="label">Errors (5xx)</div><div class="value" id="errors">–</div></div>
    <div class="tile"><div class="label">p50 latency</div><div class="value" id="p50">–</div></div>
    <div class="tile"><div class="label">p99 latency</div><div class="value" id="p99">–</div></div>
    <div class="tile"><div class="label">Connections</div><div class="value" id="conns">–</div></div>
    <div class="tile"><div class="label">Healthy hosts</div><div class="value" id="hosts">–</div></div>
  </section>
  <section class="panel">
    <h2>Requests per second (errors in red), last 2 minutes</h2>
    <canvas id="chart" width="1200" height="120"></canvas>
  </section>
  <section class="panel">
    <h2>Routes</h2>
    <table>
      <thead><tr><th>Route</th><th>Action</th><th class="num">req/s (5 s)</th><th class="num">2xx</th><th class="num">4xx</th><th class="num">5xx</th><th class="num">p50</th><th class="num">p99</th><th class="num">Total</th><th>Cache</th></tr></thead>
      <tbody id="routes"></tbody>
    </table>
  </section>
  <section>
    <div class="clusters" id="clusters"></div>
  </section>
</main>
<script>
"use strict";
const history = [];
const recent = [];  // the last polls; figures are over the oldest to the newest (about 5 s)
let previous = null;

function sum(a) { return a.reduce((x, y) => x + y, 0); }
function diff(a, b) { return a.map((v, i) => v - (b ? b[i] || 0 : 0)); }
function ms(seconds) {
  if (seconds == null) return "–";
  return seconds < 1 ? (seconds * 1000).toFixed(seconds < 0.01 ? 2 : 1) + "<small>ms</small>" : seconds.toFixed(2) + "<small>s</small>";
}
function percentile(buckets, bounds, q) {
  const total = sum(buckets);
  if (total === 0) return null;
  let seen = 0;
  for (let i = 0; i < buckets.length; i++) {
    const before = seen;
    seen += buckets[i];
    if (seen >= q * total) {
      const lower = i === 0 ? 0 : bounds[i - 1];
      const upper = i < bounds.length ? bounds[i] : bounds[bounds.length - 1] * 2;
      return lower + (upper - lower) * ((q * total - before) / Math.max(buckets[i], 1));
    }
  }
  return bounds[bounds.length - 1];
}
function esc(s) { return String(s).replace(/[&<>"]/g, c => ({ "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;" })[c]); }

function hostState(h) {
  if (h.drained) return ["off", "drained"];
  if (!h.active_healthy) return ["bad", "unhealthy"];
  if (h.ejected) return ["warn", "ejected " + Math.ceil(h.ejected_for_seconds) + "s"];
  return ["ok", "healthy"];
}

function draw() {
  const canvas = document.getElementById("chart");
  const ctx = canvas.getContext("2d");
  const w = canvas.width, h = canvas.height;
  ctx.clearRect(0, 0, w, h);
  const max = Math.max(1, ...history.map(p => p.rps));
  ctx.strokeStyle = "#243040"; ctx.lineWidth = 1;
  for (let i = 1; i < 4; i++) { ctx.beginPath(); ctx.moveTo(0, h * i / 4); ctx.lineTo(w, h * i / 4); ctx.stroke(); }
  if (history.length < 2) return;
  const step = w / 119;
  const x = i => w - (history.length - 1 - i) * step;
  ctx.beginPath();
  history.forEach((p, i) => { const y = h - 4 - (h - 12) * p.rps / max; i ? ctx.lineTo(x(i), y) : ctx.moveTo(x(i), y); });
  ctx.lineTo(x(history.length - 1), h); ctx.lineTo(x(0), h); ctx.closePath();
  ctx.fillStyle = "rgba(88,166,255,0.15)"; ctx.fill();
  ctx.beginPath();
  history.forEach((p, i) => { const y = h - 4 - (h - 12) * p.rps / max; i ? ctx.lineTo(x(i), y) : ctx.moveTo(x(i), y); });
  ctx.strokeStyle = "#58a6ff"; ctx.lineWidth = 2; ctx.stroke();
  ctx.fillStyle = "#8b98a5"; ctx.font = "12px system-ui"; ctx.fillText(max.toFixed(0) + " req/s", 6, 14);
  const errs = history.map(p => p.err);
  ctx.beginPath();
  errs.forEach((e, i) => { const y = h - 4 - (h - 12) * e / max; i ? ctx.lineTo(x(i), y) : ctx.moveTo(x(i), y); });
  ctx.strokeStyle = "#f85149"; ctx.lineWidth = 1.5; ctx.stroke();
}

function bytes(n) {
  return n < 1048576 ? (n / 1024).toFixed(0) + " KiB" : (n / 1048576).toFixed(1) + " MiB";
}

function render(s) {
  recent.push(s);
  if (recent.length > 6) recent.shift();
  const base = recent.length > 1 ? recent[0] : null;
  const dt = base ? Math.max(s.time - base.time, 0.001) : null;
  const prevRoutes = base ? Object.fromEntries(base.routes.map(r => [r.name, r])) : {};
  let totalRequests = 0, totalErrors = 0, buckets = s.bucket_bounds.map(() => 0).concat([0]);
  const rows = s.routes.map(r => {
    const p = prevRoutes[r.name];
    const d = diff(r.requests, p && p.requests);
    const b = diff(r.buckets, p && p.buckets);
    const n = sum(d);
    totalRequests += n; totalErrors += d[4];
    b.forEach((v, i) => buckets[i] += v);
    const share = c => n ? (100 * d[c] / n).toFixed(0) + "%" : "–";
    const cache = r.cache ? (() => {
      const hits = r.cache.hit || 0, all = sum(Object.values(r.cache));
      return all ? `<span class="pill">${(100 * hits / all).toFixed(0)}% hits</span>` : '<span class="pill">cache</span>';
    })() : "";
    return `<tr><td>${esc(r.name)}</td><td class="muted">${esc(r.cluster ? "→ " + r.cluster : r.action)}</td>
      <td class="num">${dt ? (n / dt).toFixed(1) : "–"}</td><td class="num">${share(1)}</td><td class="num">${share(3)}</td>
      <td class="num ${d[4] ? "err" : ""}">${share(4)}</td><td class="num">${ms(percentile(b, s.bucket_bounds, 0.5))}</td>
      <td class="num">${ms(percentile(b, s.bucket_bounds, 0.99))}</td><td class="num muted">${sum(r.requests)}</td><td>${cache}</td></tr>`;
  });
  document.getElementById("routes").innerHTML = rows.join("");
  if (previous) {
    // The chart: per poll.
    const step = Math.max(s.time - previous.time, 0.001);
    const last = Object.fromEntries(previous.routes.map(r => [r.name, r]));
    let n = 0, e = 0;
    s.routes.forEach(r => { const d = diff(r.requests, last[r.name] && last[r.name].requests); n += sum(d); e += d[4]; });
    history.push({ rps: n / step, err: e / step });
    if (history.length > 120) history.shift();
  }
  if (dt) {
    document.getElementById("rps").innerHTML = (totalRequests / dt).toFixed(1);
    document.getElementById("errors").innerHTML = totalRequests ? (100 * totalErrors / totalRequests).toFixed(1) + "<small>%</small>" : "0<small>%</small>";
    document.getElementById("p50").innerHTML = ms(percentile(buckets, s.bucket_bounds, 0.5));
    document.getElementById("p99").innerHTML = ms(percentile(buckets, s.bucket_bounds, 0.99));
  }
  document.getElementById("conns").textContent = s.open_connections;
  const hosts = s.clusters.flatMap(c => c.hosts);
  document.getElementById("hosts").innerHTML = `${hosts.filter(h => h.available).length}<small>/ ${hosts.length}</small>`;
  document.getElementById("meta").textContent =
    `generation ${s.generation} · ${s.listeners.map(l => l.name + " " + l.address).join(" · ")}` +
    (s.cache ? ` · cache ${s.cache.responses} response${s.cache.responses === 1 ? "" : "s"}, ${bytes(s.cache.bytes)} of ${bytes(s.cache.max_bytes)}` : "");
  const prevClusters = base ? Object.fromEntries(base.clusters.map(c => [c.name, c])) : {};
  document.getElementById("clusters").innerHTML = s.clusters.map(c => {
    const p = prevClusters[c.name];
    const b = diff(c.upstream_buckets, p && p.upstream_buckets);
    const maxFlight = Math.max(1, ...c.hosts.map(h => h.in_flight));
    const hostRows = c.hosts.map(h => {
      const [cls, label] = hostState(h);
      const weight = h.effective_weight < h.weight ? h.effective_weight.toFixed(1) + " / " + h.weight : String(h.weight);
      return `<tr><td class="host"><span class="dot ${cls}"></span>${esc(h.address)}${h.backup ? ' <span class="muted">backup</span>' : ""}</td>
        <td class="muted">${label}</td><td class="num">${weight}</td>
        <td class="num">${h.in_flight}</td><td><div class="bar"><span style="width:${100 * h.in_flight / maxFlight}%"></span></div></td>
        <td class="num">${h.latency_ewma_ms ? h.latency_ewma_ms.toFixed(1) + " ms" : "–"}</td></tr>`;
    }).join("");
    return `<div class="panel"><h2>${esc(c.name)} <span class="pill">${esc(c.balancer.replace(/_/g, " "))}</span>
      <span class="muted stats">upstream p99 ${ms(percentile(b, s.bucket_bounds, 0.99))}
      · pool reuse ${c.reuse_ratio == null ? "–" : (100 * c.reuse_ratio).toFixed(0) + "%"} · retries ${c.retries}</span></h2>
      <table><thead><tr><th>Host</th><th>State</th><th class="num">Weight</th><th class="num">In flight</th><th></th><th class="num">Latency</th></tr></thead>
      <tbody>${hostRows}</tbody></table></div>`;
  }).join("");
  previous = s;
  draw();
}

async function poll() {
  const live = document.getElementById("live");
  try {
    const r = await fetch("stats", { cache: "no-store" });
    if (!r.ok) throw new Error(r.status);
    render(await r.json());
    live.classList.remove("stale");
  } catch (e) {
    live.classList.add("stale");
  }
  setTimeout(poll, 1000);
}
poll();
</script>
</body>
</html>
"""#
}
