//! Tokens. Access tokens are HS256 JWTs checked without any lookup but one:
//! the revoked-session set, so logout takes effect at once. Refresh tokens and
//! invitation tokens are `prefix.id.generation.mac`, where the MAC is
//! HMAC-SHA256 under a key derived from the JWT secret: any genuine token can be
//! recognised later (which is how reuse of a rotated one is detected) and
//! nothing secret is stored.

use dashmap::DashMap;
use hmac::{Mac, SimpleHmac};
use jsonwebtoken::{Algorithm, DecodingKey, EncodingKey, Header, Validation};
use serde::{Deserialize, Serialize};
use sha2::Sha256;

use crate::domain::identity::{id_text, parse_id, Role};
use crate::domain::{TenantId, UserId};

type HmacSha256 = SimpleHmac<Sha256>;

/// Who is calling, as an access token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Caller {
    pub user: UserId,
    pub role: Role,
    pub tenant: Option<TenantId>,
    pub session: u128,
    pub expires_at_s: u64,
}

impl Caller {
    /// Who this is, as the access rules (`domain::policy`) see it.
    pub fn principal(&self) -> crate::domain::policy::Principal {
        crate::domain::policy::Principal {
            user: self.user,
            role: self.role,
            tenant: self.tenant,
        }
    }
}

#[derive(Debug, Serialize, Deserialize)]
pub struct AccessClaims {
    pub iss: String,
    pub aud: String,
    pub sub: String,
    pub sid: String,
    pub role: Role,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub tid: Option<String>,
    pub iat: u64,
    pub exp: u64,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is malformed or its signature does not verify")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

/// A parsed refresh token: which session, which generation, and its MAC.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RefreshToken {
    pub session: u128,
    pub generation: u32,
    mac: Vec<u8>,
}

pub struct TokenKeys {
    /// Tokens that verified, by their exact text: a shopper sends the same
    /// token many times in a drop, and a hit skips base64, JSON and HMAC.
    /// A hit still checks expiry; the cache is bounded by `cache_max`.
    /// Only verified tokens become keys, so a fast seeded hash is safe here.
    verified: DashMap<Box<str>, Caller, foldhash::fast::RandomState>,
    cache_max: usize,
    encoding: EncodingKey,
    decoding: DecodingKey,
    validation: Validation,
    mac_key: Vec<u8>,
    issuer: String,
    audience: String,
    pub access_ttl_s: u64,
    pub refresh_ttl_s: u64,
}

const REFRESH_PREFIX: &str = "rt1";
/// Verified access tokens remembered (about 0.5 KiB each).
pub const DEFAULT_CACHE_MAX: usize = 65_536;
const INVITE_PREFIX: &str = "inv1";

impl TokenKeys {
    pub fn new(
        secret: &[u8],
        issuer: &str,
        audience: &str,
        access_ttl_s: u64,
        refresh_ttl_s: u64,
    ) -> Self {
        let mut validation = Validation::new(Algorithm::HS256);
        validation.set_issuer(&[issuer]);
        validation.set_audience(&[audience]);
        validation.set_required_spec_claims(&["exp", "iss", "aud", "sub"]);
        // Expiry is checked against the engine's clock, not the system's.
        validation.validate_exp = false;
        validation.leeway = 0;
        Self {
            verified: DashMap::default(),
            cache_max: DEFAULT_CACHE_MAX,
            encoding: EncodingKey::from_secret(secret),
            decoding: DecodingKey::from_secret(secret),
            validation,
            mac_key: mac(secret, &[b"flashdrop refresh and invitation tokens v1"]),
            issuer: issuer.to_owned(),
            audience: audience.to_owned(),
            access_ttl_s,
            refresh_ttl_s,
        }
    }

    /// A signed access token for `caller`, valid `access_ttl_s` from `now_ms`.
    pub fn issue_access(
        &self,
        user: UserId,
        role: Role,
        tenant: Option<TenantId>,
        session: u128,
        now_ms: u64,
    ) -> (String, u64) {
        let iat = now_ms / 1000;
        let exp = iat + self.access_ttl_s;
        let claims = AccessClaims {
            iss: self.issuer.clone(),
            aud: self.audience.clone(),
            sub: id_text(user),
            sid: id_text(session),
            role,
            tid: tenant.map(id_text),
            iat,
            exp,
        };
        let token = jsonwebtoken::encode(&Header::new(Algorithm::HS256), &claims, &self.encoding)
            // HS256 with a byte key and plain claims cannot fail to sign.
            .unwrap_or_default();
        (token, exp)
    }

    /// Sets how many verified tokens are remembered (0: none).
    pub fn with_cache(mut self, entries: usize) -> Self {
        self.cache_max = entries;
        self
    }

