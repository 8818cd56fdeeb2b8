//! Figure 9: the README's hello plugin as each authoring language builds
//! it, side by side: what a language costs the host, not what its guest
//! code does (the tool formats one string).

use super::*;

impl Bench {
    pub(super) async fn languages(&self) -> Result<()> {
        println!("## 9. the README's hello in each authoring language\n");
        println!(
            "| language | component KB | cold compile ms | warm start ms | stdio p50 µs | \
             stdio p99 µs | HTTP p50 µs | HTTP p99 µs | RSS MB |"
        );
        println!("| --- | --- | --- | --- | --- | --- | --- | --- | --- |");
        let greet = (
            "tools/call",
            json!({"name": "hello__greet", "arguments": {"name": "Ada"}}),
        );
        for (language, wasm) in self.hellos() {
            let root = self.root(
                &format!("language-{language}"),
                &[("hello", wasm.clone())],
                &[],
            )?;
            let cache = self.work.path().join(format!("language-cache-{language}"));
            let size = std::fs::metadata(&wasm)?.len() as f64 / 1024.0;
            let cold = self.time_check(&root, &cache).await?;
            let warm = self.time_to_list(&root, &cache, 1).await?;
            let serve = self.serve_args(&root, &cache);

            let mut host = StdioClient::spawn(&self.host, &serve).await?;
            host.initialize().await?;
            let stdio = sequential(&mut host, &greet, self.calls()).await?;
            drop(host);

            let (mut server, url) = HttpServer::start(&self.host, &serve).await?;
            let mut client = HttpClient::connect(&url).await?;
            let http = sequential(&mut client, &greet, self.calls()).await?;
            let rss = rss_mb(server.pid)?;
            server.stop().await;
            println!(
                "| {language} | {size:.0} | {:.0} | {:.1} | {:.0} | {:.0} | {:.0} | {:.0} | {rss:.0} |",
                ms(cold),
                ms(warm),
                us(percentile(&stdio, 50.0)),
                us(percentile(&stdio, 99.0)),
                us(percentile(&http, 50.0)),
                us(percentile(&http, 99.0)),
            );
        }
        println!();
        Ok(())
    }

    /// The hello plugin of each language that is built.
    fn hellos(&self) -> Vec<(&'static str, PathBuf)> {
        let candidates = [
            ("Rust", self.fixture("hello")),
            (
                "Python",
                self.repo.join("tests/fixtures/target/python/hello-py.wasm"),
            ),
            (
                "TypeScript",
                self.repo.join("tests/fixtures/target/js/hello-js.wasm"),
            ),
        ];
        candidates
            .into_iter()
            .filter(|(language, path)| {
                let built = path.exists();
                if !built {
                    println!("({language}: {} is not built; skipped)", path.display());
                }
                built
            })
            .collect()
    }

    /// How long `host check` takes on an empty cache: compiling the
    /// component (and describing it) from scratch.
    async fn time_check(&self, root: &Path, cache: &Path) -> Result<Duration> {
        let _ = std::fs::remove_dir_all(cache);
        let started = Instant::now();
        let status = Command::new(&self.host)
            .arg("check")
            .arg("--plugins")
            .arg(root.join("plugins"))
            .arg("--policies")
            .arg(root.join("policies"))
            .arg("--cache-dir")
            .arg(cache)
            .stdout(Piped::null())
            .stderr(Piped::null())
            .status()
            .await?;
        if !status.success() {
            bail!("host check failed on {}", root.display());
        }
        Ok(started.elapsed())
    }
}

/// The latencies of `calls` sequential calls, after a tenth as many
/// unmeasured ones to warm up.
async fn sequential(
    client: &mut impl Caller,
    call: &(&str, Value),
    calls: usize,
) -> Result<Vec<Duration>> {
    for _ in 0..calls / 10 {
        client.time(call).await?;
    }
    let mut samples = Vec::with_capacity(calls);
    for _ in 0..calls {
        samples.push(client.time(call).await?);
    }
    Ok(samples)
}
