//! Real `nats-server`s for the tests that need them: finding the binary (or saying the
//! test is skipped, which fails under CI), free loopback ports, and a three-server
//! JetStream cluster. Benchmarks include this file too.

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};

/// The installed `nats-server`, if any.
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

/// A loopback port nobody listens on now.
pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0")
        .unwrap()
        .local_addr()
        .unwrap()
        .port()
}

/// One `nats-server` of the cluster.
pub struct NatsNode {
    port: u16,
    args: Vec<String>,
    child: Option<Child>,
}

impl NatsNode {
    /// A server on `port` with these arguments, not started yet.
    pub fn new(port: u16, args: Vec<String>) -> NatsNode {
        NatsNode {
            port,
            args,
            child: None,
        }
    }

    /// Its client port.
    pub fn port(&self) -> u16 {
        self.port
    }

    /// Starts (again) with the same port and store.
    pub fn start(&mut self, binary: &Path) {
        let child = Command::new(binary)
            .args(&self.args)
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("nats-server starts");
        self.child = Some(child);
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }
}

/// Three `nats-server -js` clustered on loopback ports, each with its own store.
pub struct NatsCluster {
    /// The `nats-server` binary.
    pub binary: PathBuf,
    /// The servers.
    pub nodes: Vec<NatsNode>,
    _dir: tempfile::TempDir,
}

impl NatsCluster {
    /// Starts three servers in a cluster.
    pub fn start(binary: PathBuf) -> NatsCluster {
        let dir = tempfile::tempdir().unwrap();
        let ports: Vec<(u16, u16)> = (0..3).map(|_| (free_port(), free_port())).collect();
        let routes: Vec<String> = ports
            .iter()
            .map(|(_, route)| format!("nats://127.0.0.1:{route}"))
            .collect();
        let mut nodes = Vec::new();
        for (i, (port, route)) in ports.iter().enumerate() {
            let store = dir.path().join(format!("n{i}"));
            let args = vec![
                "-js".into(),
                "-a".into(),
                "127.0.0.1".into(),
                "-p".into(),
                port.to_string(),
                "-n".into(),
                format!("n{i}"),
                "-sd".into(),
                store.display().to_string(),
                "--cluster_name".into(),
                "boxoffice".into(),
                "--cluster".into(),
                format!("nats://127.0.0.1:{route}"),
                "--routes".into(),
                routes.join(","),
            ];
            let mut node = NatsNode {
                port: *port,
                args,
                child: None,
            };
            node.start(&binary);
            nodes.push(node);
        }
        NatsCluster {
            binary,
            nodes,
            _dir: dir,
        }
    }

    /// Every server's client URL, comma-separated.
    pub fn urls(&self) -> String {
        let urls: Vec<String> = self
            .nodes
            .iter()
            .map(|n| format!("nats://127.0.0.1:{}", n.port))
            .collect();
        urls.join(",")
    }

    /// The log stream's state now.
    pub async fn log_stream(&self) -> async_nats::jetstream::stream::Info {
        let urls = self.urls();
        let client = async_nats::connect(urls.split(',').collect::<Vec<_>>())
            .await
            .unwrap();
        let context = async_nats::jetstream::new(client);
        let mut stream = context.get_stream("BOXOFFICE_LOG").await.unwrap();
        stream.info().await.unwrap().clone()
    }

    /// The node that leads the log stream now.
    pub async fn stream_leader(&self) -> usize {
        let info = self.log_stream().await;
        let leader = info
            .cluster
            .as_ref()
            .and_then(|c| c.leader.clone())
            .expect("the stream has a leader");
        leader.trim_start_matches('n').parse().unwrap()
    }
}

impl Drop for NatsNode {
    fn drop(&mut self) {
        self.kill();
    }
}

impl Drop for NatsCluster {
    fn drop(&mut self) {
        for node in &mut self.nodes {
            node.kill();
        }
    }
}

/// A boxoffice node: the real binary on a loopback port with its own data directory.
pub struct Node {
    /// Its port.
    pub port: u16,
    /// Its data directory.
    pub dir: tempfile::TempDir,
    args: Vec<String>,
    child: Option<Child>,
}

impl Node {
    /// A node that runs with `args` (besides its port and data directory).
    pub fn new(args: Vec<String>) -> Node {
        Node {
            port: free_port(),
            dir: tempfile::tempdir().unwrap(),
            args,
            child: None,
        }
    }

    /// A cluster node on the log at `nats` (`--log`), with the admin key, JWT secret
    /// and ticket secret every node of a cluster shares, and `extra` arguments.
    pub fn on_log(nats: &str, [admin, jwt, tickets]: [&str; 3], extra: &[&str]) -> Node {
        let shared = [
            "--log",
            nats,
            "--admin-key",
            admin,
            "--jwt-secret",
            jwt,
            "--ticket-secret",
            tickets,
        ];
        Node::new(shared.iter().chain(extra).map(|a| a.to_string()).collect())
    }

    /// `http://127.0.0.1:{port}`.
    pub fn base(&self) -> String {
        format!("http://127.0.0.1:{}", self.port)
    }

    /// Starts (again) with the same port and data directory; its output goes to
    /// `node.log` there, told if the test fails.
    pub fn start(&mut self) {
        let log = || {
            std::fs::OpenOptions::new()
                .create(true)
                .append(true)
                .open(self.dir.path().join("node.log"))
                .unwrap()
        };
        let child = Command::new(env!("CARGO_BIN_EXE_boxoffice"))
            .args(&self.args)
            .arg("--listen")
            .arg(format!("127.0.0.1:{}", self.port))
            .arg("--data-dir")
            .arg(self.dir.path())
            .stdin(Stdio::null())
            .stdout(log())
            .stderr(log())
            .spawn()
            .unwrap();
        self.child = Some(child);
    }

    /// Whether it was started and not killed.
    pub fn is_running(&self) -> bool {
        self.child.is_some()
    }

    /// SIGKILL.
    pub fn kill(&mut self) {
        if let Some(mut child) = self.child.take() {
            let _ = child.kill();
            let _ = child.wait();
        }
    }

    /// Sends a signal (SIGSTOP, SIGCONT).
    pub fn signal(&self, signal: i32) {
        let pid = self.child.as_ref().expect("running").id() as i32;
        // SAFETY: sending a signal to our own child process.
        unsafe { libc::kill(pid, signal) };
    }
}

impl Drop for Node {
    fn drop(&mut self) {
        self.kill();
        if std::thread::panicking() {
            let log = std::fs::read_to_string(self.dir.path().join("node.log")).unwrap_or_default();
            let lines: Vec<&str> = log.lines().filter(|l| !l.contains("async_nats")).collect();
            let tail = &lines[lines.len().saturating_sub(40)..];
            eprintln!("--- node {} ---\n{}", self.base(), tail.join("\n"));
        }
    }
}

/// A client that does not follow redirects (a follower's 307 is looked at, not
/// followed: it would drop the Authorization header across ports).
pub fn client() -> reqwest::Client {
    reqwest::Client::builder()
        .redirect(reqwest::redirect::Policy::none())
        .timeout(std::time::Duration::from_secs(5))
        .build()
        .unwrap()
}

/// A node's `/health/ready`, if it answers.
pub async fn ready(http: &reqwest::Client, base: &str) -> Option<serde_json::Value> {
    let answer = http.get(format!("{base}/health/ready")).send().await.ok()?;
    answer.json().await.ok()
}
