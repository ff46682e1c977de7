//! Any vault answer: every engine's parser returns a secret or an error, never panics, and an
//! error's text never repeats a JSON-looking body (the fixed messages hold no `{`, so a body
//! with one can only show up in an error by being copied into it).
#![no_main]

use latchkey_filter::binding::Engine;
use latchkey_filter::vault::{parse_login, parse_retry_after, parse_secret};
use libfuzzer_sys::fuzz_target;

fuzz_target!(|data: &[u8]| {
    let _ = parse_login(200, data);
    let _ = parse_retry_after(data);
    for engine in [Engine::Kv2, Engine::Leased, Engine::IdentityToken] {
        if let Err(err) = parse_secret(engine, 200, data, Some("api_key"), 1_700_000_000_000) {
            let text = err.to_string();
            if let Ok(body) = std::str::from_utf8(data) {
                if body.len() >= 16 && body.contains('{') {
                    assert!(!text.contains(body), "an error repeats the body");
                }
            }
        }
    }
});
