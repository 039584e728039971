//! Key material for connecting to sessions (docs/ssh.md): agent tokens and session host keys,
//! both derived from `[runtime] secret` so the API and every node agree on them without storing
//! or shipping them anywhere (never through workflow histories), and the checks on users' SSH
//! public keys.

use base64::Engine as _;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use hmac::{Hmac, Mac};
use sha2::Sha256;
use ssh_key::private::{Ed25519Keypair, KeypairData};
use ssh_key::public::KeyData;
use ssh_key::{HashAlg, LineEnding, PrivateKey, PublicKey};

/// Longest public key line accepted (a 16384-bit RSA key is about 2.8 KB).
pub const MAX_PUBLIC_KEY_BYTES: usize = 8 * 1024;
/// Smallest RSA modulus accepted.
pub const MIN_RSA_BITS: usize = 2048;
/// Prefix of agent tokens (so a leaked one is recognisable).
pub const AGENT_TOKEN_PREFIX: &str = "bfag_";

fn hmac(secret: &[u8], parts: &[&[u8]]) -> [u8; 32] {
    // HMAC accepts keys of any length.
    let mut mac = <Hmac<Sha256>>::new_from_slice(secret).unwrap_or_else(|_| unreachable!());
    for (i, part) in parts.iter().enumerate() {
        if i > 0 {
            mac.update(&[0]);
        }
        mac.update(part);
    }
    mac.finalize().into_bytes().into()
}

/// The token the control plane presents to the agent of container generation `generation` of
/// session `session` (`Authorization: Bearer` on the agent's `/ssh` and `/pty`). A new container
/// generation gets a new token.
pub fn agent_token(secret: &[u8], session: &str, generation: u64) -> String {
    let mac = hmac(
        secret,
        &[b"burstflare agent token v1", session.as_bytes(), generation.to_string().as_bytes()],
    );
    format!("{AGENT_TOKEN_PREFIX}{}", URL_SAFE_NO_PAD.encode(mac))
}

/// A session's SSH host key.
#[derive(Clone)]
pub struct HostKey {
    /// OpenSSH private key text (`-----BEGIN OPENSSH PRIVATE KEY-----`), for the agent only.
    pub private_openssh: String,
    /// `ssh-ed25519 AAAA…` without a comment.
    pub public_openssh: String,
    /// `SHA256:…`
    pub fingerprint: String,
}

impl std::fmt::Debug for HostKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("HostKey")
            .field("public_openssh", &self.public_openssh)
            .field("fingerprint", &self.fingerprint)
            .finish_non_exhaustive()
    }
}

/// Session `session`'s Ed25519 host key: the same for the session's whole life, on any node,
/// as long as the secret is unchanged.
pub fn host_key(secret: &[u8], session: &str) -> Result<HostKey, String> {
    let seed = hmac(secret, &[b"burstflare host key v1", session.as_bytes()]);
    let keypair = Ed25519Keypair::from_seed(&seed);
    let private =
        PrivateKey::new(KeypairData::Ed25519(keypair), "").map_err(|e| format!("host key: {e}"))?;
    let private_openssh =
        private.to_openssh(LineEnding::LF).map_err(|e| format!("host key: {e}"))?.to_string();
    let public = private.public_key();
    let public_openssh = public.to_openssh().map_err(|e| format!("host key: {e}"))?;
    let fingerprint = public.fingerprint(HashAlg::Sha256).to_string();
    Ok(HostKey { private_openssh, public_openssh, fingerprint })
}

/// A user's SSH public key, checked and normalised.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ParsedPublicKey {
    /// `ssh-ed25519`, `ecdsa-sha2-nistp256`, `ssh-rsa`, …
    pub algorithm: String,
    /// `SHA256:…`
    pub fingerprint: String,
    /// `<algorithm> <base64>` without the comment.
    pub public_openssh: String,
}

