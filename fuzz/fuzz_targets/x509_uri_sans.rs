//! Any bytes as certificate DER: the SAN walker never panics and every URI it returns lies
//! inside the input.
#![no_main]

use latchkey_filter::identity::uri_sans;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Ok(sans) = uri_sans(data) {
        for san in sans {
            assert!(san.len() <= data.len());
        }
    }
});
