//! Property tests of `sdk::bundle`: parsing and inspecting never panic, and every valid manifest
//! survives a TOML round trip.
#![allow(clippy::unwrap_used, clippy::expect_used, clippy::panic)]

use std::collections::BTreeMap;

use proptest::prelude::*;
use sdk::bundle::{EnvVar, Limits, Manifest, Port, Resources, inspect, pack};

/// Fragments that TOML manifests are made of, to build almost-TOML text from.
fn toml_fragment() -> impl Strategy<Value = String> {
    prop_oneof![
        Just("schema = 1\n".to_owned()),
        Just("name = \"demo\"\n".to_owned()),
        Just("[[env]]\n".to_owned()),
        Just("[[ports]]\n".to_owned()),
        Just("[resources]\n".to_owned()),
        Just("[labels]\n".to_owned()),
        Just("port = ".to_owned()),
        Just("persisted_paths = [".to_owned()),
        Just("]".to_owned()),
        Just("{".to_owned()),
        Just("}".to_owned()),
        Just(", ".to_owned()),
        Just("\"\"\"".to_owned()),
        Just("'".to_owned()),
        Just("\n".to_owned()),
        "[a-z_]{1,20} = ",
        "\"[^\"\\\\]{0,12}\"",
        "-?[0-9]{1,12}",
        "[0-9]{4}-[0-9]{2}-[0-9]{2}T[0-9]{2}:[0-9]{2}:[0-9]{2}Z",
        "\\PC{0,8}",
        any::<char>().prop_map(String::from),
    ]
}

/// A valid manifest: every field within its limits.
fn valid_manifest() -> impl Strategy<Value = Manifest> {
    let name = "[a-z][a-z0-9-]{0,30}";
    let description = "[\\PC\t\n]{0,60}";
    let base_image = "[a-z0-9]{1,10}(/[a-z0-9_-]{1,10}){0,2}(:[a-z0-9._-]{1,10})?";
    let paths =
        prop::collection::btree_set("/[a-z]{1,8}(/[a-z0-9_.-]{1,8}){0,2}", 0..5).prop_map(|set| {
            set.into_iter()
                .filter(|p| {
                    !["/proc", "/sys", "/dev"]
                        .iter()
                        .any(|r| p == r || p.starts_with(&format!("{r}/")))
                })
                .filter(|p| !p.split('/').any(|c| c == "." || c == ".."))
                // Sorted, so an outer path comes before the paths inside it: keep the outer.
                .fold(Vec::<String>::new(), |mut kept, p| {
                    if !kept.iter().any(|k| p.starts_with(&format!("{k}/"))) {
                        kept.push(p);
                    }
                    kept
                })
        });
    let env = prop::collection::btree_map(
        "[A-Za-z_][A-Za-z0-9_]{0,20}",
        ("[\\PC\t]{0,40}", any::<bool>()),
        0..6,
    )
    .prop_map(|m| {
        m.into_iter()
            .map(|(name, (value, secret))| EnvVar { name, value, secret })
            .collect::<Vec<_>>()
    });
    let ports =
        prop::collection::btree_map(1u16..=65535, ("[a-z0-9-]{0,10}", prop::bool::ANY), 0..6)
            .prop_map(|m| {
                m.into_iter()
                    .filter(|(p, _)| *p != 22)
                    .enumerate()
                    .map(|(i, (port, (name, tcp)))| Port {
                        port,
                        // Port names must be unique when set: make them so.
                        name: if name.is_empty() { name } else { format!("{name}-{i}") },
                        protocol: if tcp { "tcp" } else { "http" }.to_owned(),
                    })
                    .collect::<Vec<_>>()
            });
    let resources = (100u32..=64_000, 128u32..=262_144, 1u32..=2048)
        .prop_map(|(cpu_millis, memory_mb, disk_gb)| Resources { cpu_millis, memory_mb, disk_gb });
    let labels =
        prop::collection::btree_map("[a-z0-9]([a-z0-9./-]{0,20}[a-z0-9])?", "\\PC{0,30}", 0..5);
    (name, description, base_image, paths, env, ports, resources, 5u32..=1440, labels).prop_map(
        |(name, description, base_image, persisted_paths, env, ports, resources, idle, labels)| {
            Manifest {
                schema: 1,
                name,
                description,
                base_image: if base_image.contains("..") {
                    "burstflare/base:latest".to_owned()
                } else {
                    base_image
                },
                persisted_paths,
                env,
                ports,
                resources,
                idle_timeout_minutes: idle,
                labels: labels.into_iter().collect::<BTreeMap<_, _>>(),
                hooks: Default::default(),
                user: None,
                max_snapshot_bytes: None,
            }
        },
    )
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 512, ..ProptestConfig::default() })]

    #[test]
    fn parse_never_panics_on_arbitrary_strings(text in "\\PC{0,400}|[\\x00-\\x7f]{0,400}") {
        let _ = Manifest::parse(&text);
        let _ = Manifest::parse_all(&text);
    }

    #[test]
    fn parse_never_panics_on_toml_like_text(parts in prop::collection::vec(toml_fragment(), 0..60)) {
        let text = parts.concat();
        match Manifest::parse_all(&text) {
            Ok(m) => prop_assert!(m.validate().is_empty()),
            Err(errors) => {
                prop_assert!(!errors.is_empty());
                for e in errors {
                    prop_assert!(!e.field.is_empty());
                    prop_assert!(e.message.chars().count() <= 300);
                }
            }
        }
    }

    #[test]
    fn parse_never_panics_on_mutated_manifests(
        m in valid_manifest(),
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..8),
    ) {
        let mut bytes = toml::to_string(&m).unwrap().into_bytes();
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let _ = Manifest::parse(&String::from_utf8_lossy(&bytes));
    }

    #[test]
    fn valid_manifests_round_trip_through_toml(m in valid_manifest()) {
        prop_assert_eq!(m.validate(), vec![]);
        let text = toml::to_string(&m).unwrap();
        let back = Manifest::parse(&text);
        prop_assert_eq!(back, Ok(m), "{}", text);
    }

    #[test]
    fn inspect_never_panics_on_arbitrary_bytes(bytes in prop::collection::vec(any::<u8>(), 0..2048)) {
        let _ = inspect(&bytes, &Limits::default());
        // The same bytes behind the zstd magic number, to get past the first check.
        let mut framed = vec![0x28, 0xB5, 0x2F, 0xFD];
        framed.extend_from_slice(&bytes);
        let _ = inspect(&framed, &Limits::default());
    }

    #[test]
    fn inspect_never_panics_on_arbitrary_tars(bytes in prop::collection::vec(any::<u8>(), 0..4096)) {
        let bundle = zstd::encode_all(bytes.as_slice(), 1).unwrap();
        let _ = inspect(&bundle, &Limits::default());
    }
}

