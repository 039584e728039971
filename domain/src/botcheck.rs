//! The bot check done on registration and when a sign-in challenge is created: a trait, so the
//! API does not care whether it is Cloudflare Turnstile (when `[turnstile] secret` is configured)
//! or switched off (dev). Failing to reach the verifier refuses the request: the check fails
//! closed. Neither the secret nor the widget's token ever appears in an error or a log line.

use std::sync::Arc;
use std::time::Duration;

use secrecy::{ExposeSecret, SecretString};
use serde::Deserialize;
use url::Url;

use crate::config::TurnstileConfig;

/// Cloudflare's siteverify endpoint, the default of `turnstile.siteverify_url`.
pub const TURNSTILE_SITEVERIFY_URL: &str =
    "https://challenges.cloudflare.com/turnstile/v0/siteverify";

/// The whole siteverify call, connect included. A person is waiting on the page.
pub const SITEVERIFY_TIMEOUT: Duration = Duration::from_secs(5);

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum BotCheckError {
    #[error(
        "bot check: the challenge response is missing; complete the check on the page and retry"
    )]
    Missing,
    /// The verifier said no. `codes` are its error codes (e.g. `invalid-input-response`,
    /// `timeout-or-duplicate`), safe to show and log.
    #[error("bot check: the challenge was not accepted ({}); reload the page and retry", .codes.join(", "))]
    Rejected { codes: Vec<String> },
    /// The verifier could not be asked or did not answer sensibly; the request is refused.
    #[error("bot check: the verification service is unavailable ({0}); retry in a moment")]
    Unavailable(String),
}

#[async_trait::async_trait]
pub trait BotCheck: Send + Sync + std::fmt::Debug {
    /// `token` is what the page's widget produced (form field `cf-turnstile-response`), `ip` the client.
    async fn verify(&self, token: Option<&str>, ip: Option<&str>) -> Result<(), BotCheckError>;
    /// Site key for the page's widget, or None when the check is off.
    fn site_key(&self) -> Option<&str>;
}

/// The check from configuration: [`Disabled`] when `turnstile.secret` is empty, else [`Turnstile`].
pub fn from_config(cfg: &TurnstileConfig) -> Arc<dyn BotCheck> {
    if cfg.secret.expose_secret().is_empty() {
        return Arc::new(Disabled);
    }
    match reqwest::Client::builder().timeout(SITEVERIFY_TIMEOUT).build() {
        Ok(http) => Arc::new(Turnstile {
            secret: cfg.secret.clone(),
            site_key: cfg.site_key.clone(),
            siteverify_url: cfg.siteverify_url.clone(),
            http,
        }),
        // Only a TLS backend that cannot start gets here; refuse every check rather than panic
        // or silently switch the check off.
        Err(e) => Arc::new(Broken { site_key: cfg.site_key.clone(), reason: e.to_string() }),
    }
}

/// No bot check: every request passes. For dev, where no Turnstile secret is configured.
#[derive(Debug, Clone, Copy, Default)]
pub struct Disabled;

#[async_trait::async_trait]
impl BotCheck for Disabled {
    async fn verify(&self, _token: Option<&str>, _ip: Option<&str>) -> Result<(), BotCheckError> {
        Ok(())
    }

    fn site_key(&self) -> Option<&str> {
        None
    }
}

/// Cloudflare Turnstile: the token is checked with a POST to siteverify. `Debug` shows the secret
/// as redacted (`SecretString`).
#[derive(Debug, Clone)]
pub struct Turnstile {
    pub secret: SecretString,
    pub site_key: String,
    pub siteverify_url: Url,
    pub http: reqwest::Client,
}

#[derive(Deserialize)]
struct SiteverifyReply {
    success: bool,
    #[serde(rename = "error-codes", default)]
    error_codes: Vec<String>,
}

