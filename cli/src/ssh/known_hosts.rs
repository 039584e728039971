//! `<config dir>/ssh/known_hosts`: the sessions' host keys, pinned under their host alias
//! `<session>.<workspace>.burstflare`. The API, reached over the user's authenticated HTTPS, is
//! the authority: an entry is replaced whenever it publishes another key for that alias (a session
//! deleted and created again under the same name has a new one). `ssh` then checks the key with
//! `StrictHostKeyChecking=yes`.

use anyhow::Context as _;

use super::SshPaths;
use super::keys::PublicKey;
use crate::fail::Failure;
use crate::store::write_atomic;

/// `existing` with exactly one entry for `alias`: `<alias> <public_key>`. Other lines (other
/// hosts, comments, `@cert-authority` and `@revoked` lines, entries that list `alias` among other
/// names are dropped only for that alias's sake) are kept byte for byte. `None`: nothing to
/// change.
pub fn updated(existing: &str, alias: &str, public_key: &str) -> Option<String> {
    let entry = format!("{alias} {public_key}");
    let mut kept = String::with_capacity(existing.len() + entry.len() + 1);
    let mut ours = Vec::new();
    for line in existing.split_inclusive('\n') {
        if names(line).is_some_and(|hosts| hosts.split(',').any(|h| h == alias)) {
            ours.push(line);
        } else {
            kept.push_str(line);
        }
    }
    if let [only] = ours.as_slice() {
        let mut fields = only.split_whitespace();
        let same = fields.next() == Some(alias)
            && fields.next().zip(fields.next()).map(|(t, k)| format!("{t} {k}"))
                == Some(public_key.to_string());
        if same {
            return None;
        }
    }
    if !kept.is_empty() && !kept.ends_with('\n') {
        kept.push('\n');
    }
    kept.push_str(&entry);
    kept.push('\n');
    Some(kept)
}

/// The host names field of a known_hosts entry; `None` for blank lines, comments and marker
/// (`@…`) lines.
fn names(line: &str) -> Option<&str> {
    let line = line.trim_start();
    let first = line.split_whitespace().next()?;
    (!first.starts_with('#') && !first.starts_with('@')).then_some(first)
}

/// An alias flare writes: the shape of `<session>.<workspace>.burstflare`, nothing a
/// known_hosts line could read as a pattern, a list or another field.
pub fn check_alias(alias: &str) -> Result<(), String> {
    let ok = !alias.is_empty()
        && alias.len() <= 253
        && !alias.starts_with(['.', '-'])
        && alias.chars().all(|c| c.is_ascii_alphanumeric() || matches!(c, '.' | '-' | '_'));
    if ok { Ok(()) } else { Err(format!("`{alias}` is not a host alias flare can pin")) }
}

