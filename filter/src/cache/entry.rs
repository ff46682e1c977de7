//! The cached value: expiry plus header (or token) pairs in a small length-prefixed binary
//! layout, cheap to decode on every cache hit.

use std::fmt;

const MAGIC: [u8; 4] = *b"LK\x01\x00";

#[derive(Clone, PartialEq, Eq)]
pub struct CacheEntry {
    /// Milliseconds since the Unix epoch after which the entry must not be used.
    pub expires_at_ms: u64,
    pub values: Vec<(String, String)>,
}

/// Shows names only: the values are credentials.
impl fmt::Debug for CacheEntry {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let names: Vec<&str> = self.values.iter().map(|(name, _)| name.as_str()).collect();
        write!(
            f,
            "CacheEntry {{ expires_at_ms: {}, names: {names:?} }}",
            self.expires_at_ms
        )
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DecodeError {
    BadMagic,
    Truncated,
    NotUtf8,
    TrailingBytes,
}

impl CacheEntry {
    pub fn usable_at(&self, now_ms: u64, margin_ms: u64) -> bool {
        now_ms.saturating_add(margin_ms) < self.expires_at_ms
    }

    pub fn encode(&self) -> Vec<u8> {
        let size: usize = self.values.iter().map(|(n, v)| 8 + n.len() + v.len()).sum();
        let mut out = Vec::with_capacity(MAGIC.len() + 12 + size);
        out.extend_from_slice(&MAGIC);
        out.extend_from_slice(&self.expires_at_ms.to_le_bytes());
        out.extend_from_slice(&len32(self.values.len()));
        for (name, value) in &self.values {
            for part in [name, value] {
                out.extend_from_slice(&len32(part.len()));
                out.extend_from_slice(part.as_bytes());
            }
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<Self, DecodeError> {
        let mut reader = Reader(bytes);
        if reader.take(MAGIC.len())? != MAGIC {
            return Err(DecodeError::BadMagic);
        }
        let expires_at_ms = u64::from_le_bytes(reader.array()?);
        let count = u32::from_le_bytes(reader.array()?);
        let mut values = Vec::new();
        for _ in 0..count {
            let name = reader.string()?;
            let value = reader.string()?;
            values.push((name, value));
        }
        if !reader.0.is_empty() {
            return Err(DecodeError::TrailingBytes);
        }
        Ok(Self {
            expires_at_ms,
            values,
        })
    }
}

/// Lengths are far below 4 GiB (vault bodies are capped), so saturating never triggers.
fn len32(len: usize) -> [u8; 4] {
    u32::try_from(len).unwrap_or(u32::MAX).to_le_bytes()
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

    fn string(&mut self) -> Result<String, DecodeError> {
        let len = u32::from_le_bytes(self.array()?) as usize;
        let bytes = self.take(len)?;
        String::from_utf8(bytes.to_vec()).map_err(|_| DecodeError::NotUtf8)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn sample() -> CacheEntry {
        CacheEntry {
            expires_at_ms: 1_700_000_000_123,
            values: vec![
                ("authorization".into(), "Bearer k-123".into()),
                ("x-a".into(), "".into()),
            ],
        }
    }

    #[test]
    fn round_trips() {
        assert_eq!(CacheEntry::decode(&sample().encode()), Ok(sample()));
    }

    #[test]
    fn every_truncation_is_an_error_not_a_panic() {
        let bytes = sample().encode();
        for len in 0..bytes.len() {
            assert!(CacheEntry::decode(&bytes[..len]).is_err(), "len {len}");
        }
    }

    #[test]
    fn rejects_foreign_bytes() {
        assert_eq!(
            CacheEntry::decode(b"XXXX0000000000000"),
            Err(DecodeError::BadMagic)
        );
        let mut bytes = sample().encode();
        bytes.push(0);
        assert_eq!(CacheEntry::decode(&bytes), Err(DecodeError::TrailingBytes));
    }

    #[test]
    fn huge_declared_length_is_truncated_not_allocated() {
        let mut bytes = MAGIC.to_vec();
        bytes.extend_from_slice(&0u64.to_le_bytes());
        bytes.extend_from_slice(&1u32.to_le_bytes());
        bytes.extend_from_slice(&u32::MAX.to_le_bytes());
        assert_eq!(CacheEntry::decode(&bytes), Err(DecodeError::Truncated));
    }

    #[test]
    fn debug_hides_values() {
        assert!(!format!("{:?}", sample()).contains("k-123"));
    }
}
