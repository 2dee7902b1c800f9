//! The HTTP client side: requests, bearer headers, answers as JSON, and the
//! sandbox provider's books read page by page.

use std::time::Duration;

use actix_web::http::StatusCode;
use serde_json::Value;

/// `Authorization: Bearer <token>`.
pub fn bearer(token: &str) -> (&'static str, String) {
    ("authorization", format!("Bearer {token}"))
}

/// A test e-mail address for a helper name (names may hold `:` or `@`).
pub fn email_for(name: &str) -> String {
    let local: String = name
        .chars()
        .map(|c| if c.is_ascii_alphanumeric() { c } else { '-' })
        .collect();
    format!("{}-{:08x}@test.example", local, fastrand::u32(..))
}

pub struct Response {
    pub status: StatusCode,
    pub headers: actix_web::http::header::HeaderMap,
    pub body: Value,
}

impl Response {
    pub fn code(&self) -> &str {
        self.body["code"].as_str().unwrap_or("")
    }

    pub fn header(&self, name: &str) -> Option<&str> {
        self.headers.get(name).and_then(|v| v.to_str().ok())
    }
}

/// Every payment in the sandbox provider's books (of order `reference` only,
/// when given), read page by page as a platform admin (`token`).
pub async fn sandbox_payments(
    http: &awc::Client,
    base: &str,
    token: &str,
    reference: Option<&str>,
) -> Vec<Value> {
    let mut payments = Vec::new();
    let mut cursor: Option<String> = None;
    loop {
        let mut query = vec![("limit", "100".to_owned())];
        query.extend(reference.map(|r| ("reference", r.to_owned())));
        query.extend(cursor.take().map(|c| ("cursor", c)));
        let page = send(
            http.get(format!("{base}/v1/admin/payments/sandbox"))
                .query(&query)
                .expect("a query string")
                .insert_header(bearer(token)),
            None,
        )
        .await;
        assert_eq!(page.status, StatusCode::OK, "{:?}", page.body);
        payments.extend(page.body["payments"].as_array().unwrap().iter().cloned());
        match page.body["next_cursor"].as_str() {
            Some(next) => cursor = Some(next.to_owned()),
            None => return payments,
        }
    }
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().limit(1024))
        .timeout(Duration::from_secs(60))
        .finish()
}

pub async fn send(req: awc::ClientRequest, body: Option<Value>) -> Response {
    match body {
        Some(body) => send_raw(req, "application/json", body.to_string()).await,
        None => read(req.send().await.expect("request sent")).await,
    }
}

/// Sends `body` as it is, with `content_type`.
pub async fn send_raw(req: awc::ClientRequest, content_type: &str, body: String) -> Response {
    let response = req
        .insert_header(("content-type", content_type))
        .send_body(body)
        .await
        .expect("request sent");
    read(response).await
}

/// The answer, its body as JSON (or as a string when it is not JSON).
async fn read<S>(mut response: awc::ClientResponse<S>) -> Response
where
    S: futures_util::Stream<Item = Result<actix_web::web::Bytes, awc::error::PayloadError>> + Unpin,
{
    let bytes = response.body().limit(8 << 20).await.expect("body read");
    let body = if bytes.is_empty() {
        Value::Null
    } else {
        serde_json::from_slice(&bytes)
            .unwrap_or_else(|_| Value::String(String::from_utf8_lossy(&bytes).into_owned()))
    };
    Response {
        status: response.status(),
        headers: response.headers().clone(),
        body,
    }
}
