// BurstFlare session page (plain ES2020, no framework). Loaded by a session's page until the
// session is deleted.
//
// `ol[data-session-events]` holds the session's events as rendered by the server, oldest first;
// `data-session-events` is the JSON events endpoint (an array of SessionEvent: { seq, kind,
// detail, at }), `data-after` the last sequence number shown and `data-session` the session's
// JSON (a SessionDetail). Every 2 s while the tab is visible, the script asks for
// `?after=N`, appends the new events (the list's box stays scrolled to the end when it was
// there), and with the session's JSON keeps the page's state badge
// (`.session-status [data-state]`), the `#session-error` notice, the details (`#session-node`,
// `#session-started`, `#session-stopped`, `#session-last-active`, `#session-updated`) and the
// controls in step: each `form[data-states]` shows only while the session is in one of the
// states it lists. It stops once the session is deleted (or gone: 404). While a request is in
// flight the events card has `is-updating`; after a failed one, `is-stale` (and the next try
// waits 5 s). The page works without this script: its Reload link shows what changed.
(() => {
  "use strict";

  const EVERY_MS = 2000;
  const AFTER_ERROR_MS = 5000;
  const INDICATOR_AFTER_MS = 400;
  const STATES = [
    "provisioning", "starting", "running", "sleeping", "stopping", "stopped", "deleting", "deleted", "failed",
  ];

  const badgeClass = (state) => "badge state state-" + (STATES.includes(state) ? state : "unknown");

  const pad = (n) => String(n).padStart(2, "0");
  const isTime = (ms) => typeof ms === "number" && Number.isFinite(ms);

  // The same `<time>` the server renders: `YYYY-MM-DD HH:MM` (with `:SS` for events), UTC.
  const timeElement = (ms, seconds) => {
    const d = new Date(ms);
    const el = document.createElement("time");
    el.dateTime = d.toISOString().replace(/\.\d{3}Z$/, "Z");
    el.title = "UTC";
    el.textContent = d.getUTCFullYear() + "-" + pad(d.getUTCMonth() + 1) + "-" + pad(d.getUTCDate()) +
      " " + pad(d.getUTCHours()) + ":" + pad(d.getUTCMinutes()) + (seconds ? ":" + pad(d.getUTCSeconds()) : "");
    return el;
  };

  const muted = (text) => {
    const el = document.createElement("span");
    el.className = "muted";
    el.textContent = text;
    return el;
  };

  const codeElement = (text) => {
    const el = document.createElement("code");
    el.textContent = text;
    return el;
  };

  // Replaces a details field's content when the value changed.
  const fill = (id, key, node) => {
    const el = document.getElementById(id);
    if (!el || el.dataset.shown === key) return;
    el.dataset.shown = key;
    el.replaceChildren(node);
  };
  const fillTime = (id, ms, otherwise) => {
    if (isTime(ms)) fill(id, "t" + ms, timeElement(ms, false));
    else fill(id, "none", muted(otherwise));
  };

  // An event's detail in one line, as the server words it: an object as `key=value` pairs
  // (strings as they are, other values as JSON), a string as it is, nothing for null or {}.
  const detailText = (detail) => {
    if (detail === null || detail === undefined) return "";
    if (typeof detail === "string") return detail;
    if (typeof detail === "object" && !Array.isArray(detail)) {
      return Object.entries(detail)
        .map(([k, v]) => k + "=" + (typeof v === "string" ? v : JSON.stringify(v)))
        .join(" ");
    }
    return JSON.stringify(detail);
  };

  const eventItem = (e) => {
    const li = document.createElement("li");
    li.dataset.seq = String(e.seq);
    li.appendChild(timeElement(e.at, true));
    li.appendChild(document.createTextNode(" "));
    const kind = codeElement(String(e.kind));
    kind.className = "event-kind";
    li.appendChild(kind);
    const text = detailText(e.detail);
    if (text !== "") {
      li.appendChild(document.createTextNode(" "));
      const span = document.createElement("span");
      span.className = "session-event-detail";
      span.textContent = text;
      li.appendChild(span);
    }
    return li;
  };

  const showSession = (s) => {
    if (!s || typeof s.state !== "string") return;
    const state = s.state;
    for (const badge of document.querySelectorAll(".session-status [data-state]")) {
      if (badge.dataset.state === state) continue;
      badge.dataset.state = state;
      badge.className = badgeClass(state);
      badge.textContent = state;
    }
    const error = document.getElementById("session-error");
    const errorText = document.getElementById("session-error-text");
    const errorTitle = document.getElementById("session-error-title");
    if (error && errorText) {
      const message = typeof s.error === "string" ? s.error : "";
      errorText.textContent = message;
      error.hidden = message === "";
      if (errorTitle) errorTitle.textContent = state === "failed" ? "This session failed: " : "Error: ";
    }
    const deleted = document.getElementById("session-deleted");
    if (deleted) deleted.hidden = state !== "deleted";
    if (typeof s.node === "string" && s.node !== "") fill("session-node", "n" + s.node, codeElement(s.node));
    else fill("session-node", "none", muted("not placed yet"));
    fillTime("session-started", s.started_at, "not yet");
    fillTime("session-stopped", s.stopped_at, "—");
    fillTime("session-last-active", s.last_active_at, "never");
    if (isTime(s.updated_at)) fill("session-updated", "t" + s.updated_at, timeElement(s.updated_at, false));
    for (const form of document.querySelectorAll("form[data-states]")) {
      form.hidden = !form.dataset.states.split(/\s+/).includes(state);
    }
  };

  const getJson = async (url) => {
    const response = await fetch(url, {
      credentials: "same-origin",
      headers: { Accept: "application/json" },
      cache: "no-store",
    });
    if (response.status === 404) return { gone: true };
    if (!response.ok) throw new Error("HTTP " + response.status);
    return { body: await response.json() };
  };

  const start = () => {
    const list = document.querySelector("ol[data-session-events]");
    if (!list || list.dataset.done === "true") return;
    const card = list.closest("section") || list.parentElement;
    const empty = document.getElementById("session-events-empty");
    let after = Number.parseInt(list.dataset.after || "0", 10);
    if (!Number.isFinite(after) || after < 0) after = 0;
    let timer = null;
    let running = false;
    let finished = false;

    const append = (events) => {
      for (const e of events) {
        if (!e || typeof e.seq !== "number" || e.seq <= after) continue;
        list.appendChild(eventItem(e));
        after = e.seq;
      }
      list.dataset.after = String(after);
      if (empty && list.children.length > 0) empty.hidden = true;
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
        const url = list.dataset.sessionEvents + "?after=" + encodeURIComponent(String(after));
        const [events, session] = await Promise.all([getJson(url), getJson(list.dataset.session)]);
        if (events.body !== undefined) {
          if (!Array.isArray(events.body)) throw new Error("not a list of events");
          append(events.body);
        }
        if (session.gone) {
          // Deleted and forgotten: nothing more will happen to it.
          showSession({ state: "deleted" });
          finished = true;
        } else {
          showSession(session.body);
          if (session.body && session.body.state === "deleted") finished = true;
        }
        if (finished) list.dataset.done = "true";
        card.classList.remove("is-stale");
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
    schedule(EVERY_MS);
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
