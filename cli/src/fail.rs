//! How `flare` fails: the exit code, the `error:` line, the `hint:` line saying what to do next
//! and, with `--output json`, the `{"error": {code, message, hint}}` document on stdout.

use sdk::{ClientError, ErrorCode};

use crate::output::Output;

/// The documented exit codes (`flare --help`, docs/cli.md). Clap itself exits 2 on bad usage.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Exit {
    Ok = 0,
    Error = 1,
    Usage = 2,
    /// Not signed in, or the sign-in expired or was revoked.
    Auth = 3,
    NotFound = 4,
    Unreachable = 5,
}

/// An error that already knows its exit code, machine-readable code and hint.
#[derive(Debug, Clone)]
pub struct Failure {
    pub exit: Exit,
    pub code: String,
    pub message: String,
    pub hint: Option<String>,
    /// The request field the server found wrong (`details.field` of its error body).
    pub field: Option<String>,
}

impl std::fmt::Display for Failure {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.message)
    }
}

impl std::error::Error for Failure {}

impl Failure {
    pub fn new(exit: Exit, code: &str, message: impl Into<String>) -> Self {
        Self { exit, code: code.into(), message: message.into(), hint: None, field: None }
    }

    pub fn error(message: impl Into<String>) -> Self {
        Self::new(Exit::Error, "error", message)
    }

    pub fn usage(message: impl Into<String>) -> Self {
        Self::new(Exit::Usage, "invalid_usage", message)
    }

    /// Not signed in, or the credentials stopped working; the hint names `flare auth login`.
    pub fn auth(profile: &str, message: impl Into<String>) -> Self {
        Self::new(Exit::Auth, "unauthenticated", message)
            .hint(format!("run `{}` to sign in", login_command(profile)))
    }

    pub fn not_found(message: impl Into<String>) -> Self {
        Self::new(Exit::NotFound, "not_found", message)
    }

    pub fn hint(mut self, hint: impl Into<String>) -> Self {
        self.hint = Some(hint.into());
        self
    }
}

/// `flare auth login`, with `--profile` when it is not the default one.
pub fn login_command(profile: &str) -> String {
    if profile == crate::DEFAULT_PROFILE {
        "flare auth login".into()
    } else {
        format!("flare auth login --profile {profile}")
    }
}

/// The failure for any error a command returned: a [`Failure`] anywhere in the chain as it is,
/// an sdk [`ClientError`] by what the server said, anything else as a plain error (exit 1).
pub fn classify(err: &anyhow::Error, profile: &str) -> Failure {
    // Context added on the way up ("listing members of acme") leads the message.
    let mut parts = Vec::new();
    for cause in err.chain() {
        if let Some(f) = cause.downcast_ref::<Failure>() {
            parts.push(f.message.clone());
            return Failure { message: parts.join(": "), ..f.clone() };
        }
        if let Some(e) = cause.downcast_ref::<ClientError>() {
            let mut f = from_client_error(e, profile);
            parts.push(f.message);
            f.message = parts.join(": ");
            return f;
        }
        parts.push(cause.to_string());
    }
    Failure::error(format!("{err:#}"))
}

