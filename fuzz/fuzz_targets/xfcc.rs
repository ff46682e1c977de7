//! Any header value: the XFCC parser never panics, keys come out lowercase and non-empty, and
//! choosing an element never panics either.
#![no_main]

use latchkey_filter::identity::{parse_xfcc, XfccElementChoice};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(elements) = parse_xfcc(data) {
        assert!(!elements.is_empty());
        for element in &elements {
            assert!(!element.pairs.is_empty());
            for (key, _) in &element.pairs {
                assert!(!key.is_empty());
                assert_eq!(key, &key.to_ascii_lowercase());
            }
        }
    }
    for choice in [XfccElementChoice::First, XfccElementChoice::Last] {
        let _ = latchkey_filter::identity::xfcc_spiffe_id(data, choice);
    }
});
