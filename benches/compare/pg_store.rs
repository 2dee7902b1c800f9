//! The PostgreSQL baseline: a stock row per SKU and a reservation row per
//! hold, in a schema of the run's own in database `test`. One transaction per
//! reservation: the reservation insert (its unique `(sku, buyer, idem_key)` is
//! the idempotency check, keys being per SKU as in flashdrop), then `UPDATE stock ... WHERE available >= $n RETURNING`;
//! no row means out of stock and the transaction rolls back. Commits are
//! durable (`synchronous_commit = on`). Expired holds go back to stock from a
//! sweeper once a second.

use deadpool_postgres::{Manager, ManagerConfig, Pool, RecyclingMethod};
use tokio_postgres::NoTls;

use super::front::{new_id, Finished, Hold, ReserveArgs, Reserved, StockRow, StoreResult};

pub struct PgStore {
    pool: Pool,
}

fn err(e: impl std::fmt::Display) -> String {
    format!("postgres: {e}")
}

const SCHEMA: &str = "
CREATE TABLE stock (
    sku text PRIMARY KEY,
    available bigint NOT NULL CHECK (available >= 0),
    reserved bigint NOT NULL,
    sold bigint NOT NULL
);
CREATE TABLE reservations (
    id text PRIMARY KEY,
    sku text NOT NULL,
    buyer text NOT NULL,
    quantity integer NOT NULL,
    state text NOT NULL,
    created_ms bigint NOT NULL,
    expires_ms bigint NOT NULL,
    idem_key text,
    fingerprint bigint,
    UNIQUE (sku, buyer, idem_key)
);
CREATE INDEX reservations_held_expiry ON reservations (expires_ms) WHERE state = 'held';
";

/// Connection settings for the run's schema, commits durable.
fn config(conninfo: &str, schema: &str) -> StoreResult<tokio_postgres::Config> {
    let mut config: tokio_postgres::Config = conninfo.parse().map_err(err)?;
    config.options(format!("-c search_path={schema} -c synchronous_commit=on"));
    Ok(config)
}

/// One connection for setup and reports, driven on the current runtime.
async fn admin_client(conninfo: &str) -> StoreResult<tokio_postgres::Client> {
    let (client, connection) = conninfo
        .parse::<tokio_postgres::Config>()
        .map_err(err)?
        .connect(NoTls)
        .await
        .map_err(err)?;
    actix_rt::spawn(connection);
    Ok(client)
}

/// Creates the run's schema (dropping a leftover of the same name).
pub async fn create_schema(conninfo: &str, schema: &str) -> StoreResult<()> {
    drop_stale_schemas(conninfo).await?;
    let client = admin_client(conninfo).await?;
    client
        .batch_execute(&format!(
            "DROP SCHEMA IF EXISTS {schema} CASCADE; CREATE SCHEMA {schema}; SET search_path = {schema}; {SCHEMA}"
        ))
        .await
        .map_err(err)
}

/// Drops the schemas of earlier runs whose process is gone (a run killed
/// before it could drop its own).
async fn drop_stale_schemas(conninfo: &str) -> StoreResult<()> {
    let client = admin_client(conninfo).await?;
    let rows = client
        .query(
            "SELECT nspname FROM pg_namespace WHERE nspname LIKE 'flashdrop_compare_%'",
            &[],
        )
        .await
        .map_err(err)?;
    for row in rows {
        let name: String = row.get(0);
        let pid = name.trim_start_matches("flashdrop_compare_");
        if !std::path::Path::new(&format!("/proc/{pid}")).exists() {
            client
                .batch_execute(&format!("DROP SCHEMA IF EXISTS {name} CASCADE"))
                .await
                .map_err(err)?;
        }
    }
    Ok(())
}

pub async fn drop_schema(conninfo: &str, schema: &str) -> StoreResult<()> {
    let client = admin_client(conninfo).await?;
    client
        .batch_execute(&format!("DROP SCHEMA IF EXISTS {schema} CASCADE"))
        .await
        .map_err(err)
}

