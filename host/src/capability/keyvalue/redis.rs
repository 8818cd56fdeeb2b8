//! The Redis backend, for several hosts sharing state (`[state] backend =
//! "redis"`): `redis://` or `rediss://` (TLS), with the user and password
//! in the URL.
//!
//! Each namespace is three kinds of Redis key: one string per key of the
//! bucket, a sorted set indexing its keys (so they list in order, a page at
//! a time) and a hash of its usage. Every write is one Lua script, which
//! Redis runs whole and alone: the quota is checked and the keys, index
//! and usage change together, or nothing changes. How durable an
//! acknowledged write is, is Redis's persistence setting (`appendfsync`).
//!
//! The connection is made on first use and remade by the connection
//! manager when it drops; while Redis is down, each bucket operation fails
//! at once with a clear error and the host serves everything else.

use super::store::{Change, KeyValueStore, Namespace, Quota, StoreError, Usage};
use async_trait::async_trait;
use redis::aio::{ConnectionManager, ConnectionManagerConfig};
use std::time::{Duration, Instant};
use tokio::sync::Mutex;

/// What every Redis key of the host starts with.
const PREFIX: &[u8] = b"mcp-host:kv:";

/// How long a connection attempt or an answer may take.
const TIMEOUT: Duration = Duration::from_secs(2);

/// How long after a failed connection attempt the next one is made.
const RETRY_AFTER: Duration = Duration::from_millis(500);

