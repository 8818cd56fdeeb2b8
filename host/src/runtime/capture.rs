//! Capturing a plugin's stdout and stderr without letting them hurt anyone.
//!
//! Output goes to memory, never to the host's own streams (on stdio, the
//! host's stdout is the protocol). The first [`CAPTURE_BYTES`] are kept; the
//! rest is accepted and counted, so a plugin that prints too much loses the
//! excess rather than crashing on a write error.

use bytes::Bytes;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};
use tokio::io::AsyncWrite;
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// How much of each stream a call keeps.
pub const CAPTURE_BYTES: usize = 64 * 1024;

/// One captured stream; clones share the buffer.
#[derive(Clone, Default)]
pub struct Capture(Arc<Mutex<Buffer>>);

#[derive(Default)]
struct Buffer {
    kept: Vec<u8>,
    dropped: usize,
}

impl Capture {
    fn keep(&self, bytes: &[u8]) {
        let Ok(mut buffer) = self.0.lock() else {
            return;
        };
        let room = CAPTURE_BYTES.saturating_sub(buffer.kept.len());
        let taken = bytes.len().min(room);
        buffer.kept.extend_from_slice(&bytes[..taken]);
        buffer.dropped += bytes.len() - taken;
    }

    /// What was written, as text, with a note of what did not fit.
    pub fn text(&self) -> String {
        let Ok(buffer) = self.0.lock() else {
            return String::new();
        };
        let mut text = String::from_utf8_lossy(&buffer.kept).into_owned();
        if buffer.dropped > 0 {
            text.push_str(&format!("\n… {} more bytes dropped", buffer.dropped));
        }
        text
    }
}

impl IsTerminal for Capture {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for Capture {
    fn async_stream(&self) -> Box<dyn AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }

    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

#[async_trait::async_trait]
impl Pollable for Capture {
    async fn ready(&mut self) {}
}

impl OutputStream for Capture {
    fn write(&mut self, bytes: Bytes) -> Result<(), StreamError> {
        self.keep(&bytes);
        Ok(())
    }

    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }

    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(CAPTURE_BYTES)
    }
}

impl AsyncWrite for Capture {
    fn poll_write(
        self: Pin<&mut Self>,
        _: &mut Context<'_>,
        buf: &[u8],
    ) -> Poll<std::io::Result<usize>> {
        self.keep(buf);
        Poll::Ready(Ok(buf.len()))
    }

    fn poll_flush(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }

    fn poll_shutdown(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_start_and_counts_the_rest() {
        let capture = Capture::default();
        let mut stream = capture.clone();
        stream
            .write(Bytes::from(vec![b'a'; CAPTURE_BYTES - 1]))
            .unwrap();
        stream.write(Bytes::from_static(b"bcd")).unwrap();
        let text = capture.text();
        assert!(text.starts_with("aaa"));
        assert!(
            text.contains("ab\n… 2 more bytes dropped"),
            "{}",
            &text[text.len() - 40..]
        );
    }
}
