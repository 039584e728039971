//! The `ssh` command line and the ProxyCommand: quoting for the shell that runs the ProxyCommand,
//! for ssh's own configuration syntax, and the `%` of ssh's tokens.

use std::path::Path;

/// SSH keepalives: a probe every 15 s, the connection given up after 3 unanswered ones.
pub const SERVER_ALIVE_INTERVAL: u32 = 15;
pub const SERVER_ALIVE_COUNT_MAX: u32 = 3;

/// What makes a ProxyCommand's `flare` use the same files, server and credentials as the `flare`
/// that wrote it. Everything else (`FLARE_TOKEN`, `HOME`…) reaches it through the environment
/// ssh passes on.
#[derive(Debug, Clone, Default, PartialEq, Eq)]
pub struct Selection {
    /// `--config-dir DIR`.
    pub config_dir: Option<String>,
    /// `--server URL`.
    pub server: Option<String>,
    /// `--profile NAME` (only when it is not the default one).
    pub profile: Option<String>,
}

/// `s` as one word for a POSIX shell (ssh runs a ProxyCommand with `$SHELL -c "exec …"`): as it
/// is when it holds only characters no shell treats specially, else in single quotes.
pub fn shell_quote(s: &str) -> String {
    let plain =
        !s.is_empty() && s.chars().all(|c| c.is_ascii_alphanumeric() || "_-./:=@,+%".contains(c));
    if plain { s.to_string() } else { format!("'{}'", s.replace('\'', r"'\''")) }
}

/// `%` doubled: ssh expands `%h`, `%p`… in ProxyCommand, IdentityFile and UserKnownHostsFile.
pub fn escape_percent(s: &str) -> String {
    s.replace('%', "%%")
}

/// A value in ssh's configuration syntax (a config file line or `-o KEY=VALUE`): in double
/// quotes when it has spaces or quotes. ssh has no escape for a `"` inside quotes, so a path
/// with one cannot be written (flare's paths do not have them).
pub fn config_value(s: &str) -> String {
    if s.is_empty() || s.chars().any(|c| c.is_whitespace() || c == '"' || c == '\'' || c == '#') {
        format!("\"{s}\"")
    } else {
        s.to_string()
    }
}

/// A path as a value of IdentityFile or UserKnownHostsFile.
pub fn path_value(p: &Path) -> String {
    config_value(&escape_percent(&p.to_string_lossy()))
}

/// The ProxyCommand that runs `flare [selection] ssh --stdio TARGET…`. `target` words are used
/// as they are, so `%h` stays an ssh token; everything else is quoted and `%`-escaped.
pub fn proxy_command(flare: &Path, selection: &Selection, target: &[&str]) -> String {
    let mut words = vec![word(&flare.to_string_lossy())];
    let mut option = |name: &str, value: &Option<String>| {
        if let Some(v) = value {
            words.push(name.to_string());
            words.push(word(v));
        }
    };
    option("--config-dir", &selection.config_dir);
    option("--server", &selection.server);
    option("--profile", &selection.profile);
    words.extend(["ssh".to_string(), "--stdio".to_string()]);
    words.extend(target.iter().map(|t| t.to_string()));
    words.join(" ")
}

/// One literal word of a ProxyCommand.
fn word(s: &str) -> String {
    escape_percent(&shell_quote(s))
}

/// A ProxyCommand target word for a literal value (a workspace, a session name).
pub fn target_word(s: &str) -> String {
    word(s)
}

/// What `flare ssh` and `flare port-forward` hand to `ssh`.
#[derive(Debug, Clone)]
pub struct SshCommand<'a> {
    pub proxy_command: String,
    pub identity: &'a Path,
    pub known_hosts: &'a Path,
    /// `<session>.<workspace>.burstflare`: the host name and the known_hosts alias.
    pub alias: &'a str,
    pub user: &'a str,
    /// `--ssh-arg`s, before the destination.
    pub extra: &'a [String],
    /// `-L` spec: forward only, no shell (`-N`).
    pub forward: Option<String>,
    /// The remote command, after the destination.
    pub command: &'a [String],
}

