// Live values from the console's event stream (server-sent events): one stream per page, fed
// by the console's single OPC UA subscription. No framework: find the unit's elements by
// data-unit, write each data-field, and on a unit page append the trend point to its charts.
"use strict";
(function () {
  const page = document.querySelector("[data-page]");
  if (!page) return;
  const live = document.querySelectorAll("[data-live]");
  const formats = {
    temperature: (v) => fixed(v, 2), target: (v) => fixed(v, 1), heater: (v) => fixed(v, 0),
    density: (v) => (v === null || v === undefined ? "–" : Number(v).toPrecision(3)),
    volume: (v) => fixed(v, 1), growth: (v) => fixed(v, 4),
    remaining: (v) => hours(v), runtime: (v) => hours(v),
    alarms: (v) => (v && v.length ? v.join(", ") : "none"),
    hold_reason: (v) => v || "",
  };
  function fixed(v, n) { return v === null || v === undefined || v === "" ? "–" : Number(v).toFixed(n); }
  function hours(v) {
    if (!v || v <= 0) return "–";
    const h = Math.floor(v / 3600), m = Math.floor((v % 3600) / 60);
    return h + " h " + String(m).padStart(2, "0") + " min";
  }
  function show(text) { live.forEach((el) => { el.textContent = text; }); }

  const unitPage = page.dataset.page === "unit" ? page.dataset.unit : null;
  const charts = unitPage ? makeCharts(unitPage) : null;
  const logList = document.querySelector("[data-live-log]");
  const last = {};

  function apply(unit, values) {
    const cards = document.querySelectorAll('[data-unit="' + unit + '"]');
    cards.forEach((card) => {
      for (const [key, value] of Object.entries(values)) {
        if (key === "t" || key === "pt" || key === "unit") continue;
        const format = formats[key] || ((x) => (x === null || x === "" ? "–" : String(x)));
        card.querySelectorAll('[data-field="' + key + '"]').forEach((el) => {
          const text = format(value);
          if (el.textContent !== text) el.textContent = text;
        });
        if (key === "state") card.dataset.state = value || "";
        if (key === "alarms") card.dataset.alarms = value && value.length ? "yes" : "no";
      }
      if (values.t) card.dataset.t = String(values.t);
    });
    if (unit === unitPage) {
      logChanges(values);
      if (charts) charts.add(values);
    }
  }

  function logChanges(values) {
    if (!logList) return;
    for (const key of ["state", "step", "hold_reason", "alarms"]) {
      if (!(key in values)) continue;
      const text = JSON.stringify(values[key]);
      if (key in last && last[key] !== text && values[key] !== "" && values[key] !== null) {
        const li = document.createElement("li");
        li.textContent = new Date().toLocaleTimeString() + " " + key + ": " +
          (formats[key] ? formats[key](values[key]) : values[key]);
        logList.prepend(li);
        while (logList.children.length > 100) logList.lastChild.remove();
      }
      last[key] = text;
    }
  }

  function makeCharts(unit) {
    if (typeof uPlot === "undefined") return null;
    const series = { temperature: 1, target: 2, heater: 3, density: 4, volume: 5 };
    const data = [[], [], [], [], [], []];
    const current = {};
    const width = () => Math.max(320, Math.min(1100, document.body.clientWidth - 48));
    const chart = (id, title, lines, axes) => {
      const el = document.getElementById(id);
      return new uPlot({ title: title, width: width(), height: 220, series: [{}].concat(lines),
        axes: [{}].concat(axes), scales: { x: { time: true } } }, [[]].concat(lines.map(() => [])), el);
    };
    const temp = chart("chart-temperature", "Temperature (°C) and heater (%)", [
      { label: "temperature °C", stroke: "#c0392b", scale: "C" },
      { label: "target °C", stroke: "#7f8c8d", dash: [6, 4], scale: "C" },
      { label: "heater %", stroke: "#e67e22", scale: "%" }],
      [{ scale: "C", label: "°C" }, { scale: "%", side: 1, label: "%", grid: { show: false } }]);
    const dens = chart("chart-density", "Density (cells/mL)", [
      { label: "density", stroke: "#2980b9" }],
      [{ size: 70, values: (u, ticks) => ticks.map((v) => (v == null ? "" : v.toExponential(2))) }]);
    const vol = chart("chart-volume", "Volume (mL)", [
      { label: "volume mL", stroke: "#27ae60" }], [{}]);
    let pending = false;
    function redraw() {
      pending = false;
      temp.setData([data[0], data[1], data[2], data[3]]);
      dens.setData([data[0], data[4]]);
      vol.setData([data[0], data[5]]);
    }
    function schedule() { if (!pending) { pending = true; requestAnimationFrame(redraw); } }
    fetch("/units/" + unit + "/history.json", { credentials: "same-origin" })
      .then((r) => (r.ok ? r.json() : null)).then((h) => {
        if (!h || !h.data[0].length) return;
        // The run so far from the daemon's history, then the live points newer than it.
        const newest = h.data[0][h.data[0].length - 1];
        const keep = data[0].findIndex((x) => x > newest);
        for (let i = 0; i < 6; i++) data[i] = h.data[i].concat(keep < 0 ? [] : data[i].slice(keep));
        schedule();
      }).catch(() => {});
    return {
      add(values) {
        let trend = false;
        for (const key of Object.keys(series)) {
          if (key in values) { current[key] = values[key]; trend = true; }
        }
        if (!trend) return;
        // x is the daemon clock's time of the value (SourceTimestamp), as in the history.
        const x = values.pt ? values.pt / 1000 : Date.now() / 1000;
        const end = data[0].length - 1;
        if (end >= 0 && x < data[0][end]) return;
        if (end >= 0 && x === data[0][end]) {  // more of the same refresh: complete its point
          for (const [key, i] of Object.entries(series)) data[i][end] = current[key] ?? null;
        } else {
          data[0].push(x);
          for (const [key, i] of Object.entries(series)) data[i].push(current[key] ?? null);
        }
        if (data[0].length > 40000) data.forEach((col) => col.splice(0, 5000));
        schedule();
      },
    };
  }

  function connect() {
    const source = new EventSource("/events");
    source.onopen = () => show("live");
    source.onmessage = (event) => {
      const message = JSON.parse(event.data);
      for (const [unit, values] of Object.entries(message.units)) apply(unit, values);
    };
    source.addEventListener("locked", () => {
      source.close();
      window.location.assign("/signin?next=" + encodeURIComponent(window.location.pathname));
    });
    source.onerror = () => show("reconnecting…");
  }
  connect();
})();