#[async_trait::async_trait]
impl BotCheck for Turnstile {
    async fn verify(&self, token: Option<&str>, ip: Option<&str>) -> Result<(), BotCheckError> {
        let token = token.map(str::trim).filter(|t| !t.is_empty()).ok_or(BotCheckError::Missing)?;
        // Built in a block: the serializer is not Send and must not live across an await.
        let body = {
            let mut form = url::form_urlencoded::Serializer::new(String::new());
            form.append_pair("secret", self.secret.expose_secret()).append_pair("response", token);
            if let Some(ip) = ip.filter(|ip| !ip.is_empty()) {
                form.append_pair("remoteip", ip);
            }
            form.finish()
        };
        let unavailable = |what: &str, e: reqwest::Error| {
            // The URL is configuration, not a secret; the secret and token are in the body only.
            BotCheckError::Unavailable(format!("{what} {}: {e}", self.siteverify_url))
        };
        let resp = self
            .http
            .post(self.siteverify_url.clone())
            .timeout(SITEVERIFY_TIMEOUT)
            .header(reqwest::header::CONTENT_TYPE, "application/x-www-form-urlencoded")
            .body(body)
            .send()
            .await
            .map_err(|e| unavailable("calling", e))?;
        let status = resp.status();
        if !status.is_success() {
            return Err(BotCheckError::Unavailable(format!(
                "{} answered HTTP {status}",
                self.siteverify_url
            )));
        }
        let reply: SiteverifyReply =
            resp.json().await.map_err(|e| unavailable("reading the reply of", e))?;
        if reply.success {
            return Ok(());
        }
        if reply.error_codes.iter().any(|c| c == "internal-error") {
            // Cloudflare's own failure, documented as retryable: not the person's fault.
            return Err(BotCheckError::Unavailable(format!(
                "{} reported internal-error",
                self.siteverify_url
            )));
        }
        if reply.error_codes.iter().any(|c| c.ends_with("-secret")) {
            // Every sign-up will fail until an operator fixes the configuration: say so loudly.
            tracing::error!(codes = ?reply.error_codes, "turnstile refused our secret; check turnstile.secret");
        }
        Err(BotCheckError::Rejected { codes: reply.error_codes })
    }

    fn site_key(&self) -> Option<&str> {
        Some(&self.site_key)
    }
}

/// A configured check whose HTTP client could not be built: refuses every request.
#[derive(Debug)]
struct Broken {
    site_key: String,
    reason: String,
}

#[async_trait::async_trait]
impl BotCheck for Broken {
    async fn verify(&self, _token: Option<&str>, _ip: Option<&str>) -> Result<(), BotCheckError> {
        Err(BotCheckError::Unavailable(format!("HTTP client unavailable: {}", self.reason)))
    }

