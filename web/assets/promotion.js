// BurstFlare promotion progress (plain ES2020, no framework). Loaded by a template's page only
// while a promotion of it runs.
//
// `[data-promotion]` is the run's JSON URL (a Promotion: { status, step, error, nodes, … }).
// Every 1.5 s while the tab is visible the script asks for it and rewrites the status badge
// (`[data-promotion-status]`), the step (`[data-promotion-step]`, or the error once there is
// one) and the hosts of the rollout (`[data-promotion-nodes]`). Once the run has ended
// (succeeded, rolled_back, failed, cancelled) it reloads the page, which then shows the new
// active version and the run in the history. After a failed request it waits 5 s.
(() => {
  "use strict";

  const EVERY_MS = 1500;
  const AFTER_ERROR_MS = 5000;
  const STATES = ["running", "awaiting_approval", "succeeded", "rolled_back", "failed", "cancelled"];
  const FINAL = ["succeeded", "rolled_back", "failed", "cancelled"];

  const box = document.querySelector("[data-promotion]");
  if (!box) return;

  const render = (p) => {
    const badge = box.querySelector("[data-promotion-status]");
    if (badge) {
      const known = STATES.includes(p.status) ? p.status : "unknown";
      badge.className = "badge promotion promotion-" + known;
      badge.dataset.promotionStatus = p.status;
      badge.textContent = String(p.status).replace("_", " ");
    }
    const step = box.querySelector("[data-promotion-step]");
    if (step) step.textContent = p.error || p.step || "starting";
    const nodes = box.querySelector("[data-promotion-nodes]");
    if (nodes && Array.isArray(p.nodes)) {
      nodes.replaceChildren(...p.nodes.map((n) => {
        const li = document.createElement("li");
        const code = document.createElement("code");
        code.textContent = n.node;
        const state = document.createElement("span");
        state.className = "badge node-" + n.state;
        state.textContent = n.state;
        li.append(code, " ", state);
        return li;
      }));
    }
  };

  const tick = async () => {
    if (document.visibilityState !== "visible") return EVERY_MS;
    try {
      const response = await fetch(box.dataset.promotion, {
        headers: { Accept: "application/json" },
        credentials: "same-origin",
      });
      if (!response.ok) return AFTER_ERROR_MS;
      const p = await response.json();
      render(p);
      if (FINAL.includes(p.status)) {
        window.location.reload();
        return null;
      }
      return EVERY_MS;
    } catch (_) {
      return AFTER_ERROR_MS;
    }
  };

  const loop = async () => {
    const wait = await tick();
    if (wait !== null) window.setTimeout(loop, wait);
  };
  window.setTimeout(loop, EVERY_MS);
})();