/// A packed sample bundle, its uncompressed tar, built once.
fn sample() -> &'static (Vec<u8>, Vec<u8>) {
    static SAMPLE: std::sync::OnceLock<(Vec<u8>, Vec<u8>)> = std::sync::OnceLock::new();
    SAMPLE.get_or_init(|| {
        let dir =
            std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../deploy/templates/devbox");
        let packed = pack(&dir, &Limits::default()).unwrap();
        let tar_bytes = zstd::decode_all(packed.bytes.as_slice()).unwrap();
        (packed.bytes, tar_bytes)
    })
}

proptest! {
    #![proptest_config(ProptestConfig { cases: 256, ..ProptestConfig::default() })]

    #[test]
    fn inspect_never_panics_on_mutated_bundles(
        edits in prop::collection::vec((any::<prop::sample::Index>(), any::<u8>()), 1..6),
        on_tar in any::<bool>(),
    ) {
        let (bundle, tar_bytes) = sample();
        let mut bytes = if on_tar { tar_bytes.clone() } else { bundle.clone() };
        for (i, b) in edits {
            let at = i.index(bytes.len());
            bytes[at] = b;
        }
        let bundle = if on_tar { zstd::encode_all(bytes.as_slice(), 1).unwrap() } else { bytes };
        if let Ok(i) = inspect(&bundle, &Limits::default()) {
            // Whatever got through is a consistent, re-readable context.
            let mut a = tar::Archive::new(i.context_tar.as_slice());
            let n = a.entries().unwrap().count() as u64;
            prop_assert_eq!(n, i.files);
        }
    }
}
