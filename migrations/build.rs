//! `sqlx::migrate!` reads the SQL files at compile time; without this, adding or editing a migration
//! would not rebuild the crate.
fn main() {
    println!("cargo:rerun-if-changed=sqlite");
    println!("cargo:rerun-if-changed=postgres");
}
