//! Shared test helpers, one module per concern: the app under test, the
//! HTTP client, orders, drops, WebSockets and waiting on a condition. Test
//! modules import these, never each other.

mod app;
mod client;
mod drops;
mod orders;
mod receivers;
mod wait;
mod ws;

pub use app::*;
pub use client::*;
pub use drops::*;
pub use orders::*;
pub use receivers::*;
pub use wait::*;
pub use ws::*;
