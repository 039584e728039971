//! Pages: one module per area, each page a pure function of `sdk` types and the
//! [`PageContext`](crate::PageContext). The api crate maps them to routes.

mod account;
mod audit;
mod auth;
mod builds;
mod dashboard;
mod device;
mod home;
mod invite;
mod members;
mod promotions;
mod sessions;
mod settings;
mod snapshots;
mod templates;
mod terminal;
mod workspaces;

pub use crate::components::{SessionRights, session_controls, session_path};
pub use account::{ShownOnce, account};
pub use audit::audit;
pub use auth::{recover, signin, signup};
pub use builds::build_page;
pub use dashboard::dashboard;
pub use device::{DeviceView, device};
pub use home::{error_page, error_page_with, home, home_with};
pub use invite::invite;
pub use members::members;
pub use promotions::{TemplatePromotions, promotion_card, promotion_path};
pub use sessions::{
    MAX_EVENTS_SHOWN, NewSession, StartableTemplate, session_detail, session_detail_with_snapshots,
    sessions,
};
pub use settings::settings;
pub use snapshots::{SessionSnapshots, SnapshotActions, snapshot_actions, snapshot_badge};
pub use templates::{
    NewTemplate, build_path, template_detail, template_detail_with_promotions, template_path,
    templates,
};
pub use terminal::{terminal, terminal_path};
pub use workspaces::new_workspace;

#[cfg(test)]
mod tests;
