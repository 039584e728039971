// BurstFlare browser terminal (plain ES2020, no framework). Loaded by the terminal page after
// xterm.js (`window.Terminal`) and its fit addon (`window.FitAddon.FitAddon`).
//
// `#terminal` carries `data-terminal` (the path of the session's terminal WebSocket),
// `data-session` (the session's JSON, a SessionDetail), `data-why` (a SessionWhy),
// `data-session-id` and `data-session-page`. The script opens
// `ws(s)://host<data-terminal>?cols=C&rows=R&tid=ID`, where the tid names this tab's shell: it
// is made once per tab and session (crypto.getRandomValues) and kept in sessionStorage, so a
// reload or a reconnection within 5 minutes reattaches to the same shell, which replays its
// recent output (the screen is reset first). Binary messages carry terminal bytes both ways
// (keystrokes as UTF-8; output decoded as a UTF-8 stream, so characters split across messages
// survive). Text messages are JSON: we send {"type":"resize","cols","rows"} when the terminal's
// size changes (fitted to the page, debounced); the server sends {"type":"exit","code"} when
// the shell exits and {"type":"closing","reason"} before it closes the socket.
//
// After a drop the script asks for the session's JSON (a browser cannot read why a WebSocket
// upgrade was refused): not found (or no access) or not running ends it with
// "Disconnected: …" (and a Reconnect button); otherwise it reconnects after 1 s, 2 s, 5 s, 10 s,
// 20 s, then every 30 s. A shell that exits ends it with "Shell exited with code N." and a
// "Start a new shell" button (a new tid). `#terminal-status` shows where it stands, its
// `data-state` one of connecting, connected, reconnecting, closed, exited.
//
// Every 30 s while the tab is visible it also refreshes the bar: the state badge
// (`.session-status [data-state]`), `#terminal-last-active`, the controls (`form[data-states]`)
// and the idle deadline (`#terminal-idle`), and reconnects when a session it gave up on is
// running again. Copy: Ctrl+Shift+C (or the browser's copy, ⌘C); paste: Ctrl+Shift+V, ⌘V or the
// browser's paste. `window.burstflareTerminal = { term, fit }` is there for tests.
(() => {
  "use strict";

  const BACKOFF_MS = [1000, 2000, 5000, 10000, 20000, 30000];
  // A connection that lasted this long starts the backoff over when it drops.
  const STABLE_MS = 10000;
  const RESIZE_DEBOUNCE_MS = 150;
  const REFRESH_MS = 30000;
  const COUNTDOWN_MS = 15000;
  const SOON_MS = 5 * 60 * 1000;
  const TID_PATTERN = /^[A-Za-z0-9_-]{1,64}$/;
  // States a session passes through on its way to running: worth waiting for.
  const WAITING = ["provisioning", "starting"];
  const STATES = [
    "provisioning", "starting", "running", "sleeping", "stopping", "stopped", "deleting", "deleted", "failed",
  ];

  const pad = (n) => String(n).padStart(2, "0");
  const isTime = (ms) => typeof ms === "number" && Number.isFinite(ms);

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

  const newTid = () => {
    const bytes = new Uint8Array(16);
    crypto.getRandomValues(bytes);
    return Array.from(bytes, (b) => b.toString(16).padStart(2, "0")).join("");
  };

  const start = () => {
    const screen = document.getElementById("terminal");
    const status = document.getElementById("terminal-status");
    if (!screen || !status) return;
    const newShellButton = document.getElementById("terminal-new-shell");
    const reconnectButton = document.getElementById("terminal-reconnect");

    const setStatus = (state, text) => {
      status.dataset.state = state;
      status.textContent = text;
      if (newShellButton) newShellButton.hidden = state !== "exited";
      if (reconnectButton) reconnectButton.hidden = state !== "closed";
    };

    // Built without xterm.js: its placeholder already said so on the page.
    if (window.burstflareXtermMissing) return;
    if (typeof window.Terminal !== "function" || !window.FitAddon ||
        typeof window.FitAddon.FitAddon !== "function") {
      setStatus("closed", "Disconnected: the terminal library did not load. Reload the page.");
      return;
    }

    const term = new window.Terminal({
      cursorBlink: true,
      fontFamily: "ui-monospace, SFMono-Regular, Menlo, Consolas, monospace",
      fontSize: 14,
      scrollback: 5000,
      theme: {
        background: "#0f1014",
        foreground: "#e9eaee",
        cursor: "#ff8a47",
        selectionBackground: "rgba(143, 182, 255, 0.4)",
      },
    });
    const fit = new window.FitAddon.FitAddon();
    term.loadAddon(fit);
    term.open(screen);
    const safeFit = () => {
      try {
        fit.fit();
      } catch (_) {
        // Not laid out yet (hidden, zero-sized): the next resize fits it.
      }
    };
    safeFit();
    window.burstflareTerminal = { term, fit };

    // ---- the tab's shell id ----
    const tidKey = "burstflare.terminal.tid." + (screen.dataset.sessionId || "");
    const freshTid = () => {
      const tid = newTid();
      try {
        sessionStorage.setItem(tidKey, tid);
      } catch (_) {
        // Storage refused (private mode): this page load keeps the id.
      }
      return tid;
    };
    let tid = (() => {
      try {
        const stored = sessionStorage.getItem(tidKey);
        if (stored && TID_PATTERN.test(stored)) return stored;
      } catch (_) {
        // As above.
      }
      return freshTid();
    })();

    // ---- the connection ----
    const encoder = new TextEncoder();
    let socket = null;
    let attempt = 0;
    let timer = null;
    let openedAt = 0;
    // A later connection replays the shell's recent output: the screen is reset for it.
    let everOpened = false;
    // Given up until asked (or, for `state`, until the session runs again).
    let gaveUp = null;
    let lastSize = "";

    const open = () => socket !== null && socket.readyState === WebSocket.OPEN;
    const send = (data) => {
      if (open()) socket.send(data);
    };
    const sendResize = () => {
      const size = term.cols + "x" + term.rows;
      if (!open() || size === lastSize) return;
      lastSize = size;
      socket.send(JSON.stringify({ type: "resize", cols: term.cols, rows: term.rows }));
    };
    let resizeTimer = null;
    const queueResize = () => {
      if (resizeTimer !== null) window.clearTimeout(resizeTimer);
      resizeTimer = window.setTimeout(() => {
        resizeTimer = null;
        sendResize();
      }, RESIZE_DEBOUNCE_MS);
    };

    const getSession = async () => {
      try {
        const response = await fetch(screen.dataset.session, {
          credentials: "same-origin",
          headers: { Accept: "application/json" },
          cache: "no-store",
        });
        if (response.status === 401) return { gone: "you are signed out: sign in again, then reload this page." };
        if (response.status === 403 || response.status === 404) {
          return { gone: "this session was not found, or you no longer have access to it." };
        }
        if (!response.ok) return null;
        const body = await response.json();
        return body && typeof body.state === "string" ? { body } : null;
      } catch (_) {
        return null;
      }
    };

    const giveUp = (kind, text) => {
      gaveUp = kind;
      if (timer !== null) window.clearTimeout(timer);
      timer = null;
      setStatus(kind === "exit" ? "exited" : "closed", text);
    };

    const schedule = (text) => {
      const delay = BACKOFF_MS[Math.min(attempt, BACKOFF_MS.length - 1)];
      attempt += 1;
      setStatus("reconnecting", text + ": reconnecting in " + Math.round(delay / 1000) + " s…");
      timer = window.setTimeout(() => {
        timer = null;
        connect();
      }, delay);
    };

    const dropped = async (reason) => {
      if (openedAt !== 0 && Date.now() - openedAt >= STABLE_MS) attempt = 0;
      openedAt = 0;
      setStatus("reconnecting", "Connection lost: checking the session…");
      const s = await getSession();
      if (gaveUp !== null || socket !== null || timer !== null) return;
      const said = reason ? reason.replace(/[.\s]*$/, ". ") : "";
      if (s && s.gone) {
        giveUp("gone", "Disconnected: " + said + s.gone);
        return;
      }
      if (s) {
        showSession(s.body);
        const state = s.body.state;
        if (WAITING.includes(state)) {
          schedule("Waiting for the session to start");
          return;
        }
        if (state !== "running") {
          giveUp("state", "Disconnected: " + said + (said ? "The" : "the") + " session is " + state + ".");
          return;
        }
      }
      schedule("Connection lost" + (reason ? " (" + reason + ")" : ""));
    };

    const connect = () => {
      if (timer !== null) window.clearTimeout(timer);
      timer = null;
      if (socket !== null) return;
      gaveUp = null;
      safeFit();
      const again = everOpened || attempt > 0;
      setStatus(again ? "reconnecting" : "connecting", again ? "Reconnecting…" : "Connecting…");
      const size = term.cols + "x" + term.rows;
      const query = new URLSearchParams({ cols: String(term.cols), rows: String(term.rows), tid });
      const url = (location.protocol === "https:" ? "wss:" : "ws:") + "//" + location.host +
        screen.dataset.terminal + "?" + query.toString();
      let ws;
      try {
        ws = new WebSocket(url);
      } catch (_) {
        dropped("the connection could not be opened");
        return;
      }
      ws.binaryType = "arraybuffer";
      socket = ws;
      const decoder = new TextDecoder();
      let exitCode = null;
      let closing = "";
      ws.onopen = () => {
        if (socket !== ws) return;
        openedAt = Date.now();
        if (everOpened) term.reset();
        everOpened = true;
        lastSize = size;
        setStatus("connected", "Connected");
        sendResize();
        term.focus();
      };
      ws.onmessage = (event) => {
        if (socket !== ws) return;
        if (typeof event.data === "string") {
          let message = null;
          try {
            message = JSON.parse(event.data);
          } catch (_) {
            return;
          }
          if (message && message.type === "exit" && Number.isInteger(message.code)) exitCode = message.code;
          else if (message && message.type === "closing" && typeof message.reason === "string") closing = message.reason;
          return;
        }
        term.write(decoder.decode(new Uint8Array(event.data), { stream: true }));
      };
      ws.onclose = (event) => {
        if (socket !== ws) return;
        // The API cuts a connection whose access went away with close code 1008 and the reason.
        if (!closing && event.code === 1008 && event.reason) closing = event.reason;
        socket = null;
        const rest = decoder.decode();
        if (rest !== "") term.write(rest);
        if (exitCode !== null) {
          // That shell is gone: the next one gets a new id.
          try {
            sessionStorage.removeItem(tidKey);
          } catch (_) {
            // Nothing stored.
          }
          giveUp("exit", "Shell exited with code " + exitCode + ".");
          return;
        }
        dropped(closing);
      };
    };

    // ---- keys, copy and paste ----
    const copySelection = () => {
      const text = term.getSelection();
      if (!text) return;
      // xterm.js answers the copy event with its selection: the fallback where the
      // asynchronous clipboard API is missing (plain HTTP) or refused.
      const fallback = () => document.execCommand("copy");
      if (navigator.clipboard && window.isSecureContext) navigator.clipboard.writeText(text).catch(fallback);
      else fallback();
    };
    term.attachCustomKeyEventHandler((event) => {
      if (!event.ctrlKey || !event.shiftKey || event.altKey || event.metaKey) return true;
      const key = event.key.toLowerCase();
      if (key === "c") {
        if (event.type === "keydown") {
          event.preventDefault();
          copySelection();
        }
        return false;
      }
      // Not sent to the shell: the browser pastes (a paste event xterm.js turns into input).
      if (key === "v") return false;
      return true;
    });
    term.onData((data) => send(encoder.encode(data)));
    term.onBinary((data) => {
      const bytes = new Uint8Array(data.length);
      for (let i = 0; i < data.length; i += 1) bytes[i] = data.charCodeAt(i) & 0xff;
      send(bytes);
    });

    // ---- size ----
    let layoutTimer = null;
    const relayout = () => {
      if (layoutTimer !== null) window.clearTimeout(layoutTimer);
      layoutTimer = window.setTimeout(() => {
        layoutTimer = null;
        safeFit();
      }, RESIZE_DEBOUNCE_MS);
    };
    term.onResize(queueResize);
    window.addEventListener("resize", relayout);
    if (typeof ResizeObserver === "function") new ResizeObserver(relayout).observe(screen);
    if (document.fonts && document.fonts.ready) document.fonts.ready.then(relayout);

    // ---- the bar ----
    const showSession = (s) => {
      if (!s || typeof s.state !== "string") return;
      const state = s.state;
      for (const badge of document.querySelectorAll(".session-status [data-state]")) {
        if (badge.dataset.state === state) continue;
        badge.dataset.state = state;
        badge.className = "badge state state-" + (STATES.includes(state) ? state : "unknown");
        badge.textContent = state;
      }
      const active = document.getElementById("terminal-last-active");
      if (active) {
        const key = isTime(s.last_active_at) ? "t" + s.last_active_at : "never";
        if (active.dataset.shown !== key) {
          active.dataset.shown = key;
          if (isTime(s.last_active_at)) active.replaceChildren(timeElement(s.last_active_at));
          else {
            const never = document.createElement("span");
            never.className = "muted";
            never.textContent = "never";
            active.replaceChildren(never);
          }
        }
      }
      for (const form of document.querySelectorAll("form[data-states]")) {
        form.hidden = !form.dataset.states.split(/\s+/).includes(state);
      }
      if (state !== "running") showIdle(null);
    };

    const idleBox = document.getElementById("terminal-idle");
    const showIdle = (deadline) => {
      if (!idleBox) return;
      if (isTime(deadline)) idleBox.dataset.idleDeadline = String(deadline);
      else delete idleBox.dataset.idleDeadline;
      const part = document.getElementById("terminal-idle-part");
      const at = document.getElementById("terminal-idle-deadline");
      if (part) part.hidden = !isTime(deadline);
      if (at && isTime(deadline) && at.dataset.shown !== String(deadline)) {
        at.dataset.shown = String(deadline);
        at.replaceChildren(timeElement(deadline));
      }
      countdown();
    };
    const countdown = () => {
      if (!idleBox) return;
      const deadline = Number.parseInt(idleBox.dataset.idleDeadline || "", 10);
      const left = Number.isFinite(deadline) ? deadline - Date.now() : NaN;
      const inText = document.getElementById("terminal-idle-in");
      if (inText) {
        inText.textContent = !Number.isFinite(left) ? ""
          : left <= 0 ? " (now)"
          : left < 60000 ? " (in less than a minute)"
          : " (in " + Math.round(left / 60000) + " min)";
      }
      idleBox.classList.toggle("is-soon", Number.isFinite(left) && left < SOON_MS);
    };

    const refresh = async () => {
      if (document.visibilityState !== "visible") return;
      const s = await getSession();
      if (!s || s.gone) return;
      showSession(s.body);
      const state = s.body.state;
      if (gaveUp === "state" && (state === "running" || WAITING.includes(state))) {
        attempt = 0;
        connect();
      }
      if (state === "running" && screen.dataset.why) {
        try {
          const response = await fetch(screen.dataset.why, {
            credentials: "same-origin",
            headers: { Accept: "application/json" },
            cache: "no-store",
          });
          if (response.ok) {
            const why = await response.json();
            if (why && typeof why === "object") showIdle(isTime(why.idle_deadline) ? why.idle_deadline : null);
          }
        } catch (_) {
          // The bar keeps what it showed.
        }
      }
    };

    // ---- buttons, page life ----
    if (newShellButton) {
      newShellButton.addEventListener("click", () => {
        tid = freshTid();
        term.reset();
        everOpened = false;
        attempt = 0;
        connect();
      });
    }
    if (reconnectButton) {
      reconnectButton.addEventListener("click", () => {
        attempt = 0;
        connect();
      });
    }
    // Leaving the page (a control, the back link) is not a dropped connection; coming back to
    // it from the back/forward cache reconnects.
    window.addEventListener("pagehide", () => {
      gaveUp = "left";
      if (timer !== null) window.clearTimeout(timer);
      timer = null;
      const ws = socket;
      socket = null;
      if (ws) ws.close(1000);
    });
    window.addEventListener("pageshow", (event) => {
      if (event.persisted && socket === null) {
        attempt = 0;
        connect();
      }
    });

    window.setInterval(refresh, REFRESH_MS);
    window.setInterval(countdown, COUNTDOWN_MS);
    countdown();
    connect();
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", start);
  else start();
})();
