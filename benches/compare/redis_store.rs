//! The Redis baseline: stock as a hash per SKU, decremented by one Lua script
//! per reservation (EVALSHA, loaded once), with the reservation record, its
//! expiry index and the idempotency key written by the same script. Every key
//! of a SKU carries its hash tag, so the design would run on a cluster.
//! Expired holds are given back lazily by the next reservation of their SKU.
//!
//! Also the Redis servers the bench starts for itself (AOF on, `everysec` or
//! `always`) on free ports, stopped when dropped.

use redis::aio::MultiplexedConnection;
use redis::Script;

use super::front::{
    id_sku_hash, new_id, sku_hash, Finished, Hold, ReserveArgs, Reserved, StockRow, StoreResult,
};

/// KEYS: stock hash, idempotency key, expiry index, reservation hash.
/// ARGV: quantity, id, buyer, now_ms, expires_ms, fingerprint, has_key, key_ttl_ms.
/// Answers `C:id:created:expires` (created), `R:...` (replayed), `O` (out of
/// stock), `K` (key reused) or `U` (unknown SKU).
const RESERVE: &str = r#"
local qty = tonumber(ARGV[1])
if ARGV[7] == '1' then
  local prior = redis.call('GET', KEYS[2])
  if prior then
    local fp, rest = string.match(prior, '^([^:]*):(.*)$')
    if fp ~= ARGV[6] then return 'K' end
    return 'R:' .. rest
  end
end
local stock = redis.call('HMGET', KEYS[1], 'available', 'reserved')
if not stock[1] then return 'U' end
local available = tonumber(stock[1])
local now = tonumber(ARGV[4])
if available < qty then
  -- Give back holds that expired, then look again.
  local expired = redis.call('ZRANGEBYSCORE', KEYS[3], '-inf', now, 'LIMIT', 0, 64)
  local prefix = string.sub(KEYS[4], 1, string.len(KEYS[4]) - 32)
  for _, id in ipairs(expired) do
    local r = redis.call('HMGET', prefix .. id, 'quantity', 'state')
    if r[2] == 'held' then
      local q = tonumber(r[1])
      available = available + q
      redis.call('HINCRBY', KEYS[1], 'reserved', -q)
      redis.call('HSET', prefix .. id, 'state', 'expired')
    end
    redis.call('ZREM', KEYS[3], id)
  end
  redis.call('HSET', KEYS[1], 'available', available)
  if available < qty then return 'O' end
end
redis.call('HSET', KEYS[1], 'available', available - qty)
redis.call('HINCRBY', KEYS[1], 'reserved', qty)
redis.call('HSET', KEYS[4], 'buyer', ARGV[3], 'quantity', qty, 'state', 'held',
  'created', ARGV[4], 'expires', ARGV[5])
redis.call('ZADD', KEYS[3], ARGV[5], ARGV[2])
local answer = ARGV[2] .. ':' .. ARGV[4] .. ':' .. ARGV[5]
if ARGV[7] == '1' then
  redis.call('SET', KEYS[2], ARGV[6] .. ':' .. answer, 'PX', ARGV[8])
end
return 'C:' .. answer
"#;

/// KEYS: stock hash, reservation hash, expiry index. ARGV: buyer (empty for
/// a seller, who may finish any hold), id, now_ms, action (`release` or `commit`). Answers `D:created:expires` (done now or
/// before), `N` (not found), `C` (committed), `L` (released), `E` (expired).
const FINISH: &str = r#"
local r = redis.call('HMGET', KEYS[2], 'buyer', 'quantity', 'state', 'created', 'expires')
if not r[1] or (ARGV[1] ~= '' and r[1] ~= ARGV[1]) then return 'N' end
local done = 'D:' .. r[4] .. ':' .. r[5]
local q = tonumber(r[2])
local state = r[3]
if state == 'held' and tonumber(r[5]) < tonumber(ARGV[3]) then
  redis.call('HINCRBY', KEYS[1], 'available', q)
  redis.call('HINCRBY', KEYS[1], 'reserved', -q)
  redis.call('HSET', KEYS[2], 'state', 'expired')
  redis.call('ZREM', KEYS[3], ARGV[2])
  state = 'expired'
