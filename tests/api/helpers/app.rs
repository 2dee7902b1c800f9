//! One isolated flashdrop per test: temp data dir, port 0, real HTTP client,
//! the accounts the helpers made, and tokens minted without an account.
//! Logs only when TEST_LOG is set.

use std::collections::HashMap;
use std::sync::{Arc, Once};
use std::time::{Duration, Instant};

use actix_web::dev::ServerHandle;
use actix_web::http::StatusCode;
use serde_json::{json, Value};

use flashdrop::app::Node;
use flashdrop::config::Config;
use flashdrop::startup::Application;

use super::client::{bearer, client, email_for, send, Response};

pub struct TestApp {
    pub base: String,
    pub client: awc::Client,
    pub engine: Arc<Node>,
    server: ServerHandle,
    _dir: Option<tempfile::TempDir>,
    /// Accounts the helpers made, by role and name.
    identities: parking_lot::Mutex<HashMap<(Kind, String), Identity>>,
}

/// The HS256 secret of every test app (tests may mint tokens with it).
pub const TEST_SECRET: &str = "flashdrop-test-secret-of-more-than-32-bytes";
pub const PASSWORD: &str = "correct-Horse-7-battery";

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
enum Kind {
    Buyer,
    Seller,
}

/// Accounts made by the helpers, carried across a restart.
pub struct Identities(HashMap<(Kind, String), Identity>);

/// A signed-in account made by the helpers.
#[derive(Debug, Clone)]
pub struct Identity {
    pub email: String,
    pub user_id: String,
    pub access_token: String,
    pub refresh_token: String,
    pub tenant_id: Option<String>,
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
    config.auth.jwt_secret = TEST_SECRET.into();
    // Dev mode only to allow a cheap argon2 cost: tests hash hundreds of passwords.
    config.auth.dev_mode = true;
    config.auth.argon2_memory_kib = 64;
    config.auth.argon2_iterations = 1;
    config.auth.login_burst_per_account = 1_000_000;
    config.auth.login_burst_per_address = 1_000_000;
    config.tenants.default_requests_per_minute = 1_000_000;
    // Tests send many requests per buyer; the limiter has tests of its own.
    config.admission.buyer_burst = 1_000_000;
    config
}

/// The platform admin every `spawn_with_admin` app creates at start-up.
pub const ADMIN_EMAIL: &str = "root@platform.example";

/// A test config whose first platform admin is `ADMIN_EMAIL` / `PASSWORD`.
pub fn with_admin(config: &mut Config) {
    config.auth.bootstrap_admin_email = ADMIN_EMAIL.into();
    config.auth.bootstrap_admin_password = PASSWORD.into();
}

pub async fn spawn_with_admin() -> TestApp {
    spawn_with(with_admin).await
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
    spawn_externals(config, dir, flashdrop::app::Externals::with_clock(clock)).await
}

/// Starts an app with its clock and resolver swapped.
pub async fn spawn_externals(
    config: Config,
    dir: Option<tempfile::TempDir>,
    externals: flashdrop::app::Externals,
) -> TestApp {
    init_logs();
    let app = Application::build_with(config, externals)
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
        identities: parking_lot::Mutex::new(HashMap::new()),
    }
}

impl TestApp {
    pub fn url(&self, path: &str) -> String {
        format!("{}{}", self.base, path)
    }

    pub async fn post_json(&self, path: &str, token: Option<&str>, body: Value) -> Response {
        let mut request = self.client.post(self.url(path));
        if let Some(token) = token {
            request = request.insert_header(bearer(token));
        }
        send(request, Some(body)).await
    }

    pub async fn get_as(&self, path: &str, token: Option<&str>) -> Response {
        let mut request = self.client.get(self.url(path));
        if let Some(token) = token {
            request = request.insert_header(bearer(token));
        }
        send(request, None).await
    }

    /// An access token of the bootstrap platform admin (see `with_admin`).
    pub async fn platform_admin(&self) -> String {
        let login = self
            .post_json(
                "/v1/auth/login",
                None,
                json!({"email": ADMIN_EMAIL, "password": PASSWORD}),
            )
            .await;
        assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
        login.body["access_token"].as_str().unwrap().to_owned()
    }

    /// Registers and logs in a fresh account; answers the login body.
    pub async fn sign_up(&self, email: &str) -> Value {
        let credentials = json!({"email": email, "password": PASSWORD});
        let registered = self
            .post_json("/v1/auth/register", None, credentials.clone())
            .await;
        assert_eq!(
            registered.status,
            StatusCode::ACCEPTED,
            "{:?}",
            registered.body
        );
        let login = self.post_json("/v1/auth/login", None, credentials).await;
        assert_eq!(login.status, StatusCode::OK, "{:?}", login.body);
        login.body
    }

    fn identity_of(tokens: &Value, email: &str) -> Identity {
        Identity {
            email: email.to_owned(),
            user_id: tokens["account"]["id"].as_str().unwrap().to_owned(),
            access_token: tokens["access_token"].as_str().unwrap().to_owned(),
            refresh_token: tokens["refresh_token"].as_str().unwrap().to_owned(),
            tenant_id: tokens["account"]["tenant_id"].as_str().map(str::to_owned),
        }
    }

    /// The accounts the helpers made, to adopt in an app restarted on the same data.
    pub fn identities(&self) -> Identities {
        Identities(self.identities.lock().clone())
    }

    pub fn adopt(&self, identities: Identities) {
        self.identities.lock().extend(identities.0);
    }

