//! Deployment recipes and what the code needs to know about them: the base session image
//! (`deploy/images/base`), whose tag is derived from its recipe so the code always names the
//! image that the recipe in this commit builds; the runtime catalog rendered as a file
//! ([`catalog`]); and the Wrangler project of the Cloudflare runtime target ([`cloudflare`]).
//! Rendering only: this crate reads no database, it is handed the catalog's documents
//! (`domain::store::CatalogDocument`). See docs/catalog.md.

pub mod catalog;
pub mod cloudflare;
pub mod publish;

use sha2::{Digest, Sha256};

/// Repository of the base session image, built locally by `deploy/images/base/build.sh`.
pub const BASE_IMAGE_REPO: &str = "burstflare/base";

/// The recipe files, in the order `build.sh` hashes them.
const RECIPE: [(&str, &[u8]); 3] = [
    ("build.sh", include_bytes!("../images/base/build.sh")),
    ("packages.txt", include_bytes!("../images/base/packages.txt")),
    ("rootfs-setup.sh", include_bytes!("../images/base/rootfs-setup.sh")),
];

/// The content tag `build.sh` gives the image: the first 12 hex digits of the SHA-256 of
/// `sha256sum build.sh packages.txt rootfs-setup.sh` output.
pub fn base_image_tag() -> String {
    let listing: String = RECIPE
        .iter()
        .map(|(name, bytes)| format!("{}  {name}\n", hex::encode(Sha256::digest(bytes))))
        .collect();
    hex::encode(Sha256::digest(listing.as_bytes()))[..12].to_string()
}

/// `burstflare/base:<recipe tag>`.
pub fn base_image() -> String {
    format!("{BASE_IMAGE_REPO}:{}", base_image_tag())
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use super::*;

    #[test]
    fn the_tag_matches_what_build_sh_computes() {
        let out = std::process::Command::new("bash")
            .arg(concat!(env!("CARGO_MANIFEST_DIR"), "/images/base/build.sh"))
            .arg("--print-tag")
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), base_image());
    }
}
