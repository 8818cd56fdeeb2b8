//! The figures, each a method of the harness, in the order BENCHMARKS.md
//! numbers them.

use super::*;

impl Bench {
    /// Figure 1: Per-call latency over stdio and HTTP: plugin tool, native tool and
    /// the bare responder, one client, sequential calls.
    pub(super) async fn latency(&self) -> Result<()> {
        println!("## 1. per-call latency, one client (µs)\n");
        println!("| transport | target | p50 | p99 | p50 vs native | p50 vs bare |");
        println!("| --- | --- | --- | --- | --- | --- |");
        let root = self.root("latency", &[("hello", self.fixture("hello"))], &[])?;
        let cache = self.work.path().join("cache");
        let serve = self.serve_args(&root, &cache);
        let greet = (
            "tools/call",
            json!({"name": "hello__greet", "arguments": {"name": "Ada"}}),
        );
        let noop = ("tools/call", json!({"name": "host__noop", "arguments": {}}));

        let mut host = StdioClient::spawn(&self.host, &serve).await?;
        host.initialize().await?;
        let mut bare = StdioClient::spawn(&self.bench, &["--bare-responder".into()]).await?;
        bare.initialize().await?;
        let [plugin, native, floor] =
            in_turn(&mut host, &mut bare, &greet, &noop, self.calls()).await?;
        report("stdio", &plugin, &native, &floor);

        let (mut server, url) = HttpServer::start(&self.host, &serve).await?;
        let mut host = HttpClient::connect(&url).await?;
        let (mut bare_server, bare_url) = HttpServer::start_bare(&self.bench).await?;
        let mut bare = HttpClient::connect(&bare_url).await?;
        let [plugin, native, floor] =
            in_turn(&mut host, &mut bare, &greet, &noop, self.calls()).await?;
        server.stop().await;
        bare_server.stop().await;
        report("http", &plugin, &native, &floor);
        println!();
        Ok(())
    }

    /// Figure 2: Throughput over HTTP with many clients, each on its own connection
    /// and session.
    pub(super) async fn throughput(&self) -> Result<()> {
        println!(
            "## 2. throughput over HTTP (calls/s; the host's CPU time and context switches per call)\n"
        );
        println!(
            "| clients | plugin tool | native tool | plugin / native | plugin CPU µs | native CPU µs | plugin switches | native switches |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- |");
        let root = self.busy_hello_root("throughput")?;
        let cache = self.work.path().join("cache");
        let (mut server, url) =
            HttpServer::start(&self.host, &self.serve_args(&root, &cache)).await?;
        let seconds = if self.quick { 0.5 } else { 5.0 };
        for &clients in &self.clients {
            let greet = json!({"name": "Ada"});
            let (plugin, plugin_cost) = costed_rate(
                server.pid,
                &url,
                clients as usize,
                "hello__greet",
                greet,
                seconds,
            )
            .await?;
            let (native, native_cost) = costed_rate(
                server.pid,
                &url,
                clients as usize,
                "host__noop",
                json!({}),
                seconds,
            )
            .await?;
            println!(
                "| {clients} | {plugin:.0} | {native:.0} | {:.0} % | {:.0} | {:.0} | {:.2} | {:.2} |",
                plugin / native * 100.0,
                us(plugin_cost.cpu),
                us(native_cost.cpu),
                plugin_cost.switches,
                native_cost.switches,
            );
        }
        server.stop().await;
        println!();
        Ok(())
    }

    /// Figure 3: Start-up to the first tools/list answer listing every plugin, 1 and 20 plugins, with a
    /// cold and a warm compiled-component cache.
    pub(super) async fn startup(&self) -> Result<()> {
        println!("## 3. start-up to the first tools/list answer listing every plugin (ms)\n");
        println!("| plugins | cold cache | warm cache |");
        println!("| --- | --- | --- |");
        for count in [1, 20] {
            let plugins = self.distinct_plugins(count)?;
            let list: Vec<(&str, PathBuf)> = plugins
                .iter()
                .map(|(n, p)| (n.as_str(), p.clone()))
                .collect();
            let root = self.root(&format!("startup-{count}"), &list, &[])?;
            let cache = self.work.path().join(format!("startup-cache-{count}"));
            let cold = self.time_to_list(&root, &cache, count).await?;
            let warm = self.time_to_list(&root, &cache, count).await?;
            println!("| {count} | {:.1} | {:.1} |", ms(cold), ms(warm));
        }
        println!();
        Ok(())
    }

