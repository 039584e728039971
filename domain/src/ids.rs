//! Identifiers and validated names. Each type can only be built through `parse` (or `new` for ids),
//! so a value that exists is valid: handlers parse once at the edge and pass these types inward.

use std::fmt;

use serde::{Deserialize, Serialize};
use uuid::Uuid;

/// Why a value was refused. The message names the field and the limit, so it can go to the user as is.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum IdError {
    #[error("{field}: must be a UUID")]
    NotUuid { field: &'static str },
    #[error("{field}: must not be empty")]
    Empty { field: &'static str },
    #[error("{field}: must be at most {max} characters")]
    TooLong { field: &'static str, max: usize },
    #[error("{field}: {rule}")]
    Malformed { field: &'static str, rule: &'static str },
}

macro_rules! uuid_id {
    ($($(#[$doc:meta])* $name:ident => $field:literal,)*) => {$(
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// A fresh UUIDv7: ordered by creation time, so ids sort like their rows were made.
            #[allow(clippy::new_without_default)]
            pub fn new() -> Self {
                Self(Uuid::now_v7().hyphenated().to_string())
            }

            /// Accepts any UUID spelling and keeps the lowercase hyphenated form, the one stored in the database.
            pub fn parse(s: &str) -> Result<Self, IdError> {
                Uuid::parse_str(s.trim())
                    .map(|u| Self(u.hyphenated().to_string()))
                    .map_err(|_| IdError::NotUuid { field: $field })
            }

            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(id: $name) -> String {
                id.0
            }
        }

        impl std::str::FromStr for $name {
            type Err = IdError;
            fn from_str(s: &str) -> Result<Self, IdError> {
                Self::parse(s)
            }
        }
    )*};
}

uuid_id! {
    UserId => "user id",
    WorkspaceId => "workspace id",
    PasskeyId => "passkey id",
    RecoveryCodeId => "recovery code id",
    BrowserSessionId => "browser session id",
    ApiTokenId => "api token id",
    DeviceAuthorizationId => "device authorization id",
    RefreshTokenId => "refresh token id",
    /// All refresh tokens descended from one login.
    RefreshFamilyId => "refresh family id",
    CeremonyId => "ceremony id",
    InviteId => "invite id",
    TemplateId => "template id",
    TemplateVersionId => "template version id",
    TemplateBuildId => "template build id",
    /// A dev session (not a browser session).
    SessionId => "session id",
    SnapshotId => "snapshot id",
    UsageEventId => "usage event id",
    PlanId => "plan id",
    AuditId => "audit id",
    SelfCheckId => "self-check id",
    SshKeyId => "ssh key id",
    RuntimeTokenId => "runtime token id",
}

macro_rules! string_newtype {
    ($name:ident) => {
        impl $name {
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }

        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }

        impl AsRef<str> for $name {
            fn as_ref(&self) -> &str {
                &self.0
            }
        }

        impl TryFrom<String> for $name {
            type Error = IdError;
            fn try_from(s: String) -> Result<Self, IdError> {
                Self::parse(&s)
            }
        }

        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
    };
}

/// An email address, trimmed and lowercased. Deliberately loose beyond its shape: whether it
/// receives mail is for an invitation to find out.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Email(String);

impl Email {
    /// RFC 5321 limits a forward path to 256 octets including the angle brackets.
    pub const MAX_CHARS: usize = 254;

    pub fn parse(s: &str) -> Result<Self, IdError> {
        const FIELD: &str = "email";
        let s = s.trim().to_lowercase();
        if s.is_empty() {
            return Err(IdError::Empty { field: FIELD });
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(IdError::TooLong { field: FIELD, max: Self::MAX_CHARS });
        }
        if s.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(IdError::Malformed {
                field: FIELD,
                rule: "must not contain spaces or control characters",
            });
        }
        let (local, domain) = match s.split_once('@') {
            Some((local, domain)) if !domain.contains('@') => (local, domain),
            _ => {
                return Err(IdError::Malformed {
                    field: FIELD,
                    rule: "must contain exactly one @",
                });
            }
        };
        if local.is_empty() || domain.is_empty() {
            return Err(IdError::Malformed {
                field: FIELD,
                rule: "must have text before and after the @",
            });
        }
        Ok(Self(s))
    }

    /// The part before the @.
    pub fn local_part(&self) -> &str {
        self.0.split_once('@').map_or(&self.0, |(local, _)| local)
    }
}

string_newtype!(Email);

/// A URL-safe workspace handle: lowercase a-z, 0-9 and '-', not starting or ending with '-'.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Slug(String);

impl Slug {
    pub const MAX_CHARS: usize = 48;

    pub fn parse(s: &str) -> Result<Self, IdError> {
        const FIELD: &str = "slug";
        if s.is_empty() {
            return Err(IdError::Empty { field: FIELD });
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(IdError::TooLong { field: FIELD, max: Self::MAX_CHARS });
        }
        if !s.chars().all(|c| c.is_ascii_lowercase() || c.is_ascii_digit() || c == '-') {
            return Err(IdError::Malformed {
                field: FIELD,
                rule: "may contain only lowercase letters a-z, digits 0-9 and '-'",
            });
        }
        if s.starts_with('-') || s.ends_with('-') {
            return Err(IdError::Malformed {
                field: FIELD,
                rule: "must not start or end with '-'",
            });
        }
        Ok(Self(s.to_owned()))
    }

    /// The best slug for arbitrary text, for suggesting one (e.g. from an email's local part):
    /// lowercased, runs of other characters turned into one '-', cut to `max` characters. `None`
    /// when nothing usable is left.
    pub fn suggest(text: &str, max: usize) -> Option<Self> {
        let mut out = String::new();
        for c in text.chars().flat_map(char::to_lowercase) {
            if c.is_ascii_lowercase() || c.is_ascii_digit() {
                out.push(c);
            } else if !out.is_empty() && !out.ends_with('-') {
                out.push('-');
            }
        }
        out.truncate(max.min(Self::MAX_CHARS));
        Self::parse(out.trim_end_matches('-')).ok()
    }
}

string_newtype!(Slug);

/// What people see as a person's or a thing's name: trimmed, 1 to 100 characters, no control characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct DisplayName(String);

impl DisplayName {
    pub const MAX_CHARS: usize = 100;

    pub fn parse(s: &str) -> Result<Self, IdError> {
        const FIELD: &str = "display_name";
        let s = s.trim();
        if s.is_empty() {
            return Err(IdError::Empty { field: FIELD });
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(IdError::TooLong { field: FIELD, max: Self::MAX_CHARS });
        }
        if s.chars().any(char::is_control) {
            return Err(IdError::Malformed {
                field: FIELD,
                rule: "must not contain control characters",
            });
        }
        Ok(Self(s.to_owned()))
    }
}

string_newtype!(DisplayName);

/// A member's role in a workspace, from most to least privileged.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum Role {
    Owner,
    Admin,
    Member,
    Viewer,
}

impl Role {
    pub const ALL: [Role; 4] = [Role::Owner, Role::Admin, Role::Member, Role::Viewer];

    /// The spelling stored in the database and used on the wire.
    pub fn as_str(self) -> &'static str {
        match self {
            Role::Owner => "owner",
            Role::Admin => "admin",
            Role::Member => "member",
            Role::Viewer => "viewer",
        }
    }

    pub fn parse(s: &str) -> Result<Self, IdError> {
        Self::ALL.into_iter().find(|r| r.as_str() == s).ok_or(IdError::Malformed {
            field: "role",
            rule: "must be one of owner, admin, member, viewer",
        })
    }
}

impl fmt::Display for Role {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}
