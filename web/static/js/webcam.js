// The webcam check: getUserMedia + MediaRecorder. Each chunk is its own recording (a recorder stopped
// and started again every CHUNK_MS), so every chunk is a whole file a worker can decode; it is posted as
// one job and its result polled and shown.
"use strict";

(() => {
  const root = document.getElementById("webcam");
  if (!root) return;
  const $ = id => document.getElementById(id);
  const CHUNK_MS = 3000;
  const session = Array.from(crypto.getRandomValues(new Uint8Array(12)), b => b.toString(16).padStart(2, "0")).join("");
  let stream = null, running = false, seq = 0;
  const status = text => { $("webcam-status").textContent = text; };
  const pct = r => (r === null || r === undefined) ? "–" : Math.round(r * 100) + " %";
  const mime = ["video/webm;codecs=vp8", "video/webm", "video/mp4"].find(t => MediaRecorder.isTypeSupported(t)) || "";

  function row(n) {
    const tr = document.createElement("tr");
    tr.id = "chunk-" + n;
    tr.className = "chunk";
    for (let i = 0; i < 6; i++) tr.appendChild(document.createElement("td"));
    tr.cells[0].textContent = n + 1;
    tr.cells[1].textContent = "sending";
    $("webcam-chunks").prepend(tr);
    return tr;
  }

  async function follow(tr, id) {
    for (;;) {
      const c = await MW.api(`${root.dataset.chunks}/${id}`);
      tr.cells[1].textContent = c.status;
      tr.dataset.status = c.status;
      if (c.status === "succeeded") {
        tr.cells[2].textContent = c.frames;
        tr.cells[3].textContent = c.people ? c.people.total : 0;
        tr.cells[4].textContent = pct(c.compliance_rate);
        tr.cells[5].textContent = c.result_s + " s";
        const video = $("webcam-result");
        video.src = `${root.dataset.chunks}/${id}/video`;
        video.hidden = false;
        return;
      }
      if (c.status === "failed" || c.status === "cancelled") {
        tr.cells[5].textContent = c.error || "";
        return;
      }
      await new Promise(r => setTimeout(r, 500));
    }
  }

  const uploads = new Set();  // chunks being posted (the clip is asked for once they are all stored)
  let active = null;

  function send(blob, n) {
    const tr = row(n);
    const type = (blob.type || mime || "video/webm").split(";")[0];
    const upload = MW.api(`${root.dataset.chunks}?session=${session}&seq=${n}`,
                          {method: "POST", body: blob, headers: {"Content-Type": type}});
    uploads.add(upload);
    upload.then(c => follow(tr, c.id)).catch(e => {
      tr.cells[1].textContent = "failed";
      tr.cells[5].textContent = e.message;
    }).finally(() => uploads.delete(upload));
  }

  // Stopped: once every chunk is stored, the session's chunks are joined into one clip of the user.
  async function finish() {
    await Promise.allSettled([...uploads]);
    if (!seq) return;
    try {
      const r = await MW.api(`${root.dataset.sessions}/${session}/clip`, {method: "POST"});
      status("Stopped. " + r.message);
      $("webcam-status").dataset.clip = "asked";
    } catch (e) {
      status("Stopped; the chunks could not be joined into a clip: " + e.message);
    }
  }

  function recordOne() {
    const parts = [];
    const rec = new MediaRecorder(stream, mime ? {mimeType: mime} : {});
    const n = seq++;
    active = rec;
    rec.ondataavailable = e => { if (e.data && e.data.size) parts.push(e.data); };
    rec.onstop = () => {
      if (running) recordOne();  // the next chunk starts at once
      if (parts.length) send(new Blob(parts, {type: rec.mimeType || mime}), n);
      if (!running) finish();
    };
    rec.start();
    setTimeout(() => rec.state !== "inactive" && rec.stop(), CHUNK_MS);
  }

  $("webcam-start").addEventListener("click", async () => {
    try {
      stream = await navigator.mediaDevices.getUserMedia({video: true, audio: false});
    } catch (e) {
      status("The camera cannot be used: " + e.message);
      return;
    }
    $("webcam-preview").srcObject = stream;
    running = true;
    $("webcam-start").disabled = true;
    $("webcam-stop").disabled = false;
    status("Recording: a chunk every " + CHUNK_MS / 1000 + " s.");
    recordOne();
  });

  $("webcam-stop").addEventListener("click", () => {
    running = false;
    if (active && active.state !== "inactive") active.stop();  // its last chunk is sent, then finish()
    if (stream) stream.getTracks().forEach(t => t.stop());
    $("webcam-start").disabled = false;
    $("webcam-stop").disabled = true;
    status("Stopped: storing the last chunk.");
  });
})();
