//! One isolated flashdrop per test: temp data dir, port 0, real HTTP client.
//! Logs only when TEST_LOG is set.

use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use serde_json::{json, Value};

use flashdrop::actors::Engine;
use flashdrop::config::Config;
use flashdrop::startup::Application;

pub struct TestApp {
    pub base: String,
    pub client: awc::Client,
    pub engine: Arc<Engine>,
    server: ServerHandle,
    _dir: Option<tempfile::TempDir>,
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

fn init_logs() {
    static ONCE: Once = Once::new();
    ONCE.call_once(|| {
        if std::env::var_os("TEST_LOG").is_some() {
            flashdrop::telemetry::init_logs(&flashdrop::config::LogConfig {
                level: "debug".into(),
                format: flashdrop::config::LogFormat::Text,
            });
        }
    });
}

pub fn test_config(dir: &std::path::Path) -> Config {
    let mut config = Config::default();
    config.server.port = 0;
    config.server.workers = 2;
    config.storage.data_dir = dir.to_path_buf();
    config.storage.cache_capacity_mb = 16;
    config
}

pub async fn spawn_app() -> TestApp {
    spawn_with(|_| {}).await
}

pub async fn spawn_with(tweak: impl FnOnce(&mut Config)) -> TestApp {
    let dir = tempfile::tempdir().expect("temp dir");
    let mut config = test_config(dir.path());
    tweak(&mut config);
    spawn_config(config, Some(dir)).await
}

/// Starts an app on `config` (its data dir is kept when `dir` is None).
pub async fn spawn_config(config: Config, dir: Option<tempfile::TempDir>) -> TestApp {
    spawn_clocked(config, dir, Arc::new(flashdrop::clock::SystemClock)).await
}

pub async fn spawn_clocked(
    config: Config,
    dir: Option<tempfile::TempDir>,
    clock: Arc<dyn flashdrop::clock::Clock>,
) -> TestApp {
    init_logs();
    let app = Application::build_with_clock(config, clock)
        .await
        .expect("app builds");
    let port = app.port();
    let slot = app.engine();
    let server = app.server_handle();
    actix_web::rt::spawn(async move {
        if let Err(error) = app.run_until_stopped().await {
            eprintln!("test app stopped with an error: {error:#}");
        }
    });
    let deadline = Instant::now() + Duration::from_secs(60);
    let engine = loop {
        if let Some(engine) = slot.get() {
            break engine.clone();
        }
        assert!(Instant::now() < deadline, "recovery did not finish");
        actix_web::rt::time::sleep(Duration::from_millis(5)).await;
    };
    TestApp {
        base: format!("http://127.0.0.1:{port}"),
        client: client(),
        engine,
        server,
        _dir: dir,
    }
}

pub fn client() -> awc::Client {
    awc::Client::builder()
        .connector(awc::Connector::new().limit(1024))
        .timeout(Duration::from_secs(60))
        .finish()
}

pub async fn send(req: awc::ClientRequest, body: Option<Value>) -> Response {
    let mut response = match body {
        Some(body) => req
            .insert_header(("content-type", "application/json"))
            .send_body(body.to_string())
            .await
            .expect("request sent"),
        None => req.send().await.expect("request sent"),
    };
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

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    /// Creates a product for `tenant` with the given SKU codes; returns its body.
    pub async fn create_product(&self, tenant: &str, skus: &[&str]) -> Value {
        let skus: Vec<Value> = skus
            .iter()
            .map(|s| json!({"sku": s, "price": {"amount": 1999, "currency": "USD"}}))
            .collect();
        let response = send(
            self.client
                .post(self.url("/v1/products"))
                .insert_header(("x-tenant-id", tenant)),
            Some(json!({"title": "Drop tee", "category": "apparel", "skus": skus})),
        )
        .await;
        assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
        response.body
    }

    pub async fn set_stock(&self, tenant: &str, sku: &str, warehouses: Value) -> Response {
        send(
            self.client
                .put(self.url(&format!("/v1/skus/{sku}/stock")))
                .insert_header(("x-tenant-id", tenant)),
            Some(json!({ "warehouses": warehouses })),
        )
        .await
    }

    /// A product with one SKU holding `units` in warehouse "main".
    pub async fn stocked_sku(&self, tenant: &str, sku: &str, units: u64) {
        self.create_product(tenant, &[sku]).await;
        let response = self.set_stock(tenant, sku, json!({ "main": units })).await;
        assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
    }

    pub async fn reserve(
        &self,
        buyer: &str,
        sku: &str,
        body: Value,
        key: Option<&str>,
    ) -> Response {
        let mut request = self
            .client
            .post(self.url(&format!("/v1/skus/{sku}/reservations")))
            .insert_header(("x-buyer-id", buyer));
        if let Some(key) = key {
            request = request.insert_header(("idempotency-key", key));
        }
        send(request, Some(body)).await
    }

    pub async fn stock(&self, sku: &str) -> Value {
        let response = send(
            self.client.get(self.url(&format!("/v1/skus/{sku}/stock"))),
            None,
        )
        .await;
        assert_eq!(response.status, StatusCode::OK, "{:?}", response.body);
        response.body
    }

    pub async fn reservation(&self, buyer: &str, id: &str) -> Response {
        send(
            self.client
                .get(self.url(&format!("/v1/reservations/{id}")))
                .insert_header(("x-buyer-id", buyer)),
            None,
        )
        .await
    }

    pub async fn stop(self) {
        self.server.stop(true).await;
        self.engine.shutdown().await;
    }
}

/// Polls `check` until it returns Some or `timeout` passes.
pub async fn eventually<T, F, Fut>(timeout: Duration, mut check: F) -> Option<T>
where
    F: FnMut() -> Fut,
    Fut: std::future::Future<Output = Option<T>>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if let Some(value) = check().await {
            return Some(value);
        }
        if Instant::now() >= deadline {
            return None;
        }
        actix_web::rt::time::sleep(Duration::from_millis(20)).await;
    }
}
