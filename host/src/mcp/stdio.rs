//! Serving MCP over stdio: one JSON-RPC message per line.
//!
//! rmcp's line transport drops lines that are not JSON without a word (to
//! match other SDKs), omits `"id"` from errors it cannot attribute, and
//! buffers lines of up to 16 MiB before parsing. [`LineTransport`] keeps
//! its framing but answers as JSON-RPC 2.0 says: -32700 (`"id": null`) for
//! a line that is not JSON, -32600 for JSON that is not a message, -32602
//! for a served method whose params do not fit, and -32600 for a request
//! reusing the id of one still in flight (each request gets exactly one
//! answer). Lines longer than [`MAX_BODY`] are discarded as they stream in,
//! so they never occupy more than that.

use super::drain::InFlight;
use super::protocol::{INVALID_PARAMS, INVALID_REQUEST, MAX_BODY, PARSE_ERROR, SERVED_METHODS};
use super::{McpServer, Shared};
use bytes::{Buf, BytesMut};
use rmcp::ServiceExt;
use rmcp::model::{ClientJsonRpcMessage, ClientNotification, RequestId, ServerJsonRpcMessage};
use rmcp::service::RoleServer;
use serde_json::Value;
use std::collections::HashSet;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use std::time::Duration;
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt, ReadBuf};
use tokio::task::JoinSet;
use tokio_util::codec::{AnyDelimiterCodec, AnyDelimiterCodecError, Decoder};
use tokio_util::sync::CancellationToken;

/// Serves one client on stdin/stdout until it disconnects or `shutdown`
/// is cancelled. Nothing but JSON-RPC is written to stdout: plugins'
/// output is captured, and the host's own log goes to stderr.
///
/// On shutdown no further request is read; calls in flight finish (up to
/// `deadline`) and their answers are written before the host exits.
///
/// The client is served on a thread of its own, by a single-threaded
/// runtime: a request is read, called and answered there without waking
/// another core (with `Placement::thread_first`, calls that overlap the one
/// running there go back to the caller's runtime).
pub async fn serve_stdio(
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    deadline: Duration,
) -> anyhow::Result<()> {
    let (done, outcome) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name("stdio".into())
        .spawn(move || {
            let served = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .build()
                .map_err(|e| anyhow::anyhow!("cannot start the stdio runtime: {e}"))
                .and_then(|runtime| runtime.block_on(serve_here(shared, shutdown, deadline)));
            let _ = done.send(served);
        })
        .map_err(|e| anyhow::anyhow!("cannot start the stdio thread: {e}"))?;
    outcome
        .await
        .unwrap_or_else(|_| Err(anyhow::anyhow!("the stdio thread ended without an answer")))
}

/// Serves the stdio client on the current runtime.
async fn serve_here(
    shared: Arc<Shared>,
    shutdown: CancellationToken,
    deadline: Duration,
) -> anyhow::Result<()> {
    // Pipes (as desktop clients give) are read and written without a
    // blocking thread per read; anything else falls back to tokio's stdio.
    let (stdin, stdout) = rmcp::transport::io::stdio_pipes();
    let stdin = UntilStopped::new(stdin, shutdown, shared.in_flight.clone(), deadline);
    let transport = LineTransport::new(stdin, stdout);
    let running = McpServer::new(shared)
        .serve(transport)
        .await
        .map_err(|e| anyhow::anyhow!("the stdio client did not initialise: {e}"))?;
    running.waiting().await?;
    Ok(())
}

/// Standard input that stops delivering requests once shutdown starts,
/// and ends (as if the client had closed it) once the calls in flight are
/// done: rmcp then writes their answers and stops.
struct UntilStopped<R> {
    inner: R,
    stopping: CancellationToken,
    stopped: Pin<Box<dyn Future<Output = ()> + Send>>,
}

impl<R> UntilStopped<R> {
    fn new(inner: R, stopping: CancellationToken, in_flight: InFlight, deadline: Duration) -> Self {
        let stopped = {
            let stopping = stopping.clone();
            Box::pin(async move {
                stopping.cancelled().await;
                in_flight.drain_at_shutdown(deadline).await;
            })
        };
        UntilStopped {
            inner,
            stopping,
            stopped,
        }
    }
}

impl<R: AsyncRead + Unpin> AsyncRead for UntilStopped<R> {
    fn poll_read(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<std::io::Result<()>> {
        if self.stopped.as_mut().poll(cx).is_ready() {
            return Poll::Ready(Ok(()));
        }
        if self.stopping.is_cancelled() {
            return Poll::Pending;
        }
        Pin::new(&mut self.inner).poll_read(cx, buf)
    }
}

/// One line of input, or the news that a line was too long.
enum Line {
    Text(BytesMut),
    Oversized,
}

/// Newline-delimited lines of at most [`MAX_BODY`] bytes; a longer line
/// is reported once and its bytes discarded as they arrive.
struct Lines(AnyDelimiterCodec);

impl Lines {
    fn new() -> Self {
        Lines(AnyDelimiterCodec::new_with_max_length(
            b"\n".to_vec(),
            Vec::new(),
            MAX_BODY,
        ))
    }
}

impl Decoder for Lines {
    type Item = Line;
    type Error = std::io::Error;

