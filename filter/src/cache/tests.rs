//! Unit tests of the cache slots; the parent declares this module under #[cfg(test)].

use super::fake::FakeStore;
use super::*;

const KEY: &str = "latchkey.v1|1|cred|b|spiffe://td/a|p";
const TTL: u64 = 60_000;

fn policy() -> CachePolicy {
    CachePolicy {
        slots: 16,
        refresh_at: 0.66,
        jitter: 0.0,
        expiry_margin_ms: 1_000,
        negative_ttl_ms: 5_000,
        backoff_base_ms: 500,
        backoff_max_ms: 30_000,
        lease_ms: 5_000,
        invalidation_interval_ms: 1_000,
    }
}

fn bearer() -> Vec<(String, String)> {
    vec![("authorization".into(), "Bearer k".into())]
}

fn fetched() -> Completion {
    Completion::Fetched {
        values: bearer(),
        ttl_ms: TTL,
    }
}

/// A store where `KEY` was fetched at time 0.
fn warm() -> FakeStore {
    let store = FakeStore::default();
    let Lookup::Fetch(claim) = lookup(&store, &policy(), KEY, 0, 1) else {
        panic!("cold")
    };
    complete(&store, &policy(), &claim, &fetched(), 0, 0).unwrap();
    store
}

#[test]
fn first_caller_fetches_and_the_rest_wait() {
    let store = FakeStore::default();
    assert!(matches!(
        lookup(&store, &policy(), KEY, 0, 1),
        Lookup::Fetch(_)
    ));
    for holder in 2..50 {
        assert_eq!(lookup(&store, &policy(), KEY, 10, holder), Lookup::Wait);
    }
}

#[test]
fn completed_fetch_is_a_hit_for_everyone() {
    let store = warm();
    let hit = lookup(&store, &policy(), KEY, 1_000, 7);
    assert_eq!(
        hit,
        Lookup::Hit {
            values: bearer(),
            refresh: None
        }
    );
}

#[test]
fn first_request_after_the_refresh_point_refreshes_in_the_background() {
    let store = warm();
    let refresh_point = (TTL as f64 * 0.66) as u64;
    let Lookup::Hit {
        refresh: Some(claim),
        ..
    } = lookup(&store, &policy(), KEY, refresh_point, 2)
    else {
        panic!("no refresh claimed")
    };
    assert_eq!(claim.holder, 2);
    // Others keep the credential and do not refresh too.
    let other = lookup(&store, &policy(), KEY, refresh_point + 1, 3);
    assert_eq!(
        other,
        Lookup::Hit {
            values: bearer(),
            refresh: None
        }
    );
}

#[test]
fn jitter_moves_the_refresh_point_earlier_within_bounds() {
    let store = FakeStore::default();
    let policy = CachePolicy {
        jitter: 0.5,
        ..policy()
    };
    let Lookup::Fetch(claim) = lookup(&store, &policy, KEY, 0, 1) else {
        panic!()
    };
    complete(&store, &policy, &claim, &fetched(), 0, u64::MAX).unwrap();
    let (bytes, _) = store.get(&claim.slot_key).unwrap();
    let refresh_at = Slot::decode(&bytes)
        .unwrap()
        .credential
        .unwrap()
        .refresh_at_ms;
    assert!((19_800..39_600).contains(&refresh_at), "{refresh_at}");
}

#[test]
fn credential_is_never_served_inside_the_expiry_margin() {
    let store = warm();
    let at_margin = TTL - policy().expiry_margin_ms;
    assert!(matches!(
        lookup(&store, &policy(), KEY, at_margin - 1, 2),
        Lookup::Hit { .. }
    ));
    // The refresh started above still holds the lease, so this caller waits for it.
    assert_eq!(lookup(&store, &policy(), KEY, at_margin, 3), Lookup::Wait);
}

#[test]
fn an_expired_lease_can_be_taken_over() {
    let store = FakeStore::default();
    assert!(matches!(
        lookup(&store, &policy(), KEY, 0, 1),
        Lookup::Fetch(_)
    ));
    assert_eq!(lookup(&store, &policy(), KEY, 4_999, 2), Lookup::Wait);
    let Lookup::Fetch(claim) = lookup(&store, &policy(), KEY, 5_000, 2) else {
        panic!("lease not taken over")
    };
    assert_eq!(claim.holder, 2);
}