    /// Time from start to the first `tools/list` answer that lists tools
    /// from all `plugins` plugins. Components that take longer to compile
    /// than the host waits at start join later (announced by
    /// `list_changed`), so on a cold start, or a slow machine, the list is
    /// asked for again every 20 ms until they have all joined.
    pub(super) async fn time_to_list(
        &self,
        root: &Path,
        cache: &Path,
        plugins: usize,
    ) -> Result<Duration> {
        let started = Instant::now();
        let mut host = StdioClient::spawn(&self.host, &self.serve_args(root, cache)).await?;
        host.initialize().await?;
        wait_for_plugins(&mut host, plugins).await?;
        Ok(started.elapsed())
    }

    /// `count` copies of the README's hello plugin, each made distinct (a
    /// custom section appended) so that each must be compiled on a cold
    /// start. (Copies of a plugin with resources would collide: only the
    /// first would load.)
    pub(super) fn distinct_plugins(&self, count: usize) -> Result<Vec<(String, PathBuf)>> {
        let original = std::fs::read(self.fixture("hello"))?;
        (0..count)
            .map(|i| {
                let name = format!("plugin-{i:02}");
                let path = self.work.path().join(format!("{name}.wasm"));
                std::fs::write(&path, with_custom_section(&original, &name))?;
                Ok((name, path))
            })
            .collect()
    }

    /// Figure 4: Hot reload: file rename → list_changed at the client.
    pub(super) async fn reload(&self) -> Result<()> {
        println!("## 4. hot reload: rename → notification at the client (ms)\n");
        println!("| change | median | max |");
        println!("| --- | --- | --- |");
        let root = self.root("reload", &[("hello", self.fixture("hello"))], &[])?;
        let cache = self.work.path().join("reload-cache");
        let mut host = StdioClient::spawn(&self.host, &self.serve_args(&root, &cache)).await?;
        host.initialize().await?;
        let rounds = if self.quick { 3 } else { 20 };
        let mut policy = Vec::new();
        let mut component = Vec::new();
        let hello = std::fs::read(self.fixture("hello"))?;
        for round in 0..rounds {
            let text = format!("version = 1\n[limits]\ntimeout_ms = {}\n", 5000 + round);
            policy.push(
                host.time_change(&root.join("policies/hello.toml"), text.as_bytes())
                    .await?,
            );
            let fresh = with_custom_section(&hello, &format!("round-{round}"));
            component.push(
                host.time_change(&root.join("plugins/hello.wasm"), &fresh)
                    .await?,
            );
        }
        for (label, mut times) in [("policy only", policy), ("new component", component)] {
            times.sort();
            println!(
                "| {label} | {:.1} | {:.1} |",
                ms(times[times.len() / 2]),
                ms(times[times.len() - 1])
            );
        }
        println!();
        Ok(())
    }