impl SshCommand<'_> {
    /// The arguments of `ssh` (without `ssh` itself).
    pub fn args(&self) -> Vec<String> {
        let mut args = Vec::new();
        let mut o = |kv: String| {
            args.push("-o".to_string());
            args.push(kv);
        };
        o(format!("ProxyCommand={}", self.proxy_command));
        o(format!("IdentityFile={}", path_value(self.identity)));
        o("IdentitiesOnly=yes".into());
        o(format!("ServerAliveInterval={SERVER_ALIVE_INTERVAL}"));
        o(format!("ServerAliveCountMax={SERVER_ALIVE_COUNT_MAX}"));
        o("StrictHostKeyChecking=yes".into());
        o(format!("UserKnownHostsFile={}", path_value(self.known_hosts)));
        o(format!("HostKeyAlias={}", self.alias));
        if let Some(spec) = &self.forward {
            o("ExitOnForwardFailure=yes".into());
            args.push("-N".into());
            args.push("-L".into());
            args.push(spec.clone());
        }
        args.extend(self.extra.iter().cloned());
        // After `--` ssh reads no more options: the command's words stay the command's.
        args.push("--".into());
        args.push(format!("{}@{}", self.user, self.alias));
        args.extend(self.command.iter().cloned());
        args
    }
}

/// A port forward `LOCAL:REMOTE`: LOCAL a port on 127.0.0.1, REMOTE a port or HOST:PORT inside
/// the session (HOST default 127.0.0.1; an IPv6 address in brackets). `PORT` alone forwards the
/// same port.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Forward {
    pub local: u16,
    pub host: String,
    pub remote: u16,
}

impl Forward {
    pub fn parse(spec: &str) -> Result<Self, String> {
        let spec = spec.trim();
        let (local, remote) = match spec.split_once(':') {
            Some((l, r)) => (l, r),
            None => (spec, spec),
        };
        let local = port(local, "LOCAL")?;
        let (host, remote) = match remote.rsplit_once(':') {
            Some((h, p)) => {
                let h = h.strip_prefix('[').and_then(|h| h.strip_suffix(']')).unwrap_or(h);
                if h.is_empty() {
                    return Err(format!("the host in REMOTE `{remote}` is empty"));
                }
                if (h.contains(':') && !remote.starts_with('[')) || h.contains(['[', ']', '/', ' '])
                {
                    return Err(format!(
                        "the host in REMOTE `{remote}` is not a host name or an address (write an \
                         IPv6 address in brackets: [::1]:PORT)"
                    ));
                }
                (h.to_string(), port(p, "REMOTE")?)
            }
            None => ("127.0.0.1".to_string(), port(remote, "REMOTE")?),
        };
        Ok(Self { local, host, remote })
    }

    /// `-L 127.0.0.1:LOCAL:HOST:REMOTE`
    pub fn ssh_spec(&self) -> String {
        format!("127.0.0.1:{}:{}:{}", self.local, bracket(&self.host), self.remote)
    }

    /// `HOST:REMOTE`, as people write it.
    pub fn remote_display(&self) -> String {
        format!("{}:{}", bracket(&self.host), self.remote)
    }
}

fn bracket(host: &str) -> String {
    if host.contains(':') { format!("[{host}]") } else { host.to_string() }
}