#[test]
fn a_late_completion_of_the_first_holder_still_lands() {
    let store = FakeStore::default();
    let Lookup::Fetch(first) = lookup(&store, &policy(), KEY, 0, 1) else {
        panic!()
    };
    let Lookup::Fetch(_) = lookup(&store, &policy(), KEY, 6_000, 2) else {
        panic!()
    };
    complete(&store, &policy(), &first, &fetched(), 6_500, 0).unwrap();
    // The credential landed; the second holder's lease still runs.
    assert!(matches!(
        lookup(&store, &policy(), KEY, 6_600, 3),
        Lookup::Hit { .. }
    ));
}

#[test]
fn lost_cas_race_retries_and_waits() {
    let store = FakeStore::default();
    let [first, _] = slot_keys(KEY, policy().slots);
    // Another worker created the slot with its lease between our read and our write.
    let mut theirs = Slot::empty(KEY);
    theirs.lease = Some(Lease {
        holder: 9,
        until_ms: 5_000,
    });
    store.set(&first, &theirs.encode(), None).unwrap();
    assert_eq!(lookup(&store, &policy(), KEY, 0, 1), Lookup::Wait);
}

#[test]
fn create_cas_never_overwrites_an_existing_slot() {
    let store = FakeStore::default();
    store.set("k", b"theirs", None).unwrap();
    assert_eq!(
        store.set("k", b"ours", Some(CREATE_CAS)),
        Err(StoreError::CasMismatch)
    );
    assert_eq!(store.get("k").unwrap().0, b"theirs");
}

#[test]
fn vault_denial_is_negative_cached_then_retried() {
    let store = FakeStore::default();
    let Lookup::Fetch(claim) = lookup(&store, &policy(), KEY, 0, 1) else {
        panic!()
    };
    complete(
        &store,
        &policy(),
        &claim,
        &Completion::Refused(Denial::VaultDenied),
        0,
        0,
    )
    .unwrap();
    assert_eq!(
        lookup(&store, &policy(), KEY, 4_999, 2),
        Lookup::Blocked(Denial::VaultDenied)
    );
    assert!(matches!(
        lookup(&store, &policy(), KEY, 5_000, 2),
        Lookup::Fetch(_)
    ));
}

#[test]
fn refused_refresh_stops_serving_the_cached_credential() {
    let store = warm();
    let Lookup::Hit {
        refresh: Some(claim),
        ..
    } = lookup(&store, &policy(), KEY, 40_000, 2)
    else {
        panic!()
    };
    let refused = Completion::Refused(Denial::VaultDenied);
    complete(&store, &policy(), &claim, &refused, 40_000, 0).unwrap();
    assert_eq!(
        lookup(&store, &policy(), KEY, 40_001, 3),
        Lookup::Blocked(Denial::VaultDenied)
    );
}

#[test]
fn failures_back_off_exponentially_with_bounds() {
    let store = FakeStore::default();
    let failed = Completion::Failed {
        denial: Denial::VaultUnavailable,
        retry_after_ms: None,
    };
    let mut now = 0;
    let mut waits = Vec::new();
    for _ in 0..10 {
        let Lookup::Fetch(claim) = lookup(&store, &policy(), KEY, now, 1) else {
            panic!()
        };
        complete(&store, &policy(), &claim, &failed, now, u64::MAX).unwrap();
        let blocked = lookup(&store, &policy(), KEY, now, 2);
        assert_eq!(blocked, Lookup::Blocked(Denial::VaultUnavailable));
        let (bytes, _) = store.get(&claim.slot_key).unwrap();
        let until = Slot::decode(&bytes).unwrap().block.unwrap().until_ms;
        waits.push(until - now);
        now = until;
    }
    assert!(waits.windows(2).all(|w| w[0] <= w[1]), "{waits:?}");
    assert!(waits[0] >= 250 && waits[0] <= 500, "{waits:?}");
    assert!(*waits.last().unwrap() <= 30_000, "{waits:?}");
}

#[test]
fn retry_after_is_honoured_up_to_the_bound() {
    let store = FakeStore::default();
    let Lookup::Fetch(claim) = lookup(&store, &policy(), KEY, 0, 1) else {
        panic!()
    };
    let failed = Completion::Failed {
        denial: Denial::VaultUnavailable,
        retry_after_ms: Some(7_000),
    };
    complete(&store, &policy(), &claim, &failed, 0, 0).unwrap();
    assert!(matches!(
        lookup(&store, &policy(), KEY, 6_999, 2),
        Lookup::Blocked(_)
    ));
    assert!(matches!(
        lookup(&store, &policy(), KEY, 7_000, 2),
        Lookup::Fetch(_)
    ));
}

