//! Credentials and tokens: argon2id password hashing (off the HTTP workers,
//! bounded), JWT access tokens and HMAC-derived rotating refresh tokens.
//! The rules about who may do what live in `domain::identity`.

pub mod passwords;
pub mod tokens;

pub use passwords::{PasswordHasher, PasswordParams};
pub use tokens::{AccessClaims, Caller, RefreshToken, TokenError, TokenKeys};
