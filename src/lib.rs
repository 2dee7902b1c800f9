//! flashdrop: a commerce engine for high-traffic product drops.
//! Data flows `http -> actors -> domain` and `actors -> persistence`.

pub mod actors;
pub mod clock;
pub mod config;
pub mod domain;
pub mod http;
pub mod persistence;
pub mod startup;
pub mod telemetry;
