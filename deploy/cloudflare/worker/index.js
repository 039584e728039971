// BurstFlare edge worker for the Cloudflare runtime target (docs/catalog.md).
//
// This file is a template: deploy::cloudflare::write_bundle copies it into a bundle and replaces
// the part between the two `@generated` markers with one container class per template of the
// runtime catalog and the table that routes a template to its Durable Object binding. The
// wrangler config written next to it declares the same classes, bindings and images.
//
// Routes: `GET /_burstflare/catalog` answers the catalog revision the worker was generated from
// (`{"revision": N}`), so deploy tooling can tell what is deployed. `/s/<session id>/<path>` goes
// to `<path>` of the session's container (one Durable Object, named by the session id, of the
// class of the session's template). The caller (the BurstFlare API) names the template in
// `X-BurstFlare-Template` and proves itself with `X-BurstFlare-Edge-Key`, which must equal the
// worker secret BURSTFLARE_EDGE_KEY (`wrangler secret put BURSTFLARE_EDGE_KEY`); without that
// secret every session request is refused. Everything else (the agent's own bearer token,
// WebSocket upgrades) passes through untouched.
import { Container, getContainer } from "@cloudflare/containers";

/** The session agent's port in every session container (activities::runtime::AGENT_PORT). */
const AGENT_PORT = 7070;

/** One session's container. Each template's class extends it. */
class SessionContainer extends Container {
  defaultPort = AGENT_PORT;
  // The control plane decides when a session sleeps; this only stops containers nobody uses.
  sleepAfter = "30m";
}

// @generated:begin
/** Template id -> Durable Object binding (filled in by deploy::cloudflare). */
const TEMPLATES = {};
// @generated:end

const SESSION_PATH = /^\/s\/([0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12})(\/.*)?$/;

function refuse(status, code, message) {
  return Response.json({ error: { code, message } }, { status });
}

/** Compares in time independent of where the strings differ. */
function sameSecret(given, expected) {
  const enc = new TextEncoder();
  const a = enc.encode(given);
  const b = enc.encode(expected);
  if (a.byteLength !== b.byteLength) return false;
  return crypto.subtle.timingSafeEqual(a, b);
}

export default {
  async fetch(request, env) {
    const url = new URL(request.url);
    if (url.pathname === "/_burstflare/catalog") {
      return Response.json({ revision: Number(env.BURSTFLARE_CATALOG_REVISION ?? 0) });
    }
    const route = SESSION_PATH.exec(url.pathname);
    if (!route) return refuse(404, "not_found", "no such route");
    if (!env.BURSTFLARE_EDGE_KEY) {
      return refuse(503, "not_configured", "the worker secret BURSTFLARE_EDGE_KEY is not set");
    }
    if (!sameSecret(request.headers.get("x-burstflare-edge-key") ?? "", env.BURSTFLARE_EDGE_KEY)) {
      return refuse(401, "unauthorized", "missing or wrong X-BurstFlare-Edge-Key");
    }
    const template = request.headers.get("x-burstflare-template") ?? "";
    const binding = Object.hasOwn(TEMPLATES, template) ? env[TEMPLATES[template]] : undefined;
    if (!binding) {
      return refuse(404, "unknown_template", `template ${template} is not in this worker's catalog`);
    }
    const inner = new URL(url);
    inner.pathname = route[2] ?? "/";
    const forwarded = new Request(inner, request);
    forwarded.headers.delete("x-burstflare-edge-key");
    forwarded.headers.delete("x-burstflare-template");
    return getContainer(binding, route[1]).fetch(forwarded);
  },
};
