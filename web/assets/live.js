// BurstFlare live regions (plain ES2020, no framework).
//
// Every `[data-live]` element lists sessions: rows with `data-session-id`, each holding a state
// badge with `data-state`. Every 5 s while the tab is visible, the script fetches the
// element's `data-live` URL (a JSON array of SessionSummary), drops the states named in
// `data-live-hide`, rewrites each row's badge (text, `data-state`, class) and, when sessions
// came or went, reloads the page. A row's control forms (`form[data-states]`) show only while
// its session is in one of the states they list. While a refresh is in flight the region has the class
// `is-updating`; when one fails it keeps its content and gets `is-stale` until one succeeds.
// It also closes the account menu (`details.menu`) on Escape or a click outside it.
// The pages work without this script: it only refreshes what they show.
(() => {
  "use strict";

  const EVERY_MS = 5000;
  // Shorter refreshes show no indicator: a flash every 5 s would only distract.
  const INDICATOR_AFTER_MS = 250;
  const STATES = [
    "provisioning", "starting", "running", "sleeping", "stopping", "stopped", "deleting", "deleted", "failed",
  ];
  const RELOADED_FOR = "bf-live-reloaded-for:";

  const badgeClass = (state) => "badge state state-" + (STATES.includes(state) ? state : "unknown");

  const sessionsOf = (body) => {
    if (Array.isArray(body)) return body;
    if (body && Array.isArray(body.sessions)) return body.sessions;
    return null;
  };

  const sameIds = (a, b) => a.length === b.length && a.every((id, i) => id === b[i]);

  // sessionStorage may be off (privacy settings): then never reload, only update badges, so
  // a page that lists other sessions than the API cannot reload in a loop.
  const storage = {
    get(key) { try { return window.sessionStorage.getItem(key); } catch (_) { return undefined; } },
    set(key, value) { try { window.sessionStorage.setItem(key, value); return true; } catch (_) { return false; } },
    drop(key) { try { window.sessionStorage.removeItem(key); } catch (_) { /* nothing to forget */ } },
  };

  const updateRow = (row, state) => {
    const badge = row.querySelector("[data-state]");
    if (!badge || badge.dataset.state === state) return;
    badge.dataset.state = state;
    badge.className = badgeClass(state);
    badge.textContent = state;
    // The row's controls: each form lists the states it applies to.
    for (const form of row.querySelectorAll("form[data-states]")) {
      form.hidden = !form.dataset.states.split(/\s+/).includes(state);
    }
  };

  // Resolves to true when the page is about to reload.
  const refresh = async (region) => {
    const timer = window.setTimeout(() => region.classList.add("is-updating"), INDICATOR_AFTER_MS);
    region.setAttribute("aria-busy", "true");
    try {
      const response = await fetch(region.dataset.live, {
        credentials: "same-origin",
        headers: { Accept: "application/json" },
        cache: "no-store",
      });
      if (!response.ok) throw new Error("HTTP " + response.status);
      const list = sessionsOf(await response.json());
      if (!list) throw new Error("not a list of sessions");

      const hide = (region.dataset.liveHide || "").split(/\s+/).filter(Boolean);
      const shown = list.filter((s) => s && typeof s.id === "string" && !hide.includes(s.state));
      const rows = new Map();
      for (const row of region.querySelectorAll("[data-session-id]")) rows.set(row.dataset.sessionId, row);

      const fetched = shown.map((s) => s.id).sort();
      const key = RELOADED_FOR + location.pathname + location.search + " " + region.dataset.live;
      if (sameIds(fetched, [...rows.keys()].sort())) {
        storage.drop(key);
      } else {
        // Reload once per new set of sessions. If the page still differs afterwards, it lists
        // something else on purpose (a limit, a filter): update the badges it has.
        const wanted = fetched.join(",");
        if (storage.get(key) !== wanted && storage.set(key, wanted)) {
          location.reload();
          return true;
        }
      }
      for (const s of shown) {
        const row = rows.get(s.id);
        if (row && typeof s.state === "string") updateRow(row, s.state);
      }
      region.classList.remove("is-stale");
    } catch (_) {
      region.classList.add("is-stale");
    } finally {
      window.clearTimeout(timer);
      region.classList.remove("is-updating");
      region.removeAttribute("aria-busy");
    }
    return false;
  };

  const startLive = () => {
    const regions = [...document.querySelectorAll("[data-live]")];
    if (regions.length === 0) return;
    let timer = null;
    let running = false;

    const tick = async () => {
      timer = null;
      if (running || document.visibilityState !== "visible") return;
      running = true;
      let reloading = false;
      try {
        for (const region of regions) {
          if (await refresh(region)) { reloading = true; break; }
        }
      } finally {
        running = false;
      }
      if (!reloading) schedule();
    };

    const schedule = () => {
      if (timer === null && document.visibilityState === "visible") timer = window.setTimeout(tick, EVERY_MS);
    };

    document.addEventListener("visibilitychange", () => {
      if (document.visibilityState === "visible") {
        // Back to the tab: refresh at once, then every 5 s again.
        if (timer !== null) window.clearTimeout(timer);
        timer = null;
        tick();
      } else if (timer !== null) {
        window.clearTimeout(timer);
        timer = null;
      }
    });
    schedule();
  };

  const startMenus = () => {
    const openMenus = () => document.querySelectorAll("details.menu[open]");
    document.addEventListener("keydown", (event) => {
      if (event.key !== "Escape") return;
      for (const menu of openMenus()) {
        const hadFocus = menu.contains(document.activeElement);
        menu.open = false;
        if (hadFocus) menu.querySelector("summary")?.focus();
      }
    });
    document.addEventListener("click", (event) => {
      for (const menu of openMenus()) if (!menu.contains(event.target)) menu.open = false;
    });
  };

  const start = () => { startLive(); startMenus(); };
  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
