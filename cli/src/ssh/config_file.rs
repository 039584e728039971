//! `flare ssh-config`: the file `~/.ssh/burstflare_config`, a `Host *.burstflare` block that
//! reaches sessions through `flare ssh --stdio`, and the `Include` line that makes ssh read it:
//! the first line of `~/.ssh/config`, so it applies before any `Host` block there. Writing it
//! twice changes nothing; `--remove` takes out exactly that line (and the file), leaving the rest
//! of `~/.ssh/config` byte for byte as it was.

use std::path::{Path, PathBuf};

use anyhow::Context as _;

use super::args::{self, SERVER_ALIVE_COUNT_MAX, SERVER_ALIVE_INTERVAL};
use crate::fail::Failure;
use crate::store::write_atomic;

/// The file flare owns, next to `~/.ssh/config`.
pub const INCLUDE_NAME: &str = "burstflare_config";
/// `User` of the block: the session's SSH server accepts any name (the session's own user is
/// who you are logged in as).
pub const BLOCK_USER: &str = "burstflare";

/// `~/.ssh`, `~/.ssh/config` and `~/.ssh/burstflare_config` under a home directory.
#[derive(Debug, Clone)]
pub struct SshConfigPaths {
    pub config: PathBuf,
    pub include: PathBuf,
}

impl SshConfigPaths {
    pub fn under(home: &Path) -> Self {
        let ssh_dir = home.join(".ssh");
        Self { config: ssh_dir.join("config"), include: ssh_dir.join(INCLUDE_NAME) }
    }

    /// Under `$HOME`.
    pub fn resolve() -> anyhow::Result<Self> {
        let home = dirs::home_dir().filter(|h| h.is_absolute()).ok_or_else(|| {
            Failure::error("cannot tell where ~/.ssh is: HOME is not set")
                .hint("set HOME to your home directory")
        })?;
        Ok(Self::under(&home))
    }

    /// `Include /home/me/.ssh/burstflare_config` (absolute: it also works for an ssh that
    /// reads another home's config with `-F`).
    pub fn include_line(&self) -> String {
        format!("Include {}", args::config_value(&self.include.to_string_lossy()))
    }
}

/// The include file: one `Host *.burstflare` block.
pub fn block(proxy_command: &str, identity: &Path, known_hosts: &Path) -> String {
    format!(
        "# Written by `flare ssh-config`; `flare ssh-config --remove` removes it. Sessions are\n\
         # reached as <session>.<workspace>.burstflare: `ssh dev.acme.burstflare`.\n\
         Host *.burstflare\n\
         \x20 ProxyCommand {proxy_command}\n\
         \x20 User {BLOCK_USER}\n\
         \x20 IdentityFile {}\n\
         \x20 IdentitiesOnly yes\n\
         \x20 UserKnownHostsFile {}\n\
         \x20 StrictHostKeyChecking yes\n\
         \x20 ServerAliveInterval {SERVER_ALIVE_INTERVAL}\n\
         \x20 ServerAliveCountMax {SERVER_ALIVE_COUNT_MAX}\n",
        args::path_value(identity),
        args::path_value(known_hosts),
    )
}

/// `existing` (the content of `~/.ssh/config`) with `line` as its first line; `None` when it
/// already is. A copy of `line` elsewhere (where it could sit inside a `Host` block) moves up.
pub fn with_include(existing: &str, line: &str) -> Option<String> {
    if existing.split_inclusive('\n').next().is_some_and(|first| is_line(first, line)) {
        return None;
    }
    let rest = without_include(existing, line).unwrap_or_else(|| existing.to_string());
    Some(format!("{line}\n{rest}"))
}

/// `existing` without every copy of `line` (each with its line ending); `None` when it has none.
pub fn without_include(existing: &str, line: &str) -> Option<String> {
    let mut found = false;
    let mut out = String::with_capacity(existing.len());
    for l in existing.split_inclusive('\n') {
        if is_line(l, line) {
            found = true;
        } else {
            out.push_str(l);
        }
    }
    found.then_some(out)
}

fn is_line(with_ending: &str, line: &str) -> bool {
    with_ending.trim_end_matches(['\n', '\r']) == line
}

/// What a run changed.
#[derive(Debug, Clone, Copy, PartialEq, Eq, serde::Serialize)]
pub struct Changes {
    /// `~/.ssh/config` (its Include line).
    pub ssh_config: bool,
    /// `~/.ssh/burstflare_config`.
    pub include_file: bool,
}

