// Engine pages: refresh states, progress, failures, log and charts without reloading.
// Loaded as a static file (the CSP forbids inline scripts); uses textContent only.
(function () {
  "use strict";
  const root = document.getElementById("engines");
  if (!root) return;
  const statusUrl = root.dataset.statusUrl;
  const metricsUrl = root.dataset.metricsUrl;
  const STATE_CLASSES = ["ready", "loading", "starting", "stopping", "stopped", "crashed", "crash_loop",
    "unreachable", "unauthorized", "incompatible", "tls_error", "degraded"];

  function setText(card, field, value) {
    card.querySelectorAll('[data-field="' + field + '"]').forEach(function (node) {
      node.textContent = value === null || value === undefined || value === "" ? "—" : String(value);
    });
  }

  function updateEngine(engine) {
    const card = root.querySelector('[data-engine="' + CSS.escape(engine.name) + '"]');
    if (!card) return;
    const badge = card.querySelector('[data-field="state"]');
    if (badge) {
      STATE_CLASSES.forEach(function (state) { badge.classList.remove("state-" + state); });
      badge.classList.add("state-" + engine.state);
      badge.textContent = engine.state;
    }
    setText(card, "message", engine.message);
    const detail = card.querySelector('[data-field="detail"]');
    if (detail) {
      detail.hidden = !engine.detail;
      detail.textContent = engine.detail || "";
    }
    setText(card, "desired", engine.desired);
    setText(card, "pid", engine.pid);
    setText(card, "url", engine.url);
    setText(card, "supervisor", engine.supervisor || "not running");
    setText(card, "running_requests", engine.running_requests);
    setText(card, "waiting_requests", engine.waiting_requests);
    setText(card, "kv_cache_usage", engine.kv_cache_usage === null ? null : Math.round(engine.kv_cache_usage * 100) + "%");
    const bar = card.querySelector('[data-field="progress"]');
    if (bar) {
      const busy = engine.state === "loading" || engine.state === "starting";
      bar.hidden = !busy;
      bar.value = engine.progress || 0;
    }
    const failure = card.querySelector('[data-field="failure"]');
    if (failure) {
      failure.hidden = !engine.failure;
      if (engine.failure) {
        setText(card, "diagnosis", engine.failure.diagnosis);
        setText(card, "failure_at", engine.failure.at);
        const list = card.querySelector('[data-field="remedies"]');
        if (list) {
          list.replaceChildren.apply(list, engine.failure.remedies.map(function (remedy) {
            const item = document.createElement("li");
            item.textContent = remedy;
            return item;
          }));
        }
      }
    }
    const log = document.querySelector('[data-field="log_tail"]');
    if (log && root.dataset.metricsUrl && log.textContent !== engine.log_tail) {
      const atBottom = log.scrollTop + log.clientHeight >= log.scrollHeight - 8;
      log.textContent = engine.log_tail;
      if (atBottom) log.scrollTop = log.scrollHeight;
    }
  }

  // The server renders the cards with the same template as the page (templates/inference/_host_cards.html).
  function updateHosts(html) {
    const panel = document.querySelector('[data-live="hosts"]');
    if (!panel || typeof html !== "string") return;
    panel.innerHTML = html;
  }

  async function refreshStatus() {
    try {
      const response = await fetch(statusUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const body = await response.json();
      body.engines.forEach(updateEngine);
      updateHosts(body.host_cards_html);
    } catch (error) {
      // The portal restarting is not worth an alert; the next poll tries again.
    }
  }

  function svg(name, attributes) {
    const node = document.createElementNS("http://www.w3.org/2000/svg", name);
    Object.keys(attributes).forEach(function (key) { node.setAttribute(key, attributes[key]); });
    return node;
  }

  function drawChart(chart, samples, seriesA, seriesB, fixedMax) {
    const width = 300, height = 100, pad = 12;
    const values = samples.map(seriesA).concat(seriesB ? samples.map(seriesB) : []);
    const max = fixedMax || Math.max(1, Math.max.apply(null, values.concat([0])));
    const start = Date.now() - 3600 * 1000;
    function points(series) {
      return samples.map(function (sample) {
        const x = pad + ((Date.parse(sample.at) - start) / (3600 * 1000)) * (width - 2 * pad);
        const y = height - pad - ((series(sample) || 0) / max) * (height - 2 * pad);
        return x.toFixed(1) + "," + y.toFixed(1);
      }).join(" ");
    }
    const children = [svg("polyline", { class: "line-a", points: points(seriesA) })];
    if (seriesB) children.push(svg("polyline", { class: "line-b", points: points(seriesB) }));
    const label = svg("text", { class: "axis", x: 2, y: 9 });
    label.textContent = fixedMax ? "100%" : String(Math.round(max * 10) / 10);
    children.push(label);
    chart.replaceChildren.apply(chart, children);
  }

  async function refreshMetrics() {
    try {
      const response = await fetch(metricsUrl, { credentials: "same-origin", headers: { Accept: "application/json" } });
      if (!response.ok) return;
      const samples = (await response.json()).samples;
      const charts = {};
      document.querySelectorAll("[data-chart]").forEach(function (chart) { charts[chart.dataset.chart] = chart; });
      if (charts.requests) drawChart(charts.requests, samples, function (s) { return s.running; }, function (s) { return s.waiting; });
      if (charts.kv) drawChart(charts.kv, samples, function (s) { return s.kv_cache_usage; }, null, 1);
      if (charts.tokens) drawChart(charts.tokens, samples, function (s) { return s.prompt_tps; }, function (s) { return s.generation_tps; });
      const latest = samples[samples.length - 1];
      const line = document.querySelector('[data-field="latest"]');
      if (line) {
        line.textContent = latest
          ? "Latest: " + latest.running + " running, " + latest.waiting + " waiting, " +
            latest.prompt_tps + " prompt and " + latest.generation_tps + " generated tokens/s"
          : "No samples yet: the supervisor records one every few seconds while the engine is ready.";
      }
    } catch (error) {
      // Try again on the next tick.
    }
  }

  refreshStatus();
  setInterval(refreshStatus, 2000);
  if (metricsUrl) {
    refreshMetrics();
    setInterval(refreshMetrics, 10000);
  }
})();
