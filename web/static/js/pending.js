// A clip's page while it is queued or running: progress and ETA; reloads when the clip is done.
"use strict";

(() => {
  const box = document.getElementById("pending");
  if (!box || !["queued", "running"].includes(box.dataset.status)) return;
  const state = document.getElementById("state");
  const bar = document.getElementById("progress");
  const text = document.getElementById("progress-text");

  async function poll() {
    let s;
    try {
      s = await MW.api(box.dataset.statusUrl);
    } catch (e) {
      text.textContent = e.message;
      if (e.status === 401 || e.status === 404) return;
      return setTimeout(poll, 5000);
    }
    if (s.status !== box.dataset.status && !(box.dataset.status === "queued" && s.status === "running")) {
      location.reload();
      return;
    }
    box.dataset.status = s.status;
    state.textContent = s.status;
    state.className = "badge state-" + s.status;
    if (bar) bar.value = s.progress || 0;
    text.textContent = s.status === "running"
      ? Math.round((s.progress || 0) * 100) + "%" + (s.eta_s ? `, about ${MW.duration(s.eta_s)} left` : "")
      : "Waiting for a worker…";
    setTimeout(poll, document.hidden ? 5000 : 1000);
  }
  setTimeout(poll, 1000);
})();
