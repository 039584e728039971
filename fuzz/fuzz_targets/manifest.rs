//! Fuzzes `Manifest::parse` (and `parse_all`) on arbitrary input, read as lossy UTF-8.
#![no_main]

use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let first = sdk::bundle::Manifest::parse(&text);
    let all = sdk::bundle::Manifest::parse_all(&text);
    // Both agree on whether the input is valid, and on the first error.
    match (first, all) {
        (Ok(a), Ok(b)) => assert_eq!(a, b),
        (Err(e), Err(errors)) => assert_eq!(Some(&e), errors.first()),
        (a, b) => panic!("parse and parse_all disagree: {a:?} vs {b:?}"),
    }
});
