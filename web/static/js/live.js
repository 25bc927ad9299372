// The live page of a camera: polls its state every 3 s and shows the latest analysed segment,
// compliance per minute over the last hour and the people seen lately.
"use strict";

(() => {
  const root = document.getElementById("live");
  if (!root) return;
  const $ = id => document.getElementById(id);
  const pct = r => (r === null || r === undefined) ? "–" : Math.round(r * 100) + " %";
  let shown = null;

  function render(v) {
    const state = $("camera-state");
    state.textContent = v.state;
    state.className = "badge camera-" + v.state;
    $("camera-segments").textContent = v.segments;
    $("camera-error").textContent = v.state === "offline" ? (v.error || "") : "";
    $("recent-people").textContent = v.recent_people;
    if (v.latest && v.latest.job_id !== shown) {
      shown = v.latest.job_id;
      const video = $("latest-video");
      video.src = root.dataset.video.replace("JOB", v.latest.job_id);
      video.hidden = false;
      $("latest-none").hidden = true;
      $("latest-info").textContent = `Segment ${v.latest.seq + 1}: ${v.latest.frames} frames, ` +
        `compliance ${pct(v.latest.compliance_rate)}, results ${v.latest.latency_s} s after it ended.`;
    }
    const rows = v.per_minute.map(m => {
      const tr = document.createElement("tr");
      const t = new Date(m.t * 1000).toISOString().slice(11, 16);
      for (const cell of [t, pct(m.rate), m.masked, m.unmasked, m.incorrect, m.people]) {
        const td = document.createElement("td");
        td.textContent = cell;
        tr.appendChild(td);
      }
      return tr;
    });
    $("per-minute").replaceChildren(...rows);
    const clips = v.clips.map(c => {
      const li = document.createElement("li");
      const a = document.createElement("a");
      a.href = "/clips/" + c.id;
      a.textContent = c.filename;
      li.append(a, ` (${c.status})`);
      return li;
    });
    $("clips").replaceChildren(...clips);
  }

  async function poll() {
    try {
      render(await MW.api(root.dataset.poll));
    } catch (e) {
      $("camera-error").textContent = e.message;
    }
    setTimeout(poll, 3000);
  }
  poll();
})();