    fn decode(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<Line>> {
        match self.0.decode(buf) {
            Ok(line) => Ok(line.map(|line| Line::Text(line.into()))),
            Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => Ok(Some(Line::Oversized)),
            Err(AnyDelimiterCodecError::Io(e)) => Err(e),
        }
    }

    fn decode_eof(&mut self, buf: &mut BytesMut) -> std::io::Result<Option<Line>> {
        match self.0.decode_eof(buf) {
            Ok(line) => Ok(line.map(|line| Line::Text(line.into()))),
            Err(AnyDelimiterCodecError::MaxChunkLengthExceeded) => Ok(Some(Line::Oversized)),
            Err(AnyDelimiterCodecError::Io(e)) => Err(e),
        }
    }
}

/// The stdio transport: see the module's documentation.
pub struct LineTransport<R, W> {
    input: R,
    buffer: BytesMut,
    lines: Lines,
    output: Arc<tokio::sync::Mutex<W>>,
    /// Ids of the client's requests not yet answered.
    in_flight: Arc<Mutex<HashSet<RequestId>>>,
    /// Answers the transport itself gives, written beside rmcp's.
    answers: JoinSet<()>,
}

impl<R, W> LineTransport<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    pub fn new(input: R, output: W) -> Self {
        LineTransport {
            input,
            buffer: BytesMut::new(),
            lines: Lines::new(),
            output: Arc::new(tokio::sync::Mutex::new(output)),
            in_flight: Arc::default(),
            answers: JoinSet::new(),
        }
    }

    /// The next line, or `None` at the end of input. Cancel-safe: a line
    /// read in part stays in the buffer.
    async fn next_line(&mut self) -> std::io::Result<Option<Line>> {
        loop {
            if let Some(line) = self.lines.decode(&mut self.buffer)? {
                return Ok(Some(line));
            }
            self.buffer.reserve(64 * 1024);
            if self.input.read_buf(&mut self.buffer).await? == 0 {
                return self.lines.decode_eof(&mut self.buffer);
            }
        }
    }

    /// Writes one of the transport's own answers. It is written from a
    /// task of its own so that a cancelled `receive` cannot cut a line
    /// short.
    fn answer(&mut self, answer: Value) {
        while self.answers.try_join_next().is_some() {}
        let output = self.output.clone();
        self.answers.spawn(async move {
            let line = serde_json::to_vec(&answer).expect("a JSON value serialises");
            if let Err(e) = write_line(&output, line).await {
                tracing::debug!("cannot write to stdout: {e}");
            }
        });
    }

    /// What to do with one line.
    fn check(&self, line: &[u8]) -> Checked {
        let line = line.strip_prefix(b"\xEF\xBB\xBF").unwrap_or(line);
        let line = line.strip_suffix(b"\r").unwrap_or(line);
        if line.iter().all(u8::is_ascii_whitespace) {
            return Checked::Skip;
        }
        let error = match rmcp::model::client_message_from_slice(line) {
            Ok(message) => return self.admit(message),
            Err(error) => error,
        };
        if !error.is_data() {
            return Checked::Answer(error_answer(
                Value::Null,
                PARSE_ERROR,
                format!("the line is not JSON: {error}"),
            ));
        }
        // JSON, but not a message rmcp takes: answer with its id if it
        // has a usable one. A notification is never answered.
        let Ok(Value::Object(message)) = serde_json::from_slice::<Value>(line) else {
            return Checked::Answer(error_answer(
                Value::Null,
                INVALID_REQUEST,
                "the line is JSON but not a JSON-RPC message (an object with \"jsonrpc\": \"2.0\")"
                    .into(),
            ));
        };
        let method = message.get("method").and_then(Value::as_str);
        let id = match message.get("id") {
            None if method.is_some() => return Checked::Skip,
            Some(id @ (Value::String(_) | Value::Number(_))) => id.clone(),
            _ => Value::Null,
        };
        if let Some((code, why, id)) = super::envelope::envelope_problem(line) {
            return Checked::Answer(error_answer(id, code, why));
        }
        let answer = match method {
            Some(method) if !id.is_null() && SERVED_METHODS.contains(&method) => error_answer(
                id,
                INVALID_PARAMS,
                format!(
                    "invalid params for {}: they do not fit its schema",
                    crate::client_text::shown(method)
                ),
            ),
            _ => error_answer(
                id,
                INVALID_REQUEST,
                format!("not a valid JSON-RPC 2.0 message: {error}"),
            ),
        };
        Checked::Answer(answer)
    }