    /// Checks signature, algorithm, issuer, audience and expiry (against `now_ms`).
    pub fn verify_access(&self, token: &str, now_ms: u64) -> Result<Caller, TokenError> {
        if let Some(caller) = self.verified.get(token).map(|c| *c) {
            if now_ms / 1000 >= caller.expires_at_s {
                self.verified.remove(token);
                return Err(TokenError::Expired);
            }
            return Ok(caller);
        }
        let caller = self.verify_uncached(token, now_ms)?;
        if self.cache_max > 0 {
            if self.verified.len() >= self.cache_max {
                let now_s = now_ms / 1000;
                self.verified.retain(|_, c| now_s < c.expires_at_s);
                if self.verified.len() >= self.cache_max {
                    self.verified.clear();
                }
            }
            self.verified.insert(token.into(), caller);
        }
        Ok(caller)
    }

    fn verify_uncached(&self, token: &str, now_ms: u64) -> Result<Caller, TokenError> {
        let data = jsonwebtoken::decode::<AccessClaims>(token, &self.decoding, &self.validation)
            .map_err(|_| TokenError::Invalid)?;
        let claims = data.claims;
        if now_ms / 1000 >= claims.exp {
            return Err(TokenError::Expired);
        }
        let user = UserId::parse(&claims.sub).ok_or(TokenError::Invalid)?;
        let session = parse_id(&claims.sid).ok_or(TokenError::Invalid)?;
        let tenant = match &claims.tid {
            Some(t) => Some(TenantId::parse(t).ok_or(TokenError::Invalid)?),
            None => None,
        };
        Ok(Caller {
            user,
            role: claims.role,
            tenant,
            session,
            expires_at_s: claims.exp,
        })
    }

    /// Refresh token `generation` of a session.
    pub fn refresh_token(&self, session: u128, salt: &[u8; 16], generation: u32) -> String {
        let tag = self.refresh_mac(session, salt, generation);
        format!("{REFRESH_PREFIX}.{session:032x}.{generation}.{}", hex(&tag))
    }

    fn refresh_mac(&self, session: u128, salt: &[u8; 16], generation: u32) -> Vec<u8> {
        mac(
            &self.mac_key,
            &[
                b"refresh",
                &session.to_be_bytes(),
                salt,
                &generation.to_be_bytes(),
            ],
        )
    }

    pub fn parse_refresh(&self, raw: &str) -> Result<RefreshToken, TokenError> {
        let (id, generation, tag) = split_token(raw, REFRESH_PREFIX)?;
        Ok(RefreshToken {
            session: id,
            generation: generation.parse().map_err(|_| TokenError::Invalid)?,
            mac: tag,
        })
    }

    /// Whether `token` was issued by us for a session with `salt` (constant time).
    pub fn refresh_is_genuine(&self, token: &RefreshToken, salt: &[u8; 16]) -> bool {
        self.verify_mac(
            &[
                b"refresh",
                &token.session.to_be_bytes(),
                salt,
                &token.generation.to_be_bytes(),
            ],
            &token.mac,
        )
    }

    pub fn invitation_token(&self, invitation: u128, salt: &[u8; 16]) -> String {
        let tag = mac(
            &self.mac_key,
            &[b"invitation", &invitation.to_be_bytes(), salt],
        );
        format!("{INVITE_PREFIX}.{invitation:032x}.0.{}", hex(&tag))
    }

    /// The invitation a token names, and a check of its MAC against the salt.
    pub fn parse_invitation(&self, raw: &str) -> Result<(u128, Vec<u8>), TokenError> {
        let (id, generation, tag) = split_token(raw, INVITE_PREFIX)?;
        if generation != "0" {
            return Err(TokenError::Invalid);
        }
        Ok((id, tag))
    }

    pub fn invitation_is_genuine(&self, invitation: u128, salt: &[u8; 16], tag: &[u8]) -> bool {
        self.verify_mac(&[b"invitation", &invitation.to_be_bytes(), salt], tag)
    }

    fn verify_mac(&self, parts: &[&[u8]], tag: &[u8]) -> bool {
        let mut m = <HmacSha256 as Mac>::new_from_slice(&self.mac_key)
            .expect("HMAC takes keys of any length");
        for part in parts {
            m.update(&(part.len() as u32).to_be_bytes());
            m.update(part);
        }
        m.verify_slice(tag).is_ok()
    }
}

fn split_token<'a>(raw: &'a str, prefix: &str) -> Result<(u128, &'a str, Vec<u8>), TokenError> {
    let mut parts = raw.split('.');
    let (Some(p), Some(id), Some(generation), Some(tag), None) = (
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
        parts.next(),
    ) else {
        return Err(TokenError::Invalid);
    };
    if p != prefix || id.len() != 32 || generation.len() > 10 || tag.len() != 64 {
        return Err(TokenError::Invalid);
    }
    let id = u128::from_str_radix(id, 16).map_err(|_| TokenError::Invalid)?;
    Ok((id, generation, unhex(tag).ok_or(TokenError::Invalid)?))
}