#[test]
fn failed_refresh_keeps_serving_until_expiry_then_fails_fast() {
    let store = warm();
    let Lookup::Hit {
        refresh: Some(claim),
        ..
    } = lookup(&store, &policy(), KEY, 40_000, 2)
    else {
        panic!()
    };
    let failed = Completion::Failed {
        denial: Denial::VaultUnavailable,
        retry_after_ms: Some(60_000),
    };
    complete(&store, &policy(), &claim, &failed, 40_000, 0).unwrap();
    assert!(matches!(
        lookup(&store, &policy(), KEY, 58_999, 3),
        Lookup::Hit { refresh: None, .. }
    ));
    assert_eq!(
        lookup(&store, &policy(), KEY, 59_000, 3),
        Lookup::Blocked(Denial::VaultUnavailable)
    );
}

#[test]
fn invalidation_is_rate_limited() {
    let store = warm();
    assert!(
        !invalidate(&store, &policy(), KEY, 999),
        "a credential younger than the interval"
    );
    assert!(invalidate(&store, &policy(), KEY, 1_000));
    assert!(matches!(
        lookup(&store, &policy(), KEY, 1_001, 2),
        Lookup::Fetch(_)
    ));
}

#[test]
fn second_invalidation_within_the_interval_is_ignored() {
    let store = warm();
    assert!(invalidate(&store, &policy(), KEY, 2_000));
    let Lookup::Fetch(claim) = lookup(&store, &policy(), KEY, 2_000, 2) else {
        panic!()
    };
    complete(&store, &policy(), &claim, &fetched(), 2_000, 0).unwrap();
    assert!(!invalidate(&store, &policy(), KEY, 2_999));
}

#[test]
fn key_space_stays_bounded_however_many_identities_pass() {
    let store = FakeStore::default();
    for i in 0..2_000 {
        let key = format!("latchkey.v1|1|cred|b|spiffe://td/w{i}|p");
        if let Lookup::Fetch(claim) = lookup(&store, &policy(), &key, i, 1) {
            complete(&store, &policy(), &claim, &fetched(), i, 0).unwrap();
        }
    }
    assert!(
        store.keys() <= policy().slots as usize,
        "{} keys",
        store.keys()
    );
}

#[test]
fn a_colliding_key_evicts_the_older_entry_but_never_reads_it() {
    let policy = CachePolicy {
        slots: 2,
        ..policy()
    };
    let store = FakeStore::default();
    let keys: Vec<String> = (0..3).map(|i| format!("{KEY}{i}")).collect();
    for (at, key) in keys.iter().enumerate() {
        let Lookup::Fetch(claim) = lookup(&store, &policy, key, at as u64, 1) else {
            panic!()
        };
        let values = vec![("authorization".to_string(), key.clone())];
        complete(
            &store,
            &policy,
            &claim,
            &Completion::Fetched {
                values,
                ttl_ms: TTL,
            },
            0,
            0,
        )
        .unwrap();
    }
    // The oldest was evicted; the others still hit with their own values.
    for key in &keys[1..] {
        match lookup(&store, &policy, key, 10, 2) {
            Lookup::Hit { values, .. } => assert_eq!(values[0].1, *key),
            other => panic!("{other:?}"),
        }
    }
    assert!(matches!(
        lookup(&store, &policy, &keys[0], 10, 2),
        Lookup::Fetch(_)
    ));
}

#[test]
fn unreadable_slot_is_replaced() {
    let store = FakeStore::default();
    for slot_key in slot_keys(KEY, policy().slots) {
        store.set(&slot_key, b"garbage", None).unwrap();
    }
    assert!(matches!(
        lookup(&store, &policy(), KEY, 0, 1),
        Lookup::Fetch(_)
    ));
}

#[test]
fn claims_report_how_they_placed_the_key() {
    let policy = CachePolicy {
        slots: 2,
        ..policy()
    };
    let store = FakeStore::default();
    let place = |key: &str, at: u64| match lookup(&store, &policy, key, at, 1) {
        Lookup::Fetch(claim) => {
            let placement = claim.placement;
            complete(&store, &policy, &claim, &fetched(), at, 0).unwrap();
            placement
        }
        other => panic!("{other:?}"),
    };
    assert_eq!(place("a", 0), Placement::Created);
    assert_eq!(place("b", 1), Placement::Created);
    assert_eq!(place("c", 2), Placement::Evicted);
}