fn from_client_error(e: &ClientError, profile: &str) -> Failure {
    match e {
        ClientError::Transport { url, cause } => Failure::new(
            Exit::Unreachable,
            "unreachable",
            format!("could not reach the BurstFlare server at {url} ({cause})"),
        )
        .hint(
            "check the server URL (--server, FLARE_SERVER or `flare config set server URL`) and \
             that the server is running",
        ),
        ClientError::InvalidUrl { .. } => Failure::new(Exit::Error, "invalid_server_url", e.to_string())
            .hint("use a URL like https://burstflare.example.com (--server, FLARE_SERVER or `flare config set server URL`)"),
        ClientError::Api { error, .. } if e.is_unauthenticated() => {
            Failure::auth(profile, error.message.clone())
        }
        ClientError::Api { error, .. } if e.is_not_found() => Failure::not_found(error.message.clone())
            .hint("check the name; `flare workspace list` shows the workspaces you belong to"),
        ClientError::Api { status, error } => {
            let code = serde_json::to_value(error.code)
                .ok()
                .and_then(|v| v.as_str().map(str::to_string))
                .unwrap_or_else(|| format!("http_{status}"));
            let field = error.details.get("field").and_then(|f| f.as_str()).map(str::to_string);
            let mut f = Failure::new(Exit::Error, &code, with_field(field.as_deref(), &error.message));
            f.field = field;
            match error.code {
                ErrorCode::Forbidden => f.hint(
                    "ask an owner or admin of the workspace for a role that allows this",
                ),
                ErrorCode::RateLimited => f.hint("wait a minute and try again"),
                ErrorCode::Unavailable | ErrorCode::Internal => {
                    f.hint("try again later; the server's log has the cause")
                }
                _ => f,
            }
        }
        ClientError::OAuth(o) => Failure::new(Exit::Error, &o.error, e.to_string()),
        ClientError::UnexpectedBody { .. } => Failure::new(Exit::Error, "unexpected_response", e.to_string())
            .hint("check that the server URL points at a BurstFlare server"),
    }
}

/// `field: message`, unless the message already starts with the field's name.
pub fn with_field(field: Option<&str>, message: &str) -> String {
    match field {
        Some(field) if !field.is_empty() && !message.starts_with(&format!("{field}:")) => {
            format!("{field}: {message}")
        }
        _ => message.to_string(),
    }
}

impl Failure {
    /// `error: …` and `hint: …` on stderr; with JSON output also the error document on stdout.
    pub fn print(&self, output: Output) {
        eprintln!("error: {}", self.message);
        if let Some(hint) = &self.hint {
            eprintln!("hint: {hint}");
        }
        if output == Output::Json {
            let mut error = serde_json::json!({ "code": self.code, "message": self.message });
            if let Some(hint) = &self.hint {
                error["hint"] = hint.as_str().into();
            }
            if let Some(field) = &self.field {
                error["field"] = field.as_str().into();
            }
            println!("{:#}", serde_json::json!({ "error": error }));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_401_from_the_server_means_sign_in_again() {
        let e = anyhow::Error::from(ClientError::Api {
            status: 401,
            error: sdk::ApiError::new(ErrorCode::Unauthenticated, "token expired"),
        })
        .context("listing workspaces");
        let f = classify(&e, "staging");
        assert_eq!(f.exit, Exit::Auth);
        assert_eq!(f.message, "listing workspaces: token expired");
        assert_eq!(f.hint.as_deref(), Some("run `flare auth login --profile staging` to sign in"));
    }

    #[test]
    fn an_unreachable_server_exits_5() {
        let e = anyhow::Error::from(ClientError::Transport {
            url: "http://127.0.0.1:1".into(),
            cause: "Connection refused".into(),
        });
        let f = classify(&e, "default");
        assert_eq!(f.exit, Exit::Unreachable);
        assert!(f.message.starts_with("could not reach the BurstFlare server"), "{}", f.message);
    }

    #[test]
    fn a_forbidden_answer_keeps_the_servers_code() {
        let e = anyhow::Error::from(ClientError::Api {
            status: 403,
            error: sdk::ApiError::new(ErrorCode::Forbidden, "viewers cannot invite"),
        });
        let f = classify(&e, "default");
        assert_eq!((f.exit, f.code.as_str()), (Exit::Error, "forbidden"));
    }

    #[test]
    fn the_field_the_server_names_leads_the_message() {
        let invalid = |message: &str, field: &str| {
            anyhow::Error::from(ClientError::Api {
                status: 400,
                error: sdk::ApiError::new(ErrorCode::InvalidRequest, message)
                    .with_details(serde_json::json!({ "field": field })),
            })
        };
        let f = classify(&invalid("must be a public image", "manifest.base_image"), "default");
        assert_eq!(f.message, "manifest.base_image: must be a public image");
        assert_eq!(f.field.as_deref(), Some("manifest.base_image"));
        assert_eq!(f.code, "invalid_request");
        // Messages that already name their field are not prefixed twice.
        let f = classify(&invalid("name: 1 to 40 characters", "name"), "default");
        assert_eq!(f.message, "name: 1 to 40 characters");
    }
}