    /// Lets a message through, unless it is a request whose id is taken.
    fn admit(&self, message: ClientJsonRpcMessage) -> Checked {
        let mut in_flight = self.in_flight.lock().expect("the id set is never poisoned");
        match &message {
            ClientJsonRpcMessage::Request(request) if !in_flight.insert(request.id.clone()) => {
                let id = serde_json::to_value(&request.id).unwrap_or(Value::Null);
                return Checked::Answer(error_answer(
                    id,
                    INVALID_REQUEST,
                    "a request with this id is still in flight; use a new id for each request"
                        .into(),
                ));
            }
            ClientJsonRpcMessage::Notification(notification) => {
                if let ClientNotification::CancelledNotification(cancelled) =
                    &notification.notification
                    && let Some(id) = &cancelled.params.request_id
                {
                    in_flight.remove(id);
                }
            }
            _ => {}
        }
        Checked::Message(Box::new(message))
    }
}

/// The verdict on one line.
enum Checked {
    Message(Box<ClientJsonRpcMessage>),
    Answer(Value),
    Skip,
}

impl<R, W> rmcp::transport::Transport<RoleServer> for LineTransport<R, W>
where
    R: AsyncRead + Unpin + Send,
    W: AsyncWrite + Unpin + Send + 'static,
{
    type Error = std::io::Error;

    fn send(
        &mut self,
        message: ServerJsonRpcMessage,
    ) -> impl Future<Output = std::io::Result<()>> + Send + 'static {
        let answered = match &message {
            ServerJsonRpcMessage::Response(response) => Some(response.id.clone()),
            ServerJsonRpcMessage::Error(error) => error.id.clone(),
            _ => None,
        };
        if let Some(id) = answered {
            self.in_flight
                .lock()
                .expect("the id set is never poisoned")
                .remove(&id);
        }
        let line = match &message {
            // An error about a request whose id could not be read names
            // `"id": null`, as JSON-RPC 2.0 requires; rmcp leaves it out.
            ServerJsonRpcMessage::Error(error) if error.id.is_none() => {
                serde_json::to_value(&message).and_then(|mut line| {
                    if let Value::Object(fields) = &mut line {
                        fields.insert("id".into(), Value::Null);
                    }
                    serde_json::to_vec(&line)
                })
            }
            _ => serde_json::to_vec(&message),
        };
        let output = self.output.clone();
        async move { write_line(&output, line?).await }
    }

    async fn receive(&mut self) -> Option<ClientJsonRpcMessage> {
        loop {
            let line = match self.next_line().await {
                Ok(Some(Line::Text(line))) => line,
                Ok(Some(Line::Oversized)) => {
                    self.answer(error_answer(
                        Value::Null,
                        INVALID_REQUEST,
                        format!("the line is longer than {MAX_BODY} bytes; it was discarded"),
                    ));
                    continue;
                }
                Ok(None) => return None,
                Err(e) => {
                    tracing::error!("cannot read stdin: {e}");
                    return None;
                }
            };
            match self.check(line.chunk()) {
                Checked::Message(message) => return Some(*message),
                Checked::Answer(answer) => self.answer(answer),
                Checked::Skip => {}
            }
        }
    }

    async fn close(&mut self) -> std::io::Result<()> {
        while self.answers.join_next().await.is_some() {}
        self.output.lock().await.flush().await
    }
}

/// A JSON-RPC error response.
fn error_answer(id: Value, code: i64, message: String) -> Value {
    serde_json::json!({
        "jsonrpc": "2.0",
        "id": id,
        "error": { "code": code, "message": message },
    })
}

/// Writes `line` and a newline as one unit, and flushes.
async fn write_line<W: AsyncWrite + Unpin>(
    output: &tokio::sync::Mutex<W>,
    mut line: Vec<u8>,
) -> std::io::Result<()> {
    line.push(b'\n');
    let mut output = output.lock().await;
    output.write_all(&line).await?;
    output.flush().await
}

#[cfg(test)]
mod tests {
    use super::*;
    use proptest::prelude::*;
    use rmcp::transport::Transport;
    use tokio::io::AsyncReadExt;

