//! Figure 10: key-value buckets from inside a call, on the embedded store
//! and on Redis (when `redis-server` is installed): the cost of one get,
//! set and increment, a call doing 10 reads and 1 write against one doing
//! nothing, and the embedded store's size on disk per 100k insights.

use super::*;
use host::capability::keyvalue::embedded::EmbeddedStore;
use host::capability::keyvalue::store::{KeyValueStore, Namespace, Quota};

/// The stateful fixture's policy, with room for the figure's keys.
const POLICY: &str = "version = 1\n[limits]\ntimeout_ms = 60000\ncpu_ms = 60000\n\
    [keyvalue.bench]\naccess = \"read-write\"\nmax_keys = 1000000\nmax_kib = 1048576\n";

impl Bench {
    pub(super) async fn keyvalue(&self) -> Result<()> {
        println!("## 10. key-value buckets from inside a call (stdio)\n");
        println!(
            "| store | get µs/op | set µs/op | increment µs/op | call, no bucket p50 µs | \
             call, 10 reads p50 µs | 10 reads / none | call, 10 reads + 1 write p50 µs |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
        self.keyvalue_row("embedded", None).await?;
        match RedisServer::start().await {
            Some(redis) => self.keyvalue_row("Redis", Some(&redis.url())).await?,
            None => println!("| Redis | (redis-server is not installed) | | | | | | |"),
        }
        println!();
        let (insights, bytes) =
            insights_on_disk(&self.work.path().join("size"), self.quick).await?;
        println!(
            "Embedded store on disk: {:.1} MB for {insights} insights of the journal's shape \
             ({:.0} bytes each, key and value ~{} bytes).\n",
            bytes as f64 / 1e6,
            bytes as f64 / insights as f64,
            insight(0).len() + 17,
        );
        Ok(())
    }

    async fn keyvalue_row(&self, store: &str, redis: Option<&str>) -> Result<()> {
        let root = self.root(
            &format!("keyvalue-{store}"),
            &[("stateful", self.fixture("stateful"))],
            &[("stateful", POLICY)],
        )?;
        if let Some(url) = redis {
            let config = root.join("host-config.toml");
            let mut text = std::fs::read_to_string(&config)?;
            text.push_str(&format!(
                "\n[state]\nbackend = \"redis\"\nurl = \"{url}\"\n"
            ));
            std::fs::write(&config, text)?;
        }
        let cache = self.work.path().join("keyvalue-cache");
        let mut host = StdioClient::spawn(&self.host, &self.serve_args(&root, &cache)).await?;
        host.initialize().await?;
        let call = |op: &str, size: u64| {
            // Increments count in a key of their own.
            let key = if op == "inc_n" { "counter" } else { "k" };
            (
                "tools/call",
                json!({"name": "stateful__write", "arguments":
                    {"op": op, "bucket": "bench", "key": key, "value": "x".repeat(200), "size": size}}),
            )
        };
        // Something to read: k0..k9 and k.
        check(host.request("tools/call", call("set_n", 10).1).await?)?;
        check(host.request("tools/call", call("set", 0).1).await?)?;
        let rounds = if self.quick { 20 } else { 200 };
        let batch = if self.quick { 50 } else { 500 };
        let opened = median(&mut host, &call("open", 0), rounds).await?;
        let per_op = |total: Duration| (us(total) - us(opened)).max(0.0) / batch as f64;
        let gets = median(&mut host, &call("get_n", batch), rounds).await?;
        let sets = median(&mut host, &call("set_n", batch), rounds / 4).await?;
        let increments = median(&mut host, &call("inc_n", batch), rounds / 4).await?;
        let calls = self.calls();
        let none = median(&mut host, &call("none", 0), calls).await?;
        let reads = median(&mut host, &call("get_n", 10), calls).await?;
        let mixed = median(&mut host, &call("mixed", 0), calls / 5).await?;
        println!(
            "| {store} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {:.2}× | {:.0} |",
            per_op(gets),
            per_op(sets),
            per_op(increments),
            us(none),
            us(reads),
            ratio(reads, none),
            us(mixed),
        );
        Ok(())
    }
}

/// Fails unless `answer` is a successful tool result.
fn check(answer: Value) -> Result<Value> {
    if answer["result"]["isError"] != json!(false) {
        bail!("the stateful fixture failed: {answer}");
    }
    Ok(answer)
}

/// The median time of `rounds` calls of `call`, each checked.
async fn median(host: &mut StdioClient, call: &(&str, Value), rounds: usize) -> Result<Duration> {
    let mut samples = Vec::with_capacity(rounds);
    for _ in 0..rounds.max(3) {
        let started = Instant::now();
        check(host.request(call.0, call.1.clone()).await?)?;
        samples.push(started.elapsed());
    }
    Ok(percentile(&samples, 50.0))
}

/// An insight as the journal saves it (its text varies in length).
fn insight(n: usize) -> String {
    let category = ["pattern", "success", "failure", "hypothesis", "technique"][n % 5];
    serde_json::to_string(&json!({
        "id": n,
        "text": format!("RSI(2) below 5 on SPY daily bounced within 3 days in {} of 10 ranging months; \
                         the edge vanished in trending regimes and after 2020 ({n}).", n % 10),
        "category": category,
        "tags": ["rsi", "mean-reversion"],
        "importance": 1 + n % 10,
        "symbol": "SPY",
        "saved_at": 1_796_448_228 + n,
    }))
    .expect("JSON")
}

/// Writes 100k insights (10k in a quick run) into a fresh embedded store,
/// 1,000 a transaction; how many and the file's size.
async fn insights_on_disk(dir: &Path, quick: bool) -> Result<(usize, u64)> {
    let count = if quick { 10_000 } else { 100_000 };
    let store = EmbeddedStore::in_folder(dir);
    let ns = Namespace {
        plugin: "journal".into(),
        bucket: "insights".into(),
        user: Some("alice".into()),
    };
    let room = Quota {
        max_keys: u64::MAX,
        max_bytes: u64::MAX,
    };
    for start in (0..count).step_by(1000) {
        let changes = (start..start + 1000)
            .map(|n| (format!("insight/{n:012}"), Some(insight(n).into_bytes())))
            .collect();
        store.write(&ns, changes, &room).await?;
    }
    drop(store);
    let bytes = std::fs::metadata(dir.join(host::capability::keyvalue::embedded::FILE))?.len();
    Ok((count, bytes))
}

/// A memory-only redis-server on a free loopback port, stopped on drop.
struct RedisServer {
    child: Child,
    port: u16,
}

impl RedisServer {
    async fn start() -> Option<RedisServer> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")
            .ok()?
            .local_addr()
            .ok()?
            .port();
        let child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no"])
            .stdout(Piped::null())
            .kill_on_drop(true)
            .spawn()
            .ok()?;
        for _ in 0..200 {
            if tokio::net::TcpStream::connect(("127.0.0.1", port))
                .await
                .is_ok()
            {
                return Some(RedisServer { child, port });
            }
            tokio::time::sleep(Duration::from_millis(25)).await;
        }
        None
    }

    fn url(&self) -> String {
        format!("redis://127.0.0.1:{}", self.port)
    }
}

impl Drop for RedisServer {
    fn drop(&mut self) {
        let _ = self.child.start_kill();
    }
}
