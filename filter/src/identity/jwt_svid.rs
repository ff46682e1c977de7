//! JWT-SVIDs (SPIFFE JWT-SVID standard) verified against a JWKS trust bundle from the config:
//! the key is chosen by `kid` and must be of the token's `alg`; `aud` must hold a configured
//! audience, `exp` is required, the clock-skew leeway is ours (jwt-simple's default is 15 min),
//! and `sub` must be a SPIFFE ID.

use std::collections::HashSet;
use std::fmt;
use std::time::Duration;

use jwt_simple::prelude::{
    Duration as JwtDuration, ECDSAP256PublicKeyLike, ECDSAP384PublicKeyLike, ES256PublicKey,
    ES384PublicKey, JWTClaims, NoCustomClaims, PS256PublicKey, PS384PublicKey, PS512PublicKey,
    RS256PublicKey, RS384PublicKey, RS512PublicKey, RSAPublicKeyLike, Token, VerificationOptions,
};
use jwt_simple::JWTError;
use serde_json::{json, Map, Value};

use super::{SpiffeId, SpiffeIdError};

/// A JWT-SVID is a few hundred bytes; this bounds the work on whatever a caller sends.
pub const MAX_TOKEN_BYTES: usize = 8 * 1024;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Algorithm {
    Rs256,
    Rs384,
    Rs512,
    Ps256,
    Ps384,
    Ps512,
    Es256,
    Es384,
}

const RSA_ALGORITHMS: [Algorithm; 6] = [
    Algorithm::Rs256,
    Algorithm::Rs384,
    Algorithm::Rs512,
    Algorithm::Ps256,
    Algorithm::Ps384,
    Algorithm::Ps512,
];

impl Algorithm {
    pub fn name(self) -> &'static str {
        match self {
            Self::Rs256 => "RS256",
            Self::Rs384 => "RS384",
            Self::Rs512 => "RS512",
            Self::Ps256 => "PS256",
            Self::Ps384 => "PS384",
            Self::Ps512 => "PS512",
            Self::Es256 => "ES256",
            Self::Es384 => "ES384",
        }
    }

    /// The JOSE name; `None` for `none`, HMAC and everything this build cannot verify.
    pub fn from_name(name: &str) -> Option<Self> {
        Some(match name {
            "RS256" => Self::Rs256,
            "RS384" => Self::Rs384,
            "RS512" => Self::Rs512,
            "PS256" => Self::Ps256,
            "PS384" => Self::Ps384,
            "PS512" => Self::Ps512,
            "ES256" => Self::Es256,
            "ES384" => Self::Es384,
            _ => return None,
        })
    }
}

#[derive(Clone)]
enum PublicKey {
    Rs256(RS256PublicKey),
    Rs384(RS384PublicKey),
    Rs512(RS512PublicKey),
    Ps256(PS256PublicKey),
    Ps384(PS384PublicKey),
    Ps512(PS512PublicKey),
    Es256(ES256PublicKey),
    Es384(ES384PublicKey),
}

impl PublicKey {
    fn from_jwk(alg: Algorithm, jwk: &str) -> Result<Self, jwt_simple::Error> {
        Ok(match alg {
            Algorithm::Rs256 => Self::Rs256(RS256PublicKey::from_jwk(jwk)?),
            Algorithm::Rs384 => Self::Rs384(RS384PublicKey::from_jwk(jwk)?),
            Algorithm::Rs512 => Self::Rs512(RS512PublicKey::from_jwk(jwk)?),
            Algorithm::Ps256 => Self::Ps256(PS256PublicKey::from_jwk(jwk)?),
            Algorithm::Ps384 => Self::Ps384(PS384PublicKey::from_jwk(jwk)?),
            Algorithm::Ps512 => Self::Ps512(PS512PublicKey::from_jwk(jwk)?),
            Algorithm::Es256 => Self::Es256(ES256PublicKey::from_jwk(jwk)?),
            Algorithm::Es384 => Self::Es384(ES384PublicKey::from_jwk(jwk)?),
        })
    }

    fn verify(
        &self,
        token: &str,
        options: VerificationOptions,
    ) -> Result<JWTClaims<NoCustomClaims>, jwt_simple::Error> {
        let options = Some(options);
        match self {
            Self::Rs256(key) => key.verify_token(token, options),
            Self::Rs384(key) => key.verify_token(token, options),
            Self::Rs512(key) => key.verify_token(token, options),
            Self::Ps256(key) => key.verify_token(token, options),
            Self::Ps384(key) => key.verify_token(token, options),
            Self::Ps512(key) => key.verify_token(token, options),
            Self::Es256(key) => key.verify_token(token, options),
            Self::Es384(key) => key.verify_token(token, options),
        }
    }
}

