//! Fuzzes `inspect` on arbitrary bytes, with small limits so that a small input cannot make a
//! run expand hundreds of megabytes.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sdk::bundle::{Limits, inspect};

fuzz_target!(|data: &[u8]| {
    let limits = Limits {
        max_bundle_bytes: 1 << 20,
        max_content_bytes: 4 << 20,
        max_files: 1000,
        max_path_bytes: 1024,
    };
    if let Ok(inspected) = inspect(data, &limits) {
        assert!(inspected.files <= limits.max_files);
        assert!(inspected.content_bytes <= limits.max_content_bytes);
        assert!(inspected.manifest.validate().is_empty());
    }
});
