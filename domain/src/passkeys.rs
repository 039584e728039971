//! Passkey ceremonies with webauthn-rs. User verification is required (webauthn-rs's passkey
//! flows ask for it and refuse assertions without the UV flag). Ceremony state never leaves
//! the server: callers store it with `Store::put_ceremony` and take it back exactly once.

pub use webauthn_rs::prelude::Passkey;
use webauthn_rs::prelude::{
    CreationChallengeResponse, CredentialID, PasskeyAuthentication, PasskeyRegistration,
    PublicKeyCredential, RegisterPublicKeyCredential, RequestChallengeResponse, Url, Uuid,
    Webauthn, WebauthnBuilder, WebauthnError,
};

/// How long a started ceremony may be finished (the browser prompt's own timeout is 5 min).
pub const CEREMONY_TTL_MS: i64 = 5 * 60 * 1000;

#[derive(Debug, thiserror::Error)]
pub enum PasskeyError {
    #[error("public_url {0} cannot be a WebAuthn origin: {1}")]
    Origin(String, String),
    #[error("the passkey response was not accepted: {0}")]
    Rejected(String),
    #[error("stored passkey data is not valid: {0}")]
    Corrupt(String),
}

impl From<WebauthnError> for PasskeyError {
    fn from(e: WebauthnError) -> Self {
        PasskeyError::Rejected(format!("{e:?}"))
    }
}

/// The relying party: this installation, identified by the host of `public_url`.
#[derive(Debug, Clone)]
pub struct RelyingParty {
    webauthn: std::sync::Arc<Webauthn>,
}

/// What a successful authentication tells the caller.
#[derive(Debug, Clone)]
pub struct Asserted {
    pub credential_id: Vec<u8>,
    pub counter: u32,
    /// The credential with its counter updated, to store back (when `changed`).
    pub updated: Option<Passkey>,
}

impl RelyingParty {
    pub fn new(public_url: &url::Url) -> Result<Self, PasskeyError> {
        let err = |e: String| PasskeyError::Origin(public_url.to_string(), e);
        let host = public_url.host_str().ok_or_else(|| err("it has no host".into()))?;
        let origin = Url::parse(public_url.as_str()).map_err(|e| err(e.to_string()))?;
        let webauthn = WebauthnBuilder::new(host, &origin)
            .map_err(|e| err(format!("{e:?}")))?
            .rp_name("BurstFlare")
            .build()
            .map_err(|e| err(format!("{e:?}")))?;
        Ok(Self { webauthn: std::sync::Arc::new(webauthn) })
    }

    /// Starts registering a passkey for the account `user_handle` (stable per user); existing
    /// credentials are excluded so an authenticator is not registered twice.
    pub fn start_registration(
        &self,
        user_handle: Uuid,
        email: &str,
        display_name: &str,
        existing: &[Passkey],
    ) -> Result<(CreationChallengeResponse, String), PasskeyError> {
        let exclude: Vec<CredentialID> = existing.iter().map(|p| p.cred_id().clone()).collect();
        let (ccr, state) = self.webauthn.start_passkey_registration(
            user_handle,
            email,
            display_name,
            (!exclude.is_empty()).then_some(exclude),
        )?;
        Ok((ccr, to_json(&state)?))
    }

    pub fn finish_registration(
        &self,
        credential: &serde_json::Value,
        state_json: &str,
    ) -> Result<Passkey, PasskeyError> {
        let state: PasskeyRegistration = from_json(state_json)?;
        let reg: RegisterPublicKeyCredential = serde_json::from_value(credential.clone())
            .map_err(|e| PasskeyError::Rejected(format!("credential: {e}")))?;
        Ok(self.webauthn.finish_passkey_registration(&reg, &state)?)
    }

    pub fn start_authentication(
        &self,
        passkeys: &[Passkey],
    ) -> Result<(RequestChallengeResponse, String), PasskeyError> {
        let (rcr, state) = self.webauthn.start_passkey_authentication(passkeys)?;
        Ok((rcr, to_json(&state)?))
    }

    /// Verifies an assertion (challenge, origin, RP id, UV flag, signature). The caller checks
    /// the counter against the stored one with a compare-and-set.
    pub fn finish_authentication(
        &self,
        credential: &serde_json::Value,
        state_json: &str,
        stored: &[Passkey],
    ) -> Result<Asserted, PasskeyError> {
        let state: PasskeyAuthentication = from_json(state_json)?;
        let cred: PublicKeyCredential = serde_json::from_value(credential.clone())
            .map_err(|e| PasskeyError::Rejected(format!("credential: {e}")))?;
        let res = self.webauthn.finish_passkey_authentication(&cred, &state)?;
        if !res.user_verified() {
            return Err(PasskeyError::Rejected("user verification is required".into()));
        }
        let updated = stored.iter().find(|p| p.cred_id() == res.cred_id()).and_then(|p| {
            let mut p = p.clone();
            p.update_credential(&res).map(|_| p)
        });
        Ok(Asserted { credential_id: res.cred_id().to_vec(), counter: res.counter(), updated })
    }
}

pub fn passkey_from_json(json: &str) -> Result<Passkey, PasskeyError> {
    from_json(json)
}

pub fn passkey_to_json(p: &Passkey) -> Result<String, PasskeyError> {
    to_json(p)
}

fn to_json<T: serde::Serialize>(v: &T) -> Result<String, PasskeyError> {
    serde_json::to_string(v).map_err(|e| PasskeyError::Corrupt(e.to_string()))
}

fn from_json<T: serde::de::DeserializeOwned>(s: &str) -> Result<T, PasskeyError> {
    serde_json::from_str(s).map_err(|e| PasskeyError::Corrupt(e.to_string()))
}