#[derive(Clone)]
struct TrustedKey {
    kid: String,
    alg: Algorithm,
    key: PublicKey,
}

/// The compiled `identity.jwt_svid` section: keys, audiences and leeway.
#[derive(Clone)]
pub struct JwtSvidVerifier {
    keys: Vec<TrustedKey>,
    audiences: HashSet<String>,
    leeway: Duration,
}

impl fmt::Debug for JwtSvidVerifier {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let kids: Vec<&str> = self.keys.iter().map(|k| k.kid.as_str()).collect();
        f.debug_struct("JwtSvidVerifier")
            .field("kids", &kids)
            .field("audiences", &self.audiences)
            .field("leeway", &self.leeway)
            .finish()
    }
}

impl PartialEq for JwtSvidVerifier {
    fn eq(&self, other: &Self) -> bool {
        let key_ids = |v: &Self| -> Vec<(String, Algorithm)> {
            v.keys.iter().map(|k| (k.kid.clone(), k.alg)).collect()
        };
        key_ids(self) == key_ids(other)
            && self.audiences == other.audiences
            && self.leeway == other.leeway
    }
}

impl Eq for JwtSvidVerifier {}

/// Why a key of the bundle was refused; `index` is its place in `jwks.keys`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct JwksError {
    pub index: usize,
    pub reason: String,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum JwtSvidError {
    TooLarge { len: usize },
    Malformed,
    UnsupportedAlgorithm,
    MissingKeyId,
    UnknownKey,
    AlgorithmMismatch,
    BadSignature,
    Expired,
    NotYetValid,
    WrongAudience,
    MissingExpiry,
    MissingSubject,
    SubjectNotSpiffe(SpiffeIdError),
}

impl fmt::Display for JwtSvidError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Self::TooLarge { len } => write!(f, "JWT-SVID of {len} bytes is too large"),
            Self::Malformed => write!(f, "JWT-SVID is not a compact JWS"),
            Self::UnsupportedAlgorithm => write!(f, "JWT-SVID alg is not RS/PS/ES 256/384/512"),
            Self::MissingKeyId => write!(f, "JWT-SVID has no kid"),
            Self::UnknownKey => write!(f, "JWT-SVID kid is not in the trust bundle"),
            Self::AlgorithmMismatch => write!(f, "JWT-SVID alg does not match its key"),
            Self::BadSignature => write!(f, "JWT-SVID signature does not verify"),
            Self::Expired => write!(f, "JWT-SVID has expired"),
            Self::NotYetValid => write!(f, "JWT-SVID is not valid yet"),
            Self::WrongAudience => write!(f, "JWT-SVID aud holds no accepted audience"),
            Self::MissingExpiry => write!(f, "JWT-SVID has no exp"),
            Self::MissingSubject => write!(f, "JWT-SVID has no sub"),
            Self::SubjectNotSpiffe(e) => write!(f, "JWT-SVID sub is not a SPIFFE ID: {e}"),
        }
    }
}

impl JwtSvidVerifier {
    /// Compiles a JWKS document (`{"keys": [...]}`). Keys marked `"use": "x509-svid"` are
    /// skipped, so a whole SPIFFE trust bundle can be pasted in.
    pub fn new(jwks: &Value, audiences: Vec<String>, leeway: Duration) -> Result<Self, JwksError> {
        let entries = jwks
            .get("keys")
            .and_then(Value::as_array)
            .ok_or_else(|| JwksError {
                index: 0,
                reason: "expected {\"keys\": [...]}".into(),
            })?;
        let mut keys: Vec<TrustedKey> = Vec::new();
        for (index, entry) in entries.iter().enumerate() {
            let err = |reason: &str| JwksError {
                index,
                reason: reason.to_string(),
            };
            let Some(jwk) = entry.as_object() else {
                return Err(err("not a JSON object"));
            };
            match jwk.get("use").and_then(Value::as_str) {
                None | Some("sig" | "jwt-svid") => {}
                Some("x509-svid") => continue,
                Some(_) => return Err(err("use must be jwt-svid or sig")),
            }
            let kid = match jwk.get("kid").and_then(Value::as_str) {
                Some(kid) if !kid.is_empty() => kid.to_string(),
                _ => return Err(err("every key needs a kid")),
            };
            if keys.iter().any(|k| k.kid == kid) {
                return Err(err("kid is used by an earlier key"));
            }
            for (alg, public) in public_jwk(jwk).map_err(err)? {
                let key = PublicKey::from_jwk(alg, &public)
                    .map_err(|e| err(&format!("not a usable {} public key: {e}", alg.name())))?;
                keys.push(TrustedKey {
                    kid: kid.clone(),
                    alg,
                    key,
                });
            }
        }
        Ok(Self {
            keys,
            audiences: audiences.into_iter().collect(),
            leeway,
        })
    }

