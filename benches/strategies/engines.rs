//! The real engines the strategies run on, really started: PostgreSQL 15 and
//! `redis-server`, each in its own temporary directory on a loopback port, each stopped
//! by a guard when it is dropped (also when the harness panics, and on Ctrl-C, which
//! the harness catches to drop the guards before it exits).
//!
//! - PostgreSQL: its own `initdb` cluster, run as an unprivileged user (`nobody`: the
//!   postmaster refuses to run as root), `fsync` and `synchronous_commit` on, so a
//!   committed transaction is on disk before the client hears about it.
//! - Redis: append-only file with `appendfsync always`, so a write is on disk before
//!   its reply (Redis fsyncs once per event-loop turn, shared by the writes of that turn).
//!
//! When a binary is missing it runs `apt-get update && apt-get install -y
//! postgresql-15 redis-server`; if that fails the caller is told why (and skips, or
//! fails under `CI=true`).

use std::fs::File;
use std::net::TcpListener;
use std::os::unix::process::CommandExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

/// Where Debian's postgresql-15 package puts the server binaries.
const POSTGRES_BIN: &str = "/usr/lib/postgresql/15/bin";
/// How long an engine may take to accept connections after it is started.
const READY_WAIT_MAX: Duration = Duration::from_secs(60);
/// How long a stopped engine may take to exit before it is killed.
const STOP_WAIT_MAX: Duration = Duration::from_secs(20);
/// The unprivileged user PostgreSQL runs as.
const POSTGRES_USER: &str = "nobody";

/// Why an engine could not be started.
pub type EngineError = String;

/// Installs postgresql-15 and redis-server with apt-get unless both are there.
pub fn ensure_installed() -> Result<(), EngineError> {
    let postgres = Path::new(POSTGRES_BIN).join("postgres").exists();
    let redis = which("redis-server").is_some();
    if postgres && redis {
        return Ok(());
    }
    eprintln!("installing postgresql-15 and redis-server with apt-get");
    let apt = |args: &[&str]| {
        Command::new("apt-get")
            .args(args)
            .env("DEBIAN_FRONTEND", "noninteractive")
            .stdout(Stdio::null())
            .status()
            .map_err(|e| format!("apt-get {}: {e}", args.join(" ")))
            .and_then(|status| {
                status
                    .success()
                    .then_some(())
                    .ok_or_else(|| format!("apt-get {} failed: {status}", args.join(" ")))
            })
    };
    apt(&["update"])?;
    apt(&["install", "-y", "postgresql-15", "redis-server"])?;
    if !Path::new(POSTGRES_BIN).join("postgres").exists() || which("redis-server").is_none() {
        return Err("apt-get ran but postgres or redis-server is still missing".into());
    }
    Ok(())
}

fn which(program: &str) -> Option<PathBuf> {
    std::env::var_os("PATH").and_then(|paths| {
        std::env::split_paths(&paths)
            .map(|dir| dir.join(program))
            .find(|path| path.is_file())
    })
}

/// A loopback port nobody listens on right now.
fn free_port() -> Result<u16, EngineError> {
    let listener = TcpListener::bind("127.0.0.1:0").map_err(|e| format!("binding: {e}"))?;
    let port = listener
        .local_addr()
        .map_err(|e| format!("local address: {e}"))?
        .port();
    Ok(port)
}

/// Waits until something accepts connections on `port`, or the child has exited.
fn wait_listening(name: &str, child: &mut Child, port: u16, log: &Path) -> Result<(), EngineError> {
    let started = Instant::now();
    while started.elapsed() < READY_WAIT_MAX {
        if std::net::TcpStream::connect(("127.0.0.1", port)).is_ok() {
            return Ok(());
        }
        if let Ok(Some(status)) = child.try_wait() {
            let tail = std::fs::read_to_string(log).unwrap_or_default();
            return Err(format!("{name} exited ({status}):\n{tail}"));
        }
        std::thread::sleep(Duration::from_millis(50));
    }
    Err(format!(
        "{name} did not listen on port {port} in {READY_WAIT_MAX:?}"
    ))
}

/// A started engine process; dropping it stops the process (politely with `signal`,
/// then by force), then removes its directory.
struct Guard {
    name: &'static str,
    child: Child,
    /// The signal that asks for a clean, fast shutdown.
    signal: &'static str,
    /// Dropped after the process is gone.
    _dir: tempfile::TempDir,
}

