//! Any bytes: the parser never panics, and what it accepts is already normalised and in bounds.
#![no_main]

use latchkey_filter::identity::SpiffeId;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let Ok(id) = SpiffeId::parse_bytes(data) else {
        return;
    };
    assert!(id.as_str().len() <= 2048);
    assert!(!id.trust_domain().is_empty() && id.trust_domain().len() <= 255);
    let again = SpiffeId::parse(id.as_str()).expect("a parsed ID parses again");
    assert_eq!(again, id);
    assert!(id.as_str().ends_with(id.path()));
});