fn port(s: &str, what: &str) -> Result<u16, String> {
    match s.trim().parse::<u32>() {
        Ok(p @ 1..=65535) => Ok(u16::try_from(p).unwrap_or(u16::MAX)),
        _ => Err(format!("{what} port `{s}` is not a port number (1-65535)")),
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use super::*;

    #[test]
    fn words_are_quoted_only_when_a_shell_would_misread_them() {
        assert_eq!(shell_quote("/usr/local/bin/flare"), "/usr/local/bin/flare");
        assert_eq!(shell_quote("https://bf.example.com:8443"), "https://bf.example.com:8443");
        assert_eq!(shell_quote("/home/a b/flare"), "'/home/a b/flare'");
        assert_eq!(shell_quote("it's"), r"'it'\''s'");
        assert_eq!(shell_quote("$(rm -rf ~)"), "'$(rm -rf ~)'");
        assert_eq!(shell_quote(""), "''");
        assert_eq!(config_value("/a/b"), "/a/b");
        assert_eq!(config_value("/a b/c"), "\"/a b/c\"");
        assert_eq!(path_value(Path::new("/x/100%/k")), "/x/100%%/k");
    }

    #[test]
    fn the_proxy_command_selects_the_same_server_and_profile() {
        let sel = Selection {
            config_dir: None,
            server: Some("http://127.0.0.1:8080".into()),
            profile: Some("work".into()),
        };
        let ws = target_word("acme");
        let name = target_word("dev-abcd");
        assert_eq!(
            proxy_command(Path::new("/opt/my tools/flare"), &sel, &["--workspace", &ws, &name]),
            "'/opt/my tools/flare' --server http://127.0.0.1:8080 --profile work ssh --stdio \
             --workspace acme dev-abcd"
        );
        let sel = Selection {
            config_dir: Some("/home/u/.config/burstflare".into()),
            server: Some("https://bf.example.com/a%20b".into()),
            profile: None,
        };
        assert_eq!(
            proxy_command(Path::new("/usr/bin/flare"), &sel, &["%h"]),
            "/usr/bin/flare --config-dir /home/u/.config/burstflare --server \
             https://bf.example.com/a%%20b ssh --stdio %h"
        );
    }

    #[test]
    fn ssh_gets_pinning_identity_keepalives_then_the_destination_and_command() {
        let extra = vec!["-v".to_string()];
        let command = vec!["ls".to_string(), "-la".to_string()];
        let cmd = SshCommand {
            proxy_command: "/usr/bin/flare --server http://h ssh --stdio --workspace acme dev"
                .into(),
            identity: Path::new("/c/ssh/id_ed25519"),
            known_hosts: Path::new("/c/ssh/known_hosts"),
            alias: "dev.acme.burstflare",
            user: "coder",
            extra: &extra,
            forward: None,
            command: &command,
        };
        assert_eq!(
            cmd.args(),
            [
                "-o",
                "ProxyCommand=/usr/bin/flare --server http://h ssh --stdio --workspace acme dev",
                "-o",
                "IdentityFile=/c/ssh/id_ed25519",
                "-o",
                "IdentitiesOnly=yes",
                "-o",
                "ServerAliveInterval=15",
                "-o",
                "ServerAliveCountMax=3",
                "-o",
                "StrictHostKeyChecking=yes",
                "-o",
                "UserKnownHostsFile=/c/ssh/known_hosts",
                "-o",
                "HostKeyAlias=dev.acme.burstflare",
                "-v",
                "--",
                "coder@dev.acme.burstflare",
                "ls",
                "-la",
            ]
        );
        let fwd = SshCommand {
            forward: Some("127.0.0.1:8080:127.0.0.1:3000".into()),
            extra: &[],
            command: &[],
            known_hosts: Path::new("/c d/known_hosts"),
            ..cmd
        };
        let args = fwd.args();
        assert!(args.contains(&"UserKnownHostsFile=\"/c d/known_hosts\"".to_string()));
        let tail: Vec<&str> = args.iter().skip(16).map(String::as_str).collect();
        assert_eq!(
            tail,
            [
                "-o",
                "ExitOnForwardFailure=yes",
                "-N",
                "-L",
                "127.0.0.1:8080:127.0.0.1:3000",
                "--",
                "coder@dev.acme.burstflare"
            ]
        );
    }

    #[test]
    fn forwards_parse_ports_hosts_and_ipv6() {
        let f = Forward::parse("8080:3000").unwrap();
        assert_eq!(f, Forward { local: 8080, host: "127.0.0.1".into(), remote: 3000 });
        assert_eq!(f.ssh_spec(), "127.0.0.1:8080:127.0.0.1:3000");
        let f = Forward::parse("5432:db.internal:5432").unwrap();
        assert_eq!(f.host, "db.internal");
        assert_eq!(f.remote_display(), "db.internal:5432");
        let f = Forward::parse("9000:[::1]:9001").unwrap();
        assert_eq!(f.host, "::1");
        assert_eq!(f.ssh_spec(), "127.0.0.1:9000:[::1]:9001");
        assert_eq!(Forward::parse("3000").unwrap().remote, 3000);
    }

    #[test]
    fn bad_forwards_name_the_part_that_is_wrong() {
        let err = |s: &str| Forward::parse(s).unwrap_err();
        assert_eq!(err("0:3000"), "LOCAL port `0` is not a port number (1-65535)");
        assert_eq!(err("8080:70000"), "REMOTE port `70000` is not a port number (1-65535)");
        assert_eq!(err("x:80"), "LOCAL port `x` is not a port number (1-65535)");
        assert_eq!(err("8080:db:"), "REMOTE port `` is not a port number (1-65535)");
        assert!(err("8080::80").contains("empty"));
        assert!(err("8080:::1:80").contains("brackets"));
        assert!(err("").contains("LOCAL"));
    }
}
