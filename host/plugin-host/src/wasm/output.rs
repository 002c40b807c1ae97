//! Bounded capture of a component's stdout/stderr.
//!
//! Unlike wasmtime's `MemoryOutputPipe`, which fails the guest's write (and so
//! usually panics it) once full, this keeps the first `capacity` bytes and
//! silently drops the rest, remembering that it did.

use std::pin::Pin;
use std::sync::{Arc, Mutex, PoisonError};
use std::task::{Context, Poll};
use wasmtime_wasi::cli::{IsTerminal, StdoutStream};
use wasmtime_wasi::p2::{OutputStream, Pollable, StreamError};

/// A size-bounded in-memory sink. Clones share the buffer.
#[derive(Clone)]
pub struct BoundedOutput {
    capacity: usize,
    buffer: Arc<Mutex<Captured>>,
}

#[derive(Default)]
struct Captured {
    bytes: Vec<u8>,
    dropped: usize,
}

impl BoundedOutput {
    /// A sink keeping at most `capacity` bytes.
    pub fn new(capacity: usize) -> Self {
        Self { capacity, buffer: Arc::default() }
    }

    fn push(&self, data: &[u8]) {
        let mut c = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let room = self.capacity.saturating_sub(c.bytes.len());
        let kept = data.len().min(room);
        c.bytes.extend_from_slice(&data[..kept]);
        c.dropped += data.len() - kept;
    }

    /// The captured text and the number of bytes dropped past the bound.
    pub fn take(&self) -> (String, usize) {
        let mut c = self.buffer.lock().unwrap_or_else(PoisonError::into_inner);
        let text = String::from_utf8_lossy(&c.bytes).into_owned();
        let dropped = c.dropped;
        *c = Captured::default();
        (text, dropped)
    }
}

impl IsTerminal for BoundedOutput {
    fn is_terminal(&self) -> bool {
        false
    }
}

impl StdoutStream for BoundedOutput {
    fn async_stream(&self) -> Box<dyn tokio::io::AsyncWrite + Send + Sync> {
        Box::new(self.clone())
    }
    fn p2_stream(&self) -> Box<dyn OutputStream> {
        Box::new(self.clone())
    }
}

impl tokio::io::AsyncWrite for BoundedOutput {
    fn poll_write(self: Pin<&mut Self>, _cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        self.push(buf);
        Poll::Ready(Ok(buf.len()))
    }
    fn poll_flush(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
    fn poll_shutdown(self: Pin<&mut Self>, _cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Poll::Ready(Ok(()))
    }
}

#[wasmtime_wasi::async_trait]
impl Pollable for BoundedOutput {
    async fn ready(&mut self) {}
}

impl OutputStream for BoundedOutput {
    fn write(&mut self, bytes: bytes::Bytes) -> Result<(), StreamError> {
        self.push(&bytes);
        Ok(())
    }
    fn flush(&mut self) -> Result<(), StreamError> {
        Ok(())
    }
    fn check_write(&mut self) -> Result<usize, StreamError> {
        Ok(64 * 1024)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn keeps_the_first_bytes_and_counts_the_rest() {
        let out = BoundedOutput::new(5);
        out.push(b"hel");
        out.push(b"lo world");
        assert_eq!(out.take(), ("hello".to_string(), 6));
        assert_eq!(out.take(), (String::new(), 0));
    }
}
