//! SSH public keys: reading OpenSSH `.pub` files, fingerprints, flare's own key (made with the
//! system `ssh-keygen` on first need) and registering a key with the API when it is not among
//! the user's keys yet.

use std::path::{Path, PathBuf};
use std::process::Stdio;

use anyhow::Context as _;
use base64::Engine as _;
use sha2::Digest as _;

use super::SshPaths;
use crate::fail::Failure;
use crate::session::Authed;

/// The longest key name the API accepts.
const MAX_NAME: usize = 64;

/// One key in OpenSSH's one-line form: `ALGORITHM BASE64 [COMMENT]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PublicKey {
    pub algorithm: String,
    /// The key blob, base64 as in the file.
    pub blob: String,
    pub comment: Option<String>,
}

impl PublicKey {
    /// The first key line of `text` (blank lines and `#` comments are skipped).
    pub fn parse(text: &str) -> Result<Self, String> {
        if text.contains("PRIVATE KEY-----") {
            return Err("this is a private key, not a public one (`.pub`)".into());
        }
        let line = text
            .lines()
            .map(str::trim)
            .find(|l| !l.is_empty() && !l.starts_with('#'))
            .ok_or("there is no key in it")?;
        let mut fields = line.split_whitespace();
        let algorithm = fields.next().unwrap_or_default();
        let blob = fields.next().ok_or("expected `ALGORITHM BASE64 [COMMENT]` on one line")?;
        let comment = fields.collect::<Vec<_>>().join(" ");
        let algorithm_ok = !algorithm.is_empty()
            && algorithm.chars().all(|c| c.is_ascii_alphanumeric() || "@.-_".contains(c));
        if !algorithm_ok {
            return Err(format!(
                "`{}` is not a key type (an OpenSSH public key starts with one, e.g. ssh-ed25519)",
                algorithm.chars().take(40).collect::<String>()
            ));
        }
        let bytes = base64::engine::general_purpose::STANDARD
            .decode(blob)
            .map_err(|_| "the key is not valid base64".to_string())?;
        // The blob starts with its own type name (a length-prefixed string).
        let named = bytes
            .get(..4)
            .and_then(|n| <[u8; 4]>::try_from(n).ok())
            .map(|n| usize::try_from(u32::from_be_bytes(n)).unwrap_or(usize::MAX))
            .and_then(|n| bytes.get(4..4usize.checked_add(n)?));
        if named != Some(algorithm.as_bytes()) {
            return Err(format!("the key's data is not a {algorithm} key"));
        }
        Ok(Self {
            algorithm: algorithm.to_string(),
            blob: blob.to_string(),
            comment: (!comment.is_empty()).then_some(comment),
        })
    }

    /// `ALGORITHM BASE64`, without the comment.
    pub fn openssh(&self) -> String {
        format!("{} {}", self.algorithm, self.blob)
    }

    /// `SHA256:…`, as `ssh-keygen -lf` prints it.
    pub fn fingerprint(&self) -> String {
        let bytes =
            base64::engine::general_purpose::STANDARD.decode(&self.blob).unwrap_or_default();
        let digest = sha2::Sha256::digest(&bytes);
        format!("SHA256:{}", base64::engine::general_purpose::STANDARD_NO_PAD.encode(digest))
    }
}

/// A key pair ssh can log in with.
#[derive(Debug, Clone)]
pub struct Identity {
    pub private: PathBuf,
    pub public: PathBuf,
    pub key: PublicKey,
}

/// The public key file of `path`: `path` itself, or `path.pub` when `path` is a private key
/// that has one.
pub fn read_public(path: &Path) -> anyhow::Result<(PathBuf, PublicKey)> {
    let text = std::fs::read_to_string(path).map_err(|e| {
        Failure::error(format!("cannot read {}: {e}", path.display()))
            .hint("give the path of an OpenSSH public key, e.g. ~/.ssh/id_ed25519.pub")
    })?;
    match PublicKey::parse(&text) {
        Ok(key) => Ok((path.to_path_buf(), key)),
        Err(_) if text.contains("PRIVATE KEY-----") => {
            let public = with_pub(path);
            if public.exists() {
                read_public(&public)
            } else {
                Err(Failure::error(format!("{} is a private key and has no .pub", path.display()))
                    .hint(format!(
                        "make it with `ssh-keygen -y -f {0} > {0}.pub`, then try again",
                        path.display()
                    ))
                    .into())
            }
        }
        Err(e) => {
            Err(Failure::error(format!("{} is not an OpenSSH public key: {e}", path.display()))
                .hint("give the path of a `.pub` file, as `ssh-keygen` writes it")
                .into())
        }
    }
}

