//! A small HTTP client that behaves like a browser for the API: keeps the session cookie,
//! sends our Origin, and knows the CSRF token; plus a SoftPasskey to answer ceremonies.

use reqwest::StatusCode;
use serde_json::Value;
use webauthn_authenticator_rs::WebauthnAuthenticator;
use webauthn_authenticator_rs::softpasskey::SoftPasskey;
use webauthn_rs::prelude::{CreationChallengeResponse, RequestChallengeResponse, Url};

use burstflare_api::{AppState, http};

/// The API alone (SQLite in a temp dir, no Temporal or Docker needed), served on a free port
/// with `public_url` = `http://localhost:PORT` (passkeys need a domain, not an IP).
pub struct Api {
    pub base: String,
    pub state: AppState,
    _dir: tempfile::TempDir,
    server: tokio::task::JoinHandle<()>,
}

impl Api {
    pub async fn start() -> Api {
        Self::start_with(|_| {}).await
    }

    pub async fn start_with(tweak: impl FnOnce(&mut domain::Config)) -> Api {
        let dir = tempfile::tempdir().unwrap();
        let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
        let port = listener.local_addr().unwrap().port();
        let mut config = domain::Config {
            public_url: url::Url::parse(&format!("http://localhost:{port}")).unwrap(),
            ..Default::default()
        };
        tweak(&mut config);
        let store =
            domain::Store::connect(&format!("sqlite://{}/t.db?mode=rwc", dir.path().display()))
                .await
                .unwrap();
        store.migrate().await.unwrap();
        let state = AppState::new(config, store).unwrap();
        let router = http::router(state.clone());
        let server = tokio::spawn(async move {
            http::serve(listener, router, std::future::pending()).await.unwrap();
        });
        Api { base: format!("http://localhost:{port}"), state, _dir: dir, server }
    }

    pub fn browser(&self) -> Browser {
        Browser {
            base: self.base.clone(),
            http: reqwest::Client::builder()
                .redirect(reqwest::redirect::Policy::none())
                .build()
                .unwrap(),
            cookie: None,
            csrf: None,
            origin: Some(self.base.clone()),
            bearer: None,
            passkey: SoftPasskey::new(true),
        }
    }
}

impl Drop for Api {
    fn drop(&mut self) {
        self.server.abort();
    }
}

pub struct Browser {
    pub base: String,
    pub http: reqwest::Client,
    pub cookie: Option<String>,
    pub csrf: Option<String>,
    pub origin: Option<String>,
    pub bearer: Option<String>,
    pub passkey: SoftPasskey,
}

pub struct Reply {
    pub status: StatusCode,
    pub body: Value,
    pub set_cookie: Option<String>,
}

impl Browser {
    pub async fn send(
        &mut self,
        method: reqwest::Method,
        path: &str,
        body: Option<Value>,
    ) -> Reply {
        let mut req = self.http.request(method.clone(), format!("{}{path}", self.base));
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        if let Some(t) = &self.bearer {
            req = req.header("authorization", format!("Bearer {t}"));
        }
        if method != reqwest::Method::GET {
            if let Some(o) = &self.origin {
                req = req.header("origin", o);
            }
            if let Some(c) = &self.csrf {
                req = req.header("x-csrf-token", c);
            }
        }
        if let Some(b) = body {
            req = req.json(&b);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let set_cookie = resp
            .headers()
            .get("set-cookie")
            .map(|v| v.to_str().unwrap().split(';').next().unwrap().to_string());
        let text = resp.text().await.unwrap();
        let body = serde_json::from_str(&text).unwrap_or(Value::String(text));
        if let Some(c) = &set_cookie {
            if c.ends_with('=') {
                self.cookie = None;
            } else {
                self.cookie = Some(c.clone());
            }
        }
        Reply { status, body, set_cookie }
    }

    /// Posts an HTML form (the CSRF token goes in the `csrf` field, as the pages send it).
    pub async fn post_form(&mut self, path: &str, fields: &[(&str, &str)]) -> Reply {
        let mut pairs: Vec<(String, String)> =
            fields.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        if let Some(c) = &self.csrf {
            pairs.push(("csrf".into(), c.clone()));
        }
        let mut req = self.http.post(format!("{}{path}", self.base)).form(&pairs);
        if let Some(c) = &self.cookie {
            req = req.header("cookie", c);
        }
        if let Some(o) = &self.origin {
            req = req.header("origin", o);
        }
        let resp = req.send().await.unwrap();
        let status = resp.status();
        let text = resp.text().await.unwrap();
        Reply { status, body: Value::String(text), set_cookie: None }
    }

    pub async fn get(&mut self, path: &str) -> Reply {
        self.send(reqwest::Method::GET, path, None).await
    }

    pub async fn post(&mut self, path: &str, body: Value) -> Reply {
        self.send(reqwest::Method::POST, path, Some(body)).await
    }

    /// Reads the CSRF token of the current session (the web pages put it in a meta tag; the
    /// API client reads it from the account page).
    pub async fn load_csrf(&mut self, api: &Api) {
        let token = self.cookie.as_ref().unwrap().split_once('=').unwrap().1.to_string();
        let s = api
            .state
            .store
            .browser_session_by_token_hash(
                &domain::secrets::hash(&token),
                domain::store::now_ms(),
                i64::MAX / 4,
            )
            .await
            .unwrap()
            .expect("a live session");
        self.csrf = Some(s.csrf_token);
    }

    pub fn origin_url(&self) -> Url {
        Url::parse(&self.base).unwrap()
    }

    /// Answers a registration challenge with the soft authenticator.
    pub fn register(&mut self, options: &Value) -> Value {
        let ccr: CreationChallengeResponse = serde_json::from_value(options.clone()).unwrap();
        let origin = self.origin_url();
        serde_json::to_value(self.passkey.do_registration(origin, ccr).unwrap()).unwrap()
    }

    pub fn assert(&mut self, options: &Value) -> Value {
        let rcr: RequestChallengeResponse = serde_json::from_value(options.clone()).unwrap();
        let origin = self.origin_url();
        serde_json::to_value(self.passkey.do_authentication(origin, rcr).unwrap()).unwrap()
    }

    /// Signs up through the API; returns the recovery codes.
    pub async fn sign_up(&mut self, email: &str, name: &str) -> Vec<String> {
        let r = self
            .post(
                "/api/v1/auth/signup/start",
                serde_json::json!({"email": email, "display_name": name}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        let cred = self.register(&r.body["options"]);
        let r = self
            .post(
                "/api/v1/auth/signup/finish",
                serde_json::json!({"ceremony_id": r.body["ceremony_id"], "credential": cred}),
            )
            .await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        r.body["recovery_codes"]
            .as_array()
            .unwrap()
            .iter()
            .map(|c| c.as_str().unwrap().to_string())
            .collect()
    }

    /// Starts a sign-in; returns (ceremony id, options).
    pub async fn sign_in_start(&mut self, email: &str) -> (Value, Value) {
        let r = self.post("/api/v1/auth/signin/start", serde_json::json!({"email": email})).await;
        assert_eq!(r.status, 200, "{:?}", r.body);
        (r.body["ceremony_id"].clone(), r.body["options"].clone())
    }

    pub async fn sign_in(&mut self, email: &str) -> Reply {
        let (id, options) = self.sign_in_start(email).await;
        let cred = self.assert(&options);
        self.post(
            "/api/v1/auth/signin/finish",
            serde_json::json!({"ceremony_id": id, "credential": cred}),
        )
        .await
    }
}