    fn site_key(&self) -> Option<&str> {
        Some(&self.site_key)
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use testkit::turnstile::{Received, TurnstileStandIn};

    use super::*;

    const SECRET: &str = "0x4AAAAAAAstand-in-secret-DO-NOT-LEAK";
    const GOOD: &str = "XXXX.GOOD.TOKEN.XXXX";

    fn config(secret: &str, url: Url) -> TurnstileConfig {
        TurnstileConfig {
            secret: SecretString::from(secret),
            site_key: "0x4AAAAAAAsite-key".into(),
            siteverify_url: url,
        }
    }

    /// Neither the secret nor `token` may show in the check's Debug or in the error.
    fn assert_no_leak(check: &dyn BotCheck, err: &BotCheckError, token: &str) {
        for shown in [format!("{check:?}"), format!("{err:?}"), err.to_string()] {
            assert!(!shown.contains(SECRET), "secret leaked: {shown}");
            assert!(!shown.contains(token), "token leaked: {shown}");
        }
    }

    #[tokio::test]
    async fn a_good_token_passes_and_the_client_ip_is_sent() {
        let standin = TurnstileStandIn::start(SECRET, GOOD).await.unwrap();
        let check = from_config(&config(SECRET, standin.siteverify_url()));
        check.verify(Some(GOOD), Some("203.0.113.7")).await.unwrap();
        assert_eq!(check.site_key(), Some("0x4AAAAAAAsite-key"));
        assert_eq!(
            standin.received(),
            vec![Received { response: Some(GOOD.into()), remoteip: Some("203.0.113.7".into()) }]
        );
    }

    #[tokio::test]
    async fn a_missing_token_is_refused_without_calling_siteverify() {
        let standin = TurnstileStandIn::start(SECRET, GOOD).await.unwrap();
        let check = from_config(&config(SECRET, standin.siteverify_url()));
        for token in [None, Some(""), Some("  ")] {
            let err = check.verify(token, Some("203.0.113.7")).await.unwrap_err();
            assert_eq!(err, BotCheckError::Missing);
        }
        assert_eq!(
            BotCheckError::Missing.to_string(),
            "bot check: the challenge response is missing; complete the check on the page and retry"
        );
        assert!(standin.received().is_empty(), "{:?}", standin.received());
    }

    #[tokio::test]
    async fn a_bad_token_is_rejected_with_the_verifiers_code() {
        let standin = TurnstileStandIn::start(SECRET, GOOD).await.unwrap();
        let check = from_config(&config(SECRET, standin.siteverify_url()));
        let bad = "XXXX.FORGED.TOKEN.XXXX";
        let err = check.verify(Some(bad), None).await.unwrap_err();
        assert_eq!(err, BotCheckError::Rejected { codes: vec!["invalid-input-response".into()] });
        assert!(err.to_string().contains("invalid-input-response"), "{err}");
        assert_no_leak(check.as_ref(), &err, bad);
        assert_eq!(standin.received()[0].remoteip, None);
    }

    #[tokio::test]
    async fn a_wrong_secret_is_rejected_and_not_shown() {
        let standin = TurnstileStandIn::start("0x4AAAAAAAthe-real-secret", GOOD).await.unwrap();
        let check = from_config(&config(SECRET, standin.siteverify_url()));
        let err = check.verify(Some(GOOD), Some("198.51.100.1")).await.unwrap_err();
        assert_eq!(err, BotCheckError::Rejected { codes: vec!["invalid-input-secret".into()] });
        assert_no_leak(check.as_ref(), &err, GOOD);
    }

    #[tokio::test]
    async fn an_unreachable_verifier_fails_closed() {
        let standin = TurnstileStandIn::start(SECRET, GOOD).await.unwrap();
        let url = standin.siteverify_url();
        standin.stop().await;
        let check = from_config(&config(SECRET, url));
        let err = check.verify(Some(GOOD), Some("203.0.113.7")).await.unwrap_err();
        assert!(matches!(err, BotCheckError::Unavailable(_)), "{err:?}");
        assert_no_leak(check.as_ref(), &err, GOOD);
    }

    #[tokio::test]
    async fn an_http_error_from_the_verifier_fails_closed() {
        let standin = TurnstileStandIn::start(SECRET, GOOD).await.unwrap();
        let wrong_path = standin.siteverify_url().join("/not-siteverify").unwrap();
        let check = from_config(&config(SECRET, wrong_path));
        let err = check.verify(Some(GOOD), None).await.unwrap_err();
        assert!(err.to_string().contains("HTTP 404"), "{err}");
        assert!(matches!(err, BotCheckError::Unavailable(_)), "{err:?}");
        assert_no_leak(check.as_ref(), &err, GOOD);
    }

    #[tokio::test]
    async fn an_empty_secret_switches_the_check_off() {
        let check = from_config(&config("", Url::parse(TURNSTILE_SITEVERIFY_URL).unwrap()));
        assert_eq!(check.site_key(), None);
        check.verify(None, None).await.unwrap();
        assert!(format!("{check:?}").contains("Disabled"));
    }

    #[test]
    fn the_default_url_is_cloudflares_siteverify() {
        assert_eq!(TurnstileConfig::default().siteverify_url.as_str(), TURNSTILE_SITEVERIFY_URL);
    }
}
