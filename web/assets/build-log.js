// BurstFlare build log (plain ES2020, no framework). Loaded by the build page only while the
// build's log is incomplete.
//
// `pre[data-build-log]` holds the log as rendered by the server; `data-build-log` is the JSON
// log endpoint (a BuildLog: { build, text, next, done }) and `data-next` the chunk to ask for
// next. Every second while the tab is visible, the script asks for `?from=next`, appends the
// text (scrolling along only if the reader was at the bottom), moves `next` on, and keeps the
// page's `[data-build-state]` badges, the `#build-error` notice, the retry/cancel forms
// (`form[data-build-action]`) and the details (`#build-image`, `#build-digest`,
// `#build-started`, `#build-finished`, `#build-duration`) in step with the build. It stops once `done` is true. While a
// request is in flight the log card has `is-updating`; after a failed one, `is-stale` (and the
// next try waits 5 s). The page works without this script: its Reload link shows the log so far.
(() => {
  "use strict";

  const EVERY_MS = 1000;
  const AFTER_ERROR_MS = 5000;
  const INDICATOR_AFTER_MS = 400;
  // Within this many pixels of the end counts as "at the bottom".
  const BOTTOM_SLACK_PX = 24;
  const STATES = ["queued", "validating", "building", "pushing", "succeeded", "failed", "cancelled"];
  const FINAL = ["succeeded", "failed", "cancelled"];
  const RETRYABLE = ["failed", "cancelled"];

  const badgeClass = (state) => "badge build build-" + (STATES.includes(state) ? state : "unknown");

  const pad = (n) => String(n).padStart(2, "0");

  // The same `<time>` the server renders: `YYYY-MM-DD HH:MM`, UTC.
  const timeElement = (ms) => {
    const d = new Date(ms);
    const el = document.createElement("time");
    el.dateTime = d.toISOString().replace(/\.\d{3}Z$/, "Z");
    el.title = "UTC";
    el.textContent = d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes());
    return el;
  };

  // As the server words it: `42s`, `3m 05s`, `2h 07m`.
  const duration = (ms) => {
    const secs = Math.floor(Math.max(0, ms) / 1000);
    const h = Math.floor(secs / 3600);
    const m = Math.floor((secs % 3600) / 60);
    const s = secs % 60;
    if (h > 0) return h + "h " + pad(m) + "m";
    if (m > 0) return m + "m " + pad(s) + "s";
    return s + "s";
  };

  // Fills a details field the server rendered empty ("not yet", "—") once the build has it.
  const fill = (id, node) => {
    const el = document.getElementById(id);
    if (el && node) el.replaceChildren(node);
  };
  const codeElement = (text) => {
    if (typeof text !== "string" || text === "") return null;
    const el = document.createElement("code");
    el.textContent = text;
    return el;
  };
  const isTime = (ms) => typeof ms === "number" && Number.isFinite(ms);

  const showBuild = (build) => {
    if (!build || typeof build.status !== "string") return;
    const state = build.status;
    for (const badge of document.querySelectorAll("[data-build-state]")) {
      if (badge.dataset.buildState === state) continue;
      badge.dataset.buildState = state;
      badge.className = badgeClass(state);
      badge.textContent = state;
    }
    const error = document.getElementById("build-error");
    const errorText = document.getElementById("build-error-text");
    if (error && errorText && typeof build.error === "string" && build.error !== "") {
      errorText.textContent = build.error;
      error.hidden = false;
    }
    fill("build-image", codeElement(build.image_ref));
    fill("build-digest", codeElement(build.image_digest));
    if (isTime(build.started_at)) fill("build-started", timeElement(build.started_at));
    if (isTime(build.finished_at)) fill("build-finished", timeElement(build.finished_at));
    if (isTime(build.started_at) && isTime(build.finished_at)) {
      fill("build-duration", document.createTextNode(duration(build.finished_at - build.started_at)));
    }
    const retry = document.querySelector("form[data-build-action='retry']");
    if (retry) retry.hidden = !RETRYABLE.includes(state);
    const cancel = document.querySelector("form[data-build-action='cancel']");
    if (cancel) cancel.hidden = FINAL.includes(state);
  };

  const start = () => {
    const log = document.querySelector("pre[data-build-log]");
    if (!log || log.dataset.done === "true") return;
    const card = log.closest("section") || log.parentElement;
    const empty = document.getElementById("build-log-empty");
    let next = Number.parseInt(log.dataset.next || "0", 10);
    if (!Number.isFinite(next) || next < 0) next = 0;
    let timer = null;
    let running = false;
    let finished = false;

    const append = (text) => {
      if (typeof text !== "string" || text === "") return;
      const atBottom = log.scrollHeight - log.scrollTop - log.clientHeight <= BOTTOM_SLACK_PX;
      log.appendChild(document.createTextNode(text));
      if (empty) empty.hidden = true;
      if (atBottom) log.scrollTop = log.scrollHeight;
    };

    const schedule = (ms) => {
      if (!finished && timer === null && document.visibilityState === "visible") {
        timer = window.setTimeout(tick, ms);
      }
    };

    const tick = async () => {
      timer = null;
      if (running || finished || document.visibilityState !== "visible") return;
      running = true;
      const indicator = window.setTimeout(() => card.classList.add("is-updating"), INDICATOR_AFTER_MS);
      let wait = EVERY_MS;
      try {
        const url = log.dataset.buildLog + "?from=" + encodeURIComponent(String(next));
        const response = await fetch(url, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
          cache: "no-store",
        });
        if (!response.ok) throw new Error("HTTP " + response.status);
        const body = await response.json();
        if (!body || typeof body.next !== "number") throw new Error("not a build log");
        append(body.text);
        next = body.next;
        log.dataset.next = String(next);
        showBuild(body.build);
        card.classList.remove("is-stale");
        if (body.done === true) {
          finished = true;
          log.dataset.done = "true";
          if (empty && log.textContent === "") empty.textContent = "This build wrote no log.";
        }
      } catch (_) {
        card.classList.add("is-stale");
        wait = AFTER_ERROR_MS;
      } finally {
        window.clearTimeout(indicator);
        card.classList.remove("is-updating");
        running = false;
      }
      schedule(wait);
    };

    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") {
        if (timer !== null) window.clearTimeout(timer);
        timer = null;
        tick();
      } else if (timer !== null) {
        window.clearTimeout(timer);
        timer = null;
      }
    });
    // Start at the end of what the server rendered.
    log.scrollTop = log.scrollHeight;
    schedule(EVERY_MS);
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
