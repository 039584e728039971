//! The web UI in a real browser: headless Chromium driven over CDP (chromiumoxide), each person
//! with Chromium's virtual WebAuthn authenticator as their device, against the API served
//! in-process on `http://localhost:PORT` (so the test can also read the store). Setup and its
//! pitfalls: `notes/browser-passkeys.md`.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use chromiumoxide::browser::{Browser, BrowserConfig};
use chromiumoxide::cdp::browser_protocol::page::{
    AddScriptToEvaluateOnNewDocumentParams, EventJavascriptDialogOpening,
    HandleJavaScriptDialogParams,
};
use chromiumoxide::cdp::browser_protocol::web_authn::{
    AddCredentialParams, AddVirtualAuthenticatorParams, AuthenticatorId, AuthenticatorProtocol,
    AuthenticatorTransport, Credential, EnableParams, GetCredentialsParams,
    VirtualAuthenticatorOptions,
};
use chromiumoxide::handler::viewport::Viewport;
use chromiumoxide::page::{Page, ScreenshotParams};
use futures::StreamExt;
use serde::de::DeserializeOwned;
use serde_json::Value;

use crate::browserish::Api;

const CHROMIUM: &str = "/usr/bin/chromium";
/// How long any one thing may take to appear. Generous: CI runs this on 2 busy cores.
const DEADLINE: Duration = Duration::from_secs(20);
const POLL_EVERY: Duration = Duration::from_millis(25);

/// One Chromium process with its own throwaway profile, so browsers share no cookies and
/// parallel tests do not collide on chromiumoxide's default profile folder.
struct Chromium {
    browser: Browser,
    handler: tokio::task::JoinHandle<()>,
    profile: tempfile::TempDir,
}

impl Chromium {
    async fn launch(who: &'static str) -> Chromium {
        assert!(
            Path::new(CHROMIUM).exists(),
            "{CHROMIUM} is missing: the browser tests need it; `make test` installs it"
        );
        let profile = tempfile::Builder::new().prefix("bf-chromium-").tempdir().unwrap();
        let config = BrowserConfig::builder()
            .chrome_executable(CHROMIUM)
            // We may run as root in CI, where Chromium's sandbox cannot start.
            .no_sandbox()
            .user_data_dir(profile.path())
            // Wide enough that the navigation never wraps under the page's narrow-screen rules.
            .viewport(Viewport { width: 1280, height: 900, ..Viewport::default() })
            // chromiumoxide adds the leading `--` itself; `--x` would become `----x` and be ignored.
            .args([
                "disable-gpu",
                "disable-quic",
                "no-first-run",
                "disable-background-networking",
                "disable-component-update",
                "disable-sync",
            ])
            .build()
            .unwrap();
        let (browser, mut handler) = Browser::launch(config)
            .await
            .unwrap_or_else(|e| panic!("launching {CHROMIUM} for {who}: {e}"));
        // The handler drives the CDP websocket: nothing happens unless it is polled.
        let handler = tokio::spawn(async move {
            while let Some(event) = handler.next().await {
                if let Err(e) = event {
                    eprintln!("{who}'s browser: the CDP connection ended: {e}");
                    break;
                }
            }
        });
        Chromium { browser, handler, profile }
    }

    /// A new tab with a virtual platform authenticator (a device with a fingerprint reader):
    /// authenticators belong to one page, so every tab gets its own.
    async fn tab(&self, who: &'static str, base: &str) -> Tab {
        let page = self.browser.new_page("about:blank").await.unwrap();
        // Without `enable` first, adding an authenticator fails ("environment not enabled").
        page.execute(EnableParams::builder().enable_ui(false).build()).await.unwrap();
        let options = VirtualAuthenticatorOptions::builder()
            .protocol(AuthenticatorProtocol::Ctap2)
            .transport(AuthenticatorTransport::Internal)
            .has_resident_key(true)
            .has_user_verification(true)
            .is_user_verified(true)
            .automatic_presence_simulation(true)
            .build()
            .unwrap();
        let authenticator = page
            .execute(AddVirtualAuthenticatorParams::new(options))
            .await
            .unwrap()
            .result
            .authenticator_id;

        // Every document records its script errors and console errors, so a test can check a
        // page is clean (failed requests are read from the resource timing entries).
        page.execute(AddScriptToEvaluateOnNewDocumentParams::new(PAGE_PROBE)).await.unwrap();

        // Destructive forms ask `confirm()` first; a dialog nobody answers stalls the page. Say
        // yes, as the person would, and keep the question so the test can check it was asked.
        let dialogs = Arc::new(Mutex::new(Vec::new()));
        let mut opening = page.event_listener::<EventJavascriptDialogOpening>().await.unwrap();
        let (answer, seen) = (page.clone(), dialogs.clone());
        tokio::spawn(async move {
            while let Some(dialog) = opening.next().await {
                seen.lock().unwrap().push(dialog.message.clone());
                if let Err(e) = answer.execute(HandleJavaScriptDialogParams::new(true)).await {
                    eprintln!("{who}: could not answer the dialog {:?}: {e}", dialog.message);
                }
            }
        });

        Tab { who, base: base.to_string(), page, authenticator, dialogs }
    }

