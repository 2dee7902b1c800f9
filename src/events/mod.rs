//! The event feed that tails the WAL (what was just made durable, in LSN
//! order) and its in-process subscribers: the WebSocket hub.

pub mod durable;
pub mod feed;
pub mod hub;
pub mod notify;
pub mod order_news;
pub mod outbound;

pub use feed::{EventFeed, FeedBatch, FeedBody, FeedEvent, Watched};
pub use hub::{Hub, HubStats};
