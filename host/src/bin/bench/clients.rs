//! The harness's MCP clients (stdio and HTTP) and the servers it starts.

use super::*;

/// An MCP client on a child's stdin/stdout, speaking JSON-RPC lines.
pub(super) struct StdioClient {
    pub(super) child: Child,
    pub(super) stdin: ChildStdin,
    pub(super) lines: Lines<BufReader<ChildStdout>>,
    pub(super) next_id: u64,
}

impl StdioClient {
    pub(super) async fn spawn(program: &Path, args: &[String]) -> Result<StdioClient> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Piped::piped())
            .stdout(Piped::piped())
            .stderr(Piped::null())
            .kill_on_drop(true)
            .spawn()
            .with_context(|| format!("starting {}", program.display()))?;
        let stdin = child.stdin.take().ok_or_else(|| anyhow!("no stdin"))?;
        let stdout = child.stdout.take().ok_or_else(|| anyhow!("no stdout"))?;
        Ok(StdioClient {
            child,
            stdin,
            lines: BufReader::new(stdout).lines(),
            next_id: 0,
        })
    }

    pub(super) async fn initialize(&mut self) -> Result<()> {
        self.request("initialize", initialize_params()).await?;
        self.send(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await
    }

    pub(super) async fn send(&mut self, message: &Value) -> Result<()> {
        let mut line = serde_json::to_vec(message)?;
        line.push(b'\n');
        self.stdin.write_all(&line).await?;
        Ok(())
    }

    pub(super) async fn next(&mut self) -> Result<Value> {
        let line = self
            .lines
            .next_line()
            .await?
            .ok_or_else(|| anyhow!("the server closed stdout"))?;
        Ok(serde_json::from_str(&line)?)
    }

    pub(super) async fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        self.send(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        loop {
            let message = self.next().await?;
            if message.get("id") == Some(&json!(id)) {
                return answer(message);
            }
        }
    }

    /// Writes `content` beside `path` and renames it over, then waits for
    /// the list_changed notification: the time between.
    pub(super) async fn time_change(&mut self, path: &Path, content: &[u8]) -> Result<Duration> {
        let temporary = path.with_extension("partial");
        std::fs::write(&temporary, content)?;
        let started = Instant::now();
        std::fs::rename(&temporary, path)?;
        loop {
            let message = tokio::time::timeout(Duration::from_secs(30), self.next())
                .await
                .map_err(|_| anyhow!("no notification after changing {}", path.display()))??;
            if message["method"] == "notifications/tools/list_changed" {
                return Ok(started.elapsed());
            }
        }
    }
}

/// A client that can make one request at a time.
pub(super) trait Caller {
    async fn request(&mut self, method: &str, params: Value) -> Result<Value>;

    /// How long one call takes.
    async fn time(&mut self, (method, params): &(&str, Value)) -> Result<Duration> {
        let started = Instant::now();
        self.request(method, params.clone()).await?;
        Ok(started.elapsed())
    }
}

/// The latencies of `calls` sequential calls each of the plugin tool and the
/// native tool on `host` and of the bare responder, taken in turn (after a
/// tenth as many unmeasured rounds to warm up): on a shared machine whose
/// speed drifts, all three are measured under the same conditions.
pub(super) async fn in_turn(
    host: &mut impl Caller,
    bare: &mut impl Caller,
    plugin: &(&str, Value),
    native: &(&str, Value),
    calls: usize,
) -> Result<[Vec<Duration>; 3]> {
    let mut samples = [(); 3].map(|()| Vec::with_capacity(calls));
    for round in 0..calls + calls / 10 {
        let taken = [
            host.time(plugin).await?,
            host.time(native).await?,
            bare.time(native).await?,
        ];
        if round >= calls / 10 {
            for (series, sample) in samples.iter_mut().zip(taken) {
                series.push(sample);
            }
        }
    }
    Ok(samples)
}

impl Caller for StdioClient {
    async fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        StdioClient::request(self, method, params).await
    }
}

impl Caller for HttpClient {
    async fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        HttpClient::request(self, method, params).await
    }
}

pub(super) fn initialize_params() -> Value {
    json!({
        "protocolVersion": "2025-11-25",
        "capabilities": {},
        "clientInfo": {"name": "bench", "version": "0"},
    })
}

/// Opens a session from `source` (a loopback address) and leaves it idle;
/// whether the host admitted it.
pub(super) async fn initialize_from(
    addr: std::net::SocketAddr,
    source: std::net::IpAddr,
) -> Result<bool> {
    let socket = tokio::net::TcpSocket::new_v4()?;
    socket.bind((source, 0).into())?;
    let stream = socket.connect(addr).await?;
    let (mut sender, connection) =
        hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
    tokio::spawn(connection);
    let body =
        json!({"jsonrpc": "2.0", "id": 1, "method": "initialize", "params": initialize_params()});
    let request = http::Request::post("/mcp")
        .header("host", addr.to_string())
        .header("content-type", "application/json")
        .header("accept", "application/json, text/event-stream")
        .body(Full::new(Bytes::from(serde_json::to_vec(&body)?)))?;
    let response = sender.send_request(request).await?;
    let admitted = response.status().is_success();
    response.into_body().collect().await?;
    Ok(admitted)
}

pub(super) fn answer(message: Value) -> Result<Value> {
    if let Some(error) = message.get("error") {
        bail!("error answer: {error}");
    }
    if message["result"]["isError"] == json!(true) {
        bail!("tool error: {}", message["result"]);
    }
    Ok(message)
}

