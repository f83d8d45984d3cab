//! Captured `tracing` output, for the suites that check what is logged
//! (`tests/no_tokens_in_logs.rs`, `tests/redis_store.rs`,
//! `tests/persist.rs`).

use std::sync::{Arc, Mutex};

/// A `tracing` writer into a shared buffer.
#[derive(Clone, Default)]
pub struct Logs(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Logs {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(buf);
        Ok(buf.len())
    }
    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// Captures every event of this thread, at every level, until the
    /// guard drops (tasks spawned on a current-thread runtime included).
    pub fn capture(&self) -> tracing::subscriber::DefaultGuard {
        self.capture_at(tracing::Level::TRACE)
    }

    /// Captures the events of this thread at `level` and above.
    pub fn capture_at(&self, level: tracing::Level) -> tracing::subscriber::DefaultGuard {
        let writer = self.clone();
        let subscriber = tracing_subscriber::fmt()
            .with_writer(move || writer.clone())
            .with_ansi(false)
            .with_max_level(level)
            .finish();
        tracing::subscriber::set_default(subscriber)
    }

    /// Everything captured so far.
    pub fn text(&self) -> String {
        String::from_utf8_lossy(&self.0.lock().unwrap()).into_owned()
    }
}