/// Writes the include file (`content`) and the Include line, each only when it differs.
pub fn install(paths: &SshConfigPaths, content: &str) -> anyhow::Result<Changes> {
    let include_file = match read(&paths.include)? {
        Some(old) if old == content => false,
        _ => {
            write_atomic(&paths.include, content.as_bytes(), 0o600)
                .with_context(|| format!("writing {}", paths.include.display()))?;
            true
        }
    };
    let target = resolve_link(&paths.config)?;
    let existing = read(&target)?;
    let ssh_config =
        match with_include(existing.as_deref().unwrap_or_default(), &paths.include_line()) {
            None => false,
            Some(next) => {
                write_atomic(&target, next.as_bytes(), mode_of(&target).unwrap_or(0o600))
                    .with_context(|| format!("writing {}", target.display()))?;
                true
            }
        };
    Ok(Changes { ssh_config, include_file })
}

/// Takes the Include line out of `~/.ssh/config` (deleting the file when nothing else was in
/// it) and deletes the include file.
pub fn uninstall(paths: &SshConfigPaths) -> anyhow::Result<Changes> {
    let target = resolve_link(&paths.config)?;
    let ssh_config = match read(&target)?.and_then(|t| without_include(&t, &paths.include_line())) {
        None => false,
        Some(rest) if rest.is_empty() => {
            std::fs::remove_file(&target)
                .with_context(|| format!("deleting {}", target.display()))?;
            true
        }
        Some(rest) => {
            write_atomic(&target, rest.as_bytes(), mode_of(&target).unwrap_or(0o600))
                .with_context(|| format!("writing {}", target.display()))?;
            true
        }
    };
    let include_file = match std::fs::remove_file(&paths.include) {
        Ok(()) => true,
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => false,
        Err(e) => return Err(e).with_context(|| format!("deleting {}", paths.include.display())),
    };
    Ok(Changes { ssh_config, include_file })
}

fn read(path: &Path) -> anyhow::Result<Option<String>> {
    match std::fs::read_to_string(path) {
        Ok(t) => Ok(Some(t)),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(None),
        Err(e) => Err(e).with_context(|| format!("reading {}", path.display())),
    }
}

/// A `~/.ssh/config` that is a symlink (dotfile managers) is changed where it points, so the
/// link stays a link.
fn resolve_link(path: &Path) -> anyhow::Result<PathBuf> {
    match std::fs::symlink_metadata(path) {
        Ok(m) if m.file_type().is_symlink() => std::fs::canonicalize(path).map_err(|e| {
            Failure::error(format!(
                "{} is a symlink to a file that cannot be read: {e}",
                path.display()
            ))
            .hint("fix or remove the link, then try again")
            .into()
        }),
        _ => Ok(path.to_path_buf()),
    }
}

#[cfg(unix)]
fn mode_of(path: &Path) -> Option<u32> {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::metadata(path).ok().map(|m| m.permissions().mode() & 0o777)
}

