//! flashdrop: a commerce engine for high-traffic product drops.
//! Data flows `http -> services/actors -> domain` and `actors/services ->
//! persistence`; `app` starts it all as named steps.

pub mod actors;
pub mod app;
pub mod auth;
pub mod clock;
pub mod config;
pub mod domain;
pub mod events;
pub mod http;
pub mod payments;
pub mod persistence;
pub mod services;
pub mod startup;
pub mod telemetry;

/// mimalloc: replies are allocated on actor threads and freed on others, which
/// glibc's allocator handles poorly (15% of CPU in the reserve profile).
/// The `system-allocator` feature turns it off, so a heap profiler that
/// wraps malloc (heaptrack, valgrind's massif) sees every allocation.
#[cfg(not(feature = "system-allocator"))]
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;
