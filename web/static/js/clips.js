// Live clips list: polls each queued or running clip and swaps in its row when it changes.
"use strict";

(() => {
  const table = document.getElementById("clips");
  if (!table) return;
  const tbody = table.tBodies[0];
  const FINAL = ["succeeded", "failed", "cancelled"];
  let timer = null;
  let stopped = false;

  const active = () => Array.from(tbody.querySelectorAll("tr.clip"))
    .filter(tr => !FINAL.includes(tr.dataset.status));

  async function replaceRow(tr) {
    const resp = await fetch(tr.dataset.rowUrl, {credentials: "same-origin"});
    if (!resp.ok) return;
    const tmp = document.createElement("tbody");
    tmp.innerHTML = (await resp.text()).trim();
    const fresh = tmp.querySelector("tr.clip");
    if (fresh) tr.replaceWith(fresh);
  }

  function update(tr, s) {
    const bar = tr.querySelector("progress");
    const eta = tr.querySelector(".eta");
    const badge = tr.querySelector(".badge");
    if (bar) bar.value = s.progress || 0;
    if (eta) {
      eta.textContent = s.status === "running"
        ? Math.round((s.progress || 0) * 100) + "%" + (s.eta_s ? ` · about ${MW.duration(s.eta_s)} left` : "")
        : "waiting for a worker";
    }
    if (badge) { badge.textContent = s.status; badge.className = "badge state-" + s.status; }
  }

  async function poll() {
    timer = null;
    const rows = active();
    await Promise.all(rows.map(async tr => {
      try {
        const s = await MW.api(tr.dataset.statusUrl);
        const was = tr.dataset.status;
        tr.dataset.status = s.status;
        if (FINAL.includes(s.status) || (was === "queued" && s.status === "running")) await replaceRow(tr);
        else update(tr, s);
      } catch (e) {
        if (e.status === 401) { stopped = true; showExpired(e.message); }
        if (e.status === 404) tr.remove();  // deleted elsewhere
      }
    }));
    schedule();
  }

  function schedule() {
    if (stopped || timer || !active().length) return;
    timer = setTimeout(poll, document.hidden ? 10000 : 2000);
  }

  function showExpired(message) {
    const p = document.createElement("p");
    p.className = "flash";
    p.textContent = message + " ";
    const a = document.createElement("a");
    a.href = "/login";
    a.textContent = "Log in";
    p.append(a);
    document.querySelector("main").prepend(p);
  }

  // New uploads appear at the top as soon as they are stored.
  async function add(clip) {
    const resp = await fetch(clip.urls.page + "/row", {credentials: "same-origin"});
    if (!resp.ok) return;
    const tmp = document.createElement("tbody");
    tmp.innerHTML = (await resp.text()).trim();
    const row = tmp.querySelector("tr.clip");
    if (!row) return;
    tbody.prepend(row);
    const empty = tbody.querySelector(".empty-row");
    if (empty) empty.hidden = true;
    schedule();
  }

  window.MWClips = {add};
  document.addEventListener("visibilitychange", () => {
    if (!document.hidden && timer) { clearTimeout(timer); timer = null; poll(); }
  });
  schedule();
})();
