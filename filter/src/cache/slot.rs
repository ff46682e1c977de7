//! One cache slot: everything the proxy knows about one cache key, kept in one shared-data value
//! so that it changes atomically under CAS: the credential with its timings, the fetch lease that
//! makes fetches single-flight across workers, and the state after a failed fetch.

use std::fmt;

use crate::denial::Denial;

const MAGIC: [u8; 4] = *b"LK\x02\x00";

#[derive(Clone, PartialEq, Eq)]
pub struct Credential {
    /// The `(header, value)` pairs to inject, or `("token", value)` for a vault token.
    pub values: Vec<(String, String)>,
    pub fetched_at_ms: u64,
    /// From here on, the next request starts one background refresh.
    pub refresh_at_ms: u64,
    /// Never used at or after this instant (less the configured margin).
    pub expires_at_ms: u64,
}

/// Shows timings only: the values are credentials.
impl fmt::Debug for Credential {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Credential")
            .field("values", &self.values.len())
            .field("fetched_at_ms", &self.fetched_at_ms)
            .field("refresh_at_ms", &self.refresh_at_ms)
            .field("expires_at_ms", &self.expires_at_ms)
            .finish()
    }
}

/// A fetch in progress. It is a lease: after `until_ms` anyone may take over, so a worker that
/// crashed or reloaded mid-fetch cannot wedge the key.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Lease {
    pub holder: u64,
    pub until_ms: u64,
}

/// Why no fetch may start before `until_ms`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Block {
    /// What callers without a usable credential are answered meanwhile.
    pub denial: Denial,
    pub until_ms: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct Slot {
    /// The full cache key this slot holds; slots are shared by hash, so it is always compared.
    pub key: String,
    pub credential: Option<Credential>,
    pub lease: Option<Lease>,
    /// Negative cache after a vault denial, or back-off after a vault failure.
    pub block: Option<Block>,
    /// Consecutive failed fetches, for exponential back-off.
    pub failures: u32,
    /// Last invalidation after an upstream 401/403, to invalidate at most once per interval.
    pub invalidated_at_ms: u64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    BadMagic,
    Truncated,
    NotUtf8,
    BadDenial,
    TrailingBytes,
}

impl Slot {
    pub fn empty(key: &str) -> Self {
        Self {
            key: key.to_string(),
            ..Self::default()
        }
    }

    pub fn usable_credential(&self, now_ms: u64, margin_ms: u64) -> Option<&Credential> {
        self.credential
            .as_ref()
            .filter(|c| now_ms.saturating_add(margin_ms) < c.expires_at_ms)
    }

    pub fn live_lease(&self, now_ms: u64) -> Option<Lease> {
        self.lease.filter(|lease| now_ms < lease.until_ms)
    }

    pub fn live_block(&self, now_ms: u64) -> Option<Block> {
        self.block.filter(|block| now_ms < block.until_ms)
    }

    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(64 + self.key.len());
        out.extend_from_slice(&MAGIC);
        put_str(&mut out, &self.key);
        match &self.credential {
            None => out.push(0),
            Some(c) => {
                out.push(1);
                for n in [c.fetched_at_ms, c.refresh_at_ms, c.expires_at_ms] {
                    out.extend_from_slice(&n.to_le_bytes());
                }
                out.extend_from_slice(&len32(c.values.len()));
                for (name, value) in &c.values {
                    put_str(&mut out, name);
                    put_str(&mut out, value);
                }
            }
        }
        let lease = self.lease.unwrap_or(Lease {
            holder: 0,
            until_ms: 0,
        });
        out.extend_from_slice(&lease.holder.to_le_bytes());
        out.extend_from_slice(&lease.until_ms.to_le_bytes());
        match self.block {
            None => out.push(0),
            Some(block) => {
                out.push(denial_to_byte(block.denial));
                out.extend_from_slice(&block.until_ms.to_le_bytes());
            }
        }
        out.extend_from_slice(&self.failures.to_le_bytes());
        out.extend_from_slice(&self.invalidated_at_ms.to_le_bytes());
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut r = Reader(bytes);
        if r.take(MAGIC.len())? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let key = r.string()?;
        let credential = match r.byte()? {
            0 => None,
            _ => {
                let fetched_at_ms = r.u64()?;
                let refresh_at_ms = r.u64()?;
                let expires_at_ms = r.u64()?;
                let count = r.u32()?;
                let mut values = Vec::new();
                for _ in 0..count {
                    values.push((r.string()?, r.string()?));
                }
                Some(Credential {
                    values,
                    fetched_at_ms,
                    refresh_at_ms,
                    expires_at_ms,
                })
            }
        };
        let holder = r.u64()?;
        let until_ms = r.u64()?;
        let lease = (until_ms != 0).then_some(Lease { holder, until_ms });
        let block = match r.byte()? {
            0 => None,
            code => {
                let denial = denial_from_byte(code).ok_or(DecodeError::BadDenial)?;
                Some(Block {
                    denial,
                    until_ms: r.u64()?,
                })
            }
        };
        let failures = r.u32()?;
        let invalidated_at_ms = r.u64()?;
        if !r.0.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(Self {
            key,
            credential,
            lease,
            block,
            failures,
            invalidated_at_ms,
        })
    }
}

