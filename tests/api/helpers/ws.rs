//! A WebSocket client of the live stream.

use std::time::{Duration, Instant};

use serde_json::{json, Value};

use super::app::TestApp;

/// A WebSocket client of `GET /v1/ws`.
pub struct WsClient {
    framed: actix_codec::Framed<awc::BoxedSocket, awc::ws::Codec>,
}

impl WsClient {
    pub async fn connect(app: &TestApp, token: Option<&str>) -> WsClient {
        let url = format!("{}/v1/ws", app.base.replace("http://", "ws://"));
        let mut request = awc::Client::new().ws(url).max_frame_size(1 << 20);
        if let Some(token) = token {
            request = request.header("authorization", format!("Bearer {token}"));
        }
        let (_, framed) = request.connect().await.expect("WebSocket connects");
        let mut client = WsClient { framed };
        let hello = client.next_json(Duration::from_secs(10)).await;
        assert_eq!(
            hello.as_ref().map(|h| h["type"].clone()),
            Some(json!("hello"))
        );
        client
    }

    pub async fn send(&mut self, message: Value) {
        use futures_util::SinkExt;
        self.framed
            .send(awc::ws::Message::Text(message.to_string().into()))
            .await
            .expect("WebSocket send");
    }

    /// Subscribes and waits for the `subscribed` answer; returns it.
    pub async fn subscribe(&mut self, topics: &[&str]) -> Value {
        self.send(json!({"op": "subscribe", "topics": topics}))
            .await;
        self.until(Duration::from_secs(10), |m| m["type"] == "subscribed")
            .await
            .expect("subscribed")
    }

    /// The next JSON message within `timeout` (answering pings), or None.
    pub async fn next_json(&mut self, timeout: Duration) -> Option<Value> {
        use futures_util::{SinkExt, StreamExt};
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let frame = tokio::time::timeout_at(deadline, self.framed.next())
                .await
                .ok()??
                .ok()?;
            match frame {
                awc::ws::Frame::Text(bytes) => return serde_json::from_slice(&bytes).ok(),
                awc::ws::Frame::Ping(bytes) => {
                    let _ = self.framed.send(awc::ws::Message::Pong(bytes)).await;
                }
                awc::ws::Frame::Close(reason) => {
                    return Some(json!({"type": "closed", "reason": format!("{reason:?}")}))
                }
                _ => {}
            }
        }
    }

    /// Reads until a message satisfies `wanted` (None when `timeout` passes).
    pub async fn until(
        &mut self,
        timeout: Duration,
        wanted: impl Fn(&Value) -> bool,
    ) -> Option<Value> {
        let deadline = Instant::now() + timeout;
        while Instant::now() < deadline {
            let message = self.next_json(deadline - Instant::now()).await?;
            if wanted(&message) {
                return Some(message);
            }
        }
        None
    }
}