end
if ARGV[4] == 'release' then
  if state == 'released' or state == 'expired' then return done end
  if state == 'committed' then return 'C' end
  redis.call('HINCRBY', KEYS[1], 'available', q)
  redis.call('HINCRBY', KEYS[1], 'reserved', -q)
  redis.call('HSET', KEYS[2], 'state', 'released')
  redis.call('ZREM', KEYS[3], ARGV[2])
  return done
end
if state == 'committed' then return done end
if state == 'released' then return 'L' end
if state == 'expired' then return 'E' end
redis.call('HINCRBY', KEYS[1], 'reserved', -q)
redis.call('HINCRBY', KEYS[1], 'sold', q)
redis.call('HSET', KEYS[2], 'state', 'committed')
redis.call('ZREM', KEYS[3], ARGV[2])
return done
"#;

/// How long an idempotency key is honoured (flashdrop's default, 24 h).
const KEY_TTL_MS: u64 = 86_400_000;

pub struct RedisStore {
    connection: MultiplexedConnection,
    reserve: Script,
    finish: Script,
}

fn err(e: redis::RedisError) -> String {
    format!("redis: {e}")
}

fn stock_key(hash: u64) -> String {
    format!("fd:{{{hash:016x}}}:stock")
}

fn expiry_key(hash: u64) -> String {
    format!("fd:{{{hash:016x}}}:expiry")
}

fn hold_key(hash: u64, id: &str) -> String {
    format!("fd:{{{hash:016x}}}:hold:{id}")
}

fn parse_hold(id: &str, rest: &str) -> Option<Hold> {
    let mut parts = rest.split(':');
    Some(Hold {
        id: id.to_owned(),
        created_ms: parts.next()?.parse().ok()?,
        expires_ms: parts.next()?.parse().ok()?,
    })
}

impl RedisStore {
    pub async fn connect(url: &str) -> StoreResult<RedisStore> {
        let client = redis::Client::open(url).map_err(err)?;
        let connection = client
            .get_multiplexed_async_connection()
            .await
            .map_err(err)?;
        Ok(RedisStore {
            connection,
            reserve: Script::new(RESERVE),
            finish: Script::new(FINISH),
        })
    }

    pub async fn reserve(&self, a: ReserveArgs<'_>) -> StoreResult<Reserved> {
        let hash = sku_hash(a.sku);
        let id = new_id(a.sku);
        let (key, fingerprint) = a.key.unwrap_or(("", 0));
        let expires_ms = a.now_ms + a.ttl_ms;
        let answer: String = self
            .reserve
            .key(stock_key(hash))
            .key(format!("fd:{{{hash:016x}}}:key:{}:{key}", a.buyer))
            .key(expiry_key(hash))
            .key(hold_key(hash, &id))
            .arg(a.quantity)
            .arg(&id)
            .arg(a.buyer)
            .arg(a.now_ms)
            .arg(expires_ms)
            .arg(fingerprint)
            .arg(if a.key.is_some() { "1" } else { "0" })
            .arg(KEY_TTL_MS)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(err)?;
        let hold = |rest: &str| {
            let (id, times) = rest.split_once(':').ok_or("bad answer")?;
            parse_hold(id, times).ok_or_else(|| format!("bad answer {answer}"))
        };
        match answer.split_once(':') {
            Some(("C", rest)) => Ok(Reserved::Created(hold(rest)?)),
            Some(("R", rest)) => Ok(Reserved::Replayed(hold(rest)?)),
            _ => match answer.as_str() {
                "O" => Ok(Reserved::OutOfStock),
                "K" => Ok(Reserved::KeyReused),
                "U" => Ok(Reserved::UnknownSku),
                other => Err(format!("unexpected answer {other}")),
            },
        }
    }

