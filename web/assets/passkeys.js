// BurstFlare passkey ceremonies (plain ES2020, no framework).
//
// Every `form[data-passkey]` ("signup", "signin" or "add") runs a WebAuthn ceremony instead of
// submitting: POST .../start, navigator.credentials.create/get, POST .../finish. Progress and
// errors go to `#passkey-status` (`data-state`: idle, busy, error, signed-up, signed-in, added).
// It also turns on copy buttons (`button[data-copy]`) and asks before destructive forms
// (`form[data-confirm]`); everything else on the pages works without this script.
(() => {
  "use strict";

  const CANCELLED = "The passkey prompt was cancelled or not allowed.";

  const ENDPOINTS = {
    signup: { start: "/api/v1/auth/signup/start", finish: "/api/v1/auth/signup/finish", ceremony: "create" },
    signin: { start: "/api/v1/auth/signin/start", finish: "/api/v1/auth/signin/finish", ceremony: "get" },
    add: { start: "/api/v1/me/passkeys/start", finish: "/api/v1/me/passkeys/finish", ceremony: "create" },
  };

  // ---- base64url (no padding) <-> ArrayBuffer ----

  const fromB64u = (value) => {
    const b64 = String(value).replace(/-/g, "+").replace(/_/g, "/");
    const bin = atob(b64 + "=".repeat((4 - (b64.length % 4)) % 4));
    const bytes = new Uint8Array(bin.length);
    for (let i = 0; i < bin.length; i++) bytes[i] = bin.charCodeAt(i);
    return bytes.buffer;
  };

  const toB64u = (buffer) => {
    if (buffer === null || buffer === undefined) return null;
    const bytes = buffer instanceof ArrayBuffer ? new Uint8Array(buffer)
      : new Uint8Array(buffer.buffer, buffer.byteOffset, buffer.byteLength);
    let bin = "";
    for (let i = 0; i < bytes.length; i++) bin += String.fromCharCode(bytes[i]);
    return btoa(bin).replace(/\+/g, "-").replace(/\//g, "_").replace(/=+$/, "");
  };

  // webauthn-rs leaves out most absent fields, but a stray `null` for a browser dictionary
  // member is a TypeError in some browsers: drop them.
  const withoutNulls = (value) => {
    if (Array.isArray(value)) return value.map(withoutNulls);
    if (value && typeof value === "object") {
      const out = {};
      for (const [k, v] of Object.entries(value)) if (v !== null && v !== undefined) out[k] = withoutNulls(v);
      return out;
    }
    return value;
  };

  const creationOptions = (options) => {
    const publicKey = withoutNulls(options.publicKey);
    publicKey.challenge = fromB64u(publicKey.challenge);
    publicKey.user = { ...publicKey.user, id: fromB64u(publicKey.user.id) };
    if (Array.isArray(publicKey.excludeCredentials)) {
      publicKey.excludeCredentials = publicKey.excludeCredentials.map((c) => ({ ...c, id: fromB64u(c.id) }));
    }
    return { publicKey };
  };

  const requestOptions = (options) => {
    const publicKey = withoutNulls(options.publicKey);
    publicKey.challenge = fromB64u(publicKey.challenge);
    if (Array.isArray(publicKey.allowCredentials)) {
      publicKey.allowCredentials = publicKey.allowCredentials.map((c) => ({ ...c, id: fromB64u(c.id) }));
    }
    const out = { publicKey };
    if (typeof options.mediation === "string") out.mediation = options.mediation;
    return out;
  };

  const extensionsOf = (credential) => {
    try {
      return credential.getClientExtensionResults() || {};
    } catch (_) {
      return {};
    }
  };

  const registrationJson = (credential) => ({
    id: credential.id,
    rawId: toB64u(credential.rawId),
    type: credential.type,
    extensions: extensionsOf(credential),
    response: {
      attestationObject: toB64u(credential.response.attestationObject),
      clientDataJSON: toB64u(credential.response.clientDataJSON),
    },
  });

  const authenticationJson = (credential) => ({
    id: credential.id,
    rawId: toB64u(credential.rawId),
    type: credential.type,
    extensions: extensionsOf(credential),
    response: {
      authenticatorData: toB64u(credential.response.authenticatorData),
      clientDataJSON: toB64u(credential.response.clientDataJSON),
      signature: toB64u(credential.response.signature),
      userHandle: toB64u(credential.response.userHandle),
    },
  });

  // ---- HTTP ----

  class ShownError extends Error {}

  const csrfToken = () => {
    const meta = document.querySelector('meta[name="csrf-token"]');
    return meta ? meta.getAttribute("content") : null;
  };

  const postJson = async (url, body) => {
    const headers = { "Content-Type": "application/json", Accept: "application/json" };
    const token = csrfToken();
    if (token) headers["X-CSRF-Token"] = token;
    let response;
    try {
      response = await fetch(url, {
        method: "POST",
        credentials: "same-origin",
        headers,
        body: JSON.stringify(body),
      });
    } catch (_) {
      throw new ShownError("Could not reach BurstFlare. Check your connection and try again.");
    }
    const text = await response.text();
    let data = null;
    if (text) {
      try {
        data = JSON.parse(text);
      } catch (_) {
        data = null;
      }
    }
    if (!response.ok) {
      const message = data && typeof data.message === "string" && data.message
        ? data.message
        : `The server answered ${response.status}. Please try again.`;
      throw new ShownError(message);
    }
    return data;
  };

  // ---- helpers ----

  // A path on this site, never `//host` or `/\host` (browsers treat both as another origin).
  const safeReturnTo = (value) =>
    typeof value === "string" && value.startsWith("/") && !value.startsWith("//") && !value.includes("\\")
      ? value
      : null;

  const returnTo = (form) =>
    safeReturnTo(form.dataset.returnTo) || safeReturnTo(new URLSearchParams(location.search).get("return_to"));

  const setStatus = (status, state, text) => {
    if (!status) return;
    status.dataset.state = state;
    status.textContent = text;
  };

  const fieldValue = (form, name) => {
    const field = form.elements.namedItem(name);
    return field && typeof field.value === "string" ? field.value.trim() : "";
  };

  const messageFor = (error) => {
    if (error instanceof ShownError) return error.message;
    if (error && error.name === "NotAllowedError") return CANCELLED;
    if (error && error.name === "AbortError") return CANCELLED;
    if (error && error.name === "InvalidStateError") return "This passkey is already registered for this account.";
    if (error && error.name === "SecurityError") return "This browser refused the passkey for this site's address.";
    return "Something went wrong with the passkey. Please try again.";
  };

  const resetBotCheck = (form) => {
    const widget = form.querySelector(".cf-turnstile");
    if (widget && window.turnstile && typeof window.turnstile.reset === "function") {
      try {
        window.turnstile.reset(widget);
      } catch (_) {
        // The widget renders a fresh challenge on its own when it can.
      }
    }
  };

  // ---- the ceremonies ----

  const startBody = (kind, form) => {
    const botCheck = fieldValue(form, "cf-turnstile-response") || null;
    if (kind === "signup") {
      return { email: fieldValue(form, "email"), display_name: fieldValue(form, "display_name"), bot_check: botCheck };
    }
    if (kind === "signin") return { email: fieldValue(form, "email"), bot_check: botCheck };
    return { name: fieldValue(form, "name") };
  };

  const showRecoveryCodes = (form, codes) => {
    const section = document.getElementById("recovery-codes");
    const list = document.getElementById("recovery-codes-list");
    const done = document.getElementById("recovery-codes-done");
    if (!section || !list) return;
    list.textContent = (Array.isArray(codes) ? codes : []).join("\n");
    const to = returnTo(form);
    if (done && to) done.setAttribute("href", to);
    form.hidden = true;
    section.hidden = false;
    const heading = section.querySelector("h2");
    if (heading) heading.focus();
  };

  const run = async (kind, form, status) => {
    const endpoints = ENDPOINTS[kind];
    if (!window.PublicKeyCredential || !navigator.credentials) {
      throw new ShownError("This browser does not support passkeys. Try a recent Chrome, Edge, Firefox or Safari.");
    }
    setStatus(status, "busy", "Contacting BurstFlare…");
    const challenge = await postJson(endpoints.start, startBody(kind, form));
    if (!challenge || !challenge.ceremony_id || !challenge.options || !challenge.options.publicKey) {
      throw new ShownError("The server sent an unexpected answer. Please try again.");
    }
    setStatus(status, "busy", "Follow your browser's passkey prompt…");
    let credential;
    if (endpoints.ceremony === "create") {
      credential = await navigator.credentials.create(creationOptions(challenge.options));
    } else {
      credential = await navigator.credentials.get(requestOptions(challenge.options));
    }
    if (!credential) throw new ShownError(CANCELLED);
    const json = endpoints.ceremony === "create" ? registrationJson(credential) : authenticationJson(credential);
    setStatus(status, "busy", "Checking your passkey…");
    const done = await postJson(endpoints.finish, { ceremony_id: challenge.ceremony_id, credential: json });

    if (kind === "signup") {
      setStatus(status, "signed-up", "Your account is ready. Save your recovery codes below.");
      showRecoveryCodes(form, done && done.recovery_codes);
    } else if (kind === "signin") {
      setStatus(status, "signed-in", "Signed in. Taking you there…");
      location.assign(returnTo(form) || "/");
    } else {
      setStatus(status, "added", "Passkey added.");
      location.reload();
    }
  };

  const attach = (form) => {
    const kind = form.dataset.passkey;
    if (!ENDPOINTS[kind]) return;
    const status = form.querySelector("#passkey-status") || document.getElementById("passkey-status");
    let running = false;
    form.addEventListener("submit", async (event) => {
      event.preventDefault();
      if (running) return;
      running = true;
      const buttons = form.querySelectorAll("button[type=submit]");
      buttons.forEach((b) => { b.disabled = true; });
      form.setAttribute("aria-busy", "true");
      try {
        await run(kind, form, status);
      } catch (error) {
        setStatus(status, "error", messageFor(error));
        resetBotCheck(form);
      } finally {
        running = false;
        buttons.forEach((b) => { b.disabled = false; });
        form.removeAttribute("aria-busy");
      }
    });
  };

  // ---- copy buttons and confirmations ----

  const attachCopy = (button) => {
    const target = document.getElementById(button.dataset.copy);
    if (!target) return;
    const live = button.parentElement ? button.parentElement.querySelector(".copy-status") : null;
    button.hidden = false;
    button.addEventListener("click", async () => {
      let copied = false;
      try {
        await navigator.clipboard.writeText(target.textContent);
        copied = true;
      } catch (_) {
        const range = document.createRange();
        range.selectNodeContents(target);
        const selection = window.getSelection();
        selection.removeAllRanges();
        selection.addRange(range);
      }
      if (live) live.textContent = copied ? "Copied." : "Selected: press Ctrl+C or ⌘C to copy.";
      button.textContent = copied ? "Copied" : "Copy";
      setTimeout(() => {
        button.textContent = "Copy";
        if (live) live.textContent = "";
      }, 3000);
    });
  };

  const attachConfirm = (form) => {
    form.addEventListener("submit", (event) => {
      if (!window.confirm(form.dataset.confirm)) event.preventDefault();
    });
  };

  const init = () => {
    document.querySelectorAll("form[data-confirm]").forEach(attachConfirm);
    document.querySelectorAll("button[data-copy]").forEach(attachCopy);
    document.querySelectorAll("form[data-passkey]").forEach(attach);
  };

  if (document.readyState === "loading") document.addEventListener("DOMContentLoaded", init);
  else init();
})();
