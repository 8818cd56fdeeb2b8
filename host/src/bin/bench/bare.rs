//! The floors: bare JSON-RPC responders on stdio and HTTP, doing nothing
//! but answer.

use super::*;

/// The floor on stdio: read a line, answer it, nothing else — a plain
/// blocking loop, no async runtime in the way.
pub(super) fn bare_stdio() -> Result<()> {
    use std::io::{BufRead, Write};
    let mut stdout = std::io::stdout().lock();
    for line in std::io::stdin().lock().lines() {
        let message: Value = serde_json::from_str(&line?)?;
        if let Some(id) = message.get("id") {
            serde_json::to_writer(&mut stdout, &bare_answer(id))?;
            stdout.write_all(b"\n")?;
            stdout.flush()?;
        }
    }
    Ok(())
}

pub(super) fn bare_answer(id: &Value) -> Value {
    json!({"jsonrpc": "2.0", "id": id, "result": {"content": [{"type": "text", "text": "ok"}], "isError": false}})
}

/// The floor over HTTP: answer every POST with JSON, nothing else.
pub(super) async fn bare_http(addr: std::net::SocketAddr) -> Result<()> {
    async fn answer(body: Bytes) -> axum::response::Response {
        use axum::response::IntoResponse;
        let message: Value = serde_json::from_slice(&body).unwrap_or(Value::Null);
        match message.get("id") {
            Some(id) => axum::Json(bare_answer(id)).into_response(),
            None => http::StatusCode::ACCEPTED.into_response(),
        }
    }
    let listener = tokio::net::TcpListener::bind(addr).await?;
    eprintln!("bare responder at http://{addr}/mcp");
    let router = axum::Router::new().route("/mcp", axum::routing::post(answer));
    axum::serve(listener, router).await?;
    Ok(())
}