    async fn finish(
        &self,
        id: &str,
        buyer: &str,
        now_ms: u64,
        action: &str,
    ) -> StoreResult<Finished> {
        let Some(hash) = id_sku_hash(id) else {
            return Ok(Finished::NotFound);
        };
        let answer: String = self
            .finish
            .key(stock_key(hash))
            .key(hold_key(hash, id))
            .key(expiry_key(hash))
            .arg(buyer)
            .arg(id)
            .arg(now_ms)
            .arg(action)
            .invoke_async(&mut self.connection.clone())
            .await
            .map_err(err)?;
        Ok(match answer.split_once(':') {
            Some(("D", times)) => Finished::Done(parse_hold(id, times).ok_or("bad answer")?),
            _ => match answer.as_str() {
                "N" => Finished::NotFound,
                "C" => Finished::Committed,
                "L" => Finished::Released,
                "E" => Finished::Expired,
                other => return Err(format!("unexpected answer {other}")),
            },
        })
    }

    pub async fn release(&self, id: &str, buyer: &str) -> StoreResult<Finished> {
        // Releasing an expired hold is a no-op either way; `now` only matters to commit.
        self.finish(id, buyer, 0, "release").await
    }

    /// A seller's commit: any buyer's hold.
    pub async fn commit(&self, id: &str, now_ms: u64) -> StoreResult<Finished> {
        self.finish(id, "", now_ms, "commit").await
    }

    pub async fn set_stock(&self, sku: &str, units: i64) -> StoreResult<()> {
        redis::cmd("HSET")
            .arg(stock_key(sku_hash(sku)))
            .arg("available")
            .arg(units)
            .arg("reserved")
            .arg(0)
            .arg("sold")
            .arg(0)
            .query_async::<()>(&mut self.connection.clone())
            .await
            .map_err(err)
    }

    pub async fn stock(&self, sku: &str) -> StoreResult<Option<StockRow>> {
        let values: Vec<Option<i64>> = redis::cmd("HMGET")
            .arg(stock_key(sku_hash(sku)))
            .arg("available")
            .arg("reserved")
            .arg("sold")
            .query_async(&mut self.connection.clone())
            .await
            .map_err(err)?;
        Ok(match values.as_slice() {
            [Some(available), reserved, sold] => Some(StockRow {
                available: *available,
                reserved: reserved.unwrap_or(0),
                sold: sold.unwrap_or(0),
            }),
            _ => None,
        })
    }
}

/// A `redis-server` of the bench's own: AOF on with `appendfsync` as given,
/// no RDB snapshots nor automatic AOF rewrites, data in a temp dir, on a free
/// port; stopped on drop.
pub struct RedisServer {
    child: std::process::Child,
    pub port: u16,
    _dir: tempfile::TempDir,
}

impl RedisServer {
    pub fn start(appendfsync: &str) -> RedisServer {
        let dir = tempfile::tempdir().expect("temp dir");
        let port = super::free_port();
        let mut command = std::process::Command::new("redis-server");
        super::die_with_parent(&mut command);
        let child = command
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "yes"])
            // No AOF rewrite mid-run: its fork would compete for the cores.
            .args(["--auto-aof-rewrite-percentage", "0"])
            .args(["--appendfsync", appendfsync])
            .arg("--dir")
            .arg(dir.path())
            .args(["--daemonize", "no", "--logfile", ""])
            .stdout(std::process::Stdio::null())
            .spawn()
            .expect("redis-server is installed (Redis runs on every machine of this kind)");
        let server = RedisServer {
            child,
            port,
            _dir: dir,
        };
        for _ in 0..200 {
            if let Ok(mut s) = std::net::TcpStream::connect(("127.0.0.1", port)) {
                use std::io::{Read, Write};
                let mut reply = [0u8; 7];
                if s.write_all(b"PING\r\n").is_ok()
                    && s.read_exact(&mut reply).is_ok()
                    && &reply == b"+PONG\r\n"
                {
                    return server;
                }
            }
            std::thread::sleep(std::time::Duration::from_millis(25));
        }
        panic!("redis-server on port {port} did not answer");
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn url(&self) -> String {
        format!("redis://127.0.0.1:{}/", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        // SAFETY: kill(2) on our own child's pid.
        unsafe {
            libc::kill(self.child.id() as i32, libc::SIGTERM);
        }
        let _ = self.child.wait();
    }
}