/// The denials a block can hold, by a stable byte; 0 means "no block".
const BLOCK_DENIALS: [Denial; 5] = [
    Denial::VaultUnavailable,
    Denial::VaultLoginFailed,
    Denial::VaultDenied,
    Denial::CredentialNotFound,
    Denial::InvalidCredential,
];

fn denial_to_byte(denial: Denial) -> u8 {
    let index = BLOCK_DENIALS
        .iter()
        .position(|d| *d == denial)
        .unwrap_or_default();
    u8::try_from(index + 1).unwrap_or(1)
}

fn denial_from_byte(byte: u8) -> Option<Denial> {
    BLOCK_DENIALS
        .get(usize::from(byte).checked_sub(1)?)
        .copied()
}

/// Lengths are far below 4 GiB (vault bodies are capped), so saturating never triggers.
fn len32(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
}

fn put_str(out: &mut Vec<u8>, text: &str) {
    out.extend_from_slice(&len32(text.len()));
    out.extend_from_slice(text.as_bytes());
}

struct Reader<'a>(&'a [u8]);

impl<'a> Reader<'a> {
    fn take(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if self.0.len() < n {
            return Err(DecodeError::Truncated);
        }
        let (head, tail) = self.0.split_at(n);
        self.0 = tail;
        Ok(head)
    }

    fn array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        self.take(N)?.try_into().map_err(|_| DecodeError::Truncated)
    }

    fn byte(&mut self) -> Result<u8, DecodeError> {
        Ok(u8::from_le_bytes(self.array()?))
    }

    fn u32(&mut self) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array()?))
    }

    fn u64(&mut self) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array()?))
    }

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = self.u32()? as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn full() -> Slot {
        Slot {
            key: "latchkey.v1|1|cred|b|spiffe://td/a|p".into(),
            credential: Some(Credential {
                values: vec![
                    ("authorization".into(), "Bearer k-123".into()),
                    ("x".into(), "".into()),
                ],
                fetched_at_ms: 1,
                refresh_at_ms: 2,
                expires_at_ms: 3,
            }),
            lease: Some(Lease {
                holder: 42,
                until_ms: 9,
            }),
            block: Some(Block {
                denial: Denial::VaultDenied,
                until_ms: 7,
            }),
            failures: 2,
            invalidated_at_ms: 5,
        }
    }

    #[test]
    fn round_trips_full_and_empty_slots() {
        assert_eq!(Slot::decode(&full().encode()), Ok(full()));
        assert_eq!(
            Slot::decode(&Slot::empty("k").encode()),
            Ok(Slot::empty("k"))
        );
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = full().encode();
        for len in 0..bytes.len() {
            assert!(Slot::decode(&bytes[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn rejects_foreign_bytes() {
        assert_eq!(Slot::decode(b"LK\x01\x00rest"), Err(DecodeError::BadMagic));
        let mut bytes = full().encode();
        bytes.push(0);
        assert_eq!(Slot::decode(&bytes), Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn every_block_denial_survives_the_codec() {
        for denial in BLOCK_DENIALS {
            let slot = Slot {
                block: Some(Block {
                    denial,
                    until_ms: 1,
                }),
                ..Slot::empty("k")
            };
            assert_eq!(
                Slot::decode(&slot.encode()).unwrap().block.unwrap().denial,
                denial
            );
        }
    }

    #[test]
    fn credential_is_usable_until_expiry_less_margin() {
        let slot = full();
        assert!(slot.usable_credential(0, 2).is_some());
        assert!(slot.usable_credential(1, 2).is_none());
    }

    #[test]
    fn debug_hides_credential_values() {
        assert!(!format!("{:?}", full()).contains("k-123"));
    }
}