    /// Figure 5: Resident memory: idle with 20 plugins, and the peak with 64 calls
    /// in flight.
    pub(super) async fn memory(&self) -> Result<()> {
        println!("## 5. resident memory (MB)\n");
        let mut plugins = self.distinct_plugins(19)?;
        plugins.push(("hostile".into(), self.fixture("hostile")));
        let list: Vec<(&str, PathBuf)> = plugins
            .iter()
            .map(|(n, p)| (n.as_str(), p.clone()))
            .collect();
        let policy = "version = 1\n[limits]\ntimeout_ms = 500\nmax_concurrency = 64\n";
        let root = self.root("memory", &list, &[("hostile", policy)])?;
        let cache = self.work.path().join("memory-cache");
        let (mut server, url) =
            HttpServer::start(&self.host, &self.serve_args(&root, &cache)).await?;
        let mut client = HttpClient::connect(&url).await?;
        wait_for_plugins(&mut client, 19 + 1).await?;
        drop(client);
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = rss_mb(server.pid)?;
        let mut calls = tokio::task::JoinSet::new();
        for _ in 0..64 {
            let url = url.clone();
            calls.spawn(async move {
                let mut client = HttpClient::connect(&url).await?;
                // The call ends at its time limit: what matters is that it was in flight.
                let call = json!({"jsonrpc": "2.0", "id": 1, "method": "tools/call",
                    "params": {"name": "hostile__sleep", "arguments": {}}});
                client.post(&call).await
            });
        }
        // VmHWM would include the compiler's peak at start-up: sample the
        // resident size while the calls are in flight instead.
        let mut peak = idle;
        while !calls.is_empty() {
            tokio::select! {
                done = calls.join_next() => { done.expect("calls are not empty")??; }
                () = tokio::time::sleep(Duration::from_millis(20)) => {
                    peak = peak.max(rss_mb(server.pid)?);
                }
            }
        }
        server.stop().await;
        println!("| 20 plugins, idle | peak, 64 calls in flight |");
        println!("| --- | --- |");
        println!("| {idle:.1} | {peak:.1} |\n");
        Ok(())
    }

    /// Figure 8: Instructions per call, counted by callgrind: the figure that
    /// does not drift with the machine. The host runs under valgrind (one
    /// thread at a time, so this counts work, not contention); after
    /// warm-up, its instructions over a fixed number of calls are divided
    /// by the calls. Only config keys every build knows are used, so
    /// `--host` may name an older build.
    pub(super) async fn instructions(&self) -> Result<()> {
        println!("## 8. instructions per call (callgrind)\n");
        println!("| transport | tool | instructions per call |");
        println!("| --- | --- | --- |");
        let root = self.busy_hello_root("instructions")?;
        // One sandbox slot: the pool's address-space reservation must fit
        // valgrind's; 8 clients stay within the default per-user sessions.
        std::fs::write(
            root.join("host-config.toml"),
            "[engine]\nmax_sandboxes = 1\n",
        )?;
        let cache = self.work.path().join("cache");
        let calls = if self.quick { 16 } else { 400 };
        let clients = 8;
        let valgrind = |out: &Path| {
            let mut args = vec![
                "--tool=callgrind".to_owned(),
                "--smc-check=all-non-file".to_owned(),
                "--instr-atstart=no".to_owned(),
                format!("--callgrind-out-file={}", out.display()),
                self.host.display().to_string(),
            ];
            args.extend(self.serve_args(&root, &cache));
            args
        };
        let arguments = json!({"name": "Ada"});
        for tool in ["hello__greet", "host__noop"] {
            let out = self.work.path().join(format!("stdio-{tool}.out"));
            let mut client = StdioClient::spawn(Path::new("valgrind"), &valgrind(&out)).await?;
            client.initialize().await?;
            let call = ("tools/call", json!({"name": tool, "arguments": arguments}));
            for _ in 0..10 {
                client.time(&call).await?;
            }
            let pid = client.child.id().ok_or_else(|| anyhow!("no pid"))?;
            callgrind_control(pid, &["-i", "on"])?;
            for _ in 0..calls {
                client.time(&call).await?;
            }
            callgrind_control(pid, &["-i", "off"])?;
            callgrind_control(pid, &["-d"])?;
            let count = instructions_per_call(&out.with_extension("out.1"), calls)?;
            self.keep_profile(&out.with_extension("out.1"), &format!("stdio-{tool}"))?;
            println!("| stdio | {tool} | {count:.0} |");
        }
        for tool in ["hello__greet", "host__noop"] {
            let out = self.work.path().join(format!("http-{tool}.out"));
            let (mut server, url) =
                HttpServer::start(Path::new("valgrind"), &valgrind(&out)).await?;
            let mut pool = Vec::new();
            for _ in 0..clients {
                pool.push(HttpClient::connect(&url).await?);
            }
            let call = ("tools/call", json!({"name": tool, "arguments": arguments}));
            let in_parallel = |pool: Vec<HttpClient>, count: usize| {
                let call = call.clone();
                async move {
                    let mut tasks = tokio::task::JoinSet::new();
                    for mut client in pool {
                        let call = call.clone();
                        tasks.spawn(async move {
                            for _ in 0..count {
                                client.time(&call).await?;
                            }
                            anyhow::Ok(client)
                        });
                    }
                    let mut pool = Vec::new();
                    while let Some(client) = tasks.join_next().await {
                        pool.push(client??);
                    }
                    anyhow::Ok(pool)
                }
            };
            let pool = in_parallel(pool, 5).await?;
            callgrind_control(server.pid, &["-i", "on"])?;
            in_parallel(pool, calls / clients).await?;
            callgrind_control(server.pid, &["-i", "off"])?;
            callgrind_control(server.pid, &["-d"])?;
            let made = calls / clients * clients;
            let count = instructions_per_call(&out.with_extension("out.1"), made)?;
            self.keep_profile(&out.with_extension("out.1"), &format!("http-{tool}"))?;
            println!("| http ({clients} clients) | {tool} | {count:.0} |");
            server.stop().await;
        }
        println!();
        Ok(())
    }

