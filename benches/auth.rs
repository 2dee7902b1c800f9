//! What identity costs per request, in process: reading a buyer id from a
//! header (the engine core's, before tokens) against verifying a bearer token
//! as the `Shopper` extractor does, with the verified-token cache hit and with
//! every token verified from scratch. The HTTP figure (throughput with tokens
//! against header identity, same run) is in `benches/flash_sale.rs`.
//!
//! Run: `cargo bench --bench auth`

use criterion::{criterion_group, criterion_main, Criterion};

use flashdrop::auth::TokenKeys;
use flashdrop::config::AuthConfig;
use flashdrop::domain::identity::{id_text, Role};
use flashdrop::domain::{BuyerId, UserId};

const SECRET: &[u8] = b"flashdrop-bench-secret-0123456789abcdef";

fn keys(cache: usize) -> TokenKeys {
    let a = AuthConfig::default();
    TokenKeys::new(SECRET, &a.issuer, &a.audience, 900, 3600).with_cache(cache)
}

fn identity(c: &mut Criterion) {
    let mut group = c.benchmark_group("identity");
    let now_ms = 1_795_000_000_000;
    let user = UserId(0x0193_6b2e_7d2f_7000_8000_0000_0000_0001);
    let header = id_text(user);
    group.bench_function("header buyer id (pre-auth)", |b| {
        b.iter(|| BuyerId::parse(std::hint::black_box(&header)).unwrap())
    });
    let cached = keys(65_536);
    let (token, _) = cached.issue_access(user, Role::Buyer, None, 7, now_ms);
    group.bench_function("bearer token, cache hit", |b| {
        b.iter(|| {
            let caller = cached
                .verify_access(std::hint::black_box(&token), now_ms)
                .unwrap();
            BuyerId::of_account(caller.user)
        })
    });
    let uncached = keys(0);
    group.bench_function("bearer token, verified from scratch", |b| {
        b.iter(|| {
            let caller = uncached
                .verify_access(std::hint::black_box(&token), now_ms)
                .unwrap();
            BuyerId::of_account(caller.user)
        })
    });
    group.finish();
}

criterion_group!(benches, identity);
criterion_main!(benches);