/// `--identity PATH`: the private key ssh uses and its `.pub` (PATH may name either).
pub fn read_identity(path: &Path) -> anyhow::Result<Identity> {
    let (private, public) = match path.to_str().and_then(|p| p.strip_suffix(".pub")) {
        Some(private) => (PathBuf::from(private), path.to_path_buf()),
        None => (path.to_path_buf(), with_pub(path)),
    };
    if !private.is_file() {
        return Err(Failure::error(format!("there is no private key {}", private.display()))
            .hint("--identity takes the path of a private key whose .pub is next to it")
            .into());
    }
    if !public.is_file() {
        return Err(Failure::error(format!(
            "{} has no public key {}",
            private.display(),
            public.display()
        ))
        .hint(format!(
            "make it with `ssh-keygen -y -f {} > {}`, then try again",
            private.display(),
            public.display()
        ))
        .into());
    }
    let (_, key) = read_public(&public)?;
    let private = std::path::absolute(&private).unwrap_or(private);
    let public = std::path::absolute(&public).unwrap_or(public);
    Ok(Identity { private, public, key })
}

fn with_pub(path: &Path) -> PathBuf {
    let mut s = path.as_os_str().to_owned();
    s.push(".pub");
    PathBuf::from(s)
}

/// `flare@<this host's name>`: the default name of a registered key.
pub fn default_key_name() -> String {
    let host = nix::unistd::gethostname()
        .ok()
        .map(|h| h.to_string_lossy().into_owned())
        .unwrap_or_default();
    key_name_for(&host)
}

fn key_name_for(host: &str) -> String {
    let host: String = host.chars().filter(|c| c.is_ascii_graphic()).collect();
    let name = if host.is_empty() { "flare".to_string() } else { format!("flare@{host}") };
    name.chars().take(MAX_NAME).collect()
}

/// flare's own key, `<config dir>/ssh/id_ed25519`, made now when it does not exist (`created`).
pub async fn own_identity(ssh: &SshPaths) -> anyhow::Result<(Identity, bool)> {
    let (private, public) = (ssh.key(), with_pub(&ssh.key()));
    if private.is_file() && public.is_file() {
        return Ok((read_identity(&private)?, false));
    }
    let _lock = ssh.lock().await?;
    let mut created = false;
    if !private.is_file() {
        run_keygen(&[
            "-q".as_ref(),
            "-t".as_ref(),
            "ed25519".as_ref(),
            "-N".as_ref(),
            "".as_ref(),
            "-C".as_ref(),
            default_key_name().as_ref(),
            "-f".as_ref(),
            private.as_os_str(),
        ])
        .await?;
        created = true;
    }
    if !public.is_file() {
        // The private key survived without its .pub: derive it again.
        let out = run_keygen(&["-y".as_ref(), "-f".as_ref(), private.as_os_str()]).await?;
        let mut text = String::from_utf8_lossy(&out).trim_end().to_string();
        text.push_str(&format!(" {}\n", default_key_name()));
        crate::store::write_atomic(&public, text.as_bytes(), 0o644)
            .with_context(|| format!("writing {}", public.display()))?;
    }
    Ok((read_identity(&private)?, created))
}