/// The server's durability settings, for the report.
pub async fn settings(conninfo: &str) -> StoreResult<String> {
    let client = admin_client(conninfo).await?;
    let mut out = Vec::new();
    for name in [
        "server_version",
        "fsync",
        "synchronous_commit",
        "wal_sync_method",
        "commit_delay",
        "shared_buffers",
    ] {
        let row = client
            .query_one(&format!("SHOW {name}"), &[])
            .await
            .map_err(err)?;
        out.push(format!("{name}={}", row.get::<_, String>(0)));
    }
    Ok(out.join(", "))
}

fn hold(id: String, created: i64, expires: i64) -> Hold {
    Hold {
        id,
        created_ms: created as u64,
        expires_ms: expires as u64,
    }
}

impl PgStore {
    /// A pool of at most `connections`, opened on first use.
    pub fn connect(conninfo: &str, schema: &str, connections: usize) -> StoreResult<PgStore> {
        let manager = Manager::from_config(
            config(conninfo, schema)?,
            NoTls,
            ManagerConfig {
                recycling_method: RecyclingMethod::Fast,
            },
        );
        let pool = Pool::builder(manager)
            .max_size(connections)
            .build()
            .map_err(err)?;
        Ok(PgStore { pool })
    }

    pub async fn reserve(&self, a: ReserveArgs<'_>) -> StoreResult<Reserved> {
        let mut client = self.pool.get().await.map_err(err)?;
        let tx = client.transaction().await.map_err(err)?;
        let id = new_id(a.sku);
        let (key, fingerprint) = match a.key {
            Some((k, f)) => (Some(k), Some(f as i64)),
            None => (None, None),
        };
        let expires = (a.now_ms + a.ttl_ms) as i64;
        let insert = tx
            .prepare_cached(
                "INSERT INTO reservations (id, sku, buyer, quantity, state, created_ms, expires_ms, idem_key, fingerprint) \
                 SELECT $1, $2, $3, $4, 'held', $5, $6, $7, $8 WHERE EXISTS (SELECT 1 FROM stock WHERE sku = $2) \
                 ON CONFLICT (sku, buyer, idem_key) DO NOTHING RETURNING id",
            )
            .await
            .map_err(err)?;
        let inserted = tx
            .query_opt(
                &insert,
                &[
                    &id,
                    &a.sku,
                    &a.buyer,
                    &(a.quantity as i32),
                    &(a.now_ms as i64),
                    &expires,
                    &key,
                    &fingerprint,
                ],
            )
            .await
            .map_err(err)?;
        if inserted.is_none() {
            let prior = tx
                .prepare_cached(
                    "SELECT id, fingerprint, created_ms, expires_ms FROM reservations WHERE sku = $1 AND buyer = $2 AND idem_key = $3",
                )
                .await
                .map_err(err)?;
            let row = tx
                .query_opt(&prior, &[&a.sku, &a.buyer, &key])
                .await
                .map_err(err)?;
            tx.rollback().await.map_err(err)?;
            return Ok(match row {
                None => Reserved::UnknownSku,
                Some(row) if row.get::<_, Option<i64>>(1) != fingerprint => Reserved::KeyReused,
                Some(row) => Reserved::Replayed(hold(row.get(0), row.get(2), row.get(3))),
            });
        }
        let update = tx
            .prepare_cached(
                "UPDATE stock SET available = available - $2, reserved = reserved + $2 \
                 WHERE sku = $1 AND available >= $2 RETURNING available",
            )
            .await
            .map_err(err)?;
        let updated = tx
            .query_opt(&update, &[&a.sku, &(a.quantity as i64)])
            .await
            .map_err(err)?;
        if updated.is_none() {
            tx.rollback().await.map_err(err)?;
            return Ok(Reserved::OutOfStock);
        }
        tx.commit().await.map_err(err)?;
        Ok(Reserved::Created(hold(id, a.now_ms as i64, expires)))
    }

