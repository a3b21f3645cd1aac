//! The log lines a request causes name it: at the default level its warnings and
//! errors carry its request id; with debug logging every line it logs is inside its
//! `request` span (id, method, route). A test binary of its own: the capture is the
//! process's one subscriber, and tracing decides once per log statement whether any
//! subscriber wants it, so no other test may log meanwhile.

mod common;

use common::Server;
use std::sync::{Arc, Mutex};

/// Every log line this process writes, at the level a test sets.
///
/// One subscriber for the whole process, its filter reloaded: tracing decides once per
/// log statement whether any subscriber wants it, and with a subscriber per test
/// thread that decision may be taken for one and kept for another.
struct Logs {
    lines: Lines,
    filter: tracing_subscriber::reload::Handle<
        tracing_subscriber::EnvFilter,
        tracing_subscriber::Registry,
    >,
}

/// Where the captured lines go.
#[derive(Clone)]
struct Lines(Arc<Mutex<Vec<u8>>>);

impl std::io::Write for Lines {
    fn write(&mut self, bytes: &[u8]) -> std::io::Result<usize> {
        self.0.lock().unwrap().extend_from_slice(bytes);
        Ok(bytes.len())
    }

    fn flush(&mut self) -> std::io::Result<()> {
        Ok(())
    }
}

impl Logs {
    /// The process's log capture, now at `filter` (`RUST_LOG`'s syntax).
    fn at(filter: &str) -> &'static Logs {
        use tracing_subscriber::layer::SubscriberExt;
        static LOGS: std::sync::OnceLock<Logs> = std::sync::OnceLock::new();
        let logs = LOGS.get_or_init(|| {
            let lines = Lines(Arc::default());
            let writer = lines.clone();
            let (filter, handle) =
                tracing_subscriber::reload::Layer::new(tracing_subscriber::EnvFilter::new("off"));
            let subscriber = tracing_subscriber::registry().with(filter).with(
                tracing_subscriber::fmt::layer()
                    .with_ansi(false)
                    .with_writer(move || writer.clone()),
            );
            tracing::subscriber::set_global_default(subscriber).expect("the only subscriber");
            Logs {
                lines,
                filter: handle,
            }
        });
        logs.filter
            .reload(tracing_subscriber::EnvFilter::new(filter))
            .expect("the filter reloads");
        logs
    }

    /// The line that says `message` for the request `request_id`.
    fn line(&self, message: &str, request_id: &str) -> String {
        let text = String::from_utf8(self.lines.0.lock().unwrap().clone()).unwrap();
        text.lines()
            .find(|l| l.contains(message) && l.contains(request_id))
            .unwrap_or_else(|| panic!("no line says {message:?} of {request_id} in:\n{text}"))
            .to_owned()
    }
}

/// One test, the levels one after the other.
#[tokio::test]
async fn the_log_lines_of_a_request_name_its_id() {
    warnings_and_errors_name_it_at_info().await;
    every_line_names_it_in_its_span_at_debug().await;
}

async fn warnings_and_errors_name_it_at_info() {
    let logs = Logs::at("info");
    let mut server = Server::start_with(|c| c.slow_request_ms = 0).await;
    let slow = server
        .http
        .get(format!("{}/api/v1/concerts", server.base))
        .header("x-request-id", "slow-1")
        .send()
        .await
        .unwrap();
    assert_eq!(slow.status(), 200);
    let line = logs.line("slow request", "slow-1");
    says(
        &line,
        &[
            "WARN",
            "request_id=\"slow-1\"",
            "method=GET",
            "route=/api/v1/concerts",
            "status=200",
        ],
    );
    server.charge_unavailable("trace-me-8").await;
    let line = logs.line("an engine component is unavailable", "trace-me-8");
    assert!(line.contains("ERROR"), "{line}");
    // At this level no request span is made (it costs every request).
    assert!(!line.contains("request{"), "{line}");
    server.stop().await;
}

async fn every_line_names_it_in_its_span_at_debug() {
    let logs = Logs::at("info,boxoffice::http=debug");
    let mut server = Server::start().await;
    server.charge_unavailable("trace-me-9").await;
    let line = logs.line("an engine component is unavailable", "trace-me-9");
    says(
        &line,
        &[
            "request{",
            "id=\"trace-me-9\"",
            "method=POST",
            "route=/api/v1/wallet/charges",
        ],
    );
    server.stop().await;
}

/// Checks `line` holds every one of `parts`.
fn says(line: &str, parts: &[&str]) {
    for part in parts {
        assert!(line.contains(part), "{part} in {line}");
    }
}