/// Checks one line of an OpenSSH `.pub` file: Ed25519, ECDSA (P-256/384/521) or RSA of at least
/// [`MIN_RSA_BITS`] bits. Errors name the field (`public_key`) and the rule.
pub fn parse_public_key(line: &str) -> Result<ParsedPublicKey, String> {
    let line = line.trim();
    if line.is_empty() {
        return Err("public_key: must not be empty (paste one line of a .pub file)".into());
    }
    if line.len() > MAX_PUBLIC_KEY_BYTES {
        return Err(format!("public_key: must be at most {MAX_PUBLIC_KEY_BYTES} bytes"));
    }
    if line.contains('\n') || line.contains('\r') {
        return Err("public_key: must be a single line".into());
    }
    if line.starts_with("-----BEGIN") {
        return Err("public_key: this is a private key; give the .pub file instead".into());
    }
    let key = PublicKey::from_openssh(line)
        .map_err(|e| format!("public_key: not an OpenSSH public key ({e})"))?;
    match key.key_data() {
        KeyData::Ed25519(_) | KeyData::Ecdsa(_) => {}
        KeyData::Rsa(rsa) => {
            let bytes = rsa.n.as_positive_bytes().unwrap_or_default();
            let bits = bytes.len() * 8 - bytes.first().map_or(8, |b| b.leading_zeros() as usize);
            if bits < MIN_RSA_BITS {
                return Err(format!(
                    "public_key: RSA keys must have at least {MIN_RSA_BITS} bits (this one has \
                     {bits}); prefer ssh-keygen -t ed25519"
                ));
            }
        }
        other => {
            return Err(format!(
                "public_key: {} keys are not accepted; use ssh-ed25519, ecdsa-sha2-nistp256/384/521 \
                 or ssh-rsa (2048 bits or more)",
                other.algorithm()
            ));
        }
    }
    let bare = PublicKey::new(key.key_data().clone(), "");
    Ok(ParsedPublicKey {
        algorithm: key.algorithm().as_str().to_owned(),
        fingerprint: key.fingerprint(HashAlg::Sha256).to_string(),
        public_openssh: bare.to_openssh().map_err(|e| format!("public_key: {e}"))?,
    })
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const SECRET: &[u8] = b"0123456789abcdef0123456789abcdef";
    // ssh-keygen -t ed25519 (a throwaway test key).
    const ED25519: &str = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl someone@laptop";

    #[test]
    fn agent_tokens_are_per_session_and_generation() {
        let a = agent_token(SECRET, "s1", 1);
        assert!(a.starts_with(AGENT_TOKEN_PREFIX));
        assert_eq!(a, agent_token(SECRET, "s1", 1));
        assert_ne!(a, agent_token(SECRET, "s1", 2));
        assert_ne!(a, agent_token(SECRET, "s2", 1));
        assert_ne!(a, agent_token(b"another secret of some 32+ chars..", "s1", 1));
        // Parts are separated: ("s1", 12) and ("s11", 2) differ.
        assert_ne!(agent_token(SECRET, "s1", 12), agent_token(SECRET, "s11", 2));
    }

    #[test]
    fn host_keys_are_stable_per_session_and_parse_back() {
        let k = host_key(SECRET, "session-a").unwrap();
        let again = host_key(SECRET, "session-a").unwrap();
        assert_eq!(k.public_openssh, again.public_openssh);
        assert_eq!(k.private_openssh, again.private_openssh);
        assert_ne!(k.public_openssh, host_key(SECRET, "session-b").unwrap().public_openssh);
        assert!(k.public_openssh.starts_with("ssh-ed25519 "));
        assert!(k.fingerprint.starts_with("SHA256:"));
        let private = PrivateKey::from_openssh(&k.private_openssh).unwrap();
        assert_eq!(private.public_key().to_openssh().unwrap(), k.public_openssh);
        assert!(!format!("{k:?}").contains("PRIVATE"), "Debug must not print the private key");
    }

    #[test]
    fn public_keys_are_checked_and_normalised() {
        let p = parse_public_key(&format!("  {ED25519}\n")).unwrap();
        assert_eq!(p.algorithm, "ssh-ed25519");
        assert!(p.fingerprint.starts_with("SHA256:"));
        assert!(!p.public_openssh.contains("laptop"), "comment dropped");
        assert!(ED25519.starts_with(&p.public_openssh));
        for (bad, want) in [
            ("", "must not be empty"),
            ("ssh-ed25519 !!!", "not an OpenSSH public key"),
            ("-----BEGIN OPENSSH PRIVATE KEY-----", "private key"),
            ("ssh-ed25519 AAAA\nssh-ed25519 AAAA", "single line"),
        ] {
            let err = parse_public_key(bad).unwrap_err();
            assert!(err.starts_with("public_key: ") && err.contains(want), "{bad:?}: {err}");
        }
        let long = format!("ssh-ed25519 {}", "A".repeat(MAX_PUBLIC_KEY_BYTES));
        assert!(parse_public_key(&long).unwrap_err().contains("at most"));
    }
}