    /// The buyer account named `name` (made on first use).
    pub async fn buyer(&self, name: &str) -> Identity {
        let key = (Kind::Buyer, name.to_owned());
        if let Some(found) = self.identities.lock().get(&key) {
            return found.clone();
        }
        let email = email_for(name);
        let tokens = self.sign_up(&email).await;
        let identity = Self::identity_of(&tokens, &email);
        self.identities
            .lock()
            .entry(key)
            .or_insert(identity)
            .clone()
    }

    /// The seller admin of the store named `name` (account and store made on first use).
    pub async fn seller(&self, name: &str) -> Identity {
        let key = (Kind::Seller, name.to_owned());
        if let Some(found) = self.identities.lock().get(&key) {
            return found.clone();
        }
        let email = email_for(name);
        let tokens = self.sign_up(&email).await;
        let token = tokens["access_token"].as_str().unwrap().to_owned();
        let onboarded = self
            .post_json(
                "/v1/tenants",
                Some(&token),
                json!({"name": format!("Store {name}")}),
            )
            .await;
        assert_eq!(
            onboarded.status,
            StatusCode::CREATED,
            "{:?}",
            onboarded.body
        );
        let identity = Self::identity_of(&onboarded.body["tokens"], &email);
        assert!(identity.tenant_id.is_some());
        self.identities
            .lock()
            .entry(key)
            .or_insert(identity)
            .clone()
    }

    /// Creates a product for the store named `tenant` with the given SKU codes; returns its body.
    pub async fn create_product(&self, tenant: &str, skus: &[&str]) -> Value {
        let seller = self.seller(tenant).await;
        let skus: Vec<Value> = skus
            .iter()
            .map(|s| json!({"sku": s, "price": {"amount": 1999, "currency": "USD"}}))
            .collect();
        let response = send(
            self.client
                .post(self.url("/v1/products"))
                .insert_header(bearer(&seller.access_token)),
            Some(json!({"title": "Drop tee", "category": "apparel", "skus": skus})),
        )
        .await;
        assert_eq!(response.status, StatusCode::CREATED, "{:?}", response.body);
        response.body
    }

    pub async fn set_stock(&self, tenant: &str, sku: &str, warehouses: Value) -> Response {
        let seller = self.seller(tenant).await;
        send(
            self.client
                .put(self.url(&format!("/v1/skus/{sku}/stock")))
                .insert_header(bearer(&seller.access_token)),
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
        let token = self.buyer(buyer).await.access_token;
        let mut request = self
            .client
            .post(self.url(&format!("/v1/skus/{sku}/reservations")))
            .insert_header(bearer(&token));
        if let Some(key) = key {
            request = request.insert_header(("idempotency-key", key));
        }
        send(request, Some(body)).await
    }

    /// `buyer` releases their reservation `id`.
    pub async fn release(&self, buyer: &str, id: &str) -> Response {
        let token = self.buyer(buyer).await.access_token;
        send(
            self.client
                .delete(self.url(&format!("/v1/reservations/{id}")))
                .insert_header(bearer(&token)),
            None,
        )
        .await
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

    /// `POST /v1/reservations/{id}/commit` as the seller `tenant` (a till sale).
    pub async fn commit_as_seller(&self, tenant: &str, id: &str) -> Response {
        let token = self.seller(tenant).await.access_token;
        send(
            self.client
                .post(self.url(&format!("/v1/reservations/{id}/commit")))
                .insert_header(bearer(&token)),
            None,
        )
        .await
    }

    pub async fn reservation(&self, buyer: &str, id: &str) -> Response {
        let token = self.buyer(buyer).await.access_token;
        send(
            self.client
                .get(self.url(&format!("/v1/reservations/{id}")))
                .insert_header(bearer(&token)),
            None,
        )
        .await
    }

    pub async fn stop(self) {
        self.server.stop(true).await;
        self.engine.shutdown().await;
    }
}

/// A resolver the test controls: each name answers what the test set last.
#[derive(Default)]
pub struct TestResolver {
    names: parking_lot::Mutex<HashMap<String, std::net::IpAddr>>,
}

impl TestResolver {
    pub fn set(&self, name: &str, ip: &str) {
        self.names
            .lock()
            .insert(name.to_owned(), ip.parse().expect("an address"));
    }
}

impl flashdrop::events::outbound::HostResolver for TestResolver {
    fn lookup(
        &self,
        host: &str,
        port: u16,
    ) -> std::pin::Pin<
        Box<dyn std::future::Future<Output = std::io::Result<Vec<std::net::SocketAddr>>> + Send>,
    > {
        let found = self.names.lock().get(host).copied();
        Box::pin(async move {
            found
                .map(|ip| vec![std::net::SocketAddr::new(ip, port)])
                .ok_or_else(|| std::io::Error::other("no such name"))
        })
    }
}

/// A buyer's access token minted with the test key (no account: fast enough
/// for hundreds of buyers); `n` picks the account id.
pub fn minted_buyer(engine: &Node, n: u64) -> (String, u128) {
    let keys = flashdrop::auth::TokenKeys::new(
        TEST_SECRET.as_bytes(),
        "flashdrop",
        "flashdrop-api",
        3600,
        3600,
    );
    let user = (7u128 << 120) | u128::from(n);
    let (token, _) = keys.issue_access(
        flashdrop::domain::UserId(user),
        flashdrop::domain::identity::Role::Buyer,
        None,
        user,
        engine.clock().now_ms(),
    );
    (token, user)
}