#[cfg(not(unix))]
fn mode_of(_path: &Path) -> Option<u32> {
    None
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    const LINE: &str = "Include /home/u/.ssh/burstflare_config";

    #[test]
    fn the_include_goes_first_once_and_comes_out_byte_exact() {
        for before in ["", "Host a\n  User b\n", "Host a\n  User b", "\n\n# c\r\nHost *\r\n"] {
            let after = with_include(before, LINE).unwrap();
            assert_eq!(after, format!("{LINE}\n{before}"));
            assert_eq!(with_include(&after, LINE), None, "twice changes nothing");
            assert_eq!(without_include(&after, LINE).unwrap(), before);
        }
        assert_eq!(without_include("Host a\n", LINE), None);
    }

    #[test]
    fn an_include_further_down_moves_to_the_top() {
        let before = format!("Host a\n{LINE}\n  User b\n");
        assert_eq!(with_include(&before, LINE).unwrap(), format!("{LINE}\nHost a\n  User b\n"));
        // Another Include is the user's own.
        let other = "Include other\n";
        assert_eq!(with_include(other, LINE).unwrap(), format!("{LINE}\n{other}"));
    }

    fn paths(home: &Path) -> SshConfigPaths {
        SshConfigPaths::under(home)
    }

    #[cfg(unix)]
    fn mode(path: &Path) -> u32 {
        use std::os::unix::fs::PermissionsExt as _;
        std::fs::metadata(path).unwrap().permissions().mode() & 0o777
    }

    #[test]
    fn install_in_an_empty_home_makes_private_files_and_remove_leaves_nothing() {
        let home = tempfile::tempdir().unwrap();
        let p = paths(home.path());
        let content = block("/usr/bin/flare ssh --stdio %h", Path::new("/k"), Path::new("/kh"));
        let c = install(&p, &content).unwrap();
        assert_eq!(c, Changes { ssh_config: true, include_file: true });
        let line = p.include_line();
        assert_eq!(std::fs::read_to_string(&p.config).unwrap(), format!("{line}\n"));
        assert_eq!(std::fs::read_to_string(&p.include).unwrap(), content);
        #[cfg(unix)]
        {
            assert_eq!(mode(p.config.parent().unwrap()), 0o700);
            assert_eq!(mode(&p.config), 0o600);
            assert_eq!(mode(&p.include), 0o600);
        }
        assert_eq!(
            install(&p, &content).unwrap(),
            Changes { ssh_config: false, include_file: false }
        );
        assert_eq!(uninstall(&p).unwrap(), Changes { ssh_config: true, include_file: true });
        assert!(!p.config.exists() && !p.include.exists());
        assert_eq!(uninstall(&p).unwrap(), Changes { ssh_config: false, include_file: false });
    }

    #[test]
    fn install_and_remove_keep_the_users_config_byte_for_byte_and_its_mode() {
        for before in ["Host work\n  HostName w.example.com\n", "Host work\n  User me"] {
            let home = tempfile::tempdir().unwrap();
            let p = paths(home.path());
            std::fs::create_dir_all(p.config.parent().unwrap()).unwrap();
            std::fs::write(&p.config, before).unwrap();
            #[cfg(unix)]
            {
                use std::os::unix::fs::PermissionsExt as _;
                std::fs::set_permissions(&p.config, std::fs::Permissions::from_mode(0o640))
                    .unwrap();
            }
            let content = block("flare ssh --stdio %h", Path::new("/k"), Path::new("/kh"));
            install(&p, &content).unwrap();
            let after = std::fs::read_to_string(&p.config).unwrap();
            assert_eq!(after, format!("{}\n{before}", p.include_line()));
            install(&p, &content).unwrap();
            assert_eq!(std::fs::read_to_string(&p.config).unwrap(), after);
            #[cfg(unix)]
            assert_eq!(mode(&p.config), 0o640);
            // A changed block rewrites only the include file.
            let newer = block("/new/flare ssh --stdio %h", Path::new("/k"), Path::new("/kh"));
            assert_eq!(
                install(&p, &newer).unwrap(),
                Changes { ssh_config: false, include_file: true }
            );
            uninstall(&p).unwrap();
            assert_eq!(std::fs::read(&p.config).unwrap(), before.as_bytes());
            assert!(!p.include.exists());
        }
    }

    #[cfg(unix)]
    #[test]
    fn a_symlinked_config_is_changed_where_it_points() {
        let home = tempfile::tempdir().unwrap();
        let p = paths(home.path());
        std::fs::create_dir_all(p.config.parent().unwrap()).unwrap();
        let real = home.path().join("dotfiles-ssh-config");
        std::fs::write(&real, "Host x\n").unwrap();
        std::os::unix::fs::symlink(&real, &p.config).unwrap();
        install(&p, "Host *.burstflare\n").unwrap();
        assert!(std::fs::symlink_metadata(&p.config).unwrap().file_type().is_symlink());
        assert!(std::fs::read_to_string(&real).unwrap().starts_with("Include "));
        uninstall(&p).unwrap();
        assert_eq!(std::fs::read_to_string(&real).unwrap(), "Host x\n");
    }

    #[test]
    fn the_block_pins_host_keys_and_uses_flares_key() {
        let b = block(
            "/usr/bin/flare ssh --stdio %h",
            Path::new("/c/ssh/id_ed25519"),
            Path::new("/c d/ssh/known_hosts"),
        );
        let lines: Vec<&str> = b.lines().filter(|l| !l.starts_with('#')).collect();
        assert_eq!(
            lines,
            [
                "Host *.burstflare",
                "  ProxyCommand /usr/bin/flare ssh --stdio %h",
                "  User burstflare",
                "  IdentityFile /c/ssh/id_ed25519",
                "  IdentitiesOnly yes",
                "  UserKnownHostsFile \"/c d/ssh/known_hosts\"",
                "  StrictHostKeyChecking yes",
                "  ServerAliveInterval 15",
                "  ServerAliveCountMax 3",
            ]
        );
    }
}
