// Results page: the compliance timeline (SVG) synced with the player, seeking, "explain this face".
"use strict";

(() => {
  const video = document.getElementById("player");
  const SVG = "http://www.w3.org/2000/svg";
  const CLASSES = ["masked", "incorrect", "unmasked", "unknown"];  // stacked bottom to top

  function seek(t) {
    if (!video || !isFinite(t)) return;
    video.currentTime = Math.max(0, t);
    video.scrollIntoView({block: "nearest", behavior: "smooth"});
  }

  document.addEventListener("click", ev => {
    const b = ev.target.closest(".seek[data-t]");
    if (b) seek(Number(b.dataset.t));
  });

  // ---- timeline -------------------------------------------------------------------------------
  const fig = document.getElementById("timeline");
  if (fig && video) {
    const chart = document.getElementById("chart");
    const tip = document.getElementById("chart-tip");
    const duration = Number(fig.dataset.duration) || 0;
    const cache = {[fig.dataset.unit]: JSON.parse(document.getElementById("bins-data").textContent)};
    let unit = fig.dataset.unit;
    let geo = null;   // geometry of the drawn chart, for the cursor and clicks
    let cursor = null;

    function el(name, attrs, parent) {
      const e = document.createElementNS(SVG, name);
      for (const [k, v] of Object.entries(attrs)) e.setAttribute(k, v);
      if (parent) parent.append(e);
      return e;
    }

    function draw() {
      const bins = cache[unit] || [];
      const span = unit === "second" ? 1 : 60;
      const W = Math.max(320, chart.clientWidth || 800), H = 190;
      const L = 34, R = 40, T = 10, B = 26;
      const total = Math.max(duration, bins.length ? bins[bins.length - 1].t + span : span, 0.001);
      let maxFaces = 1;
      for (const b of bins) maxFaces = Math.max(maxFaces, b.faces || 0);
      const x = t => L + (t / total) * (W - L - R);
      const yF = n => T + (1 - n / maxFaces) * (H - T - B);
      const yR = r => T + (1 - r) * (H - T - B);
      const bw = Math.max(0.5, x(span) - x(0) - (x(span) - x(0) > 3 ? 1 : 0));
      geo = {x, total, span, bins, L, R, W};

      const svg = el("svg", {viewBox: `0 0 ${W} ${H}`, width: W, height: H, class: "chart-svg"});
      // Grid and axes: faces on the left, compliance on the right.
      for (const f of [0, 0.5, 1]) {
        el("line", {x1: L, x2: W - R, y1: yR(f), y2: yR(f), class: "grid"}, svg);
        el("text", {x: W - R + 4, y: yR(f) + 4, class: "axis"}, svg).textContent = Math.round(f * 100) + "%";
      }
      el("text", {x: L - 4, y: yF(maxFaces) + 4, class: "axis end"}, svg).textContent = maxFaces;
      el("text", {x: L - 4, y: yF(0) + 4, class: "axis end"}, svg).textContent = "0";
      // Round tick steps (1 s … 1 h) so that about eight labels fit.
      const steps = [1, 2, 5, 10, 15, 30, 60, 120, 300, 600, 900, 1800, 3600, 7200];
      const step = steps.find(s => total / s <= 8) || steps[steps.length - 1];
      for (let t = 0; t <= total + 1e-6; t += step) {
        el("text", {x: x(t), y: H - 8, class: "axis mid"}, svg).textContent = MW.duration(t);
      }
      // Stacked bars, one path per class (thousands of bins stay cheap to draw).
      const paths = Object.fromEntries(CLASSES.map(c => [c, []]));
      for (const b of bins) {
        let base = 0;
        for (const c of CLASSES) {
          const n = b[c] || 0;
          if (!n) continue;
          const y1 = yF(base + n), y0 = yF(base);
          paths[c].push(`M${x(b.t).toFixed(2)} ${y0.toFixed(2)}h${bw.toFixed(2)}V${y1.toFixed(2)}h${(-bw).toFixed(2)}Z`);
          base += n;
        }
      }
      for (const c of CLASSES) el("path", {d: paths[c].join("") || "M0 0", class: "bar bar-" + c}, svg);
      // Compliance line, broken where nobody was decided.
      let d = "", open = false;
      for (const b of bins) {
        if (b.rate === null || b.rate === undefined) { open = false; continue; }
        const px = x(b.t + span / 2).toFixed(2), py = yR(b.rate).toFixed(2);
        d += (open ? "L" : "M") + px + " " + py;
        open = true;
      }
      el("path", {d: d || "M0 0", class: "rate-line"}, svg);
      // Violation ticks under the axis: bins with someone not masked or masked incorrectly.
      const ticksPath = [];
      for (const b of bins) {
        if ((b.unmasked || 0) + (b.incorrect || 0) > 0) ticksPath.push(`M${x(b.t).toFixed(2)} ${H - B + 2}h${Math.max(bw, 1.5).toFixed(2)}v5h${(-Math.max(bw, 1.5)).toFixed(2)}Z`);
      }
      el("path", {d: ticksPath.join("") || "M0 0", class: "violation-ticks"}, svg);
      cursor = el("line", {x1: L, x2: L, y1: T - 4, y2: H - B, class: "cursor"}, svg);
      el("rect", {x: L, y: 0, width: W - L - R, height: H, class: "hit"}, svg);
      chart.replaceChildren(svg);
      moveCursor();
    }

    function binAt(px) {
      const t = ((px - geo.L) / (geo.W - geo.L - geo.R)) * geo.total;
      const i = Math.floor(t / geo.span);
      return {t, bin: geo.bins.find(b => b.t <= t && t < b.t + geo.span) || geo.bins[i] || null};
    }

    function localX(ev) {
      const svg = chart.querySelector("svg");
      const box = svg.getBoundingClientRect();
      return ((ev.clientX - box.left) / box.width) * geo.W;
    }

    chart.addEventListener("click", ev => {
      if (!geo) return;
      const {t, bin} = binAt(localX(ev));
      seek(bin ? bin.t : t);
    });
    chart.addEventListener("mousemove", ev => {
      if (!geo) return;
      const {bin} = binAt(localX(ev));
      if (!bin) { tip.hidden = true; return; }
      tip.hidden = false;
      tip.textContent = `${MW.duration(bin.t)}: ${bin.faces} face${bin.faces === 1 ? "" : "s"} · ` +
        `${bin.masked} masked · ${bin.unmasked} not · ${bin.incorrect} incorrect · ${bin.unknown} unknown · ` +
        `compliance ${MW.percent(bin.rate)}`;
    });
    chart.addEventListener("mouseleave", () => { tip.hidden = true; });

    function moveCursor() {
      if (!cursor || !geo) return;
      const cx = geo.x(Math.min(video.currentTime || 0, geo.total)).toFixed(2);
      cursor.setAttribute("x1", cx);
      cursor.setAttribute("x2", cx);
      const now = document.getElementById("now");
      if (now) now.textContent = MW.clock(video.currentTime || 0);
    }

    // timeupdate fires ~4 times a second; animation frames keep the cursor smooth while playing.
    video.addEventListener("timeupdate", moveCursor);
    video.addEventListener("seeked", moveCursor);
    const loop = () => { moveCursor(); if (!video.paused && !video.ended) requestAnimationFrame(loop); };
    video.addEventListener("play", () => requestAnimationFrame(loop));

    for (const b of fig.querySelectorAll(".unit-switch button")) {
      b.addEventListener("click", async () => {
        const want = b.dataset.unit;
        if (!cache[want]) {
          try {
            cache[want] = (await MW.api(fig.dataset.binsUrl + "?unit=" + want)).bins;
          } catch (e) { tip.hidden = false; tip.textContent = e.message; return; }
        }
        unit = want;
        for (const o of fig.querySelectorAll(".unit-switch button")) o.classList.toggle("active", o === b);
        draw();
      });
    }
    let resizeTimer = null;
    window.addEventListener("resize", () => { clearTimeout(resizeTimer); resizeTimer = setTimeout(draw, 150); });
    draw();
  }

  // ---- explain this face ----------------------------------------------------------------------
  const panel = document.getElementById("explain");
  if (panel) {
    const status = document.getElementById("explain-status");
    const images = document.getElementById("explain-images");
    const label = document.getElementById("explain-label");
    let current = null;

    function show(track, data) {
      panel.hidden = false;
      document.getElementById("explain-title").textContent = "person #" + track;
      if (data.status === "done") {
        status.textContent = "";
        images.hidden = false;
        document.getElementById("explain-crop").src = data.crop_url || "";
        document.getElementById("explain-gradcam").src = data.gradcam_url || "";
        document.getElementById("explain-occlusion").src = data.occlusion_url || "";
        const names = ["masked", "not masked", "incorrect"];
        const probs = (data.probs || []).map((p, i) => `${names[i] || i}: ${(p * 100).toFixed(1)}%`).join(" · ");
        label.textContent = `Classifier says ${data.label || "?"}` + (probs ? ` (${probs})` : "");
      } else if (data.status === "failed") {
        images.hidden = true;
        label.textContent = "";
        status.textContent = "The explanation failed: " + (data.error || "unknown reason");
      } else {
        images.hidden = true;
        label.textContent = "";
        status.textContent = "Computing Grad-CAM and occlusion maps…";
      }
    }

    async function follow(track, url) {
      const started = Date.now();
      while (current === track) {
        let data;
        try { data = await MW.api(url); } catch (e) { status.textContent = e.message; return; }
        show(track, data);
        if (data.status === "done" || data.status === "failed") return;
        if (Date.now() - started > 120000) {
          status.textContent = "Still waiting: the workers may be busy with other clips. This panel updates when the maps are ready.";
        }
        await new Promise(r => setTimeout(r, Date.now() - started > 120000 ? 5000 : 1500));
      }
    }

    document.addEventListener("click", async ev => {
      const b = ev.target.closest("button.explain");
      if (!b) return;
      const track = b.dataset.track;
      current = track;
      show(track, {status: "pending"});
      panel.scrollIntoView({block: "nearest", behavior: "smooth"});
      try {
        const data = await MW.api(b.dataset.url, {method: "POST"});
        show(track, data);
        if (data.status !== "done") follow(track, b.dataset.url);
      } catch (e) {
        status.textContent = e.message;
      }
    });
    document.getElementById("explain-close").addEventListener("click", () => { panel.hidden = true; current = null; });
  }

  // ---- the anonymised copy: poll while it is being made, then show the page with its download -----
  const anon = document.getElementById("anon-status");
  if (anon) {
    const progress = document.getElementById("anon-progress");
    (async function poll() {
      for (;;) {
        await new Promise(r => setTimeout(r, 2000));
        try {
          const resp = await fetch(anon.dataset.url, {headers: {"Accept": "application/json"}});
          if (!resp.ok) continue;
          const data = await resp.json();
          if (data.status === "done" || data.status === "failed") { window.location.reload(); return; }
          progress.textContent = Math.round((data.progress || 0) * 100) + "%";
        } catch (e) { /* offline for a moment: try again */ }
      }
    })();
  }
})();