fn mac(key: &[u8], parts: &[&[u8]]) -> Vec<u8> {
    let mut m = <HmacSha256 as Mac>::new_from_slice(key).expect("HMAC takes keys of any length");
    for part in parts {
        m.update(&(part.len() as u32).to_be_bytes());
        m.update(part);
    }
    m.finalize().into_bytes().to_vec()
}

fn hex(bytes: &[u8]) -> String {
    bytes.iter().map(|b| format!("{b:02x}")).collect()
}

fn unhex(text: &str) -> Option<Vec<u8>> {
    if !text.len().is_multiple_of(2) {
        return None;
    }
    (0..text.len())
        .step_by(2)
        .map(|i| u8::from_str_radix(text.get(i..i + 2)?, 16).ok())
        .collect()
}

/// 16 random bytes from the operating system.
pub fn random_salt() -> [u8; 16] {
    let mut salt = [0u8; 16];
    // getrandom fails only on platforms without an entropy source.
    getrandom::fill(&mut salt).expect("the OS random source is available");
    salt
}

#[cfg(test)]
mod tests {
    use super::*;

    fn keys() -> TokenKeys {
        TokenKeys::new(&[7u8; 32], "flashdrop", "flashdrop-api", 900, 86_400)
    }

    #[test]
    fn an_access_token_round_trips_until_it_expires() {
        let keys = keys();
        let (token, exp) = keys.issue_access(
            UserId(1),
            Role::SellerStaff,
            Some(TenantId(2)),
            3,
            1_000_000,
        );
        assert_eq!(exp, 1_000 + 900);
        let caller = keys.verify_access(&token, 1_000_000).unwrap();
        assert_eq!(
            (caller.user, caller.role, caller.tenant, caller.session),
            (UserId(1), Role::SellerStaff, Some(TenantId(2)), 3)
        );
        assert_eq!(
            keys.verify_access(&token, 1_900_000),
            Err(TokenError::Expired)
        );
    }

    #[test]
    fn the_cache_serves_only_the_exact_token_and_still_checks_expiry() {
        let keys = keys().with_cache(2);
        let (token, _) = keys.issue_access(UserId(1), Role::Buyer, None, 3, 0);
        assert!(keys.verify_access(&token, 0).is_ok());
        assert!(keys.verify_access(&token, 1_000).is_ok(), "a hit");
        let mut forged = token.clone();
        forged.push('x');
        assert_eq!(keys.verify_access(&forged, 0), Err(TokenError::Invalid));
        assert_eq!(
            keys.verify_access(&token, 900_000),
            Err(TokenError::Expired),
            "a cached token expires too"
        );
        for user in (10..20).map(UserId) {
            let (t, _) = keys.issue_access(user, Role::Buyer, None, 3, 0);
            assert_eq!(keys.verify_access(&t, 0).unwrap().user, user);
            assert!(keys.verified.len() <= 2);
        }
    }

    #[test]
    fn other_keys_audiences_and_issuers_are_refused() {
        let (token, _) = keys().issue_access(UserId(1), Role::Buyer, None, 3, 0);
        let other = TokenKeys::new(&[8u8; 32], "flashdrop", "flashdrop-api", 900, 60);
        assert_eq!(other.verify_access(&token, 0), Err(TokenError::Invalid));
        let other_aud = TokenKeys::new(&[7u8; 32], "flashdrop", "elsewhere", 900, 60);
        assert_eq!(other_aud.verify_access(&token, 0), Err(TokenError::Invalid));
        let other_iss = TokenKeys::new(&[7u8; 32], "someone", "flashdrop-api", 900, 60);
        assert_eq!(other_iss.verify_access(&token, 0), Err(TokenError::Invalid));
    }

    #[test]
    fn refresh_tokens_are_recognised_per_generation_and_forgeries_are_not() {
        let keys = keys();
        let salt = [5u8; 16];
        let token = keys.refresh_token(42, &salt, 3);
        let parsed = keys.parse_refresh(&token).unwrap();
        assert_eq!((parsed.session, parsed.generation), (42, 3));
        assert!(keys.refresh_is_genuine(&parsed, &salt));
        assert!(!keys.refresh_is_genuine(&parsed, &[6u8; 16]));
        let bumped = token.replacen(".3.", ".4.", 1);
        let forged = keys.parse_refresh(&bumped).unwrap();
        assert!(!keys.refresh_is_genuine(&forged, &salt));
        for bad in ["", "rt1.x.1.y", &token[..token.len() - 2], "inv1.00.0.00"] {
            assert!(keys.parse_refresh(bad).is_err(), "{bad:?}");
        }
    }

    #[test]
    fn invitation_tokens_bind_their_invitation_and_salt() {
        let keys = keys();
        let salt = [1u8; 16];
        let token = keys.invitation_token(9, &salt);
        let (id, tag) = keys.parse_invitation(&token).unwrap();
        assert_eq!(id, 9);
        assert!(keys.invitation_is_genuine(9, &salt, &tag));
        assert!(!keys.invitation_is_genuine(10, &salt, &tag));
    }
}
