//! The pure hot path of a cache hit, natively and without Envoy: identity parse, binding match,
//! slot lookup and decode, and the whole `flow::begin` that ends in the header plan. The wasm
//! module runs the same code under V8; these figures show regressions without Envoy's noise.

mod common;

use std::hint::black_box;

use criterion::{criterion_group, criterion_main, Criterion};
use latchkey_filter::binding::{self, Destination};
use latchkey_filter::cache;
use latchkey_filter::flow;
use latchkey_filter::identity;

fn hot_path(c: &mut Criterion) {
    let config = common::config();
    let store = common::warm_store(&config);
    let request = common::request();
    let now_s = common::NOW_MS / 1000;
    let caller = match identity::resolve(&config.identity, &request.identity, now_s) {
        Ok(resolved) => resolved.id,
        Err(err) => panic!("bench identity refused: {err:?}"),
    };
    let destination = Destination {
        authority: request.authority,
        path: request.path,
    };
    let key = cache::credential_key(
        config.generation,
        "payments-api",
        caller.as_str(),
        "apps/payments/checkout/payments",
    );

    let mut group = c.benchmark_group("hit");
    group.bench_function("identity_parse", |b| {
        b.iter(|| identity::resolve(&config.identity, black_box(&request.identity), now_s))
    });
    group.bench_function("binding_match", |b| {
        b.iter(|| binding::select(&config.bindings, black_box(&destination), &caller).is_some())
    });
    group.bench_function("cache_lookup", |b| {
        b.iter(|| cache::lookup(&store, &config.cache, black_box(&key), common::NOW_MS, 3))
    });
    group.bench_function("flow_begin", |b| {
        b.iter(|| flow::begin(1, &config, black_box(&request), &store, common::NOW_MS, 3))
    });
    group.finish();
}

criterion_group!(benches, hot_path);
criterion_main!(benches);