/// Runs the system `ssh-keygen`; its stdout.
async fn run_keygen(args: &[&std::ffi::OsStr]) -> anyhow::Result<Vec<u8>> {
    let out = tokio::process::Command::new("ssh-keygen")
        .args(args)
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .output()
        .await
        .map_err(|e| {
            if e.kind() == std::io::ErrorKind::NotFound {
                Failure::error("ssh-keygen was not found: flare makes its SSH key with it")
                    .hint("install the OpenSSH client (`apt install openssh-client`, `brew install openssh`…)")
            } else {
                Failure::error(format!("could not run ssh-keygen: {e}"))
            }
        })?;
    if !out.status.success() {
        return Err(Failure::error(format!(
            "ssh-keygen failed ({}): {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        ))
        .into());
    }
    Ok(out.stdout)
}

/// Registers `key` as `name` unless the user already has it (same fingerprint); says so on
/// stderr when it does. `Some`: the key was registered now.
pub async fn ensure_registered(
    authed: &mut Authed<'_>,
    key: &PublicKey,
    name: &str,
) -> anyhow::Result<Option<sdk::SshKey>> {
    let fingerprint = key.fingerprint();
    let keys = authed.call(async |c| c.ssh_keys().await).await.context("listing your SSH keys")?;
    if keys.iter().any(|k| k.fingerprint == fingerprint || k.public_key == key.openssh()) {
        return Ok(None);
    }
    let body = sdk::AddSshKey { name: name.to_string(), public_key: key.openssh() };
    let added = authed
        .call(async |c| c.add_ssh_key(&body).await)
        .await
        .with_context(|| format!("registering SSH key {name} ({fingerprint})"))?;
    eprintln!("registered SSH key {} ({}) with {}", added.name, added.fingerprint, authed.server);
    Ok(Some(added))
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const PUB: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVKID1W6hUna2vmy/gCjUQZPM76sp5beG2f7d9BczyR test";

    #[test]
    fn a_pub_file_parses_with_its_fingerprint_as_ssh_keygen_prints_it() {
        let k = PublicKey::parse(&format!("\n# laptop\n{PUB} key\n")).unwrap();
        assert_eq!(k.algorithm, "ssh-ed25519");
        assert_eq!(k.comment.as_deref(), Some("test key"));
        assert_eq!(
            k.openssh(),
            "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVKID1W6hUna2vmy/gCjUQZPM76sp5beG2f7d9BczyR"
        );
        // `ssh-keygen -lf` of this key.
        assert_eq!(k.fingerprint(), "SHA256:cNt//NBNzN4ZiJw25wjlHBer0n9Z030fWEDAiaKgUKY");
    }

    #[test]
    fn what_is_not_a_public_key_says_why() {
        let err = |s: &str| PublicKey::parse(s).unwrap_err();
        assert!(err("-----BEGIN OPENSSH PRIVATE KEY-----\nb3Blbn\n").contains("private key"));
        assert!(err("").contains("no key"));
        assert!(err("ssh-ed25519").contains("one line"));
        assert!(err("ssh-ed25519 !!!").contains("base64"));
        // The blob of an ed25519 key labelled as RSA.
        assert!(err(&PUB.replace("ssh-ed25519", "ssh-rsa")).contains("not a ssh-rsa key"));
        assert!(err("from=\"x\" ssh-ed25519 AAAA").contains("not a key type"));
    }

    #[test]
    fn key_names_are_flare_at_the_host_and_fit_the_limit() {
        assert_eq!(key_name_for("laptop"), "flare@laptop");
        assert_eq!(key_name_for(""), "flare");
        assert_eq!(key_name_for(&"h".repeat(100)).len(), MAX_NAME);
        assert_eq!(key_name_for("a b\n"), "flare@ab");
    }

    #[test]
    fn a_private_key_path_reads_its_pub_and_identity_needs_both() {
        let dir = tempfile::tempdir().unwrap();
        let private = dir.path().join("id");
        std::fs::write(&private, "-----BEGIN OPENSSH PRIVATE KEY-----\nx\n").unwrap();
        let err = read_public(&private).unwrap_err();
        assert!(format!("{err:#}").contains("has no .pub"), "{err:#}");
        assert!(read_identity(&private).is_err());
        std::fs::write(dir.path().join("id.pub"), PUB).unwrap();
        let (path, key) = read_public(&private).unwrap();
        assert_eq!(path, dir.path().join("id.pub"));
        assert_eq!(key.algorithm, "ssh-ed25519");
        let id = read_identity(&dir.path().join("id.pub")).unwrap();
        assert_eq!(id.private, private);
        assert!(read_identity(&dir.path().join("nope")).is_err());
    }

    #[tokio::test]
    async fn flares_own_key_is_made_once_with_ssh_keygen() {
        if std::process::Command::new("ssh-keygen").arg("-?").output().is_err() {
            eprintln!("skipped: no ssh-keygen");
            return;
        }
        let dir = tempfile::tempdir().unwrap();
        let ssh = SshPaths { dir: dir.path().join("ssh") };
        let (id, created) = own_identity(&ssh).await.unwrap();
        assert!(created);
        assert_eq!(id.private, ssh.key());
        assert_eq!(id.key.algorithm, "ssh-ed25519");
        assert!(id.key.comment.as_deref().unwrap_or_default().starts_with("flare"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = |p: &Path| std::fs::metadata(p).unwrap().permissions().mode() & 0o777;
            assert_eq!(mode(&ssh.key()), 0o600);
            assert_eq!(mode(&ssh.dir), 0o700);
        }
        let (again, created) = own_identity(&ssh).await.unwrap();
        assert!(!created);
        assert_eq!(again.key, id.key);
        // A lost .pub is derived from the private key again.
        std::fs::remove_file(&id.public).unwrap();
        let (again, created) = own_identity(&ssh).await.unwrap();
        assert!(!created);
        assert_eq!(again.key.openssh(), id.key.openssh());
    }
}