    /// Everything the transport delivers and answers for `input`.
    fn run(input: Vec<u8>) -> (Vec<ClientJsonRpcMessage>, Vec<Value>) {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async move {
            let (output, mut answers) = tokio::io::duplex(64 << 20);
            let mut transport = LineTransport::new(&input[..], output);
            let mut delivered = Vec::new();
            while let Some(message) = transport.receive().await {
                delivered.push(message);
            }
            transport.close().await.unwrap();
            drop(transport);
            let mut written = Vec::new();
            answers.read_to_end(&mut written).await.unwrap();
            let answers = written
                .split(|b| *b == b'\n')
                .filter(|line| !line.is_empty())
                .map(|line| serde_json::from_slice(line).expect("every answer is JSON"))
                .collect();
            (delivered, answers)
        })
    }

    fn line(value: Value) -> Vec<u8> {
        let mut line = serde_json::to_vec(&value).unwrap();
        line.push(b'\n');
        line
    }

    #[test]
    fn an_id_is_taken_until_its_request_is_answered_or_cancelled() {
        let runtime = tokio::runtime::Builder::new_current_thread()
            .enable_all()
            .build()
            .unwrap();
        runtime.block_on(async {
            let ping =
                |id: i64| line(serde_json::json!({"jsonrpc": "2.0", "id": id, "method": "ping"}));
            let cancel = line(
                serde_json::json!({"jsonrpc": "2.0", "method": "notifications/cancelled",
                "params": {"requestId": 2}}),
            );
            let input = [ping(1), ping(1), ping(2), cancel, ping(2)].concat();
            let (output, _answers) = tokio::io::duplex(1 << 20);
            let mut transport = LineTransport::new(&input[..], output);
            let first = transport.receive().await.unwrap();
            assert!(matches!(first, ClientJsonRpcMessage::Request(_)));
            // The second `1` is answered by the transport, so `2` comes next.
            let second = transport.receive().await.unwrap();
            let ClientJsonRpcMessage::Request(second) = second else {
                panic!("{second:?}")
            };
            assert_eq!(second.id, RequestId::Number(2));
            assert!(matches!(
                transport.receive().await.unwrap(),
                ClientJsonRpcMessage::Notification(_)
            ));
            // Cancelled, `2` is free again.
            let again = transport.receive().await.unwrap();
            let ClientJsonRpcMessage::Request(again) = again else {
                panic!("{again:?}")
            };
            assert_eq!(again.id, RequestId::Number(2));
            // Answering `1` frees it.
            let answer = ServerJsonRpcMessage::response(
                rmcp::model::ServerResult::empty(()),
                RequestId::Number(1),
            );
            transport.send(answer).await.unwrap();
            assert!(
                !transport
                    .in_flight
                    .lock()
                    .unwrap()
                    .contains(&RequestId::Number(1))
            );
        });
    }

    /// Lines a careless or hostile client might send.
    fn a_line() -> impl Strategy<Value = Vec<u8>> {
        let id = prop_oneof![
            Just(serde_json::json!(1)),
            Just(serde_json::json!("a")),
            Just(Value::Null),
            Just(serde_json::json!({})),
            Just(serde_json::json!([1])),
            Just(serde_json::json!(1.5)),
            Just(serde_json::json!(true)),
        ];
        let method = prop_oneof![
            Just("ping"),
            Just("tools/call"),
            Just("tools/list"),
            Just("initialize"),
            Just("notifications/progress"),
            Just("no/such/method"),
        ];
        let params = prop_oneof![
            Just(serde_json::json!({})),
            Just(serde_json::json!("x")),
            Just(serde_json::json!([])),
            Just(Value::Null),
            Just(serde_json::json!({"name": 1, "arguments": [1]})),
        ];
        let message = (id, method, params, any::<bool>(), any::<bool>()).prop_map(
            |(id, method, params, with_id, with_version)| {
                let mut message = serde_json::json!({"method": method, "params": params});
                if with_id {
                    message["id"] = id;
                }
                if with_version {
                    message["jsonrpc"] = "2.0".into();
                }
                line(message)
            },
        );
        let garbage = proptest::collection::vec(
            any::<u8>().prop_filter("no newline", |b| *b != b'\n'),
            0..300,
        )
        .prop_map(|mut bytes| {
            bytes.push(b'\n');
            bytes
        });
        prop_oneof![message, garbage]
    }

    proptest! {
        #[test]
        fn every_line_gets_at_most_one_well_formed_outcome(lines in proptest::collection::vec(a_line(), 0..40)) {
            let nonblank = lines
                .iter()
                .filter(|line| !line.iter().all(u8::is_ascii_whitespace))
                .count();
            let (delivered, answers) = run(lines.concat());
            prop_assert!(delivered.len() + answers.len() <= nonblank);
            for answer in &answers {
                prop_assert_eq!(&answer["jsonrpc"], "2.0");
                prop_assert!(answer.get("id").is_some(), "{answer}");
                let code = answer["error"]["code"].as_i64().unwrap();
                prop_assert!([PARSE_ERROR, INVALID_REQUEST, INVALID_PARAMS].contains(&code), "{answer}");
            }
        }
    }
}
