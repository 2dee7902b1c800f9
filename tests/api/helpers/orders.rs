//! Orders over HTTP: placing one and waiting for a state.

use std::time::Duration;

use serde_json::{json, Value};

use super::app::TestApp;
use super::client::{bearer, send, Response};
use super::wait::eventually;

/// Places an order; answers the 202 body.
pub async fn place(app: &TestApp, token: &str, items: Value, method: &str, wait: bool) -> Response {
    let mut request = app
        .client
        .post(app.url("/v1/orders"))
        .insert_header(bearer(token));
    if wait {
        request = request.insert_header(("prefer", "wait=10"));
    }
    send(
        request,
        Some(json!({"items": items, "shipping_address": "1 Test Street, Testville", "payment_method": method})),
    )
    .await
}

/// Polls the order until its state is one of `states`.
pub async fn order_in(app: &TestApp, token: &str, id: &str, states: &[&str]) -> Value {
    let found = eventually(Duration::from_secs(20), || async {
        let order = app.get_as(&format!("/v1/orders/{id}"), Some(token)).await;
        let state = order.body["state"].as_str().unwrap_or_default().to_owned();
        states.contains(&state.as_str()).then_some(order.body)
    })
    .await;
    match found {
        Some(order) => order,
        None => {
            let order = app.get_as(&format!("/v1/orders/{id}"), Some(token)).await;
            panic!("order {id} never reached {states:?}: {:#}", order.body)
        }
    }
}
