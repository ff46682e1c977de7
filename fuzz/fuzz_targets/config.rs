//! Any plugin configuration: it compiles or is refused with a field and a reason, never a panic.
#![no_main]

use latchkey_filter::config::Config;
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    if let Err(err) = Config::from_json(data) {
        assert!(!err.field.is_empty());
        assert!(!err.reason.is_empty());
    }
});
