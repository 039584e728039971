//! `flare workspace`: list workspaces, pick the default one, list members, invite people.

use anyhow::Context as _;
use serde::Serialize;

use crate::commands::auth::print_workspaces;
use crate::fail::Failure;
use crate::output;
use crate::session::Ctx;
use crate::store::Config;

#[derive(Clone, Copy, Debug, PartialEq, Eq, clap::ValueEnum)]
pub enum InviteRole {
    Viewer,
    Member,
    Admin,
}

impl InviteRole {
    fn as_str(self) -> &'static str {
        match self {
            Self::Viewer => "viewer",
            Self::Member => "member",
            Self::Admin => "admin",
        }
    }
}

pub async fn list(ctx: &Ctx) -> anyhow::Result<()> {
    let mut authed = ctx.signed_in()?;
    let list = authed.call(async |c| c.workspaces().await).await?;
    if !ctx.text() {
        return output::json(&list);
    }
    print_workspaces(&list, ctx.default_workspace().as_deref());
    Ok(())
}

pub async fn switch(ctx: &Ctx, slug: &str) -> anyhow::Result<()> {
    let mut authed = ctx.signed_in()?;
    let list = authed.call(async |c| c.workspaces().await).await?;
    let Some(ws) = list.into_iter().find(|w| w.slug == slug) else {
        return Err(Failure::not_found(format!("you are not a member of a workspace {slug:?}"))
            .hint("`flare workspace list` shows the workspaces you belong to")
            .into());
    };
    let path = ctx.paths()?.config_file();
    let mut config = Config::load(&path)?;
    config.profile_mut(&ctx.profile).workspace = Some(ws.slug.clone());
    config.save(&path)?;
    if !ctx.text() {
        return output::json(&ws);
    }
    println!(
        "The default workspace of profile {} is now {} ({}, role {}).",
        ctx.profile, ws.slug, ws.name, ws.role
    );
    Ok(())
}

pub async fn members(ctx: &Ctx, slug: Option<&str>) -> anyhow::Result<()> {
    let ws = ctx.workspace(slug)?;
    let mut authed = ctx.signed_in()?;
    let members = authed
        .call(async |c| c.members(&ws).await)
        .await
        .with_context(|| format!("listing the members of {ws}"))?;
    if !ctx.text() {
        return output::json(&members);
    }
    let rows: Vec<Vec<String>> = members
        .iter()
        .map(|m| {
            vec![
                m.user.display_name.clone(),
                m.user.email.clone(),
                m.role.clone(),
                output::date(m.joined_at),
            ]
        })
        .collect();
    println!("{}", output::table(&["NAME", "EMAIL", "ROLE", "JOINED"], &rows));
    Ok(())
}

#[derive(Serialize)]
struct InviteOutput<'a> {
    workspace: &'a str,
    invite: sdk::InviteInfo,
    link: String,
}

pub async fn invite(
    ctx: &Ctx,
    email: &str,
    role: InviteRole,
    days: Option<u32>,
) -> anyhow::Result<()> {
    let ws = ctx.workspace(None)?;
    let body = sdk::CreateInvite {
        email: email.to_string(),
        role: role.as_str().to_string(),
        expires_in_days: days,
    };
    let mut authed = ctx.signed_in()?;
    let created = authed
        .call(async |c| c.create_invite(&ws, &body).await)
        .await
        .with_context(|| format!("inviting {email} to {ws}"))?;
    if !ctx.text() {
        return output::json(&InviteOutput {
            workspace: &ws,
            invite: created.invite,
            link: created.link,
        });
    }
    println!(
        "Invited {} to {ws} as {}. Send them this link; it works until {} and is shown only once:",
        created.invite.email,
        created.invite.role,
        output::date_time(created.invite.expires_at)
    );
    println!("{}", created.link);
    Ok(())
}
