// Helpers shared by the pages: the CSRF token, JSON requests with readable errors, formatting.
"use strict";

window.MW = (() => {
  const csrf = () => document.querySelector('meta[name="csrf-token"]').content;

  // fetch() for our JSON endpoints: sends the session cookie and, for writes, the CSRF header;
  // throws an Error carrying the server's sentence and status when the answer is not 2xx.
  async function api(url, opts = {}) {
    const method = (opts.method || "GET").toUpperCase();
    const headers = {Accept: "application/json", "X-Requested-With": "fetch", ...(opts.headers || {})};
    if (method !== "GET" && method !== "HEAD") headers["X-CSRFToken"] = csrf();
    let resp;
    try {
      resp = await fetch(url, {...opts, method, headers, credentials: "same-origin"});
    } catch (err) {
      const e = new Error("The server cannot be reached; check the connection.");
      e.status = 0;
      throw e;
    }
    let body = null;
    try { body = await resp.json(); } catch (_) { body = null; }
    if (!resp.ok) {
      const e = new Error((body && body.message) || `The server answered ${resp.status}.`);
      e.status = resp.status;
      e.body = body;
      throw e;
    }
    return body;
  }

  function duration(s) {
    if (s === null || s === undefined || isNaN(s)) return "";
    s = Math.max(0, Math.floor(s));
    const h = Math.floor(s / 3600), m = Math.floor((s % 3600) / 60), sec = s % 60;
    const mm = h ? String(m).padStart(2, "0") : String(m);
    return (h ? h + ":" : "") + mm + ":" + String(sec).padStart(2, "0");
  }

  const clock = s => duration(s) + "." + Math.floor(((s || 0) % 1) * 10);
  const percent = r => (r === null || r === undefined) ? "–" : Math.round(r * 100) + "%";

  function filesize(n) {
    const units = ["B", "KB", "MB", "GB"];
    let i = 0;
    while (n >= 1024 && i < units.length - 1) { n /= 1024; i++; }
    return i ? n.toFixed(1) + " " + units[i] : n + " B";
  }

  // Forms that destroy something ask first (data-confirm holds the question).
  document.addEventListener("submit", ev => {
    const q = ev.target.dataset && ev.target.dataset.confirm;
    if (q && !window.confirm(q)) ev.preventDefault();
  });

  return {csrf, api, duration, clock, percent, filesize};
})();