/// A server process started with `--http 127.0.0.1:0`.
pub(super) struct HttpServer {
    pub(super) child: Child,
    pub(super) pid: u32,
}

impl HttpServer {
    pub(super) async fn start(host: &Path, serve: &[String]) -> Result<(HttpServer, String)> {
        let mut args = serve.to_vec();
        args.extend([
            "--http".into(),
            "127.0.0.1:0".into(),
            "--log-level".into(),
            "info,rmcp=warn".into(),
        ]);
        Self::spawn(host, &args, "serving MCP over Streamable HTTP at http://").await
    }

    pub(super) async fn start_bare(bench: &Path) -> Result<(HttpServer, String)> {
        let port = std::net::TcpListener::bind("127.0.0.1:0")?
            .local_addr()?
            .port();
        let args = ["--bare-http".to_owned(), format!("127.0.0.1:{port}")];
        Self::spawn(bench, &args, "bare responder at http://").await
    }

    pub(super) async fn spawn(
        program: &Path,
        args: &[String],
        ready: &str,
    ) -> Result<(HttpServer, String)> {
        let mut child = Command::new(program)
            .args(args)
            .stdin(Piped::null())
            .stdout(Piped::null())
            .stderr(Piped::piped())
            .kill_on_drop(true)
            .spawn()?;
        let pid = child.id().ok_or_else(|| anyhow!("no pid"))?;
        let mut lines =
            BufReader::new(child.stderr.take().ok_or_else(|| anyhow!("no stderr"))?).lines();
        let url = loop {
            let line = lines
                .next_line()
                .await?
                .ok_or_else(|| anyhow!("{} exited before serving", program.display()))?;
            if let Some(at) = line.find(ready) {
                break line[at + ready.len() - "http://".len()..].trim().to_owned();
            }
        };
        // Keep draining stderr so the server never blocks on it.
        tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
        Ok((HttpServer { child, pid }, url))
    }

    pub(super) async fn stop(&mut self) {
        let _ = self.child.kill().await;
    }
}

/// An MCP client on one HTTP/1.1 connection, with its own session.
pub(super) struct HttpClient {
    pub(super) sender: SendRequest<Full<Bytes>>,
    pub(super) authority: String,
    pub(super) session: Option<String>,
    pub(super) next_id: u64,
}

impl HttpClient {
    pub(super) async fn connect(url: &str) -> Result<HttpClient> {
        let uri: http::Uri = url.parse()?;
        let authority = uri
            .authority()
            .ok_or_else(|| anyhow!("no authority in {url}"))?
            .to_string();
        let stream = tokio::net::TcpStream::connect(&authority).await?;
        stream.set_nodelay(true)?;
        let (sender, connection) =
            hyper::client::conn::http1::handshake(TokioIo::new(stream)).await?;
        tokio::spawn(connection);
        let mut client = HttpClient {
            sender,
            authority,
            session: None,
            next_id: 0,
        };
        client.request("initialize", initialize_params()).await?;
        client
            .post(&json!({"jsonrpc": "2.0", "method": "notifications/initialized"}))
            .await?;
        Ok(client)
    }

    pub(super) async fn post(&mut self, message: &Value) -> Result<Vec<Value>> {
        let mut request = http::Request::post("/mcp")
            .header("host", &self.authority)
            .header("content-type", "application/json")
            .header("accept", "application/json, text/event-stream");
        if let Some(session) = &self.session {
            request = request.header("mcp-session-id", session);
        }
        let request = request.body(Full::new(Bytes::from(serde_json::to_vec(message)?)))?;
        self.sender.ready().await?;
        let response = self.sender.send_request(request).await?;
        if let Some(session) = response.headers().get("mcp-session-id") {
            self.session = Some(session.to_str()?.to_owned());
        }
        let status = response.status();
        let body = response.into_body().collect().await?.to_bytes();
        if !status.is_success() {
            bail!("HTTP {status}: {}", String::from_utf8_lossy(&body));
        }
        let text = std::str::from_utf8(&body)?;
        if text.trim_start().starts_with('{') {
            return Ok(vec![serde_json::from_str(text)?]);
        }
        Ok(text
            .lines()
            .filter_map(|line| line.strip_prefix("data:"))
            .filter(|data| !data.trim().is_empty())
            .filter_map(|data| serde_json::from_str(data).ok())
            .collect())
    }

    /// Ends the session, as a well-behaved client does when it is done.
    pub(super) async fn close(mut self) -> Result<()> {
        let Some(session) = self.session.take() else {
            return Ok(());
        };
        let request = http::Request::delete("/mcp")
            .header("host", &self.authority)
            .header("mcp-session-id", session)
            .body(Full::new(Bytes::new()))?;
        self.sender.ready().await?;
        let status = self.sender.send_request(request).await?.status();
        if !status.is_success() {
            bail!("HTTP {status} ending a session");
        }
        Ok(())
    }

    pub(super) async fn request(&mut self, method: &str, params: Value) -> Result<Value> {
        self.next_id += 1;
        let id = self.next_id;
        let messages = self
            .post(&json!({"jsonrpc": "2.0", "id": id, "method": method, "params": params}))
            .await?;
        let message = messages
            .into_iter()
            .find(|m| m.get("id") == Some(&json!(id)))
            .ok_or_else(|| anyhow!("no answer to {method}"))?;
        answer(message)
    }
}