/// Pins `public_key` (`ssh-ed25519 AAAA…`) under each of `aliases`, under the SSH lock so
/// concurrent `flare ssh --stdio` processes do not lose each other's entries.
pub async fn pin(ssh: &SshPaths, aliases: &[&str], public_key: &str) -> anyhow::Result<()> {
    let key = PublicKey::parse(public_key).map_err(|e| {
        Failure::error(format!("the server sent a host key flare cannot use: {e}"))
            .hint("check that the server is a BurstFlare server and is up to date")
    })?;
    for alias in aliases {
        check_alias(alias)
            .map_err(|e| Failure::error(format!("the server sent a bad host alias: {e}")))?;
    }
    let _lock = ssh.lock().await?;
    let path = ssh.known_hosts();
    let mut text = match std::fs::read_to_string(&path) {
        Ok(t) => t,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => String::new(),
        Err(e) => return Err(e).with_context(|| format!("reading {}", path.display())),
    };
    let mut changed = false;
    for alias in aliases {
        if let Some(next) = updated(&text, alias, &key.openssh()) {
            text = next;
            changed = true;
        }
    }
    if changed {
        write_atomic(&path, text.as_bytes(), 0o600)
            .with_context(|| format!("writing {}", path.display()))?;
    }
    Ok(())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const KEY: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGVKID1W6hUna2vmy/gCjUQZPM76sp5beG2f7d9BczyR";
    const OTHER: &str =
        "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIJm1jTWagr3kE4I6DtXpJaBCLqmgMwQ101CZgZ/jnDUU";

    #[test]
    fn a_new_alias_is_appended_and_the_rest_kept() {
        assert_eq!(
            updated("", "dev.acme.burstflare", KEY).unwrap(),
            format!("dev.acme.burstflare {KEY}\n")
        );
        let before = "# mine\nother.acme.burstflare ssh-ed25519 AAAA\n@revoked * ssh-rsa BBBB";
        assert_eq!(
            updated(before, "dev.acme.burstflare", KEY).unwrap(),
            format!("{before}\ndev.acme.burstflare {KEY}\n")
        );
    }

    #[test]
    fn the_same_key_changes_nothing_and_a_new_key_replaces_the_old_one() {
        let text = format!("a.b.burstflare {OTHER}\ndev.acme.burstflare {KEY}\n");
        assert_eq!(updated(&text, "dev.acme.burstflare", KEY), None);
        // A comment on the entry does not make it different.
        assert_eq!(
            updated(&format!("dev.acme.burstflare {KEY} note\n"), "dev.acme.burstflare", KEY),
            None
        );
        assert_eq!(
            updated(&text, "dev.acme.burstflare", OTHER).unwrap(),
            format!("a.b.burstflare {OTHER}\ndev.acme.burstflare {OTHER}\n")
        );
    }

    #[test]
    fn duplicate_and_listed_entries_for_the_alias_are_all_replaced() {
        let text = format!(
            "dev.acme.burstflare {OTHER}\nx,dev.acme.burstflare {OTHER}\ndev.acme.burstflare {KEY}\nkeep {KEY}\n"
        );
        assert_eq!(
            updated(&text, "dev.acme.burstflare", KEY).unwrap(),
            format!("keep {KEY}\ndev.acme.burstflare {KEY}\n")
        );
        // A name that merely contains the alias is another host.
        let text = format!("xdev.acme.burstflare {OTHER}\n");
        assert_eq!(
            updated(&text, "dev.acme.burstflare", KEY).unwrap(),
            format!("{text}dev.acme.burstflare {KEY}\n")
        );
    }

    #[test]
    fn aliases_that_could_be_patterns_or_lists_are_refused() {
        assert!(check_alias("dev.acme.burstflare").is_ok());
        for bad in ["", "*.burstflare", "a,b", "a b", "-x", ".x", "a\nb", "[a]:22"] {
            assert!(check_alias(bad).is_err(), "{bad:?}");
        }
    }

    #[tokio::test]
    async fn pinning_writes_a_private_file_and_replaces_a_changed_key() {
        let dir = tempfile::tempdir().unwrap();
        let ssh = SshPaths { dir: dir.path().join("ssh") };
        pin(&ssh, &["dev.acme.burstflare"], KEY).await.unwrap();
        pin(&ssh, &["dev.acme.burstflare", "other.acme.burstflare"], OTHER).await.unwrap();
        let text = std::fs::read_to_string(ssh.known_hosts()).unwrap();
        assert_eq!(text, format!("dev.acme.burstflare {OTHER}\nother.acme.burstflare {OTHER}\n"));
        #[cfg(unix)]
        {
            use std::os::unix::fs::PermissionsExt as _;
            let mode = std::fs::metadata(ssh.known_hosts()).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o600);
            let mode = std::fs::metadata(&ssh.dir).unwrap().permissions().mode();
            assert_eq!(mode & 0o777, 0o700);
        }
        let err = pin(&ssh, &["*.burstflare"], KEY).await.unwrap_err();
        assert!(err.to_string().contains("bad host alias"), "{err}");
        let err =
            pin(&ssh, &["dev.acme.burstflare"], "ssh-ed25519 AAAA\n* ssh-rsa X").await.unwrap_err();
        assert!(err.to_string().contains("host key"), "{err}");
    }
}
