//! The runtime catalog as a file: what runtime hosts and deploy tooling read (docs/catalog.md).
//!
//! [`render`] turns a catalog document (`domain::store::Store::catalog`, or any recorded
//! revision) into TOML, and [`parse`] reads it back. The output depends on the document only:
//! the same revision renders to the same bytes on every host, so comparing files (or their
//! hashes) tells whether two hosts run the same catalog.

use domain::store::CatalogDocument;

/// The usual name of the rendered file.
pub const CATALOG_FILE: &str = "catalog.toml";

/// The catalog as TOML, with a header comment naming its revision. Entries keep the document's
/// order (by workspace slug, then template name); optional fields that are not set are left out.
pub fn render(doc: &CatalogDocument) -> String {
    let generated = chrono::DateTime::from_timestamp_millis(doc.generated_at)
        .map(|t| t.to_rfc3339_opts(chrono::SecondsFormat::Millis, true))
        .unwrap_or_else(|| doc.generated_at.to_string());
    let body = match toml::to_string(doc) {
        Ok(body) => body,
        // Every field is a string, an integer that fits TOML or a bool: serializing cannot
        // fail. Should it ever, the file says so instead of looking like an empty catalog.
        Err(e) => format!("error = {:?}\n", e.to_string()),
    };
    format!(
        "# BurstFlare runtime catalog, revision {revision} ({generated}).\n\
         # Generated from the control-plane database by deploy::catalog::render: do not edit.\n\
         # {n} {entries}; each names a template's active version and the image new sessions run.\n\
         \n{body}",
        revision = doc.revision,
        n = doc.entries.len(),
        entries = if doc.entries.len() == 1 { "entry" } else { "entries" },
    )
}

/// Reads a file written by [`render`].
pub fn parse(text: &str) -> Result<CatalogDocument, toml::de::Error> {
    toml::from_str(text)
}

#[cfg(test)]
#[allow(clippy::unwrap_used, clippy::expect_used)]
mod tests {
    use domain::store::CatalogEntry;

    use super::*;

    fn entry(slug: &str, name: &str, previous: bool) -> CatalogEntry {
        CatalogEntry {
            workspace_id: "0190a000-0000-7000-8000-00000000000a".to_owned(),
            workspace_slug: slug.to_owned(),
            template_id: "0190a000-0000-7000-8000-00000000000b".to_owned(),
            template_name: name.to_owned(),
            version_id: "0190a000-0000-7000-8000-00000000000c".to_owned(),
            version: "3".to_owned(),
            image_ref: format!("registry.local:5000/{slug}/{name}:3"),
            previous_version_id: previous
                .then(|| "0190a000-0000-7000-8000-00000000000d".to_owned()),
            previous_version: previous.then(|| "2".to_owned()),
            updated_at: 1_700_000_000_123,
            revision: 7,
            cpu_millis: 2000,
            memory_mb: 2048,
            archived: !previous,
        }
    }

    #[test]
    fn a_document_round_trips_through_its_file() {
        let doc = CatalogDocument {
            revision: 7,
            generated_at: 1_700_000_000_123,
            entries: vec![entry("acme", "rust", true), entry("acme", "go \"quoted\"", false)],
        };
        let text = render(&doc);
        assert!(
            text.starts_with(
                "# BurstFlare runtime catalog, revision 7 (2023-11-14T22:13:20.123Z).\n"
            ),
            "{text}"
        );
        assert!(text.contains("# 2 entries;"), "{text}");
        assert_eq!(parse(&text).unwrap(), doc);
        // Deterministic: the same document, the same bytes.
        assert_eq!(render(&doc.clone()), text);
    }

    #[test]
    fn the_empty_catalog_round_trips_too() {
        let doc = CatalogDocument { revision: 0, generated_at: 0, entries: vec![] };
        let text = render(&doc);
        assert!(text.starts_with("# BurstFlare runtime catalog, revision 0 ("), "{text}");
        assert_eq!(parse(&text).unwrap(), doc);
    }

    #[test]
    fn a_file_that_is_not_a_catalog_is_refused() {
        assert!(parse("revision = 1\n").is_err());
        assert!(parse("revision = -1\ngenerated_at = 0\nentries = []\n").is_err());
    }
}
