// The packets chart: PacketCountChef's cumulative counts as rates per layer.

import { $, DASH, MAX_KEYS, isObj, num, show, fmtTime, fmtMs, fmtBytes, fmtRate, fmtCount, fmtDuration, clip, cell, row, fillBody, touch, pushCapped, timeCell } from "./util.js";

const CHART_SAMPLES = 240;      // PacketCountChef samples kept for the chart
const MAX_NAMES = 300;
const MAX_LAYERS = 40;          // PacketCountChef layers charted

export function createChart(model, dirty) {
  // PacketCountChef counts are cumulative per kitchen: rates are differences between a
  // kitchen's consecutive dumplings over the time between them. Which clock: a live
  // kitchen's interval dumplings are made on the wall clock (creation_time; its
  // capture_time stands still while the wire is quiet), a replayed file is read far
  // faster than real time and only its capture clock is right. A kitchen whose capture
  // time lags its wall clock by more than a minute at its first count is a replay; so is
  // one whose capture clock runs more than four times faster than its wall clock between
  // two counts (a file recorded a moment ago, read at full speed).
  function onPacketCounts(kitchen, counts, meta) {
    const pk = model.packets;
    let prev = pk.last.get(kitchen);
    const created = num(meta.creation_time), captured = num(meta.capture_time);
    let replay = prev ? prev.replay
      : captured !== null && created !== null && Math.abs(created - captured) > 60;
    if (prev && !replay && captured !== null && created !== null && prev.captured !== null &&
        prev.created !== null) {
      const dCap = captured - prev.captured, dCre = created - prev.created;
      if (dCap > 0.2 && dCre < dCap / 4) {
        // It was a replay all along: its samples so far were on the wrong clock.
        replay = true;
        pk.samples = pk.samples.filter((s) => s.kitchen !== kitchen);
        prev = { ...prev, t: prev.captured, replay: true };
      }
    }
    const t = replay ? captured : (created ?? captured);
    const clean = {};
    for (const [k, v] of Object.entries(counts)) if (num(v) !== null) clean[k] = v;
    touch(pk.last, kitchen, { t, counts: clean, replay, created, captured }, MAX_NAMES);
    touch(pk.latest, kitchen, clean, MAX_NAMES);
    for (const k of Object.keys(clean)) {
      if (pk.colors.has(k)) continue;
      if (pk.colors.size >= MAX_LAYERS) delete clean[k];   // not charted or totalled
      else pk.colors.set(k, pk.colors.size);
    }
    if (prev && t !== null && prev.t !== null && t > prev.t) {
      const dt = t - prev.t;
      const rates = {};
      let reset = false;
      for (const [k, v] of Object.entries(clean)) if (v < (prev.counts[k] || 0)) reset = true;
      if (!reset) {
        for (const [k, v] of Object.entries(clean)) rates[k] = (v - (prev.counts[k] || 0)) / dt;
        pk.samples.push({ t, kitchen, rates, replay });
        if (pk.samples.length > CHART_SAMPLES) pk.samples.shift();
      }
    }
    const totals = new Map();
    for (const c of pk.latest.values()) {
      for (const [k, v] of Object.entries(c)) totals.set(k, (totals.get(k) || 0) + v);
    }
    pk.totals = totals;
    dirty.add("packets");
  }

  const PALETTE = ["#4f9dff", "#ffb347", "#5fd38d", "#ff6b81", "#b98cff", "#4dd8d0", "#f5e663",
    "#ff8f5e", "#9aa7b8", "#e67ecb"];
  const colorOf = (layer) => PALETTE[(model.packets.colors.get(layer) ?? 0) % PALETTE.length];

  // Which samples share one time axis. Live kitchens are on the wall clock; a replayed
  // file is on its own capture clock, possibly years away, so mixing them would squash
  // both into a spike. Live kitchens are charted together when there are any; otherwise
  // the replay with the most samples, on its capture clock. The note says which.
  function chartKitchens() {
    const byKitchen = new Map();
    for (const s of model.packets.samples) {
      const k = byKitchen.get(s.kitchen) || { kitchen: s.kitchen, n: 0, replay: !!s.replay };
      k.n++;
      byKitchen.set(s.kitchen, k);
    }
    const live = [...byKitchen.values()].filter((k) => !k.replay);
    if (live.length) return { clock: "live", kitchens: new Set(live.map((k) => k.kitchen)) };
    const best = [...byKitchen.values()].sort((a, b) => b.n - a.n)[0];
    return best ? { clock: "replay", kitchens: new Set([best.kitchen]) } : { clock: "none", kitchens: new Set() };
  }

  // Samples of the charted kitchens, summed per quarter second of their clock.
  function chartSeries() {
    const { kitchens } = chartKitchens();
    const buckets = new Map();
    for (const s of model.packets.samples) {
      if (!kitchens.has(s.kitchen)) continue;
      const b = Math.round(s.t * 4) / 4;  // quarter seconds: keeps fast poke intervals apart
      const acc = buckets.get(b) || {};
      for (const [k, v] of Object.entries(s.rates)) acc[k] = (acc[k] || 0) + v;
      buckets.set(b, acc);
    }
    return [...buckets.entries()].sort((a, b) => a[0] - b[0]);
  }

  function niceMax(v) {
    if (v <= 0) return 1;
    const e = Math.pow(10, Math.floor(Math.log10(v)));
    for (const m of [1, 2, 2.5, 5, 10]) if (v <= m * e) return m * e;
    return 10 * e;
  }

  const hiddenLayers = new Set();  // layers switched off in the legend

  function renderPackets() {
    const canvas = $("packets-chart");
    const pk = model.packets;
    const series = chartSeries();
    canvas.dataset.samples = String(series.length);
    const latest = series.length ? series[series.length - 1][1] : {};
    const layers = [...pk.colors.keys()];

    // Legend: colour, layer, current rate, total since each kitchen started.
    const items = layers.map((layer) => {
      const li = document.createElement("li");
      li.dataset.layer = layer;
      li.dataset.total = String(pk.totals.get(layer) || 0);
      li.dataset.rate = latest[layer] === undefined ? "" : String(latest[layer]);
      const sw = document.createElement("span");
      sw.className = "swatch";
      sw.style.background = colorOf(layer);
      const name = document.createElement("b");
      name.textContent = layer;
      const vals = document.createElement("span");
      vals.className = "vals";
      vals.textContent = `${latest[layer] === undefined ? DASH : fmtRate(latest[layer])}/s · ${fmtCount(pk.totals.get(layer) || 0)} total`;
      li.append(sw, name, vals);
      li.classList.toggle("off", hiddenLayers.has(layer));
      li.title = "click to show or hide this layer in the chart";
      return li;
    });
    $("packets-legend").replaceChildren(...items);
    const replays = [...pk.last.entries()].filter(([, k]) => k.replay).map(([name]) => name);
    const shown = chartKitchens();
    canvas.dataset.clock = shown.clock;
    const parts = [];
    if (pk.latest.size) parts.push(`${pk.latest.size} kitchen${pk.latest.size > 1 ? "s" : ""}`);
    if (shown.clock === "live") parts.push("live kitchens on the wall clock");
    if (shown.clock === "replay") parts.push(`replay ${[...shown.kitchens][0]} on its capture clock`);
    const offAxis = replays.filter((k) => !shown.kitchens.has(k));
    if (offAxis.length) parts.push(`not charted (replays on their own clock, in the totals): ${offAxis.slice(0, 5).join(", ")}`);
    $("packets-note").textContent = parts.join(" · ");
    drawChart(canvas, series, layers);
  }

  function drawChart(canvas, series, layers) {
    const dpr = window.devicePixelRatio || 1;
    const w = canvas.clientWidth || 600, h = canvas.clientHeight || 220;
    if (canvas.width !== Math.round(w * dpr) || canvas.height !== Math.round(h * dpr)) {
      canvas.width = Math.round(w * dpr);
      canvas.height = Math.round(h * dpr);
    }
    const g = canvas.getContext("2d");
    g.setTransform(dpr, 0, 0, dpr, 0, 0);
    g.clearRect(0, 0, w, h);
    const css = getComputedStyle(document.body);
    const grid = css.getPropertyValue("--grid").trim() || "#333";
    const muted = css.getPropertyValue("--muted").trim() || "#888";
    const pad = { l: 52, r: 12, t: 10, b: 24 };
    const pw = w - pad.l - pad.r, ph = h - pad.t - pad.b;
    g.font = "11px system-ui, sans-serif";
    g.fillStyle = muted;
    if (series.length < 1) {
      g.textAlign = "center";
      g.fillText("waiting for two PacketCountChef dumplings from one kitchen…", w / 2, h / 2);
      return;
    }
    const t1 = series[series.length - 1][0];
    const t0 = Math.min(series[0][0], t1 - 10);
    let vmax = 0;
    for (const [, r] of series) for (const v of Object.values(r)) vmax = Math.max(vmax, v);
    vmax = niceMax(vmax * 1.1);
    const x = (t) => pad.l + ((t - t0) / (t1 - t0 || 1)) * pw;
    const y = (v) => pad.t + ph - (v / vmax) * ph;

    g.strokeStyle = grid;
    g.lineWidth = 1;
    g.textAlign = "right";
    g.textBaseline = "middle";
    for (let i = 0; i <= 4; i++) {
      const v = (vmax * i) / 4, yy = Math.round(y(v)) + 0.5;
      g.beginPath(); g.moveTo(pad.l, yy); g.lineTo(w - pad.r, yy); g.stroke();
      g.fillText(fmtRate(v), pad.l - 6, yy);
    }
    g.textAlign = "center";
    g.textBaseline = "top";
    for (let i = 0; i <= 4; i++) {
      const t = t0 + ((t1 - t0) * i) / 4;
      g.textAlign = i === 0 ? "left" : i === 4 ? "right" : "center";  // stay inside the canvas
      g.fillText(fmtTime(t).replace(/\.\d+$/, ""), x(t), h - pad.b + 6);
    }
    g.lineWidth = 2;
    g.lineJoin = "round";
    // Only layers some sample has (a replayed kitchen's single count has no rate), minus
    // the ones hidden from the legend. The first (usually Ethernet: every packet) is drawn
    // as a faint area, so lines of layers with the same counts do not hide it.
    const shown = layers.filter((l) => !hiddenLayers.has(l) && series.some(([, r]) => l in r));
    if (shown.length && series.length > 1) {
      const base = shown[0];
      g.beginPath();
      g.moveTo(x(series[0][0]), y(0));
      for (const [t, r] of series) g.lineTo(x(t), y(r[base] || 0));
      g.lineTo(x(series[series.length - 1][0]), y(0));
      g.closePath();
      g.globalAlpha = 0.18;
      g.fillStyle = colorOf(base);
      g.fill();
      g.globalAlpha = 1;
    }
    // Widest first: layers with equal rates (IP and UDP on a UDP-only wire) show as
    // nested stripes instead of one line hiding the others.
    shown.forEach((layer, i) => {
      g.lineWidth = 2 + (shown.length - 1 - i) * 1.5;
      g.strokeStyle = colorOf(layer);
      g.fillStyle = colorOf(layer);
      g.beginPath();
      let started = false;
      for (const [t, r] of series) {
        const v = r[layer] || 0;
        if (!started) { g.moveTo(x(t), y(v)); started = true; } else g.lineTo(x(t), y(v));
      }
      g.stroke();
      if (series.length === 1) {  // one sample: a dot, since a line needs two
        g.beginPath(); g.arc(x(series[0][0]), y(series[0][1][layer] || 0), 3, 0, 2 * Math.PI); g.fill();
      }
    });
  }

  return { chartSeries, renderPackets, hiddenLayers, onPacketCounts };
}