    async fn close(self) {
        let Chromium { mut browser, handler, profile } = self;
        browser.close().await.unwrap();
        browser.wait().await.unwrap();
        handler.abort();
        // The browser process is gone, but its helpers (the network service, renderers) may
        // write to the profile for a moment longer: removing it under them leaves files behind.
        let dir = profile.path().to_string_lossy().into_owned();
        let deadline = Instant::now() + Duration::from_secs(10);
        loop {
            let helpers = processes_mentioning(&dir);
            if helpers.is_empty() {
                break;
            }
            assert!(Instant::now() < deadline, "Chromium helpers {helpers:?} outlived it by 10 s");
            tokio::time::sleep(POLL_EVERY).await;
        }
        profile.close().unwrap();
    }
}

/// Live processes whose command line mentions `needle` (Chromium passes every helper its
/// `--user-data-dir`).
fn processes_mentioning(needle: &str) -> Vec<u32> {
    let Ok(proc) = std::fs::read_dir("/proc") else { return Vec::new() };
    proc.filter_map(|entry| entry.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|pid| {
            std::fs::read(format!("/proc/{pid}/cmdline"))
                .is_ok_and(|cmd| cmd.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .collect()
}

/// A tab as one person uses it. Nothing in chromiumoxide waits on its own, so every step that
/// changes the page waits for its visible result, with a deadline.
struct Tab {
    who: &'static str,
    base: String,
    page: Page,
    authenticator: AuthenticatorId,
    dialogs: Arc<Mutex<Vec<String>>>,
}

/// A JavaScript string literal (JSON is valid JavaScript).
fn js(s: &str) -> String {
    serde_json::to_string(s).unwrap()
}

impl Tab {
    /// Evaluates an expression (awaiting a promise), or says why not. Bounded, so that a page
    /// that stopped answering fails the test with a message instead of hanging it.
    async fn try_eval(&self, expression: &str) -> Result<Value, String> {
        let call = self.page.evaluate_expression(expression);
        let result = tokio::time::timeout(DEADLINE, call)
            .await
            .map_err(|_| format!("no answer within {DEADLINE:?}"))?
            .map_err(|e| e.to_string())?;
        Ok(result.value().cloned().unwrap_or(Value::Null))
    }

    async fn eval<T: DeserializeOwned>(&self, expression: &str) -> T {
        let value = match self.try_eval(expression).await {
            Ok(v) => v,
            Err(e) => {
                panic!("{}: evaluating {expression}: {e}\n{}", self.who, self.describe().await)
            }
        };
        serde_json::from_value(value.clone()).unwrap_or_else(|e| {
            panic!("{}: {expression} gave {value}: {e}", self.who);
        })
    }

    /// Where the tab is and what it says, for failure messages.
    async fn describe(&self) -> String {
        let seen = self
            .try_eval(
                "JSON.stringify({url: location.href, title: document.title, \
                 passkeyStatus: document.querySelector('#passkey-status')?.dataset.state, \
                 statusText: document.querySelector('#passkey-status')?.textContent, \
                 flash: document.querySelector('.flash')?.textContent, \
                 body: document.body?.innerText.slice(0, 600)})",
            )
            .await;
        let url = self.page.url().await.ok().flatten();
        format!("{}'s tab (CDP url {url:?}): {seen:?}", self.who)
    }

    /// Polls `expression` until it gives something other than null, false or undefined (an
    /// evaluation that fails mid-navigation counts as "not yet"), and returns that.
    async fn wait_for<T: DeserializeOwned>(&self, what: &str, expression: &str) -> T {
        let deadline = Instant::now() + DEADLINE;
        loop {
            let last = self.try_eval(expression).await;
            if let Ok(v) = &last
                && !v.is_null()
                && *v != Value::Bool(false)
            {
                return serde_json::from_value(v.clone())
                    .unwrap_or_else(|e| panic!("{}: waiting for {what}, got {v}: {e}", self.who));
            }
            if Instant::now() > deadline {
                panic!(
                    "{}: no {what} after {DEADLINE:?} (last answer {last:?})\n{}",
                    self.who,
                    self.describe().await
                );
            }
            tokio::time::sleep(POLL_EVERY).await;
        }
    }

    /// Flags the current document so [`Tab::wait_for_new_document`] can tell it from the
    /// next one (a URL alone cannot: a form may post back to the page it is on).
    async fn mark_document(&self) {
        self.eval::<Value>("window.__bfOldDocument = true").await;
    }

    /// Waits until a document loaded after [`Tab::mark_document`] has finished loading; returns
    /// its path and query.
    async fn wait_for_new_document(&self) -> String {
        self.wait_for(
            "new page",
            "!window.__bfOldDocument && document.readyState === 'complete' \
             && location.pathname + location.search",
        )
        .await
    }

    /// Opens `path` (never a same-page `#fragment` change: no new document would come), waits
    /// for it to load and returns where the browser ended up after redirects.
    async fn open(&self, path: &str) -> String {
        self.mark_document().await;
        let url = format!("{}{path}", self.base);
        if let Err(e) = self.page.goto(url.as_str()).await {
            panic!("{}: opening {url}: {e}\n{}", self.who, self.describe().await);
        }
        self.wait_for_new_document().await
    }

    /// Fills a field (an input or a select): sets its value and fires the events typing or
    /// choosing would fire.
    async fn fill(&self, selector: &str, value: &str) {
        let found: bool = self
            .eval(&format!(
                "(() => {{ const el = document.querySelector({sel}); if (!el) return false; \
                 el.focus(); el.value = {value}; \
                 el.dispatchEvent(new Event('input', {{bubbles: true}})); \
                 el.dispatchEvent(new Event('change', {{bubbles: true}})); \
                 return el.value === {value}; }})()",
                sel = js(selector),
                value = js(value),
            ))
            .await;
        assert!(
            found,
            "{}: no field {selector} that takes {value:?}\n{}",
            self.who,
            self.describe().await
        );
    }

    /// A real mouse click (scrolled into view) on the element.
    async fn click(&self, selector: &str) {
        let element = match self.page.find_element(selector).await {
            Ok(el) => el,
            Err(e) => {
                panic!("{}: no {selector} to click: {e}\n{}", self.who, self.describe().await)
            }
        };
        if let Err(e) = element.click().await {
            panic!("{}: clicking {selector}: {e}\n{}", self.who, self.describe().await);
        }
    }

    /// Clicks something that loads another page (a link, a form's button); returns the new
    /// page's path and query.
    async fn click_to_next_page(&self, selector: &str) -> String {
        self.mark_document().await;
        self.click(selector).await;
        self.wait_for_new_document().await
    }

    /// Submits a passkey form and waits for the script's verdict in `#passkey-status`.
    /// Returns the state (`signed-up`, `error`, …) and its text.
    async fn run_passkey_form(&self, form: &str) -> (String, String) {
        // A leftover state from an earlier try must not pass for this one's.
        self.eval::<Value>("document.querySelector('#passkey-status').dataset.state = 'idle'")
            .await;
        self.click(&format!("{form} button[type=submit]")).await;
        self.wait_for(
            "passkey verdict",
            "(() => { const s = document.querySelector('#passkey-status'); \
             return s && !['idle', 'busy'].includes(s.dataset.state) \
             && [s.dataset.state, s.textContent]; })()",
        )
        .await
    }

    /// Signs up with this tab's authenticator; returns the recovery codes the page shows.
    async fn sign_up(&self, email: &str, name: &str) -> Vec<String> {
        self.fill("#signup-email", email).await;
        self.fill("#signup-display-name", name).await;
        let (state, text) = self.run_passkey_form("#signup-form").await;
        assert_eq!(state, "signed-up", "{}: sign-up said {text:?}", self.who);
        let codes: String = self
            .wait_for(
                "recovery codes",
                "!document.querySelector('#recovery-codes').hidden \
                 && document.querySelector('#recovery-codes-list').textContent",
            )
            .await;
        codes.lines().map(str::trim).filter(|c| !c.is_empty()).map(str::to_string).collect()
    }

    /// Signs in on the sign-in page at `path` (`/signin`, maybe with a `return_to`) with this
    /// tab's authenticator; returns where the script sent the browser afterwards.
    async fn sign_in(&self, path: &str, email: &str) -> String {
        assert_eq!(self.open(path).await, path);
        self.fill("#signin-email", email).await;
        // Success navigates away at once, so the verdict is either an error on this page or
        // the next page.
        self.mark_document().await;
        self.eval::<Value>("document.querySelector('#passkey-status').dataset.state = 'idle'")
            .await;
        self.click("#signin-form button[type=submit]").await;
        let outcome: String = self
            .wait_for(
                "sign-in result",
                "(() => { const s = document.querySelector('#passkey-status'); \
                 if (window.__bfOldDocument) return s?.dataset.state === 'error' \
                   && 'error: ' + s.textContent; \
                 return document.readyState === 'complete' && location.pathname + location.search; })()",
            )
            .await;
        assert!(!outcome.starts_with("error: "), "{}: sign-in failed: {outcome}", self.who);
        outcome
    }

    async fn count(&self, selector: &str) -> usize {
        self.eval(&format!("document.querySelectorAll({}).length", js(selector))).await
    }

    /// The trimmed text of the first element matching `selector`.
    async fn text(&self, selector: &str) -> String {
        let text: Option<String> =
            self.eval(&format!("document.querySelector({})?.textContent", js(selector))).await;
        match text {
            Some(t) => t.trim().to_string(),
            None => panic!("{}: no {selector}\n{}", self.who, self.describe().await),
        }
    }

    /// A request from this page's own JavaScript (its cookies, its CSRF token); returns the
    /// status and the body's `message`, if any.
    async fn fetch(&self, method: &str, path: &str, body: Option<Value>) -> (u16, String) {
        let body = body.map_or("undefined".to_string(), |b| js(&b.to_string()));
        self.eval(&format!(
            "fetch({path}, {{method: {method}, headers: {{'content-type': 'application/json', \
             'x-csrf-token': document.querySelector('meta[name=csrf-token]')?.content ?? ''}}, \
             body: {body}}}) \
             .then(async r => {{ const t = await r.text(); let m = ''; \
               try {{ m = JSON.parse(t).message ?? ''; }} catch (_) {{}} return [r.status, m]; }})",
            path = js(path),
            method = js(method),
        ))
        .await
    }

    /// The credentials this tab's authenticator holds (private keys included).
    async fn credentials(&self) -> Vec<Credential> {
        self.page
            .execute(GetCredentialsParams::new(self.authenticator.clone()))
            .await
            .unwrap()
            .result
            .credentials
    }

    fn dialogs(&self) -> Vec<String> {
        self.dialogs.lock().unwrap().clone()
    }
}

/// Progress with its time, so a slow or stuck CI run shows where the time went.
fn lap(started: &Instant, what: &str) {
    eprintln!("[{:>7.2?}] {what}", started.elapsed());
}

/// Where a screenshot for humans goes: the workspace's `target/`.
/// Installed in every document before its own scripts run.
const PAGE_PROBE: &str = "window.__bfProblems = []; \
    window.addEventListener('error', e => window.__bfProblems.push('script error: ' + e.message)); \
    (() => { const original = console.error; console.error = (...args) => { \
      window.__bfProblems.push('console.error: ' + args.join(' ')); original.apply(console, args); }; })();";

impl Tab {
    /// Script errors, console errors and requests (the document, its assets, the live
    /// script's fetches) that answered 400 or more, on the current page.
    async fn problems(&self) -> Vec<String> {
        self.eval(
            "(() => { const failed = [...performance.getEntriesByType('navigation'), \
               ...performance.getEntriesByType('resource')] \
               .filter(e => (e.responseStatus || 0) >= 400) \
               .map(e => 'request ' + e.name + ' answered ' + e.responseStatus); \
               return (window.__bfProblems || []).concat(failed); })()",
        )
        .await
    }

    async fn assert_clean(&self, what: &str) {
        let problems = self.problems().await;
        assert!(problems.is_empty(), "{}: {what} is not clean: {problems:?}", self.who);
    }

    /// Saves a full-page screenshot under `target/screenshots/` for people to look at.
    async fn screenshot(&self, name: &str) {
        let dir = screenshot_path("screenshots");
        std::fs::create_dir_all(&dir).unwrap();
        self.page
            .save_screenshot(
                ScreenshotParams::builder().full_page(true).build(),
                dir.join(format!("{name}.png")),
            )
            .await
            .unwrap();
    }
}

fn screenshot_path(name: &str) -> PathBuf {
    Path::new(env!("CARGO_TARGET_TMPDIR")).parent().unwrap().join(name)
}

/// The audit trail of one workspace, oldest first, as (action, actor email).
async fn audit_trail(api: &Api, workspace: &domain::ids::WorkspaceId) -> Vec<(String, String)> {
    let mut entries = api.state.store.list_audit(workspace, 500, None).await.unwrap();
    entries.reverse();
    let mut trail = Vec::new();
    for e in entries {
        let actor = match &e.actor {
            Some(id) => api.state.store.user_by_id(id).await.unwrap().unwrap().email.to_string(),
            None => "system".to_string(),
        };
        trail.push((e.action, actor));
    }
    trail
}

/// A workspace `email` belongs to: the one with `slug`, or their personal one for `None`.
async fn workspace_of(api: &Api, email: &str, slug: Option<&str>) -> domain::ids::WorkspaceId {
    let email = domain::ids::Email::parse(email).unwrap();
    let user = api.state.store.user_by_email(&email).await.unwrap().unwrap();
    let all = api.state.store.workspaces_for_user(&user.id).await.unwrap();
    all.into_iter()
        .find(|w| match slug {
            Some(slug) => w.workspace.slug.as_str() == slug,
            None => w.workspace.personal,
        })
        .unwrap()
        .workspace
        .id
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_person_signs_up_in_a_real_browser_invites_a_viewer_who_cannot_change_anything_and_a_revoked_session_is_locked_out()
 {
    let api = Api::start().await;
    let base = api.base.clone();
    let started = Instant::now();

    // 1. Alice signs up on her laptop: the passkey ceremony runs in the page, against her
    //    device's authenticator, and the page shows her recovery codes once.
    let laptop = Chromium::launch("alice").await;
    let alice = laptop.tab("alice", &base).await;
    assert_eq!(alice.open("/signup").await, "/signup");
    let codes = alice.sign_up("alice@example.com", "Alice").await;
    assert_eq!(codes.len(), 10, "recovery codes shown: {codes:?}");
    lap(&started, "1. alice signed up");

    // 2. She creates a workspace with the form.
    assert_eq!(alice.open("/workspaces/new").await, "/workspaces/new");
    alice.fill("#ws-name", "Team").await;
    alice.fill("#ws-slug", "team").await;
    assert_eq!(
        alice.click_to_next_page("form[action='/workspaces'] button[type=submit]").await,
        "/w/team/members"
    );
    assert_eq!(alice.text(".flash").await, "Workspace created.");
    lap(&started, "2. workspace created");

    // 3. She invites Victor as a viewer; the link is shown once, on the page.
    alice.fill("#invite-email", "victor@example.com").await;
    alice.fill("#invite-role", "viewer").await;
    alice.click_to_next_page("form[action='/w/team/invites'] button[type=submit]").await;
    let link = alice.text("#invite-link").await;
    let invite_path =
        link.strip_prefix(base.as_str()).unwrap_or_else(|| panic!("invite link {link:?}"));
    assert!(invite_path.starts_with("/invite/bfi_"), "{link}");
    assert_eq!(alice.count("#invites-heading ~ table tbody tr").await, 1, "one pending invite");
    lap(&started, "3. invite link shown");

    // 4. Victor, on his own computer with his own device, follows the link: he signs up from
    //    it, comes back to it, and accepts.
    let victors_laptop = Chromium::launch("victor").await;
    let victor = victors_laptop.tab("victor", &base).await;
    let signup = format!("/signup?return_to={invite_path}");
    assert_eq!(victor.open(&signup).await, signup);
    assert_eq!(victor.sign_up("victor@example.com", "Victor").await.len(), 10);
    // "I saved these codes" leads back to the invitation.
    assert_eq!(victor.click_to_next_page("#recovery-codes-done").await, invite_path);
    assert_eq!(victor.text("#invite-heading").await, "Join Team");
    assert!(victor.text("main .lead").await.contains("viewer"));
    let accept = format!("form[action='{invite_path}/accept'] button[type=submit]");
    assert_eq!(victor.click_to_next_page(&accept).await, "/w/team/members");
    assert_eq!(victor.text(".flash").await, "Welcome to the workspace.");
    assert_eq!(victor.text(".page-head .badge").await, "viewer");
    assert_eq!(victor.count("#members-heading ~ table tbody tr").await, 2);
    // A viewer is shown nothing to change...
    for control in ["form[action$='/role']", "form[action$='/remove']", "form[action$='/invites']"]
    {
        assert_eq!(victor.count(control).await, 0, "a viewer sees {control}");
    }
    assert_eq!(victor.count("form[action='/w/team/leave']").await, 1, "but he may leave");
    // ...and a request crafted in his browser (his cookie, his valid CSRF token) is refused
    // for his role, not for a missing token.
    let (status, message) = victor
        .fetch(
            "POST",
            "/api/v1/workspaces/team/invites",
            Some(serde_json::json!({"email": "x@example.com", "role": "viewer"})),
        )
        .await;
    assert_eq!(
        (status, message.as_str()),
        (403, "your role in this workspace does not allow this")
    );
    assert_eq!(victor.fetch("GET", "/w/team/audit", None).await.0, 403);
    // The same browser can read what a viewer may read: the refusals are about the role.
    assert_eq!(victor.fetch("GET", "/api/v1/workspaces/team/members", None).await.0, 200);
    lap(&started, "4. victor joined as a viewer and was refused");

    // 5. He signs out with the button in the account menu, and back in with his passkey.
    victor.click("details.menu > summary").await;
    assert_eq!(victor.click_to_next_page("form[action='/signout'] button[type=submit]").await, "/");
    assert_eq!(victor.text(".flash").await, "Signed out.");
    assert_eq!(victor.count("form[action='/signout']").await, 0, "still looks signed in");
    // Signed in, `/` leads to the dashboard of his personal workspace.
    assert!(victor.sign_in("/signin", "victor@example.com").await.starts_with("/w/"));
    assert_eq!(victor.count("form[action='/signout']").await, 1, "signed in, per the navigation");
    lap(&started, "5. victor signed out and in");

    // 6. Victor also signs in on a second computer. A virtual authenticator lives in one tab,
    //    so his passkey is copied over (as a synced passkey would be), keeping its counter.
    let credentials = victor.credentials().await;
    assert_eq!(credentials.len(), 1, "victor's device holds one passkey");
    let desktop = Chromium::launch("victor's desktop").await;
    let victors_desktop = desktop.tab("victor's desktop", &base).await;
    victors_desktop
        .page
        .execute(AddCredentialParams::new(
            victors_desktop.authenticator.clone(),
            credentials[0].clone(),
        ))
        .await
        .unwrap();
    // Straight to his account page: `/` waits on every dependency's health check.
    let signin = "/signin?return_to=%2Faccount";
    assert_eq!(victors_desktop.sign_in(signin, "victor@example.com").await, "/account");

    // On his laptop he sees both sessions and revokes the other one.
    assert_eq!(victor.open("/account#sessions").await, "/account");
    assert_eq!(victor.count("#sessions tbody tr").await, 2);
    assert_eq!(victor.count("#sessions .badge.current").await, 1);
    let revoke = "#sessions form[action$='/revoke'] button[type=submit]";
    assert_eq!(victor.count(revoke).await, 1, "only the other session has a Revoke button");
    assert_eq!(victor.click_to_next_page(revoke).await, "/account");
    assert!(
        victor.dialogs().iter().any(|d| d.starts_with("Sign out ")),
        "the page asked before revoking: {:?}",
        victor.dialogs()
    );
    assert_eq!(victor.text(".flash").await, "Session revoked: it is signed out now.");
    assert_eq!(victor.count("#sessions tbody tr").await, 1);
    // The revoked browser is out on its very next request; the laptop is not.
    assert_eq!(victors_desktop.open("/account").await, "/signin?return_to=%2Faccount");
    assert_eq!(victor.open("/account").await, "/account");
    lap(&started, "6. revoked session locked out");

    // 7. Alice sees Victor among the members, and the invitation in the audit log.
    assert_eq!(alice.open("/w/team/members").await, "/w/team/members");
    let people = alice.text("#members-heading ~ table tbody").await;
    assert!(people.contains("victor@example.com") && people.contains("viewer"), "{people}");
    let shot = screenshot_path("browser-members.png");
    alice
        .page
        .save_screenshot(ScreenshotParams::builder().full_page(true).build(), &shot)
        .await
        .unwrap();
    assert_eq!(alice.open("/w/team/audit").await, "/w/team/audit");
    let log = alice.text("table.audit tbody").await;
    for action in ["workspace.create", "invite.create", "invite.accept"] {
        assert!(log.contains(action), "the audit page lacks {action}: {log}");
    }
    lap(&started, "7. audit page checked");

    // The store recorded who did what, in order: account events in each person's personal
    // workspace (a sign-up also opens the first session: auth.signin), workspace events in
    // the team's.
    let only = |trail: Vec<(String, String)>, wanted: &[&str]| -> Vec<(String, String)> {
        trail
            .into_iter()
            .filter(|(action, _)| wanted.iter().any(|w| action.starts_with(w)))
            .collect()
    };
    let expect = |events: &[(&str, &str)]| -> Vec<(String, String)> {
        events.iter().map(|(a, w)| (a.to_string(), w.to_string())).collect()
    };
    let (a, v) = ("alice@example.com", "victor@example.com");
    let account = ["auth.", "session."];
    let alices = audit_trail(&api, &workspace_of(&api, a, None).await).await;
    assert_eq!(only(alices, &account), expect(&[("auth.signup", a), ("auth.signin", a)]));
    let victors = audit_trail(&api, &workspace_of(&api, v, None).await).await;
    assert_eq!(
        only(victors, &account),
        expect(&[
            ("auth.signup", v),
            ("auth.signin", v),
            ("auth.signout", v),
            ("auth.signin", v), // his laptop, with the sign-in form
            ("auth.signin", v), // his desktop, with the copied passkey
            ("session.revoke", v),
        ])
    );
    let team = audit_trail(&api, &workspace_of(&api, a, Some("team")).await).await;
    assert_eq!(
        only(team, &["workspace.create", "invite.create", "invite.accept"]),
        expect(&[("workspace.create", a), ("invite.create", a), ("invite.accept", v)])
    );

    for browser in [laptop, victors_laptop, desktop] {
        browser.close().await;
    }
    lap(&started, "browsers closed");
    eprintln!("screenshot of alice's members page: {}", shot.display());
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signed_in_person_reaches_every_page_of_the_shell_switches_workspace_and_sees_the_audit_log()
 {
    let api = Api::start().await;
    let browser = Chromium::launch("grace").await;
    let grace = browser.tab("grace", &api.base).await;
    assert_eq!(grace.open("/signin").await, "/signin");
    grace.assert_clean("/signin").await;
    grace.screenshot("signin").await;
    assert_eq!(grace.open("/signup").await, "/signup");
    grace.assert_clean("/signup").await;
    grace.screenshot("signup").await;
    grace.sign_up("grace@example.com", "Grace").await;

    // Signed in, the home page is the dashboard of the personal workspace.
    let home = grace.open("/").await;
    assert!(home.starts_with("/w/grace"), "{home}");
    let personal = home.trim_start_matches("/w/").to_string();
    assert_eq!(grace.count("h1").await, 1);
    assert_eq!(grace.text("nav [aria-current='page']").await, "Dashboard");

    // A second workspace, then every page of the shell, each with one heading and its nav
    // link marked current.
    assert_eq!(grace.open("/workspaces/new").await, "/workspaces/new");
    grace.fill("#ws-name", "Lab").await;
    grace.fill("#ws-slug", "lab").await;
    grace.click_to_next_page("form[action='/workspaces'] button[type=submit]").await;
    for (path, current) in [
        ("/w/lab", "Dashboard"),
        ("/w/lab/sessions", "Sessions"),
        ("/w/lab/templates", "Templates"),
        ("/w/lab/members", "Members"),
        ("/w/lab/audit", "Audit log"),
        ("/w/lab/settings", "Settings"),
    ] {
        assert_eq!(grace.open(path).await, path);
        assert_eq!(grace.count("h1").await, 1, "{path}");
        assert_eq!(grace.text("nav [aria-current='page']").await, current, "{path}");
        grace.assert_clean(path).await;
        grace.screenshot(&current.to_lowercase().replace(' ', "-")).await;
    }
    // The probe does see problems: a missing page is one.
    grace.open("/w/lab/no-such-page").await;
    let problems = grace.problems().await;
    assert!(problems.iter().any(|p| p.contains("answered 404")), "{problems:?}");
    assert_eq!(grace.open("/account").await, "/account");
    grace.assert_clean("/account").await;
    grace.screenshot("account").await;
    assert_eq!(grace.count("#passkeys tbody tr").await, 1);

    // Rename the workspace from its settings page.
    assert_eq!(grace.open("/w/lab/settings").await, "/w/lab/settings");
    grace.fill("form[action='/w/lab/settings'] input[name=name]", "Research Lab").await;
    assert_eq!(
        grace.click_to_next_page("form[action='/w/lab/settings'] button[type=submit]").await,
        "/w/lab/settings"
    );
    assert_eq!(grace.text(".flash").await, "Workspace renamed.");

    // The switcher takes her to the other workspace's dashboard, without JavaScript help.
    grace.fill("select[name=ws]", &personal).await;
    let switched = grace.click_to_next_page("form[action='/switch'] button[type=submit]").await;
    assert_eq!(switched, format!("/w/{personal}"));

    // Live updates: a session's state changes on its own and the open page follows.
    let id = crate::shell::seed_session(&api, "lab", "grace@example.com", "starting").await;
    assert_eq!(grace.open("/w/lab/sessions").await, "/w/lab/sessions");
    let badge =
        format!("document.querySelector('[data-session-id=\"{id}\"] [data-state]')?.dataset.state");
    assert_eq!(grace.eval::<String>(&badge).await, "starting");
    sqlx::query("UPDATE sessions SET state = 'running'")
        .execute(api.state.store.pool())
        .await
        .unwrap();
    let _: bool =
        grace.wait_for("the badge to turn running", &format!("({badge}) === 'running'")).await;

    // The session's own page, from its row: clean, and following the session without a reload
    // (its badge, its controls, its events).
    let session_page = format!("/w/lab/sessions/{id}");
    assert_eq!(
        grace.click_to_next_page(&format!("main a[href='{session_page}']")).await,
        session_page
    );
    assert_eq!(grace.count("h1").await, 1);
    assert_eq!(grace.count("form[data-session-op='stop']:not([hidden])").await, 1);
    assert_eq!(grace.count("form[data-session-op='start'][hidden]").await, 1);
    grace.mark_document().await;
    sqlx::query("UPDATE sessions SET state = 'sleeping'")
        .execute(api.state.store.pool())
        .await
        .unwrap();
    let session_id = domain::ids::SessionId::parse(&id).unwrap();
    let detail = serde_json::json!({ "reason": "idle <30 min>" });
    let now = domain::store::now_ms();
    api.state
        .store
        .append_session_event(&session_id, 1, "state.sleeping", &detail, now)
        .await
        .unwrap();
    let _: bool = grace
        .wait_for(
            "the session page to follow the session",
            "document.querySelector('.session-status [data-state]').dataset.state === 'sleeping' \
             && document.querySelector('.session-status [data-state]').className === 'badge state state-sleeping' \
             && !document.querySelector(\"form[data-session-op='start']\").hidden \
             && document.querySelector(\"form[data-session-op='stop']\").hidden \
             && document.querySelectorAll('#session-events li').length === 1 \
             && document.querySelector('#session-events li .session-event-detail').textContent === 'reason=idle <30 min>' \
             && document.querySelector('#session-events').dataset.after === '1'",
        )
        .await;
    assert!(grace.eval::<bool>("window.__bfOldDocument === true").await, "the page reloaded");
    grace.assert_clean(&session_page).await;
    grace.screenshot("session").await;

    // The audit log of the lab shows what she did there.
    assert_eq!(grace.open("/w/lab/audit").await, "/w/lab/audit");
    let table = grace.text("main table").await;
    assert!(table.contains("workspace.create") && table.contains("workspace.rename"), "{table}");
    let account_log = grace.open(&format!("/w/{personal}/audit")).await;
    assert!(account_log.ends_with("/audit"));
    let table = grace.text("main table").await;
    assert!(table.contains("auth.signup") && table.contains("auth.signin"), "{table}");
    browser.close().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_template_and_build_pages_are_clean_and_a_running_build_log_follows_the_build() {
    let (api, _s3) = crate::shell::api_with_storage().await;
    let browser = Chromium::launch("tess").await;
    let tess = browser.tab("tess", &api.base).await;
    assert_eq!(tess.open("/signup").await, "/signup");
    tess.sign_up("tess@example.com", "Tess").await;
    let home = tess.open("/").await;
    assert!(home.starts_with("/w/"), "{home}");
    let slug = home.trim_start_matches("/w/").to_string();
    let seeded = crate::shell::seed_template(&api, &slug, "tess@example.com", "web-app").await;

    // From the catalog to the template, to a finished build and back: no script errors, no
    // failed requests.
    let list = format!("/w/{slug}/templates");
    assert_eq!(tess.open(&list).await, list);
    tess.assert_clean(&list).await;
    let detail = format!("/w/{slug}/templates/web-app");
    assert_eq!(tess.click_to_next_page(&format!("main a[href='{detail}']")).await, detail);
    assert_eq!(tess.count("h1").await, 1);
    assert!(!tess.text("main").await.contains(crate::shell::SECRET_VALUE));
    tess.assert_clean(&detail).await;
    tess.screenshot("template").await;
    let failed = format!("/w/{slug}/builds/{}", seeded.failed);
    assert_eq!(tess.click_to_next_page(&format!("main a[href='{failed}']")).await, failed);
    assert!(tess.text("#build-error").await.contains("RUN make exited with 2 <oops>"));
    assert_eq!(tess.count("form[data-build-action='retry']:not([hidden])").await, 1);
    tess.assert_clean(&failed).await;
    assert_eq!(tess.click_to_next_page(&format!("main a[href='{detail}']")).await, detail);

    // A running build: the page follows its log and its state without a reload.
    let running = format!("/w/{slug}/builds/{}", seeded.running);
    assert_eq!(tess.open(&running).await, running);
    tess.mark_document().await;
    assert_eq!(tess.count("form[data-build-action='cancel']:not([hidden])").await, 1);
    assert_eq!(tess.count("form[data-build-action='retry'][hidden]").await, 1);
    assert!(tess.text("#build-log").await.contains("step 2/7: RUN <apt-get>"));
    api.state
        .blob
        .put(
            &activities::build::log_chunk_key(&seeded.running, 2),
            b"step 3/7: RUN cargo build\n".to_vec(),
            "text/plain; charset=utf-8",
        )
        .await
        .unwrap();
    let _: bool = tess
        .wait_for(
            "the new log line",
            "document.querySelector('#build-log').textContent.endsWith('step 3/7: RUN cargo build\\n')",
        )
        .await;
    let id = domain::ids::TemplateBuildId::parse(&seeded.running).unwrap();
    api.state.store.set_build_status(&id, "failed", Some("disk full"), None).await.unwrap();
    let _: bool = tess
        .wait_for(
            "the badge, the error and the buttons to follow the build",
            "document.querySelector('[data-build-state]').dataset.buildState === 'failed' \
             && document.querySelector('[data-build-state]').className === 'badge build build-failed' \
             && !document.querySelector('#build-error').hidden \
             && document.querySelector('#build-error-text').textContent === 'disk full' \
             && !document.querySelector(\"form[data-build-action='retry']\").hidden \
             && document.querySelector(\"form[data-build-action='cancel']\").hidden \
             && document.querySelector('#build-log').dataset.done === 'true' \
             && document.querySelector('#build-finished time') !== null \
             && document.querySelector('#build-duration').textContent.endsWith('s')",
        )
        .await;
    // Still the same document: no reload happened.
    assert!(tess.eval::<bool>("window.__bfOldDocument === true").await);
    let log = tess.text("#build-log").await;
    assert_eq!(log.matches("step 1/7").count(), 1, "no text twice: {log}");
    tess.assert_clean(&running).await;
    tess.screenshot("build").await;
    browser.close().await;
}

/// The browser terminal against a real session: a person types a command into the page in
/// headless Chromium and reads its output back from the terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 4)]
async fn the_browser_terminal_runs_a_typed_command_in_a_real_session() {
    let app = crate::helpers::spawn_app().await;
    // Passkeys are bound to the public URL's host, `localhost`.
    let base = app.base.replace("127.0.0.1", "localhost");
    let store = app.stack.as_ref().unwrap().store.clone();
    let browser = Chromium::launch("tina").await;
    let tina = browser.tab("tina", &base).await;
    assert_eq!(tina.open("/signup").await, "/signup");
    tina.sign_up("tina@example.com", "Tina").await;
    let home = tina.open("/").await;
    let slug = home.trim_start_matches("/w/").to_string();

    // Her template and session, made through the API with a token of hers.
    let email = domain::ids::Email::parse("tina@example.com").unwrap();
    let user = store.user_by_email(&email).await.unwrap().unwrap();
    let (token, hash) = domain::secrets::generate(domain::secrets::SecretKind::ApiToken);
    store.create_api_token(&user.id, "test", &hash, domain::store::now_ms(), None).await.unwrap();
    let client = app.client.clone().with_token(token.clone());
    let stack = crate::sessions::Stack { app, client, ws: slug.clone(), token };
    stack.template("term").await;
    assert_eq!(stack.create("term", "web").await.unwrap().state, "running");

    // From the session page, "Open in browser".
    let page = format!("/w/{slug}/sessions/web");
    assert_eq!(tina.open(&page).await, page);
    let terminal = tina.click_to_next_page("#session-open-terminal").await;
    assert!(
        terminal.starts_with(&format!("/w/{slug}/sessions/")) && terminal.ends_with("/terminal"),
        "{terminal}"
    );
    let state: String = tina
        .wait_for(
            "the terminal to connect",
            "document.querySelector('#terminal-status')?.dataset.state === 'connected' \
             ? 'connected' : null",
        )
        .await;
    assert_eq!(state, "connected");

    // Type into the terminal as a person would: focus it and send key events.
    let input = tina.page.find_element(".xterm-helper-textarea").await.unwrap();
    input.click().await.unwrap();
    input.type_str("echo term-$((6*7)) $(id -un)").await.unwrap();
    input.press_key("Enter").await.unwrap();
    let line: String = tina
        .wait_for(
            "the command's output in the terminal",
            "(() => { const b = window.burstflareTerminal.term.buffer.active; \
              for (let i = 0; i < b.length; i++) { \
                const l = b.getLine(i).translateToString(true); \
                if (l.startsWith('term-42')) return l; } return null; })()",
        )
        .await;
    assert_eq!(line.trim(), "term-42 dev");
    tina.assert_clean(&terminal).await;
    tina.screenshot("terminal").await;

    // Opening and closing are audited like SSH.
    drop(tina);
    browser.close().await;
    let deadline = Instant::now() + Duration::from_secs(20);
    loop {
        let kinds: Vec<String> = sqlx::query_scalar::<_, String>(
            "SELECT detail_json FROM audit_log WHERE action = 'session.connect.close'",
        )
        .fetch_all(store.pool())
        .await
        .unwrap();
        if kinds.iter().any(|d| d.contains("\"kind\":\"terminal\"")) {
            break;
        }
        assert!(Instant::now() < deadline, "no terminal close audited: {kinds:?}");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
}
