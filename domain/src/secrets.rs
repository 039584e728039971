//! Bearer secrets (browser session tokens, API tokens, invite links, recovery codes): generated
//! from the OS RNG, shown to their owner once, stored only as SHA-256 hashes.

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use rand::RngCore;
use sha2::{Digest, Sha256};

/// What a secret is for; its prefix makes a leaked secret recognisable (and greppable).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SecretKind {
    BrowserSession,
    ApiToken,
    Invite,
    Csrf,
    /// RFC 8628 device code (polled by `flare auth login`).
    DeviceCode,
    /// Short-lived CLI access token.
    AccessToken,
    /// Rotating CLI refresh token.
    RefreshToken,
    /// Short-lived token for one session's SSH WebSocket (`sdk::RUNTIME_TOKEN_PREFIX`).
    RuntimeToken,
}

impl SecretKind {
    fn prefix(self) -> &'static str {
        match self {
            SecretKind::BrowserSession => "bfs_",
            SecretKind::ApiToken => "bfp_",
            SecretKind::Invite => "bfi_",
            SecretKind::Csrf => "",
            SecretKind::DeviceCode => "bfd_",
            SecretKind::AccessToken => "bfa_",
            SecretKind::RefreshToken => "bfr_",
            SecretKind::RuntimeToken => sdk::RUNTIME_TOKEN_PREFIX,
        }
    }
}

/// A new secret of 256 random bits: `(plaintext, sha256(plaintext))`.
pub fn generate(kind: SecretKind) -> (String, Vec<u8>) {
    let mut bytes = [0u8; 32];
    rand::rng().fill_bytes(&mut bytes);
    let plain = format!("{}{}", kind.prefix(), URL_SAFE_NO_PAD.encode(bytes));
    let hash = hash(&plain);
    (plain, hash)
}

pub fn hash(plain: &str) -> Vec<u8> {
    Sha256::digest(plain.as_bytes()).to_vec()
}

/// Recovery codes: typed by people, so short and from an alphabet without look-alikes
/// (no 0/O, 1/I/L). 10 characters of 31 symbols is ~49.5 bits each; they are single use and
/// only valid together with the account's email.
pub const RECOVERY_ALPHABET: &[u8] = b"23456789ABCDEFGHJKMNPQRSTUVWXYZ";
pub const RECOVERY_CODE_LEN: usize = 10;
pub const RECOVERY_CODE_COUNT: usize = 10;

/// Ten new recovery codes, displayed as `XXXXX-XXXXX`, with their hashes.
pub fn recovery_codes() -> Vec<(String, Vec<u8>)> {
    let mut rng = rand::rng();
    (0..RECOVERY_CODE_COUNT)
        .map(|_| {
            let raw: String = (0..RECOVERY_CODE_LEN)
                .map(|_| {
                    let i = (rng.next_u32() as usize) % RECOVERY_ALPHABET.len();
                    RECOVERY_ALPHABET[i] as char
                })
                .collect();
            let shown = format!("{}-{}", &raw[..5], &raw[5..]);
            let hash = hash(&raw);
            (shown, hash)
        })
        .collect()
}

/// The hash of a recovery code as typed: case, spaces and dashes do not matter.
pub fn recovery_code_hash(typed: &str) -> Option<Vec<u8>> {
    let norm: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    let ok =
        norm.len() == RECOVERY_CODE_LEN && norm.bytes().all(|b| RECOVERY_ALPHABET.contains(&b));
    ok.then(|| hash(&norm))
}

/// RFC 8628 user codes: 8 characters from consonants only (no vowels, so no words, and no
/// look-alikes), shown as `XXXX-XXXX`.
pub const USER_CODE_ALPHABET: &[u8] = b"BCDFGHJKLMNPQRSTVWXZ";

/// A new user code, normalized (no dash).
pub fn user_code() -> String {
    let mut rng = rand::rng();
    (0..8)
        .map(|_| USER_CODE_ALPHABET[(rng.next_u32() as usize) % USER_CODE_ALPHABET.len()] as char)
        .collect()
}

/// A typed user code, normalized: case and dashes/spaces do not matter.
pub fn normalize_user_code(typed: &str) -> Option<String> {
    let norm: String = typed
        .chars()
        .filter(|c| !c.is_whitespace() && *c != '-')
        .map(|c| c.to_ascii_uppercase())
        .collect();
    (norm.len() == 8 && norm.bytes().all(|b| USER_CODE_ALPHABET.contains(&b))).then_some(norm)
}

/// `BCDFGHJK` -> `BCDF-GHJK`.
pub fn display_user_code(code: &str) -> String {
    if code.len() == 8 { format!("{}-{}", &code[..4], &code[4..]) } else { code.to_string() }
}

/// Compares two secrets in constant time (for values that are compared, not looked up).
pub fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn secrets_carry_their_prefix_and_256_bits_and_hash_to_what_is_stored() {
        let (plain, h) = generate(SecretKind::ApiToken);
        assert!(plain.starts_with("bfp_"));
        assert_eq!(URL_SAFE_NO_PAD.decode(&plain[4..]).unwrap().len(), 32);
        assert_eq!(hash(&plain), h);
        assert_ne!(generate(SecretKind::ApiToken).0, plain);
    }

    #[test]
    fn recovery_codes_are_ten_distinct_codes_accepted_in_any_case_with_or_without_the_dash() {
        let codes = recovery_codes();
        assert_eq!(codes.len(), 10);
        let mut shown: Vec<&String> = codes.iter().map(|(c, _)| c).collect();
        shown.sort();
        shown.dedup();
        assert_eq!(shown.len(), 10);
        let (code, h) = &codes[0];
        assert_eq!(code.len(), 11);
        assert_eq!(recovery_code_hash(code).as_ref(), Some(h));
        assert_eq!(recovery_code_hash(&code.to_lowercase().replace('-', " ")).as_ref(), Some(h));
        assert_eq!(recovery_code_hash("0000-00000"), None);
        assert_eq!(recovery_code_hash("short"), None);
    }

    #[test]
    fn user_codes_use_the_rfc_8628_alphabet_and_are_typed_in_any_case_with_or_without_the_dash() {
        let code = user_code();
        assert_eq!(code.len(), 8);
        assert!(code.bytes().all(|b| USER_CODE_ALPHABET.contains(&b)));
        let shown = display_user_code(&code);
        assert_eq!(shown.len(), 9);
        assert_eq!(normalize_user_code(&shown.to_lowercase()), Some(code.clone()));
        assert_eq!(normalize_user_code("BCDF GHJK"), Some("BCDFGHJK".into()));
        assert_eq!(normalize_user_code("AEIO-UBCD"), None, "vowels are not in the alphabet");
        assert_eq!(normalize_user_code("BCD"), None);
    }

    #[test]
    fn constant_time_eq_compares_whole_values() {
        assert!(constant_time_eq(b"abc", b"abc"));
        assert!(!constant_time_eq(b"abc", b"abd"));
        assert!(!constant_time_eq(b"abc", b"abcd"));
    }
}
