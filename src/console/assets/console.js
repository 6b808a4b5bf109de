// lwota console: the little JavaScript the pages need, embedded in the
// binary and served from /console/console.js (the CSP allows no inline
// script). Pages work without it except the upload progress and the live
// refresh of a campaign.
"use strict";

function csrfToken() {
  const meta = document.querySelector('meta[name="csrf-token"]');
  return meta ? meta.content : "";
}

// Buttons with data-confirm ask first (delete, cancel).
document.addEventListener("submit", (event) => {
  const button = event.submitter;
  const question = (button && button.dataset.confirm) || event.target.dataset.confirm;
  if (question && !window.confirm(question)) {
    event.preventDefault();
  }
});

// Firmware upload: the file goes to the console's upload route as the raw
// request body (like the API's upload), with the session's CSRF token in a
// header; XHR because fetch has no upload progress.
function setupUpload() {
  const form = document.getElementById("upload-form");
  if (!form) return;
  form.addEventListener("submit", (event) => {
    event.preventDefault();
    const file = form.querySelector('input[type=file]').files[0];
    const status = document.getElementById("upload-status");
    const bar = document.getElementById("upload-progress");
    if (!file) {
      status.textContent = "Choose an image file first.";
      status.className = "error";
      return;
    }
    const params = new URLSearchParams();
    for (const name of ["product", "version", "name", "kind", "signature", "description"]) {
      const input = form.elements[name];
      if (input && input.value !== "") params.set(name, input.value);
    }
    params.set("filename", file.name);
    const xhr = new XMLHttpRequest();
    xhr.open("POST", "/console/upload?" + params.toString());
    xhr.setRequestHeader("X-CSRF-Token", csrfToken());
    xhr.setRequestHeader("Content-Type", "application/octet-stream");
    document.getElementById("upload-meter").hidden = false;
    bar.value = 0;
    bar.max = file.size || 1;
    status.className = "";
    status.textContent = "Uploading…";
    xhr.upload.onprogress = (e) => {
      if (e.lengthComputable) {
        bar.max = e.total;
        bar.value = e.loaded;
        status.textContent = "Uploading… " + Math.floor((100 * e.loaded) / e.total) + "%";
      }
    };
    xhr.onload = () => {
      let body = null;
      try { body = JSON.parse(xhr.responseText); } catch (_) { /* not JSON */ }
      if (xhr.status === 201 && body) {
        bar.value = bar.max;
        status.className = "notice";
        status.textContent = "Uploaded as firmware " + body.id + ".";
        window.location.assign("/firmware/" + encodeURIComponent(body.id));
      } else {
        status.className = "error";
        status.textContent = body && body.error ? body.error.message : "Upload failed (HTTP " + xhr.status + ").";
      }
    };
    xhr.onerror = () => {
      status.className = "error";
      status.textContent = "Upload failed: the server could not be reached.";
    };
    xhr.send(file);
  });
}

// A live region (campaign page) re-fetches its HTML fragment every 2 s and
// swaps it in, until the fragment says the campaign is final.
function setupLive() {
  const region = document.getElementById("live");
  if (!region) return;
  const src = region.dataset.src;
  let timer = null;
  const tick = async () => {
    try {
      const response = await fetch(src, { credentials: "same-origin", cache: "no-store" });
      if (response.status === 401) {
        region.insertAdjacentHTML("afterbegin", '<p class="error" role="alert">Your session ended: log in again.</p>');
        return;
      }
      if (response.ok) {
        region.innerHTML = await response.text();
        const state = region.querySelector("[data-status]");
        const status = state ? state.dataset.status : "";
        document.querySelectorAll("[data-show-when]").forEach((el) => {
          el.hidden = !el.dataset.showWhen.split(" ").includes(status);
        });
        region.dataset.updates = String(Number(region.dataset.updates || "0") + 1);
        if (state && state.dataset.final === "true") return;
      }
    } catch (_) {
      // The server is restarting or the network dropped: try again.
    }
    timer = window.setTimeout(tick, 2000);
  };
  timer = window.setTimeout(tick, 2000);
  window.addEventListener("pagehide", () => window.clearTimeout(timer));
}

// The campaign form shows the target field that matches the chosen kind
// of target (all fields stay in the page for no-JS use).
function setupTargetChoice() {
  const form = document.getElementById("campaign-form");
  if (!form) return;
  const sync = () => {
    const chosen = form.querySelector('input[name="target"]:checked');
    const value = chosen ? chosen.value : "all";
    form.querySelectorAll("[data-target-field]").forEach((el) => {
      el.hidden = el.dataset.targetField !== value;
    });
  };
  form.querySelectorAll('input[name="target"]').forEach((r) => r.addEventListener("change", sync));
  sync();
}

document.addEventListener("DOMContentLoaded", () => {
  setupUpload();
  setupLive();
  setupTargetChoice();
});
