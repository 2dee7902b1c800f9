//! Secrets in the configuration: never printed, read from any scalar, refused when they are values flashdrop once published, and derived keys.

use serde::{Deserialize, Serialize};

/// A secret: serialised and compared as its text, never printed, and read
/// from any scalar (so a secret of digits is not refused with its value echoed).
#[derive(Clone, PartialEq, Eq, Default, Serialize)]
#[serde(transparent)]
pub struct Secret(pub(super) String);

impl Secret {
    pub fn expose(&self) -> &str {
        &self.0
    }

    pub fn as_bytes(&self) -> &[u8] {
        self.0.as_bytes()
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    pub fn len(&self) -> usize {
        self.0.len()
    }
}

impl std::fmt::Debug for Secret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(if self.0.is_empty() {
            "Secret(unset)"
        } else {
            "Secret(redacted)"
        })
    }
}

impl From<String> for Secret {
    fn from(text: String) -> Self {
        Self(text)
    }
}

impl<'de> Deserialize<'de> for Secret {
    fn deserialize<D: serde::Deserializer<'de>>(deserializer: D) -> Result<Self, D::Error> {
        struct Scalar;
        impl serde::de::Visitor<'_> for Scalar {
            type Value = Secret;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("a secret (text)")
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Secret, E> {
                Ok(Secret(v.to_owned()))
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_u128<E: serde::de::Error>(self, v: u128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_i128<E: serde::de::Error>(self, v: i128) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_f64<E: serde::de::Error>(self, v: f64) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
            fn visit_char<E: serde::de::Error>(self, v: char) -> Result<Secret, E> {
                Ok(Secret(v.to_string()))
            }
        }
        deserializer.deserialize_any(Scalar)
    }
}

/// Values flashdrop once shipped as defaults: public, so refused as secrets.
pub(super) const PUBLISHED_SECRETS: &[&str] = &[
    "whsec_sandbox_dev_only_change_me",
    "notify_dev_only_change_me_0123456789",
];

/// Shortest secret accepted for the derived keys when set explicitly.
pub const SECRET_MIN_BYTES: usize = 16;

/// HKDF-SHA256 of the main secret (`auth.jwt_secret`) for one purpose: 32
/// bytes, hex. A leak of one derived key reveals neither the main secret nor
/// the others.
pub fn derive_secret(main: &[u8], purpose: &str) -> String {
    let hkdf = hkdf::Hkdf::<sha2::Sha256>::new(Some(b"flashdrop secrets v1"), main);
    let mut key = [0u8; 32];
    hkdf.expand(purpose.as_bytes(), &mut key)
        .expect("32 bytes is a valid HKDF-SHA256 output length");
    key.iter().map(|b| format!("{b:02x}")).collect()
}
