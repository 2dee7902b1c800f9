//! Black-box tests against a real flashdrop on a free port, and crash tests
//! against the real binary. One test binary keeps link time down.

mod audit;
mod auth;
mod bad_input;
mod contention;
mod crash;
mod expiry;
mod helpers;
mod idempotency;
mod isolation;
mod lifecycle;
mod operations;
mod products;
mod recovery;
mod supervision;
mod tenants;