/// Applies changes, given as (op, key, value) triples from ARGV[4] on, to
/// the namespace whose value keys start with ARGV[1], index is KEYS[1] and
/// usage KEYS[2], within ARGV[2] keys and ARGV[3] bytes; the same rule as
/// `Usage::after`: growth past a limit is refused, shrinking never.
/// Returns {1} or {0, why}.
const APPLY: &str = r#"
local function apply(first)
  local keys = tonumber(redis.call('HGET', KEYS[2], 'keys') or '0')
  local bytes = tonumber(redis.call('HGET', KEYS[2], 'bytes') or '0')
  local max_keys, max_bytes = tonumber(ARGV[2]), tonumber(ARGV[3])
  local pending = {}
  for i = first, #ARGV, 3 do
    local op, key, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    local old = pending[key]
    if old == nil then
      local full = ARGV[1] .. key
      if redis.call('EXISTS', full) == 1 then old = redis.call('STRLEN', full) else old = false end
    end
    local new = false
    if op == 's' then new = #value end
    local before_keys, before_bytes = keys, bytes
    if old then keys = keys - 1; bytes = bytes - (#key + old) end
    if new then keys = keys + 1; bytes = bytes + (#key + new) end
    if keys > before_keys and keys > max_keys then
      return {0, 'the bucket holds its most keys (max_keys = ' .. ARGV[2] .. ')'}
    end
    if bytes > before_bytes and bytes > max_bytes then
      return {0, 'the bucket would hold ' .. string.format('%d', bytes) .. ' bytes (max_kib = ' ..
        string.format('%d', math.floor(max_bytes / 1024)) .. ')'}
    end
    pending[key] = new
  end
  for i = first, #ARGV, 3 do
    local op, key, value = ARGV[i], ARGV[i + 1], ARGV[i + 2]
    if op == 's' then
      redis.call('SET', ARGV[1] .. key, value)
      redis.call('ZADD', KEYS[1], 0, key)
    else
      redis.call('DEL', ARGV[1] .. key)
      redis.call('ZREM', KEYS[1], key)
    end
  end
  if keys == 0 then
    redis.call('DEL', KEYS[2])
  else
    redis.call('HSET', KEYS[2], 'keys', string.format('%d', keys), 'bytes', string.format('%d', bytes))
  end
  return {1}
end
"#;

/// A write: `APPLY` to every change.
const WRITE: &str = "return apply(4)";

/// An increment of ARGV[4] by ARGV[5]: Redis's INCRBY (exact 64-bit
/// integers in decimal text), undone when the result is over quota.
/// Returns {1, sum as text}, {0, why} or {2} (not an integer).
const INCREMENT: &str = r#"
local full = ARGV[1] .. ARGV[4]
local current = redis.call('GET', full)
local ok = pcall(redis.call, 'INCRBY', full, ARGV[5])
if not ok then return {2} end
local sum = redis.call('GET', full)
if current then redis.call('SET', full, current) else redis.call('DEL', full) end
ARGV[6] = 's'; ARGV[7] = ARGV[4]; ARGV[8] = sum
local applied = apply(6)
if applied[1] == 0 then return applied end
return {1, sum}
"#;

/// A compare-and-swap of ARGV[4]: set to ARGV[7] if it holds ARGV[6]
/// (when ARGV[5] is '1') or nothing (when '0'). Returns {1}, {0, why} or
/// {3, current}.
const SWAP: &str = r#"
local current = redis.call('GET', ARGV[1] .. ARGV[4])
local expected = false
if ARGV[5] == '1' then expected = ARGV[6] end
if current ~= expected then return {3, current} end
ARGV[8] = 's'; ARGV[9] = ARGV[4]; ARGV[10] = ARGV[7]
return apply(8)
"#;

/// Removes a namespace whole: every value key its index names, the index
/// and the usage. Returns how many keys went.
const REMOVE: &str = r#"
local keys = redis.call('ZRANGE', KEYS[1], 0, -1)
for _, key in ipairs(keys) do redis.call('DEL', ARGV[1] .. key) end
redis.call('DEL', KEYS[1], KEYS[2])
return #keys
"#;

fn key_of(kind: &[u8], ns: &Namespace) -> Vec<u8> {
    let mut out = PREFIX.to_vec();
    out.extend(kind);
    out.extend(ns.encode());
    out
}

/// The value keys of `ns` start with this.
fn values(ns: &Namespace) -> Vec<u8> {
    key_of(b"v:", ns)
}

fn index(ns: &Namespace) -> Vec<u8> {
    key_of(b"i:", ns)
}

fn usage(ns: &Namespace) -> Vec<u8> {
    key_of(b"u:", ns)
}

/// What the operator should look at when a connection is refused for a
/// reason of theirs (a password, an authority), not because Redis is down.
fn what_to_check(e: &redis::RedisError) -> &'static str {
    if e.kind() == redis::ErrorKind::AuthenticationFailed {
        return "; check the user and password in [state] url (or in the variable url_env names)";
    }
    if e.to_string().contains("invalid peer certificate") {
        return "; the server's certificate must chain to an authority in [state] ca_file \
                (without ca_file, to a public one)";
    }
    ""
}

fn unavailable(e: impl std::fmt::Display) -> StoreError {
    StoreError::Unavailable(e.to_string())
}

/// A store in Redis.
pub struct RedisStore {
    client: redis::Client,
    /// Where, for people: the URL without its password.
    shown: String,
    connection: Mutex<Connection>,
    scripts: Scripts,
}

#[derive(Default)]
struct Connection {
    manager: Option<ConnectionManager>,
    failed_at: Option<Instant>,
}

struct Scripts {
    write: redis::Script,
    increment: redis::Script,
    swap: redis::Script,
    remove: redis::Script,
}

impl RedisStore {
    /// A store at `url` (connected on first use). Over TLS (`rediss://`)
    /// the server's certificate must chain to `trusted` (PEM certificates)
    /// when given, else to the public web's authorities.
    pub fn new(url: &str, trusted: Option<Vec<u8>>) -> Result<RedisStore, String> {
        let not_a_url = |e: redis::RedisError| {
            format!(
                "[state] url is not a Redis URL (redis://[user:password@]host[:port][/db], or rediss:// for TLS): {e}"
            )
        };
        let info = redis::IntoConnectionInfo::into_connection_info(url).map_err(not_a_url)?;
        let tls = matches!(info.addr(), redis::ConnectionAddr::TcpTls { .. });
        // Where, for people: the scheme and address, never the password.
        let shown = format!(
            "{}{}",
            if tls { "rediss://" } else { "redis://" },
            info.addr()
        );
        let client = match trusted {
            None => redis::Client::open(info).map_err(not_a_url)?,
            Some(_) if !tls => {
                return Err(
                    "[state] ca_file is for a rediss:// (TLS) url; this url is not one".into(),
                );
            }
            Some(pem) => {
                let certificates = redis::TlsCertificates {
                    client_tls: None,
                    root_cert: Some(pem),
                };
                redis::Client::build_with_tls(info, certificates)
                    .map_err(|e| format!("[state] ca_file: {e}"))?
            }
        };
        Ok(RedisStore {
            client,
            shown,
            connection: Mutex::default(),
            scripts: Scripts {
                write: redis::Script::new(&format!("{APPLY}\n{WRITE}")),
                increment: redis::Script::new(&format!("{APPLY}\n{INCREMENT}")),
                swap: redis::Script::new(&format!("{APPLY}\n{SWAP}")),
                remove: redis::Script::new(REMOVE),
            },
        })
    }

    /// A connection: the manager made on first use keeps reconnecting by
    /// itself; until one is made, an attempt at most every [`RETRY_AFTER`].
    async fn connection(&self) -> Result<ConnectionManager, StoreError> {
        let mut held = self.connection.lock().await;
        if let Some(manager) = &held.manager {
            return Ok(manager.clone());
        }
        if held.failed_at.is_some_and(|at| at.elapsed() < RETRY_AFTER) {
            return Err(unavailable(format!(
                "cannot reach Redis at {}; retrying",
                self.shown
            )));
        }
        let config = ConnectionManagerConfig::new()
            .set_connection_timeout(Some(TIMEOUT))
            .set_response_timeout(Some(TIMEOUT))
            .set_number_of_retries(2);
        match ConnectionManager::new_with_config(self.client.clone(), config).await {
            Ok(manager) => {
                held.manager = Some(manager.clone());
                held.failed_at = None;
                Ok(manager)
            }
            Err(e) => {
                held.failed_at = Some(Instant::now());
                Err(unavailable(format!(
                    "cannot reach Redis at {}: {e}{}",
                    self.shown,
                    what_to_check(&e)
                )))
            }
        }
    }

    async fn query<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> Result<T, StoreError> {
        let mut connection = self.connection().await?;
        cmd.query_async(&mut connection)
            .await
            .map_err(|e| unavailable(format!("Redis at {}: {e}", self.shown)))
    }

    /// Runs `script` on the namespace `ns` with `args` after the common
    /// three (value prefix and quota).
    async fn run(
        &self,
        script: &redis::Script,
        ns: &Namespace,
        quota: &Quota,
        args: &[&[u8]],
    ) -> Result<redis::Value, StoreError> {
        let mut connection = self.connection().await?;
        let mut invocation = script.key(index(ns));
        invocation
            .key(usage(ns))
            .arg(values(ns))
            .arg(quota.max_keys.min(1 << 53))
            .arg(quota.max_bytes.min(1 << 53));
        for arg in args {
            invocation.arg(*arg);
        }
        invocation
            .invoke_async(&mut connection)
            .await
            .map_err(|e| unavailable(format!("Redis at {}: {e}", self.shown)))
    }
}

/// The parts of a script's array answer.
fn answer(value: redis::Value) -> Result<(i64, Option<Vec<u8>>), StoreError> {
    let redis::Value::Array(items) = value else {
        return Err(unavailable("an answer that is not an array"));
    };
    let code = match items.first() {
        Some(redis::Value::Int(code)) => *code,
        _ => return Err(unavailable("an answer without its code")),
    };
    let detail = match items.get(1) {
        Some(redis::Value::BulkString(bytes)) => Some(bytes.clone()),
        Some(redis::Value::SimpleString(text)) => Some(text.clone().into_bytes()),
        _ => None,
    };
    Ok((code, detail))
}

fn over_quota(detail: Option<Vec<u8>>) -> StoreError {
    StoreError::OverQuota(String::from_utf8_lossy(&detail.unwrap_or_default()).into_owned())
}

#[async_trait]
impl KeyValueStore for RedisStore {
    async fn get(&self, ns: &Namespace, key: &str) -> Result<Option<Vec<u8>>, StoreError> {
        let mut full = values(ns);
        full.extend(key.as_bytes());
        self.query(redis::cmd("GET").arg(full)).await
    }

    async fn get_many(
        &self,
        ns: &Namespace,
        keys: &[String],
    ) -> Result<Vec<Option<Vec<u8>>>, StoreError> {
        if keys.is_empty() {
            return Ok(Vec::new());
        }
        let prefix = values(ns);
        let mut cmd = redis::cmd("MGET");
        for key in keys {
            let mut full = prefix.clone();
            full.extend(key.as_bytes());
            cmd.arg(full);
        }
        self.query(&cmd).await
    }

    async fn list_keys(
        &self,
        ns: &Namespace,
        after: Option<&str>,
        limit: usize,
    ) -> Result<Vec<String>, StoreError> {
        let start = match after {
            Some(after) => [b"(", after.as_bytes()].concat(),
            None => b"-".to_vec(),
        };
        let keys: Vec<Vec<u8>> = self
            .query(
                redis::cmd("ZRANGEBYLEX")
                    .arg(index(ns))
                    .arg(start)
                    .arg("+")
                    .arg("LIMIT")
                    .arg(0)
                    .arg(limit),
            )
            .await?;
        Ok(keys
            .into_iter()
            .map(|k| String::from_utf8_lossy(&k).into_owned())
            .collect())
    }

    async fn write(
        &self,
        ns: &Namespace,
        changes: Vec<Change>,
        quota: &Quota,
    ) -> Result<(), StoreError> {
        let mut args: Vec<&[u8]> = Vec::with_capacity(changes.len() * 3);
        for (key, value) in &changes {
            match value {
                Some(value) => args.extend([b"s".as_slice(), key.as_bytes(), value]),
                None => args.extend([b"d".as_slice(), key.as_bytes(), b""]),
            }
        }
        match answer(self.run(&self.scripts.write, ns, quota, &args).await?)? {
            (1, _) => Ok(()),
            (_, detail) => Err(over_quota(detail)),
        }
    }

    async fn increment(
        &self,
        ns: &Namespace,
        key: &str,
        delta: i64,
        quota: &Quota,
    ) -> Result<i64, StoreError> {
        let delta = delta.to_string();
        let args = [key.as_bytes(), delta.as_bytes()];
        match answer(self.run(&self.scripts.increment, ns, quota, &args).await?)? {
            (1, Some(sum)) => std::str::from_utf8(&sum)
                .ok()
                .and_then(|s| s.parse().ok())
                .ok_or_else(|| unavailable("an increment that is not an integer")),
            (2, _) => Err(StoreError::NotAnInteger(format!(
                "{key:?} does not hold an integer (increment keeps its value as decimal text), \
                 or the sum would pass a 64-bit integer"
            ))),
            (_, detail) => Err(over_quota(detail)),
        }
    }

    async fn swap(
        &self,
        ns: &Namespace,
        key: &str,
        expected: Option<&[u8]>,
        value: Vec<u8>,
        quota: &Quota,
    ) -> Result<Result<(), Option<Vec<u8>>>, StoreError> {
        let (has, expected) = match expected {
            Some(bytes) => (b"1".as_slice(), bytes),
            None => (b"0".as_slice(), b"".as_slice()),
        };
        let args = [key.as_bytes(), has, expected, &value];
        match answer(self.run(&self.scripts.swap, ns, quota, &args).await?)? {
            (1, _) => Ok(Ok(())),
            (3, current) => Ok(Err(current)),
            (_, detail) => Err(over_quota(detail)),
        }
    }

    async fn namespaces(&self) -> Result<Vec<(Namespace, Usage)>, StoreError> {
        let pattern = [PREFIX, b"u:*"].concat();
        let mut cursor: u64 = 0;
        let mut found = Vec::new();
        loop {
            let (next, keys): (u64, Vec<Vec<u8>>) = self
                .query(
                    redis::cmd("SCAN")
                        .arg(cursor)
                        .arg("MATCH")
                        .arg(&pattern)
                        .arg("COUNT")
                        .arg(1000),
                )
                .await?;
            for key in keys {
                let Some((ns, _)) = Namespace::decode(&key[PREFIX.len() + 2..]) else {
                    continue;
                };
                let (keys, bytes): (Option<u64>, Option<u64>) = self
                    .query(redis::cmd("HMGET").arg(&key).arg("keys").arg("bytes"))
                    .await?;
                found.push((
                    ns,
                    Usage {
                        keys: keys.unwrap_or(0),
                        bytes: bytes.unwrap_or(0),
                    },
                ));
            }
            if next == 0 {
                return Ok(found);
            }
            cursor = next;
        }
    }

    async fn entries(&self, ns: &Namespace) -> Result<Vec<(String, Vec<u8>)>, StoreError> {
        let mut found = Vec::new();
        let mut after: Option<String> = None;
        loop {
            let keys = self.list_keys(ns, after.as_deref(), 500).await?;
            if keys.is_empty() {
                return Ok(found);
            }
            let values = self.get_many(ns, &keys).await?;
            after = keys.last().cloned();
            found.extend(
                keys.into_iter()
                    .zip(values)
                    .filter_map(|(key, value)| Some((key, value?))),
            );
        }
    }

    async fn remove(&self, ns: &Namespace) -> Result<u64, StoreError> {
        let mut connection = self.connection().await?;
        let removed: u64 = self
            .scripts
            .remove
            .key(index(ns))
            .key(usage(ns))
            .arg(values(ns))
            .invoke_async(&mut connection)
            .await
            .map_err(|e| unavailable(format!("Redis at {}: {e}", self.shown)))?;
        Ok(removed)
    }

    fn describe(&self) -> String {
        format!("Redis ({})", self.shown)
    }
}
