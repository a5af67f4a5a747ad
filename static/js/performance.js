// The Performance page: redraws its figures and two SVG charts from /performance/data/ every 5 s.
(function () {
  "use strict";
  const root = document.getElementById("performance");
  if (!root) return;
  const SVG = "http://www.w3.org/2000/svg";

  function el(name, attrs, text) {
    const node = document.createElementNS(SVG, name);
    for (const [k, v] of Object.entries(attrs || {})) node.setAttribute(k, v);
    if (text !== undefined) node.textContent = text;
    return node;
  }

  function clear(svg) { while (svg.firstChild) svg.removeChild(svg.firstChild); }

  function niceMax(v) {
    if (v <= 0) return 1;
    const p = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (m * p >= v) return m * p;
    return 10 * p;
  }

  function latencyChart(svg, routes) {
    clear(svg);
    const rows = routes.slice(0, 15);
    const rowH = 26, left = 260, width = 720, top = 20;
    const height = top + rows.length * rowH + 20;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    if (!rows.length) { svg.appendChild(el("text", { x: 10, y: 30 }, "No requests yet.")); return; }
    const max = niceMax(Math.max(...rows.map((r) => r.p95_ms)));
    const scale = (v) => ((width - left - 60) * v) / max;
    for (let i = 0; i <= 4; i++) {
      const x = left + scale((max * i) / 4);
      svg.appendChild(el("line", { x1: x, x2: x, y1: top - 6, y2: height - 18, class: "grid" }));
      svg.appendChild(el("text", { x, y: top - 8, class: "axis", "text-anchor": "middle" }, String(+((max * i) / 4).toFixed(1))));
    }
    rows.forEach((r, i) => {
      const y = top + i * rowH;
      const label = `${r.method} ${r.route || "/"}`;
      svg.appendChild(el("text", { x: left - 8, y: y + 16, class: "label", "text-anchor": "end" }, label.length > 38 ? label.slice(0, 37) + "…" : label));
      svg.appendChild(el("rect", { x: left, y: y + 3, width: Math.max(1, scale(r.p95_ms)), height: 18, class: "bar p95" }));
      svg.appendChild(el("rect", { x: left, y: y + 7, width: Math.max(1, scale(r.median_ms)), height: 10, class: "bar p50" }));
      svg.appendChild(el("text", { x: left + scale(r.p95_ms) + 6, y: y + 16, class: "axis" }, `${r.median_ms} / ${r.p95_ms}`));
    });
  }

  function timelineChart(svg, points) {
    clear(svg);
    const width = 720, height = 180, left = 50, bottom = 20, top = 10;
    svg.setAttribute("viewBox", `0 0 ${width} ${height}`);
    if (!points.length) { svg.appendChild(el("text", { x: 10, y: 30 }, "No requests yet.")); return; }
    const t0 = points[0].t, t1 = Math.max(points[points.length - 1].t, t0 + 1);
    const max = niceMax(Math.max(...points.map((p) => p.ms)));
    const x = (t) => left + ((width - left - 10) * (t - t0)) / (t1 - t0);
    const y = (ms) => height - bottom - ((height - bottom - top) * ms) / max;
    for (let i = 0; i <= 4; i++) {
      const v = (max * i) / 4;
      svg.appendChild(el("line", { x1: left, x2: width - 10, y1: y(v), y2: y(v), class: "grid" }));
      svg.appendChild(el("text", { x: left - 6, y: y(v) + 4, class: "axis", "text-anchor": "end" }, String(+v.toFixed(1))));
    }
    for (const p of points) {
      const dot = el("circle", { cx: x(p.t), cy: y(p.ms), r: 2.5, class: "dot" });
      dot.appendChild(el("title", {}, `${p.route}: ${p.ms} ms`));
      svg.appendChild(dot);
    }
    svg.appendChild(el("text", { x: width - 10, y: height - 4, class: "axis", "text-anchor": "end" }, `last ${Math.round(t1 - t0)} s`));
  }

  function bytes(n) {
    if (n === null || n === undefined) return "–";
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return `${n.toFixed(i ? 1 : 0)} ${units[i]}`;
  }

  function setField(name, text) {
    const node = root.querySelector(`[data-field="${name}"]`);
    if (node) node.textContent = text;
  }

  function cell(text, code) {
    const td = document.createElement("td");
    if (code) { const c = document.createElement("code"); c.textContent = text; td.appendChild(c); } else td.textContent = text;
    return td;
  }

  function render(data) {
    setField("pid", data.process.pid);
    setField("rss", bytes(data.process.rss_bytes));
    setField("cpu", `${data.process.cpu_seconds} s`);
    for (const [name, c] of Object.entries(data.caches)) {
      setField(`cache-${name}`, c.hit_rate === null ? "–" : `${Math.round(c.hit_rate * 100)} %`);
    }
    const g = data.generation;
    setField("ttft", g.ttft_ms.count ? `${g.ttft_ms.median} ms` : "–");
    setField("tps", g.tokens_per_second.count ? String(g.tokens_per_second.median) : "–");
    latencyChart(document.getElementById("latency-chart"), data.routes);
    timelineChart(document.getElementById("timeline-chart"), data.timeline);
    const body = document.getElementById("routes");
    if (!data.routes.length) return;
    body.replaceChildren(...data.routes.map((r) => {
      const tr = document.createElement("tr");
      const q = r.queries_max !== r.queries_median ? `${r.queries_median} (max ${r.queries_max})` : String(r.queries_median);
      tr.append(cell(r.route, true), cell(r.method), cell(r.count), cell(r.median_ms), cell(r.p95_ms), cell(r.max_ms), cell(q), cell(r.db_median_ms), cell(r.bytes_median ?? "–"));
      return tr;
    }));
  }

  async function refresh() {
    try {
      const response = await fetch(root.dataset.url, { headers: { Accept: "application/json" }, credentials: "same-origin" });
      if (response.ok) render(await response.json());
    } catch (e) { /* the next refresh tries again */ }
  }

  refresh();
  setInterval(refresh, 5000);
})();