impl Drop for Guard {
    fn drop(&mut self) {
        let pid = self.child.id().to_string();
        // `kill` rather than a signal crate: one call, at the end of a benchmark.
        let _ = Command::new("kill").args([self.signal, &pid]).status();
        let asked = Instant::now();
        while asked.elapsed() < STOP_WAIT_MAX {
            if let Ok(Some(_)) = self.child.try_wait() {
                return;
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        eprintln!(
            "{} did not stop in {STOP_WAIT_MAX:?}; killing it",
            self.name
        );
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A running PostgreSQL 15 cluster of its own.
pub struct Postgres {
    /// Its loopback port.
    pub port: u16,
    _guard: Guard,
}

impl Postgres {
    /// `initdb` in a temporary directory under `parent`, then the server on a free
    /// loopback port, both as the unprivileged user.
    pub fn start(parent: &Path) -> Result<Postgres, EngineError> {
        let owner = postgres_owner()?;
        let dir = tempfile::Builder::new()
            .prefix("postgres-")
            .tempdir_in(parent)
            .map_err(|e| format!("temporary directory: {e}"))?;
        if let Some((uid, gid)) = owner {
            std::os::unix::fs::chown(dir.path(), Some(uid), Some(gid))
                .map_err(|e| format!("chown {}: {e}", dir.path().display()))?;
        }
        let as_owner = |command: &mut Command| {
            if let Some((uid, gid)) = owner {
                command.uid(uid).gid(gid);
            }
        };
        let data = dir.path().join("data");
        let log_path = dir.path().join("postgres.log");
        let log = File::create(&log_path).map_err(|e| format!("postgres log: {e}"))?;
        let mut initdb = Command::new(Path::new(POSTGRES_BIN).join("initdb"));
        as_owner(&mut initdb);
        let output = initdb
            .arg("-D")
            .arg(&data)
            .args([
                "-U",
                "postgres",
                "--auth=trust",
                "--encoding=UTF8",
                "--no-sync",
            ])
            .current_dir(dir.path())
            .output()
            .map_err(|e| format!("initdb: {e}"))?;
        if !output.status.success() {
            return Err(format!(
                "initdb failed: {}",
                String::from_utf8_lossy(&output.stderr)
            ));
        }
        let port = free_port()?;
        let mut postgres = Command::new(Path::new(POSTGRES_BIN).join("postgres"));
        as_owner(&mut postgres);
        let mut child = postgres
            .arg("-D")
            .arg(&data)
            .arg("-k")
            .arg(dir.path())
            .args(["-p", &port.to_string(), "-h", "127.0.0.1"])
            .args(POSTGRES_SETTINGS.iter().flat_map(|s| ["-c", s]))
            .current_dir(dir.path())
            .stdout(log.try_clone().map_err(|e| format!("postgres log: {e}"))?)
            .stderr(log)
            .spawn()
            .map_err(|e| format!("postgres: {e}"))?;
        wait_listening("postgres", &mut child, port, &log_path)?;
        Ok(Postgres {
            port,
            _guard: Guard {
                name: "postgres",
                child,
                signal: "-INT",
                _dir: dir,
            },
        })
    }
}

/// The server settings the benchmark runs PostgreSQL with (REPORT.md lists them).
pub const POSTGRES_SETTINGS: &[&str] = &[
    "fsync=on",
    "synchronous_commit=on",
    "full_page_writes=on",
    "max_connections=300",
    "shared_buffers=256MB",
];

/// Whom PostgreSQL runs as: the unprivileged user when we are root (the postmaster
/// refuses root), otherwise ourselves (`None`: no change).
fn postgres_owner() -> Result<Option<(u32, u32)>, EngineError> {
    use std::os::unix::fs::MetadataExt;
    // /proc/self belongs to the process's effective user.
    let me = std::fs::metadata("/proc/self").map_or(0, |m| m.uid());
    if me == 0 {
        user_ids(POSTGRES_USER).map(Some)
    } else {
        Ok(None)
    }
}

/// The user and group ids of `name`, from `/etc/passwd`.
fn user_ids(name: &str) -> Result<(u32, u32), EngineError> {
    let passwd = std::fs::read_to_string("/etc/passwd").map_err(|e| format!("/etc/passwd: {e}"))?;
    passwd
        .lines()
        .map(|line| line.split(':').collect::<Vec<_>>())
        .find(|fields| fields.first() == Some(&name))
        .and_then(|fields| Some((fields.get(2)?.parse().ok()?, fields.get(3)?.parse().ok()?)))
        .ok_or_else(|| format!("no user {name} in /etc/passwd"))
}

/// A running `redis-server` of its own.
pub struct Redis {
    /// Its loopback port.
    pub port: u16,
    _guard: Guard,
}

impl Redis {
    /// `redis-server` on a free loopback port, its append-only file in a temporary
    /// directory under `parent`.
    pub fn start(parent: &Path) -> Result<Redis, EngineError> {
        let dir = tempfile::Builder::new()
            .prefix("redis-")
            .tempdir_in(parent)
            .map_err(|e| format!("temporary directory: {e}"))?;
        let log_path = dir.path().join("redis.log");
        let port = free_port()?;
        let mut child = Command::new("redis-server")
            .args(["--port", &port.to_string(), "--bind", "127.0.0.1"])
            .arg("--dir")
            .arg(dir.path())
            .arg("--logfile")
            .arg(&log_path)
            .args(
                REDIS_SETTINGS
                    .iter()
                    .flat_map(|(name, value)| [format!("--{name}"), (*value).to_owned()]),
            )
            .stdout(Stdio::null())
            .spawn()
            .map_err(|e| format!("redis-server: {e}"))?;
        wait_listening("redis-server", &mut child, port, &log_path)?;
        Ok(Redis {
            port,
            _guard: Guard {
                name: "redis-server",
                child,
                signal: "-TERM",
                _dir: dir,
            },
        })
    }
}

/// The settings the benchmark runs Redis with (REPORT.md lists them): durable like
/// the rest, no background RDB snapshots.
pub const REDIS_SETTINGS: &[(&str, &str)] = &[
    ("appendonly", "yes"),
    ("appendfsync", "always"),
    ("save", ""),
    ("daemonize", "no"),
];
