// Drag-and-drop or picked files, uploaded one at a time with XHR so each shows its progress.
"use strict";

(() => {
  const box = document.getElementById("upload");
  if (!box) return;
  const maxBytes = Number(box.dataset.maxBytes);
  const url = box.dataset.uploadUrl;
  const zone = document.getElementById("dropzone");
  const input = document.getElementById("file-input");
  const list = document.getElementById("uploads");
  const queue = [];
  let busy = false;

  function item(file) {
    const li = document.createElement("li");
    li.className = "upload-item";
    li.innerHTML = '<span class="fname"></span><progress max="1" value="0"></progress>' +
      '<span class="ustatus small"></span><button type="button" class="small link cancel">cancel</button>';
    li.querySelector(".fname").textContent = file.name;
    list.prepend(li);
    return {
      li,
      bar: li.querySelector("progress"),
      status: li.querySelector(".ustatus"),
      cancel: li.querySelector(".cancel"),
      done(ok, text) {
        li.classList.add(ok ? "ok" : "failed");
        this.status.textContent = text;
        this.cancel.remove();
        if (!ok) this.bar.remove();
      },
    };
  }

  function add(files) {
    for (const file of files) {
      const ui = item(file);
      if (file.size > maxBytes) {
        ui.done(false, `too large: ${MW.filesize(file.size)}; the limit is ${MW.filesize(maxBytes)}`);
        continue;
      }
      if (file.size === 0) {
        ui.done(false, "the file is empty");
        continue;
      }
      ui.status.textContent = "waiting";
      ui.cancel.addEventListener("click", () => { ui.cancelled = true; ui.xhr && ui.xhr.abort(); ui.done(false, "cancelled"); });
      queue.push({file, ui});
    }
    next();
  }

  function next() {
    if (busy) return;
    const job = queue.shift();
    if (!job) return;
    if (job.ui.cancelled) return next();
    busy = true;
    send(job).finally(() => { busy = false; next(); });
  }

  function send({file, ui}) {
    return new Promise(resolve => {
      const xhr = new XMLHttpRequest();
      ui.xhr = xhr;
      const form = new FormData();
      form.append("file", file, file.name);
      const started = performance.now();
      xhr.open("POST", url);
      xhr.setRequestHeader("X-CSRFToken", MW.csrf());
      xhr.setRequestHeader("X-Requested-With", "fetch");
      xhr.setRequestHeader("Accept", "application/json");
      xhr.upload.addEventListener("progress", ev => {
        if (!ev.lengthComputable) return;
        const frac = ev.loaded / ev.total;
        ui.bar.value = frac;
        const secs = (performance.now() - started) / 1000;
        const rate = ev.loaded / Math.max(secs, 0.001);
        const left = rate > 0 ? (ev.total - ev.loaded) / rate : 0;
        ui.status.textContent = frac < 1
          ? `${Math.round(frac * 100)}% · ${MW.filesize(rate)}/s · ${MW.duration(left)} left`
          : "storing…";
      });
      xhr.addEventListener("load", () => {
        let body = null;
        try { body = JSON.parse(xhr.responseText); } catch (_) { body = null; }
        if (xhr.status === 201 && body) {
          ui.bar.value = 1;
          ui.done(true, "uploaded, queued for analysis");
          for (const clip of body.clips) window.MWClips && window.MWClips.add(clip);
        } else if (xhr.status === 413) {
          ui.done(false, (body && body.message) || `too large; the limit is ${MW.filesize(maxBytes)}`);
        } else {
          ui.done(false, (body && body.message) || `failed (${xhr.status})`);
        }
        resolve();
      });
      xhr.addEventListener("error", () => { ui.done(false, "the connection was lost; try again"); resolve(); });
      xhr.addEventListener("abort", () => resolve());
      ui.status.textContent = "0%";
      xhr.send(form);
    });
  }

  input.addEventListener("change", () => { add(Array.from(input.files)); input.value = ""; });
  for (const ev of ["dragenter", "dragover"]) {
    zone.addEventListener(ev, e => { e.preventDefault(); zone.classList.add("over"); });
  }
  for (const ev of ["dragleave", "drop"]) {
    zone.addEventListener(ev, e => { e.preventDefault(); zone.classList.remove("over"); });
  }
  zone.addEventListener("drop", e => add(Array.from(e.dataTransfer.files)));
  // A file dropped next to the zone would otherwise make the browser navigate to it.
  window.addEventListener("dragover", e => e.preventDefault());
  window.addEventListener("drop", e => e.preventDefault());
})();
