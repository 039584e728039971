//! The session user: who shells, exec, SFTP and terminals run as.
//!
//! The agent is a static glibc binary, where `getpwnam` and friends (NSS) are not reliable, so it
//! parses `/etc/passwd` and `/etc/group` itself. They are read again for every connection: the
//! image's command may create the user after the agent started.

use std::path::{Path, PathBuf};

/// Where accounts and groups are read from.
pub const PASSWD: &str = "/etc/passwd";
pub const GROUP: &str = "/etc/group";

/// The shell used when an account names none, or one that does not exist.
pub const FALLBACK_SHELL: &str = "/bin/sh";

/// One line of `/etc/passwd`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PasswdEntry {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
}

/// One line of `/etc/group`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GroupEntry {
    pub name: String,
    pub gid: u32,
    pub members: Vec<String>,
}

/// Parses `/etc/passwd` text (`name:password:uid:gid:gecos:home:shell`), skipping comments, blank
/// and malformed lines.
pub fn parse_passwd(text: &str) -> Vec<PasswdEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let [name, _password, uid, gid, _gecos, home, shell] = fields.as_slice() else {
                return None;
            };
            if name.is_empty() || name.starts_with('#') {
                return None;
            }
            Some(PasswdEntry {
                name: (*name).to_string(),
                uid: uid.parse().ok()?,
                gid: gid.parse().ok()?,
                home: (*home).to_string(),
                shell: (*shell).to_string(),
            })
        })
        .collect()
}

/// Parses `/etc/group` text (`name:password:gid:member,member`), skipping comments, blank and
/// malformed lines.
pub fn parse_group(text: &str) -> Vec<GroupEntry> {
    text.lines()
        .filter_map(|line| {
            let fields: Vec<&str> = line.split(':').collect();
            let [name, _password, gid, members] = fields.as_slice() else { return None };
            if name.is_empty() || name.starts_with('#') {
                return None;
            }
            Some(GroupEntry {
                name: (*name).to_string(),
                gid: gid.parse().ok()?,
                members: members
                    .split(',')
                    .map(str::trim)
                    .filter(|member| !member.is_empty())
                    .map(str::to_string)
                    .collect(),
            })
        })
        .collect()
}

/// Who a child process runs as, and where.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    /// Supplementary groups (the primary group included).
    pub groups: Vec<u32>,
    /// `$HOME`, from the account.
    pub home: PathBuf,
    /// The login shell, from the account ([`FALLBACK_SHELL`] if it names none).
    pub shell: PathBuf,
    /// Children switch to `uid`/`gid`/`groups` (the agent runs as root and a user was configured);
    /// otherwise they keep the agent's own credentials.
    pub switch: bool,
}

impl Identity {
    /// The directory children start in: the home directory, or `/` when it does not exist.
    pub fn cwd(&self) -> &Path {
        if self.home.is_dir() { &self.home } else { Path::new("/") }
    }

    /// The login shell, or [`FALLBACK_SHELL`] when it does not exist.
    pub fn shell_path(&self) -> &Path {
        if self.shell.is_file() { &self.shell } else { Path::new(FALLBACK_SHELL) }
    }
}

/// Why the configured session user cannot be used.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UnknownUser(pub String);

impl std::fmt::Display for UnknownUser {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(
            f,
            "the session user {:?} does not exist in {PASSWD} (check the template's user)",
            self.0
        )
    }
}

/// Resolves the session user from `passwd` and `group` text.
///
/// - `configured` is `BURSTFLARE_SESSION_USER`: a name, or a numeric uid (an uid without an account
///   gets its own number as group, `/` as home and [`FALLBACK_SHELL`]).
/// - When it is unset, or the agent does not run as root (`agent_uid` != 0), children run as the
///   agent's own user (`agent_uid`/`agent_gid`), described by its account when there is one.
pub fn resolve(
    configured: Option<&str>,
    agent_uid: u32,
    agent_gid: u32,
    passwd: &str,
    group: &str,
) -> Result<Identity, UnknownUser> {
    let accounts = parse_passwd(passwd);
    let wanted = configured.map(str::trim).filter(|name| !name.is_empty());
    let (Some(wanted), 0) = (wanted, agent_uid) else {
        let account = accounts.iter().find(|account| account.uid == agent_uid);
        return Ok(match account {
            Some(account) => identity(account, agent_gid, Vec::new(), false),
            None => Identity {
                name: agent_uid.to_string(),
                uid: agent_uid,
                gid: agent_gid,
                groups: Vec::new(),
                home: PathBuf::from("/"),
                shell: PathBuf::from(FALLBACK_SHELL),
                switch: false,
            },
        });
    };
    let by_name = accounts.iter().find(|account| account.name == wanted);
    let numeric = wanted.parse::<u32>().ok();
    let account = by_name
        .or_else(|| numeric.and_then(|uid| accounts.iter().find(|account| account.uid == uid)));
    let Some(account) = account else {
        let uid = numeric.ok_or_else(|| UnknownUser(wanted.to_string()))?;
        return Ok(Identity {
            name: uid.to_string(),
            uid,
            gid: uid,
            groups: vec![uid],
            home: PathBuf::from("/"),
            shell: PathBuf::from(FALLBACK_SHELL),
            switch: true,
        });
    };
    let mut groups = vec![account.gid];
    for entry in parse_group(group) {
        if entry.members.contains(&account.name) && !groups.contains(&entry.gid) {
            groups.push(entry.gid);
        }
    }
    Ok(identity(account, account.gid, groups, true))
}

fn identity(account: &PasswdEntry, gid: u32, groups: Vec<u32>, switch: bool) -> Identity {
    let shell = if account.shell.is_empty() { FALLBACK_SHELL } else { &account.shell };
    let home = if account.home.is_empty() { "/" } else { &account.home };
    Identity {
        name: account.name.clone(),
        uid: account.uid,
        gid,
        groups,
        home: PathBuf::from(home),
        shell: PathBuf::from(shell),
        switch,
    }
}

/// Resolves `configured` against this machine's `/etc/passwd` and `/etc/group` and the agent's
/// effective uid and gid.
pub fn resolve_system(configured: Option<&str>) -> Result<Identity, UnknownUser> {
    let passwd = std::fs::read_to_string(PASSWD).unwrap_or_default();
    let group = std::fs::read_to_string(GROUP).unwrap_or_default();
    let uid = rustix::process::geteuid().as_raw();
    let gid = rustix::process::getegid().as_raw();
    resolve(configured, uid, gid, &passwd, &group)
}
