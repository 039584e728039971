//! The one RBAC policy for workspace roles: which [`Permission`] each [`Role`] has, and who may
//! give whom which role. Handlers ask [`allows`]; nothing else decides. `docs/security.md` shows
//! the same table, and a test keeps the two equal.

use std::fmt;

use crate::ids::Role;

/// Something a workspace member may do. Adding one is a compile error in [`allows`] until every
/// role's answer is written down.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Permission {
    /// See the workspace: its name, settings and sessions list.
    ViewWorkspace,
    /// Rename the workspace and change its settings.
    ManageWorkspace,
    /// Delete the workspace and everything in it.
    DeleteWorkspace,
    /// List members, their roles and pending invitations.
    ViewMembers,
    /// Invite people to the workspace.
    InviteMembers,
    /// Change members' roles and remove members (within [`may_assign`] and [`may_remove`]).
    ManageMembers,
    /// Read the workspace's audit log.
    ViewAudit,
    /// Create, start, stop, connect to and delete one's own sessions.
    UseSessions,
    /// Stop or delete sessions that belong to other members.
    ManageAnySession,
    /// Create templates, upload bundles and start builds.
    ManageTemplates,
    /// Promote a built template version to be the one new sessions use.
    PromoteTemplates,
    /// See usage and quota figures.
    ViewUsage,
    /// Change the workspace's plan and billing.
    ManagePlan,
}

impl Permission {
    pub const ALL: [Permission; 13] = [
        Permission::ViewWorkspace,
        Permission::ManageWorkspace,
        Permission::DeleteWorkspace,
        Permission::ViewMembers,
        Permission::InviteMembers,
        Permission::ManageMembers,
        Permission::ViewAudit,
        Permission::UseSessions,
        Permission::ManageAnySession,
        Permission::ManageTemplates,
        Permission::PromoteTemplates,
        Permission::ViewUsage,
        Permission::ManagePlan,
    ];

    /// The snake_case spelling used in docs, logs and error details.
    pub fn as_str(self) -> &'static str {
        match self {
            Permission::ViewWorkspace => "view_workspace",
            Permission::ManageWorkspace => "manage_workspace",
            Permission::DeleteWorkspace => "delete_workspace",
            Permission::ViewMembers => "view_members",
            Permission::InviteMembers => "invite_members",
            Permission::ManageMembers => "manage_members",
            Permission::ViewAudit => "view_audit",
            Permission::UseSessions => "use_sessions",
            Permission::ManageAnySession => "manage_any_session",
            Permission::ManageTemplates => "manage_templates",
            Permission::PromoteTemplates => "promote_templates",
            Permission::ViewUsage => "view_usage",
            Permission::ManagePlan => "manage_plan",
        }
    }
}

impl fmt::Display for Permission {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Whether `role` grants `p`. The table is written per permission, with no wildcard, so every
/// cell is a decision someone made.
pub fn allows(role: Role, p: Permission) -> bool {
    const Y: bool = true;
    const N: bool = false;
    // [owner, admin, member, viewer]
    let row: [bool; 4] = match p {
        Permission::ViewWorkspace => [Y, Y, Y, Y],
        Permission::ManageWorkspace => [Y, Y, N, N],
        Permission::DeleteWorkspace => [Y, N, N, N],
        Permission::ViewMembers => [Y, Y, Y, Y],
        Permission::InviteMembers => [Y, Y, N, N],
        Permission::ManageMembers => [Y, Y, N, N],
        Permission::ViewAudit => [Y, Y, N, N],
        Permission::UseSessions => [Y, Y, Y, N],
        Permission::ManageAnySession => [Y, Y, N, N],
        Permission::ManageTemplates => [Y, Y, N, N],
        Permission::PromoteTemplates => [Y, Y, N, N],
        Permission::ViewUsage => [Y, Y, Y, Y],
        Permission::ManagePlan => [Y, N, N, N],
    };
    match role {
        Role::Owner => row[0],
        Role::Admin => row[1],
        Role::Member => row[2],
        Role::Viewer => row[3],
    }
}

/// Whether `actor` may change a member whose role is `target_current` to `new_role`. Only owners
/// grant or take away the owner role; admins move people among admin, member and viewer and never
/// touch an owner. Keeping at least one owner is the store's check, since it needs a count.
pub fn may_assign(actor: Role, target_current: Role, new_role: Role) -> bool {
    match actor {
        Role::Owner => true,
        Role::Admin => target_current != Role::Owner && new_role != Role::Owner,
        Role::Member | Role::Viewer => false,
    }
}

/// Whether `actor` may remove a member whose role is `target` from the workspace: owners anyone,
/// admins anyone but an owner. Keeping at least one owner is the store's check.
pub fn may_remove(actor: Role, target: Role) -> bool {
    match actor {
        Role::Owner => true,
        Role::Admin => target != Role::Owner,
        Role::Member | Role::Viewer => false,
    }
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]
mod tests {
    use std::collections::BTreeMap;

    use super::*;

    use Role::{Admin, Member, Owner, Viewer};

    /// Written out again, independently of `allows`, as the reviewers' statement of the policy.
    const EXPECTED: &[(&str, &[Role])] = &[
        ("view_workspace", &[Owner, Admin, Member, Viewer]),
        ("manage_workspace", &[Owner, Admin]),
        ("delete_workspace", &[Owner]),
        ("view_members", &[Owner, Admin, Member, Viewer]),
        ("invite_members", &[Owner, Admin]),
        ("manage_members", &[Owner, Admin]),
        ("view_audit", &[Owner, Admin]),
        ("use_sessions", &[Owner, Admin, Member]),
        ("manage_any_session", &[Owner, Admin]),
        ("manage_templates", &[Owner, Admin]),
        ("promote_templates", &[Owner, Admin]),
        ("view_usage", &[Owner, Admin, Member, Viewer]),
        ("manage_plan", &[Owner]),
    ];

