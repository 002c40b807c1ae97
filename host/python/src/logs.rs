//! The host's `tracing` events, delivered to a Python callable.
//!
//! An event is formatted where it happens and put in a bounded queue
//! ([`QUEUE`] records; when it is full, records are dropped and counted,
//! never waited for), and one thread of its own attaches to the interpreter
//! to hand each to the handler. So no Rust thread ever waits for the GIL
//! while holding a lock of the host's, and a slow or raising handler delays
//! nothing but other log records (a raise goes to `sys.unraisablehook`).

use pyo3::prelude::*;
use std::fmt::Write as _;
use std::sync::atomic::{AtomicU8, AtomicU64, Ordering};
use std::sync::mpsc::{Receiver, SyncSender, TrySendError, sync_channel};
use std::sync::{Mutex, OnceLock, PoisonError};
use tracing::field::{Field, Visit};
use tracing::{Event, Level, Subscriber};
use tracing_subscriber::layer::{Context, Layer, SubscriberExt};

/// How many records wait for the handler at most.
pub const QUEUE: usize = 4_096;

/// One formatted event: Python's level number, the target, the message
/// with its fields (`key=value`).
struct Record {
    level: u8,
    target: String,
    message: String,
}

struct Sink {
    tx: SyncSender<Record>,
    handler: Mutex<Option<Py<PyAny>>>,
    /// The least Python level number forwarded; 0: none.
    level: AtomicU8,
    dropped: AtomicU64,
}

static SINK: OnceLock<Result<Sink, String>> = OnceLock::new();

/// Python's `logging` number of `level`.
fn number(level: &Level) -> u8 {
    match *level {
        Level::ERROR => 40,
        Level::WARN => 30,
        Level::INFO => 20,
        Level::DEBUG => 10,
        Level::TRACE => 5,
    }
}

struct Forward;

#[derive(Default)]
struct Fields {
    message: String,
    rest: String,
}

impl Visit for Fields {
    fn record_debug(&mut self, field: &Field, value: &dyn std::fmt::Debug) {
        if field.name() == "message" {
            let _ = write!(self.message, "{value:?}");
        } else {
            let _ = write!(self.rest, " {}={value:?}", field.name());
        }
    }
    fn record_str(&mut self, field: &Field, value: &str) {
        if field.name() == "message" {
            self.message.push_str(value);
        } else {
            let _ = write!(self.rest, " {}={value}", field.name());
        }
    }
}

impl<S: Subscriber> Layer<S> for Forward {
    fn enabled(&self, metadata: &tracing::Metadata<'_>, _: Context<'_, S>) -> bool {
        let Some(Ok(sink)) = SINK.get() else { return false };
        let least = sink.level.load(Ordering::Relaxed);
        least != 0 && number(metadata.level()) >= least
    }

    fn on_event(&self, event: &Event<'_>, _: Context<'_, S>) {
        let Some(Ok(sink)) = SINK.get() else { return };
        let mut fields = Fields::default();
        event.record(&mut fields);
        let record = Record {
            level: number(event.metadata().level()),
            target: event.metadata().target().to_owned(),
            message: fields.message + &fields.rest,
        };
        if let Err(TrySendError::Full(_)) = sink.tx.try_send(record) {
            sink.dropped.fetch_add(1, Ordering::Relaxed);
        }
    }
}

fn deliver(rx: Receiver<Record>) {
    while let Ok(record) = rx.recv() {
        let Some(Ok(sink)) = SINK.get() else { return };
        let dropped = sink.dropped.swap(0, Ordering::Relaxed);
        // `None` while the interpreter shuts down: the record is dropped.
        let _ = Python::try_attach(|py| {
            let handler = sink.handler.lock().unwrap_or_else(PoisonError::into_inner).as_ref().map(|h| h.clone_ref(py));
            let Some(handler) = handler else { return };
            if dropped > 0 {
                let note = format!("{dropped} log record(s) dropped: the handler fell behind");
                if let Err(e) = handler.call1(py, (30u8, "plexus", note)) {
                    e.write_unraisable(py, Some(handler.bind(py)));
                }
            }
            if let Err(e) = handler.call1(py, (record.level, record.target, record.message)) {
                e.write_unraisable(py, Some(handler.bind(py)));
            }
        });
    }
}

/// Send events at Python level `level` and above (40 error … 5 trace; 0:
/// none) to `handler(level, target, message)`; `None` stops. The first
/// call installs the process's `tracing` subscriber.
///
/// # Errors
/// `RuntimeError` when another `tracing` subscriber was installed first.
pub fn set_handler(handler: Option<Py<PyAny>>, level: u8) -> PyResult<()> {
    let sink = SINK.get_or_init(|| {
        let (tx, rx) = sync_channel(QUEUE);
        let subscriber = tracing_subscriber::registry().with(Forward);
        tracing::subscriber::set_global_default(subscriber)
            .map_err(|e| format!("cannot forward the host's logs: another tracing subscriber is installed ({e})"))?;
        std::thread::Builder::new()
            .name("plexus-log".into())
            .spawn(move || deliver(rx))
            .map_err(|e| format!("cannot start the log thread: {e}"))?;
        Ok(Sink { tx, handler: Mutex::new(None), level: AtomicU8::new(0), dropped: AtomicU64::new(0) })
    });
    let sink = sink.as_ref().map_err(|e| pyo3::exceptions::PyRuntimeError::new_err(e.clone()))?;
    let on = handler.is_some();
    let old = std::mem::replace(&mut *sink.handler.lock().unwrap_or_else(PoisonError::into_inner), handler);
    // Dropped after the lock is released: its `__del__` may let the log
    // thread take the GIL, and that thread takes the lock while holding it.
    drop(old);
    sink.level.store(if on { level } else { 0 }, Ordering::Relaxed);
    // Callsites cached their interest with the old level.
    tracing::callsite::rebuild_interest_cache();
    Ok(())
}
