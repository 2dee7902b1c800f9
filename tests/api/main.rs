//! Black-box tests against a real flashdrop on a free port, and crash tests
//! against the real binary. One test binary keeps link time down.

mod admission;
mod audit;
mod auth;
mod bad_input;
mod browse;
mod cart;
mod categories;
mod contention;
mod crash;
mod drops;
mod expiry;
mod helpers;
mod holds;
mod idempotency;
mod import_crash;
mod imports;
mod isolation;
mod lifecycle;
mod live;
mod notifications;
mod operations;
mod orders;
mod pricing;
mod process;
mod products;
mod recovery;
mod saga_crash;
mod secure_defaults;
mod supervision;
mod tenants;
mod upgrade;
mod variants;
mod versions;