    fn permission(name: &str) -> Permission {
        Permission::ALL
            .into_iter()
            .find(|p| p.as_str() == name)
            .unwrap_or_else(|| panic!("no permission named {name:?}"))
    }

    #[test]
    fn the_policy_is_the_agreed_table() {
        assert_eq!(EXPECTED.len(), Permission::ALL.len());
        for (name, granted) in EXPECTED {
            let p = permission(name);
            for role in Role::ALL {
                assert_eq!(allows(role, p), granted.contains(&role), "{role} {p}");
            }
        }
    }

    #[test]
    fn all_lists_every_permission_once_with_a_distinct_snake_case_name() {
        let mut names: Vec<&str> = Permission::ALL.iter().map(|p| p.as_str()).collect();
        assert!(names.iter().all(|n| n.chars().all(|c| c.is_ascii_lowercase() || c == '_')));
        names.sort_unstable();
        names.dedup();
        assert_eq!(names.len(), Permission::ALL.len());
    }

    #[test]
    fn owners_can_do_everything() {
        assert!(Permission::ALL.into_iter().all(|p| allows(Owner, p)));
    }

    #[test]
    fn a_viewer_changes_nothing() {
        for p in Permission::ALL {
            if !p.as_str().starts_with("view_") {
                assert!(!allows(Viewer, p), "viewer allowed {p}");
            }
        }
    }

    #[test]
    fn only_owners_and_admins_read_the_audit_log() {
        let readers: Vec<Role> =
            Role::ALL.into_iter().filter(|r| allows(*r, Permission::ViewAudit)).collect();
        assert_eq!(readers, [Owner, Admin]);
    }

    #[test]
    fn only_an_owner_grants_or_takes_away_the_owner_role() {
        assert!(may_assign(Owner, Member, Owner));
        assert!(may_assign(Owner, Owner, Admin));
        assert!(!may_assign(Admin, Member, Owner));
        assert!(!may_assign(Admin, Owner, Admin));
        assert!(!may_assign(Admin, Owner, Owner));
    }

    #[test]
    fn an_admin_moves_people_among_admin_member_and_viewer() {
        for from in [Admin, Member, Viewer] {
            for to in [Admin, Member, Viewer] {
                assert!(may_assign(Admin, from, to), "admin: {from} -> {to}");
            }
        }
    }

    #[test]
    fn members_and_viewers_assign_no_roles_and_remove_no_one() {
        for actor in [Member, Viewer] {
            for from in Role::ALL {
                assert!(!may_remove(actor, from));
                for to in Role::ALL {
                    assert!(!may_assign(actor, from, to), "{actor}: {from} -> {to}");
                }
            }
        }
    }

    #[test]
    fn an_admin_removes_anyone_but_an_owner() {
        assert!(Role::ALL.into_iter().all(|t| may_remove(Owner, t)));
        assert!(!may_remove(Admin, Owner));
        assert!(may_remove(Admin, Admin) && may_remove(Admin, Member) && may_remove(Admin, Viewer));
    }

    #[test]
    fn role_rules_need_the_manage_members_permission() {
        for actor in Role::ALL {
            let any = Role::ALL.into_iter().any(|t| {
                may_remove(actor, t) || Role::ALL.into_iter().any(|n| may_assign(actor, t, n))
            });
            assert_eq!(any, allows(actor, Permission::ManageMembers), "{actor}");
        }
    }

    /// docs/security.md shows the table people read; it must say what the code does.
    #[test]
    fn docs_security_md_shows_exactly_this_policy() {
        let path = concat!(env!("CARGO_MANIFEST_DIR"), "/../docs/security.md");
        let doc = std::fs::read_to_string(path).unwrap();
        let cells = |line: &str| -> Vec<String> {
            line.trim().trim_matches('|').split('|').map(|c| c.trim().to_owned()).collect()
        };
        let mut lines = doc.lines().skip_while(|l| !l.trim_start().starts_with("| permission"));
        let header = cells(lines.next().expect("a table whose first column is `permission`"));
        let columns: Vec<(usize, Role)> = header
            .iter()
            .enumerate()
            .filter_map(|(i, h)| Role::parse(h).ok().map(|r| (i, r)))
            .collect();
        assert_eq!(columns.iter().map(|(_, r)| *r).collect::<Vec<_>>(), Role::ALL, "{header:?}");
        let rows: Vec<Vec<String>> = lines
            .skip(1) // the |---| line
            .take_while(|l| l.trim_start().starts_with('|'))
            .map(cells)
            .collect();
        let mut seen = BTreeMap::new();
        for row in &rows {
            let p = permission(row[0].trim_matches('`'));
            assert!(seen.insert(p, ()).is_none(), "{p} appears twice");
            for (i, role) in &columns {
                let shown = match row[*i].as_str() {
                    "✓" => true,
                    "—" => false,
                    other => panic!("{p} / {role}: cell {other:?} is neither ✓ nor —"),
                };
                assert_eq!(shown, allows(*role, p), "docs/security.md says {p} / {role} = {shown}");
            }
        }
        assert_eq!(seen.len(), Permission::ALL.len(), "docs/security.md misses permissions");
    }
}
