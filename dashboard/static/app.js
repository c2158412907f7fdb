// The dashboard's only script besides the vendored libraries. No inline script anywhere: the
// Content-Security-Policy allows 'self' only, and Alpine runs its CSP build (no eval).
"use strict";

(function () {
  const csrf = () => document.querySelector('meta[name="csrf-token"]')?.content || "";
  const dark = () => {
    const t = document.documentElement.dataset.theme;
    return t ? t === "dark" : matchMedia("(prefers-color-scheme: dark)").matches;
  };

  // htmx: every request carries the session's CSRF token.
  document.addEventListener("htmx:configRequest", (e) => { e.detail.headers["X-CSRF-Token"] = csrf(); });
  // An error answer (4xx/5xx) still shows its message in the target, instead of nothing.
  document.addEventListener("htmx:beforeSwap", (e) => {
    if (e.detail.xhr.status >= 400) { e.detail.shouldSwap = true; e.detail.isError = false; }
  });

  // Copy buttons: data-copy names the element whose text is copied.
  document.addEventListener("click", async (e) => {
    const button = e.target.closest("[data-copy]");
    if (!button) return;
    const source = document.getElementById(button.dataset.copy);
    if (!source) return;
    const text = source.textContent;
    try {
      await navigator.clipboard.writeText(text);
    } catch (err) { // not a secure context (plain http on another host): select it instead
      const range = document.createRange(); range.selectNodeContents(source);
      const sel = getSelection(); sel.removeAllRanges(); sel.addRange(range);
      document.execCommand("copy");
    }
    const label = button.textContent;
    button.textContent = "Copied"; setTimeout(() => { button.textContent = label; }, 1200);
  });

  // Overview: auto-refresh of the live block and the charts; the off switch sticks.
  function autoRefresh() {
    const box = document.querySelector("[data-refresh]");
    if (!box) return;
    const seconds = parseFloat(box.dataset.refresh);
    const toggle = document.getElementById("auto-refresh");
    const refresh = () => {
      const live = document.getElementById("overview-live");
      if (live && window.htmx) htmx.trigger(live, "refresh");
      charts.load();
    };
    document.getElementById("refresh-now")?.addEventListener("click", refresh);
    if (!(seconds > 0) || !toggle) return;
    toggle.checked = localStorage.getItem("gw-refresh") !== "off";
    toggle.addEventListener("change", () => localStorage.setItem("gw-refresh", toggle.checked ? "on" : "off"));
    setInterval(() => { if (toggle.checked && !document.hidden) refresh(); }, seconds * 1000);
  }

  // Charts: three uPlot charts (rate, errors, p95), one series per provider.
  const PALETTE = ["#4f7cff", "#e8743b", "#19a979", "#ed4a7b", "#945ecf", "#13a4b4", "#c8a400", "#6c8893"];
  const charts = {
    window: "hour", plots: [],
    load() {
      const box = document.getElementById("charts");
      if (!box || !window.uPlot) return;
      fetch(`${box.dataset.series}?window=${this.window}`, { credentials: "same-origin", headers: { Accept: "application/json" } })
        .then((r) => (r.ok ? r.json() : null)).then((data) => { if (data) this.draw(box, data); });
    },
    draw(box, data) {
      const names = Object.keys(data.providers);
      const style = getComputedStyle(document.documentElement);
      const axis = { stroke: style.getPropertyValue("--muted").trim(), grid: { stroke: style.getPropertyValue("--line").trim(), width: 1 }, ticks: { show: false } };
      box.querySelectorAll(".chart").forEach((el, i) => {
        const metric = el.dataset.metric;
        const rows = [data.t, ...names.map((n) => data.providers[n][metric])];
        const key = `${this.window}|${names.join(",")}|${dark()}`;
        const old = this.plots[i];
        if (old && old.key === key) { old.plot.setData(rows); return; }
        if (old) old.plot.destroy();
        el.textContent = "";
        const opts = {
          width: el.clientWidth || 300, height: 180,
          series: [{}, ...names.map((n, j) => ({
            label: n, stroke: PALETTE[j % PALETTE.length], width: 1.5, spanGaps: false,
            points: { show: true, size: 4, fill: PALETTE[j % PALETTE.length] }, // one point still shows
          }))],
          axes: [axis, { ...axis, size: 44 }],
          scales: { y: { range: (u, min, max) => [0, Math.max(1, max)] } },
          legend: { live: false },
          cursor: { drag: { x: false, y: false } },
        };
        this.plots[i] = { key, plot: new uPlot(opts, rows, el), el };
      });
    },
    resize() { this.plots.forEach((p) => p && p.plot.setSize({ width: p.el.clientWidth, height: 180 })); },
    init() {
      const box = document.getElementById("charts");
      if (!box) return;
      box.querySelectorAll("[data-window]").forEach((b) => b.addEventListener("click", () => {
        this.window = b.dataset.window;
        box.querySelectorAll("[data-window]").forEach((o) => o.setAttribute("aria-pressed", String(o === b)));
        this.load();
      }));
      new ResizeObserver(() => this.resize()).observe(box);
      this.load();
    },
  };
  window.gwCharts = charts;

  // Alpine components (the CSP build needs them registered, not written inline).
  document.addEventListener("alpine:init", () => {
    Alpine.data("theme", () => ({
      isDark: dark(),
      get pressed() { return String(this.isDark); },
      get icon() { return this.isDark ? "☀" : "☾"; },
      get title() { return this.isDark ? "Switch to light mode" : "Switch to dark mode"; },
      toggle() {
        this.isDark = !this.isDark;
        const theme = this.isDark ? "dark" : "light";
        document.documentElement.dataset.theme = theme;
        try { localStorage.setItem("gw-theme", theme); } catch (e) { /* not kept */ }
        charts.plots.forEach((p) => p && (p.key = "")); charts.load();
      },
    }));
    Alpine.data("tabs", () => ({
      pretty: true,
      get raw() { return !this.pretty; },
      get prettyPressed() { return String(this.pretty); },
      get rawPressed() { return String(!this.pretty); },
      showPretty() { this.pretty = true; },
      showRaw() { this.pretty = false; },
    }));
    Alpine.data("live", liveTail);
  });

  // Live tail: EventSource with pause/resume; a resume asks for what came after the last shown.
  function liveTail() {
    return {
      source: null, last: null, paused: false, streamUrl: "", eventsUrl: "", state: "connecting", stateClass: "wait",
      get running() { return !this.paused; },
      init() { // $el is the element of the expression being run: read the URLs while it is the root
        this.streamUrl = this.$el.dataset.stream; this.eventsUrl = this.$el.dataset.events;
        this.connect();
      },
      connect() {
        const url = new URL(this.streamUrl, location.href);
        if (this.last) url.searchParams.set("last_event_id", this.last);
        const es = new EventSource(url);
        this.source = es;
        es.onopen = () => { this.state = "live"; this.stateClass = "good"; };
        es.onerror = () => { if (!this.paused) { this.state = "reconnecting"; this.stateClass = "wait"; } };
        // Every numbered frame moves the cursor a resume starts from (backlog frames carry none).
        const seen = (e) => { if (e.lastEventId) this.last = e.lastEventId; };
        es.addEventListener("webhook", (e) => { seen(e); this.add(JSON.parse(e.data), false); });
        es.addEventListener("rejected", (e) => { seen(e); this.add(JSON.parse(e.data), true); });
        es.addEventListener("cursor", seen);
        es.addEventListener("missed", (e) => this.note(JSON.parse(e.data).message));
        es.addEventListener("expired", () => { es.close(); this.state = "session expired"; this.stateClass = "bad"; });
      },
      pause() { this.paused = true; this.source?.close(); this.state = "paused"; this.stateClass = "wait"; },
      resume() { this.paused = false; this.state = "connecting"; this.connect(); },
      clear() { document.getElementById("live-rows").textContent = ""; },
      note(text) { // a gap the tail cannot fill: said in place, where the rows are missing
        const body = document.getElementById("live-rows");
        const tr = document.createElement("tr"), td = document.createElement("td");
        td.colSpan = 5; td.className = "muted small"; td.textContent = text; tr.className = "gap";
        tr.append(td); body.prepend(tr);
      },
      add(ev, rejected) {
        const body = document.getElementById("live-rows");
        const key = rejected ? "" : `${ev.provider}/${ev.event_id}`;
        // An event answered while the backlog was read arrives twice (stored, and from the feed).
        if (key && [...body.rows].some((r) => r.dataset.key === key)) return;
        document.getElementById("live-empty")?.remove();
        const tr = document.createElement("tr");
        const cell = (text, cls) => { const td = document.createElement("td"); td.textContent = text; if (cls) td.className = cls; tr.append(td); return td; };
        const perMinute = rejected && ev.minute; // a folded count from the store, not one request
        let time = String(perMinute ? ev.minute : ev.received_at || "").replace("T", " ").replace(/\.\d+/, "").replace("+00:00", "Z");
        if (perMinute) time = time.replace(/:00Z?$/, "") + " (minute)";
        cell(time, "nowrap small");
        cell(ev.provider);
        const folded = ["duplicate", "handshake"].includes(ev.code) ? ev.code : "rejected";
        cell(perMinute ? `${ev.count} × ${folded}` : ev.event_type || (rejected ? folded : "—"), "mono small");
        const id = cell("", "mono small clip");
        if (perMinute) id.textContent = ev.source;
        else if (rejected) { id.textContent = ev.event_id || ev.reason || ""; id.title = ev.reason || ""; }
        else { const a = document.createElement("a"); a.href = this.eventsUrl + ev.path; a.textContent = ev.event_id; id.append(a); }
        const badge = document.createElement("span");
        const outcome = rejected ? ev.code : ev.outcome || ev.status;
        const kind = rejected ? (folded === "rejected" ? "bad" : "wait") : { delivered: "good", forwarded: "good", dead: "bad" }[outcome] || "wait";
        badge.className = "badge " + kind;
        badge.textContent = ev.http_status ? `${outcome} · ${ev.http_status}` : outcome;
        cell("").append(badge);
        tr.dataset.eventId = rejected ? "" : ev.event_id;
        tr.dataset.key = key;
        body.prepend(tr);
        while (body.rows.length > 200) body.lastElementChild.remove();
      },
    };
  }

  document.addEventListener("DOMContentLoaded", () => { autoRefresh(); charts.init(); });
})();