    async fn finish(
        &self,
        id: &str,
        buyer: &str,
        now_ms: u64,
        commit: bool,
    ) -> StoreResult<Finished> {
        let mut client = self.pool.get().await.map_err(err)?;
        let tx = client.transaction().await.map_err(err)?;
        // Only a live hold moves; a commit also needs it unexpired.
        let take = tx
            .prepare_cached(
                "UPDATE reservations SET state = $3 WHERE id = $1 AND ($2 = '' OR buyer = $2) AND state = 'held' \
                 AND ($3 = 'released' OR expires_ms >= $4) RETURNING sku, quantity, created_ms, expires_ms",
            )
            .await
            .map_err(err)?;
        let state = if commit { "committed" } else { "released" };
        let taken = tx
            .query_opt(&take, &[&id, &buyer, &state, &(now_ms as i64)])
            .await
            .map_err(err)?;
        if let Some(row) = taken {
            let sku: String = row.get(0);
            let quantity = i64::from(row.get::<_, i32>(1));
            let sql = if commit {
                "UPDATE stock SET reserved = reserved - $2, sold = sold + $2 WHERE sku = $1"
            } else {
                "UPDATE stock SET available = available + $2, reserved = reserved - $2 WHERE sku = $1"
            };
            let give = tx.prepare_cached(sql).await.map_err(err)?;
            tx.execute(&give, &[&sku, &quantity]).await.map_err(err)?;
            tx.commit().await.map_err(err)?;
            return Ok(Finished::Done(hold(id.to_owned(), row.get(2), row.get(3))));
        }
        let look = tx
            .prepare_cached(
                "SELECT state, created_ms, expires_ms FROM reservations WHERE id = $1 AND ($2 = '' OR buyer = $2)",
            )
            .await
            .map_err(err)?;
        let row = tx.query_opt(&look, &[&id, &buyer]).await.map_err(err)?;
        tx.rollback().await.map_err(err)?;
        let Some(row) = row else {
            return Ok(Finished::NotFound);
        };
        let done = || Finished::Done(hold(id.to_owned(), row.get(1), row.get(2)));
        let state: String = row.get(0);
        Ok(match (state.as_str(), commit) {
            ("committed", true) | ("released" | "expired", false) => done(),
            // A held one past its expiry: the sweeper gives it back shortly.
            ("held", false) => done(),
            ("committed", false) => Finished::Committed,
            ("released", true) => Finished::Released,
            _ => Finished::Expired,
        })
    }

    pub async fn release(&self, id: &str, buyer: &str) -> StoreResult<Finished> {
        self.finish(id, buyer, 0, false).await
    }

    /// A seller's commit: any buyer's hold (an empty `buyer` matches all).
    pub async fn commit(&self, id: &str, now_ms: u64) -> StoreResult<Finished> {
        self.finish(id, "", now_ms, true).await
    }

    pub async fn set_stock(&self, sku: &str, units: i64) -> StoreResult<()> {
        let client = self.pool.get().await.map_err(err)?;
        client
            .execute(
                "INSERT INTO stock (sku, available, reserved, sold) VALUES ($1, $2, 0, 0) \
                 ON CONFLICT (sku) DO UPDATE SET available = $2 - stock.reserved - stock.sold",
                &[&sku, &units],
            )
            .await
            .map_err(err)?;
        Ok(())
    }

    pub async fn stock(&self, sku: &str) -> StoreResult<Option<StockRow>> {
        let client = self.pool.get().await.map_err(err)?;
        let row = client
            .query_opt(
                "SELECT available, reserved, sold FROM stock WHERE sku = $1",
                &[&sku],
            )
            .await
            .map_err(err)?;
        Ok(row.map(|r| StockRow {
            available: r.get(0),
            reserved: r.get(1),
            sold: r.get(2),
        }))
    }

    /// Gives expired holds back to their SKUs in one statement.
    pub async fn sweep_expired(&self, now_ms: u64) -> StoreResult<u64> {
        let client = self.pool.get().await.map_err(err)?;
        client
            .execute(
                "WITH expired AS (UPDATE reservations SET state = 'expired' \
                   WHERE state = 'held' AND expires_ms < $1 RETURNING sku, quantity), \
                 sums AS (SELECT sku, sum(quantity)::bigint AS q FROM expired GROUP BY sku) \
                 UPDATE stock SET available = stock.available + sums.q, reserved = stock.reserved - sums.q \
                 FROM sums WHERE stock.sku = sums.sku",
                &[&(now_ms as i64)],
            )
            .await
            .map_err(err)
    }
}