    /// Copies a callgrind profile to the `--profiles` folder, if one was named.
    fn keep_profile(&self, profile: &Path, name: &str) -> Result<()> {
        if let Some(folder) = &self.profiles {
            std::fs::create_dir_all(folder)?;
            std::fs::copy(profile, folder.join(format!("{name}.callgrind")))
                .with_context(|| format!("keeping {}", profile.display()))?;
        }
        Ok(())
    }

    /// Figure 7: Resident memory with many idle sessions, then many idle
    /// connections on top, as careless or hostile clients leave them. Public
    /// mode, so each client address is a user of its own, with the request
    /// budget lifted; 30 sessions per address, from 127.0.x.y.
    pub(super) async fn idle(&self) -> Result<()> {
        println!("## 7. idle sessions and connections (resident MB)\n");
        let (sessions, connections) = if self.quick {
            (300, 100)
        } else {
            (10_000, 2_000)
        };
        let root = self.root("idle", &[("hello", self.fixture("hello"))], &[])?;
        // Keys every host build knows, so older builds can be measured too.
        std::fs::write(
            root.join("host-config.toml"),
            "[auth]\nmode = \"public\"\n[auth.rate_limit]\nrequests_per_minute = 0\n",
        )?;
        let cache = self.work.path().join("idle-cache");
        let (mut server, url) =
            HttpServer::start(&self.host, &self.serve_args(&root, &cache)).await?;
        let addr: std::net::SocketAddr = url
            .trim_start_matches("http://")
            .trim_end_matches("/mcp")
            .parse()?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let idle = rss_mb(server.pid)?;
        let opened = Arc::new(AtomicU64::new(0));
        let mut openers = tokio::task::JoinSet::new();
        for worker in 0..16 {
            let opened = opened.clone();
            openers.spawn(async move {
                for n in (worker..sessions).step_by(16) {
                    let user = n / 30;
                    let source = std::net::Ipv4Addr::new(
                        127,
                        0,
                        1 + (user / 250) as u8,
                        2 + (user % 250) as u8,
                    );
                    if initialize_from(addr, source.into()).await? {
                        opened.fetch_add(1, Ordering::Relaxed);
                    }
                }
                anyhow::Ok(())
            });
        }
        while let Some(done) = openers.join_next().await {
            done??;
        }
        tokio::time::sleep(Duration::from_millis(300)).await;
        let with_sessions = rss_mb(server.pid)?;
        let mut held = Vec::with_capacity(connections);
        for _ in 0..connections {
            held.push(tokio::net::TcpStream::connect(addr).await?);
        }
        tokio::time::sleep(Duration::from_millis(500)).await;
        let with_connections = rss_mb(server.pid)?;
        drop(held);
        server.stop().await;
        println!(
            "| sessions asked for | opened | idle | with the sessions | and {connections} idle connections |"
        );
        println!("| --- | --- | --- | --- | --- |");
        println!(
            "| {sessions} | {} | {idle:.1} | {with_sessions:.1} | {with_connections:.1} |\n",
            opened.load(Ordering::Relaxed)
        );
        Ok(())
    }
}