    /// Whether the bundle holds no key at all (every entry was an X.509 one).
    pub fn is_empty(&self) -> bool {
        self.keys.is_empty()
    }

    /// Verifies `token` at `now` (seconds since the epoch) and returns its `sub`.
    pub fn verify(&self, token: &[u8], now_s: u64) -> Result<SpiffeId, JwtSvidError> {
        if token.len() > MAX_TOKEN_BYTES {
            return Err(JwtSvidError::TooLarge { len: token.len() });
        }
        let token = std::str::from_utf8(token).map_err(|_| JwtSvidError::Malformed)?;
        let metadata = Token::decode_metadata(token).map_err(|_| JwtSvidError::Malformed)?;
        let alg =
            Algorithm::from_name(metadata.algorithm()).ok_or(JwtSvidError::UnsupportedAlgorithm)?;
        let kid = metadata.key_id().ok_or(JwtSvidError::MissingKeyId)?;
        let mut same_kid = self.keys.iter().filter(|k| k.kid == kid).peekable();
        if same_kid.peek().is_none() {
            return Err(JwtSvidError::UnknownKey);
        }
        let key = same_kid
            .find(|k| k.alg == alg)
            .ok_or(JwtSvidError::AlgorithmMismatch)?;

        let options = VerificationOptions {
            allowed_audiences: Some(self.audiences.clone()),
            time_tolerance: Some(JwtDuration::from_secs(self.leeway.as_secs())),
            artificial_time: Some(JwtDuration::from_secs(now_s)),
            max_token_length: Some(MAX_TOKEN_BYTES),
            ..VerificationOptions::default()
        };
        let claims = key.key.verify(token, options).map_err(verification_error)?;
        if claims.expires_at.is_none() {
            return Err(JwtSvidError::MissingExpiry);
        }
        let subject = claims.subject.ok_or(JwtSvidError::MissingSubject)?;
        SpiffeId::parse(&subject).map_err(JwtSvidError::SubjectNotSpiffe)
    }
}

fn verification_error(err: jwt_simple::Error) -> JwtSvidError {
    match err.downcast_ref::<JWTError>() {
        Some(JWTError::TokenHasExpired) => JwtSvidError::Expired,
        Some(JWTError::TokenNotValidYet | JWTError::ClockDrift) => JwtSvidError::NotYetValid,
        Some(JWTError::RequiredAudienceMissing | JWTError::RequiredAudienceMismatch) => {
            JwtSvidError::WrongAudience
        }
        Some(JWTError::InvalidSignature) => JwtSvidError::BadSignature,
        _ => JwtSvidError::Malformed,
    }
}

/// The key material alone as a JWK for jwt-simple, with each algorithm it may verify. Members
/// such as `use: jwt-svid` or `x5c` are SPIFFE's, not the strict JWK loader's, so they are left
/// out; `alg`, when present, limits the key to that algorithm.
fn public_jwk(jwk: &Map<String, Value>) -> Result<Vec<(Algorithm, String)>, &'static str> {
    let member = |name: &str| jwk.get(name).and_then(Value::as_str);
    let declared = match member("alg") {
        None => None,
        Some(name) => Some(Algorithm::from_name(name).ok_or("alg must be RS/PS/ES 256/384/512")?),
    };
    let (material, algorithms) = match (member("kty"), member("crv")) {
        (Some("RSA"), _) => {
            let (Some(n), Some(e)) = (member("n"), member("e")) else {
                return Err("an RSA key needs n and e");
            };
            (
                json!({"kty": "RSA", "n": n, "e": e}),
                RSA_ALGORITHMS.to_vec(),
            )
        }
        (Some("EC"), Some(crv @ ("P-256" | "P-384"))) => {
            let (Some(x), Some(y)) = (member("x"), member("y")) else {
                return Err("an EC key needs x and y");
            };
            let alg = if crv == "P-256" {
                Algorithm::Es256
            } else {
                Algorithm::Es384
            };
            (json!({"kty": "EC", "crv": crv, "x": x, "y": y}), vec![alg])
        }
        (Some("EC"), _) => return Err("crv must be P-256 or P-384 (ES512 is not supported)"),
        _ => return Err("kty must be RSA or EC"),
    };
    let algorithms = match declared {
        Some(alg) if algorithms.contains(&alg) => vec![alg],
        Some(_) => return Err("alg does not fit the key type"),
        None => algorithms,
    };
    let material = material.to_string();
    Ok(algorithms
        .into_iter()
        .map(|alg| (alg, material.clone()))
        .collect())
}

#[cfg(test)]
mod rsa_key;
#[cfg(test)]
mod tests;
