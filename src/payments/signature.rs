//! Webhook signatures: `Flashdrop-Signature: t=<unix seconds>,v1=<hex>` where
//! v1 = HMAC-SHA256(secret, "<t>.<body>"). The timestamp bounds replays.

use hmac::{Mac, SimpleHmac};
use sha2::Sha256;

type HmacSha256 = SimpleHmac<Sha256>;

pub const HEADER: &str = "flashdrop-signature";

fn mac(secret: &[u8], timestamp_s: u64, body: &[u8]) -> HmacSha256 {
    let mut mac =
        <HmacSha256 as Mac>::new_from_slice(secret).expect("HMAC takes keys of any length");
    mac.update(timestamp_s.to_string().as_bytes());
    mac.update(b".");
    mac.update(body);
    mac
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

/// The header value for `body` sent at `timestamp_s`.
pub fn sign(secret: &[u8], timestamp_s: u64, body: &[u8]) -> String {
    let digest = mac(secret, timestamp_s, body).finalize().into_bytes();
    format!("t={timestamp_s},v1={}", hex(&digest))
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("the signature header is malformed")]
    Malformed,
    #[error("the signature is too old or from the future")]
    Stale,
    #[error("the signature does not match the body")]
    Mismatch,
}

/// Checks a header against `body` in constant time, refusing timestamps more
/// than `tolerance_s` away from `now_s`.
pub fn verify(
    secret: &[u8],
    header: &str,
    body: &[u8],
    now_s: u64,
    tolerance_s: u64,
) -> Result<(), SignatureError> {
    let mut timestamp = None;
    let mut signatures = Vec::new();
    for part in header.split(',') {
        match part.trim().split_once('=') {
            Some(("t", t)) => timestamp = t.parse::<u64>().ok(),
            Some(("v1", v)) => signatures.push(unhex(v).ok_or(SignatureError::Malformed)?),
            _ => {}
        }
    }
    let timestamp = timestamp.ok_or(SignatureError::Malformed)?;
    if signatures.is_empty() {
        return Err(SignatureError::Malformed);
    }
    if timestamp.abs_diff(now_s) > tolerance_s {
        return Err(SignatureError::Stale);
    }
    // Several v1 values may be sent while a secret is rotated.
    if signatures
        .iter()
        .any(|sig| mac(secret, timestamp, body).verify_slice(sig).is_ok())
    {
        Ok(())
    } else {
        Err(SignatureError::Mismatch)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_signed_body_verifies_and_any_change_is_refused() {
        let header = sign(b"whsec", 1_000, b"{\"a\":1}");
        assert_eq!(verify(b"whsec", &header, b"{\"a\":1}", 1_010, 300), Ok(()));
        assert_eq!(
            verify(b"whsec", &header, b"{\"a\":2}", 1_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"other", &header, b"{\"a\":1}", 1_010, 300),
            Err(SignatureError::Mismatch)
        );
        assert_eq!(
            verify(b"whsec", &header, b"{\"a\":1}", 2_000, 300),
            Err(SignatureError::Stale)
        );
        assert_eq!(
            verify(b"whsec", "t=1000", b"", 1_000, 300),
            Err(SignatureError::Malformed)
        );
        assert_eq!(
            verify(b"whsec", "v1=zz,t=1", b"", 1, 300),
            Err(SignatureError::Malformed)
        );
    }
}
