//! Real `nats-server`s for the tests that need them: finding the binary (or saying the
//! test is skipped, which fails under CI), and free loopback ports.

use std::path::PathBuf;

pub fn nats_binary() -> Option<PathBuf> {
    let candidates = std::env::var_os("PATH")
        .map(|path| std::env::split_paths(&path).collect::<Vec<_>>())
        .unwrap_or_default()
        .into_iter()
        .chain(["/usr/sbin".into(), "/usr/bin".into()]);
    for dir in candidates {
        let binary = dir.join("nats-server");
        if binary.is_file() {
            return Some(binary);
        }
    }
    None
}

/// The server binary, or `None` after saying the test is skipped (a failure under CI).
pub fn nats_or_skip(test: &str) -> Option<PathBuf> {
    let binary = nats_binary();
    if binary.is_none() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "{test}: nats-server is not installed, and CI must run this test (.ci/run installs it)"
        );
        eprintln!("{test}: skipped: nats-server is not installed (apt-get install nats-server)");
    }
    binary
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}
