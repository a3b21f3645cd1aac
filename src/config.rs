//! Command line and environment: every flag can also be set as `BOXOFFICE_<FLAG>`
//! (for example `BOXOFFICE_HOLD_TTL_SECS=120`).

use crate::cluster::ClusterOptions;
use crate::domain::catalog::CatalogRules;
use crate::domain::date::DateRules;
use crate::domain::queue::QueueRules;
use crate::domain::wallet::WalletRules;
use crate::domain::{Rules, Won};
use crate::http::server::{self, ServeOptions};
use crate::store::nats_log::NatsLogOptions;
use crate::store::{FsyncPolicy, StoreOptions};
use chrono::Duration;
use clap::{Args, Parser, Subcommand};
use std::net::SocketAddr;
use std::path::PathBuf;

/// Messages each actor's mailbox holds before callers wait (and then get 503).
pub const MAILBOX_LEN: usize = 4096;
/// Number of wallet shards.
pub const WALLET_SHARDS: usize = 16;
/// How long idempotency keys are kept.
pub const IDEMPOTENCY_TTL: Duration = Duration::hours(24);

/// boxoffice: concert seat sales with a waiting room, seat holds, a wallet and payments.
#[derive(Debug, Parser)]
#[command(name = "boxoffice", version, args_conflicts_with_subcommands = true)]
pub struct Cli {
    /// What to do; without one, `serve`.
    #[command(subcommand)]
    pub command: Option<Command>,
    /// Server settings (for `boxoffice` without a subcommand).
    #[command(flatten)]
    pub serve: Config,
}

/// The subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the server (the default).
    Serve(Box<Config>),
    /// Print a user token signed with the configured secret.
    Token(TokenArgs),
}

/// `boxoffice token`.
#[derive(Debug, Args)]
pub struct TokenArgs {
    /// The user id (the token's `sub`), at least 1.
    #[arg(long, value_parser = clap::value_parser!(u64).range(1..))]
    pub user: u64,
    /// How long the token lasts.
    #[arg(long, default_value_t = 86_400)]
    pub ttl_secs: u64,
    /// The server's JWT secret.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: String,
}

/// Server settings.
#[derive(Debug, Clone, Args)]
pub struct Config {
    /// Address to listen on.
    #[arg(long, env = "BOXOFFICE_LISTEN", default_value = "127.0.0.1:8080")]
    pub listen: SocketAddr,
    /// Directory of the append log and snapshots.
    #[arg(long, env = "BOXOFFICE_DATA_DIR", default_value = "./snapshots")]
    pub data_dir: PathBuf,
    /// Admin key (`Authorization: Bearer <key>`). Without it and the JWT secret: demo start.
    #[arg(long, env = "BOXOFFICE_ADMIN_KEY", hide_env_values = true)]
    pub admin_key: Option<String>,
    /// HS256 secret of user tokens.
    #[arg(long, env = "BOXOFFICE_JWT_SECRET", hide_env_values = true)]
    pub jwt_secret: Option<String>,
    /// Key of door scanners (`Authorization: Bearer <key>` on check-ins only; the admin
    /// key works too). Without it, only the admin key checks tickets in.
    #[arg(long, env = "BOXOFFICE_SCANNER_KEY", hide_env_values = true)]
    pub scanner_key: Option<String>,
    /// Secret that signs ticket codes (HMAC-SHA256). Without it, one is made on the first
    /// start and kept in the data directory (`ticket-secret`), so codes verify after a
    /// restart.
    #[arg(long, env = "BOXOFFICE_TICKET_SECRET", hide_env_values = true)]
    pub ticket_secret: Option<String>,
    /// A holder may refund a paid reservation until this long before the show starts.
    #[arg(
        long,
        env = "BOXOFFICE_REFUND_UNTIL_SECS_BEFORE",
        default_value_t = 86_400
    )]
    pub refund_until_secs_before: u32,
    /// How long a seat hold lasts.
    #[arg(long, env = "BOXOFFICE_HOLD_TTL_SECS", default_value_t = 300, value_parser = clap::value_parser!(u32).range(1..))]
    pub hold_ttl_secs: u32,
    /// Most users of a concert that are ACTIVE at once.
    #[arg(long, env = "BOXOFFICE_QUEUE_ACTIVE_MAX", default_value_t = 100, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_active_max: u32,
    /// How long an active window lasts.
    #[arg(long, env = "BOXOFFICE_QUEUE_ACTIVE_TTL_SECS", default_value_t = 600, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_active_ttl_secs: u32,
    /// How long a waiting entry lives without a poll.
    #[arg(long, env = "BOXOFFICE_QUEUE_IDLE_SECS", default_value_t = 120, value_parser = clap::value_parser!(u32).range(1..))]
    pub queue_idle_secs: u32,
    /// Most seats in one reservation.
    #[arg(long, env = "BOXOFFICE_MAX_SEATS_PER_RESERVATION", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=100))]
    pub max_seats_per_reservation: u32,
    /// Most seats one user may hold or own on one date.
    #[arg(long, env = "BOXOFFICE_MAX_SEATS_PER_USER", default_value_t = 4, value_parser = clap::value_parser!(u32).range(1..=10_000))]
    pub max_seats_per_user: u32,
    /// Most seats one date may have.
    #[arg(long, env = "BOXOFFICE_MAX_SEATS_PER_DATE", default_value_t = 100_000, value_parser = clap::value_parser!(u32).range(1..=10_000_000))]
    pub max_seats_per_date: u32,
    /// Largest single wallet charge, in won.
    #[arg(long, env = "BOXOFFICE_MAX_CHARGE", default_value_t = 10_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_charge: u64,
    /// Largest wallet balance, in won.
    #[arg(long, env = "BOXOFFICE_MAX_BALANCE", default_value_t = 1_000_000_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub max_balance: u64,
    /// Take a snapshot after this many logged events, once the log has also grown by as
    /// many bytes as the last snapshot holds.
    #[arg(long, env = "BOXOFFICE_SNAPSHOT_EVERY_EVENTS", default_value_t = 100_000, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_every_events: u64,
    /// Take a snapshot at least this often while anything changes.
    #[arg(long, env = "BOXOFFICE_SNAPSHOT_INTERVAL_SECS", default_value_t = 60, value_parser = clap::value_parser!(u64).range(1..))]
    pub snapshot_interval_secs: u64,
    /// When to fsync the log: `always` (before every reply; durable) or `never`
    /// (benchmarks only: a crash loses acknowledged actions).
    #[arg(long, env = "BOXOFFICE_FSYNC", value_enum, default_value_t = FsyncPolicy::Always)]
    pub fsync: FsyncPolicy,
    /// How the server's log lines are written: `text` for people, `json` (one object a
    /// line) for log shippers.
    #[arg(long, env = "BOXOFFICE_LOG_FORMAT", value_enum, default_value_t = LogFormat::Text)]
    pub log_format: LogFormat,
    /// Requests at least this slow are logged with a warning (with their request id).
    #[arg(long, env = "BOXOFFICE_SLOW_REQUEST_MS", default_value_t = 500, value_parser = clap::value_parser!(u64).range(1..))]
    pub slow_request_ms: u64,
    /// Publish every public event to NATS JetStream at this URL (`nats://host:port`,
    /// several comma-separated). Without it, no outbox runs.
    #[arg(long, env = "BOXOFFICE_EVENTS_NATS_URL")]
    pub events_nats_url: Option<String>,
    /// The JetStream stream the outbox publishes to (created if missing).
    #[arg(
        long,
        env = "BOXOFFICE_EVENTS_NATS_STREAM",
        default_value = "BOXOFFICE_EVENTS"
    )]
    pub events_nats_stream: String,
    /// Subject prefix of published events: `{prefix}.{type}`.
    #[arg(
        long,
        env = "BOXOFFICE_EVENTS_NATS_SUBJECT_PREFIX",
        default_value = "boxoffice.events"
    )]
    pub events_nats_subject_prefix: String,
    /// Replicas of the stream when the outbox creates it.
    #[arg(long, env = "BOXOFFICE_EVENTS_NATS_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub events_nats_replicas: u8,
    /// Keep the log in NATS JetStream instead of the data directory, shared by every
    /// node started with the same value (`nats://host:port`, several comma-separated):
    /// one node leads and takes writes, the others follow and serve reads. Needs
    /// `--admin-key`, `--jwt-secret` and `--ticket-secret`, the same on every node.
    /// Without it the log is local files (one node).
    #[arg(long, env = "BOXOFFICE_LOG")]
    pub log: Option<String>,
    /// The JetStream stream of the replicated log (created if missing; its lease is
    /// the key-value bucket `{stream}_LEASE`).
    #[arg(long, env = "BOXOFFICE_LOG_STREAM", default_value = "BOXOFFICE_LOG")]
    pub log_stream: String,
    /// Replicas of the log stream and lease bucket when this node creates them.
    #[arg(long, env = "BOXOFFICE_LOG_REPLICAS", default_value_t = 1, value_parser = clap::value_parser!(u8).range(1..=5))]
    pub log_replicas: u8,
    /// This node's URL as clients and other nodes reach it: followers send writes to
    /// the leader's (307). Default: `http://{listen}`.
    #[arg(long, env = "BOXOFFICE_ADVERTISE_URL")]
    pub advertise_url: Option<String>,
    /// Benchmarks only: serve without request ids, spans and HTTP metrics, to measure
    /// what observing requests costs.
    #[arg(long, env = "BOXOFFICE_UNOBSERVED", hide = true)]
    pub unobserved: bool,
    /// Close a new connection that has not sent a whole request head within this time.
    #[arg(long, env = "BOXOFFICE_HEADER_READ_TIMEOUT_MS", default_value_t = server::HEADER_READ_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub header_read_timeout_ms: u64,
    /// Answer 408 and close when a request's body has not arrived within this time of
    /// its head.
    #[arg(long, env = "BOXOFFICE_BODY_READ_TIMEOUT_MS", default_value_t = server::BODY_READ_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub body_read_timeout_ms: u64,
    /// Close a kept-alive connection whose next request head has not arrived whole
    /// within this time of the last response.
    #[arg(long, env = "BOXOFFICE_KEEP_ALIVE_TIMEOUT_MS", default_value_t = server::KEEP_ALIVE_TIMEOUT_MS, value_parser = clap::value_parser!(u64).range(1..))]
    pub keep_alive_timeout_ms: u64,
    /// Most connections open at once (lowered to fit the open-file limit with room for
    /// the log, snapshots and health checks).
    #[arg(long, env = "BOXOFFICE_MAX_CONNECTIONS", default_value_t = server::CONNECTIONS_MAX, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_connections: usize,
    /// At shutdown, how long requests in flight may take before their connections are
    /// closed anyway.
    #[arg(long, env = "BOXOFFICE_SHUTDOWN_DRAIN_MS", default_value_t = server::DRAIN_TIMEOUT_MS)]
    pub shutdown_drain_ms: u64,
    /// Most requests handled at once; past it a request waits `--shed-wait-ms`, then is
    /// answered 503 OVERLOADED (never `/health` or `/metrics`).
    #[arg(long, env = "BOXOFFICE_MAX_REQUESTS_IN_FLIGHT", default_value_t = server::REQUESTS_IN_FLIGHT_MAX, value_parser = clap::builder::RangedU64ValueParser::<usize>::new().range(1..=1_000_000))]
    pub max_requests_in_flight: usize,
    /// How long a request may wait for a place among those in flight before it is shed.
    #[arg(long, env = "BOXOFFICE_SHED_WAIT_MS", default_value_t = server::SHED_WAIT_MS)]
    pub shed_wait_ms: u64,
}

impl Config {
    /// The cluster settings, with `--log nats://...`; `Ok(None)` for the local log.
    pub fn cluster(&self) -> Result<Option<ClusterOptions>, String> {
        let Some(urls) = &self.log else {
            return Ok(None);
        };
        if !urls.split(',').all(|url| url.trim().starts_with("nats://")) {
            return Err(format!(
                "--log {urls:?}: expected nats://host:port (several comma-separated)"
            ));
        }
        if self.admin_key.is_none() || self.jwt_secret.is_none() || self.ticket_secret.is_none() {
            return Err(
                "--log nats://... needs --admin-key, --jwt-secret and --ticket-secret, \
                 the same on every node"
                    .into(),
            );
        }
        Ok(Some(ClusterOptions {
            log: NatsLogOptions {
                urls: urls.clone(),
                stream: self.log_stream.clone(),
                replicas: usize::from(self.log_replicas),
            },
            advertise_url: self
                .advertise_url
                .clone()
                .unwrap_or_else(|| format!("http://{}", self.listen)),
        }))
    }
}

/// How log lines are written.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum LogFormat {
    /// Human-readable lines.
    Text,
    /// One JSON object a line.
    Json,
}

impl Default for Config {
    /// The documented defaults (environment variables apply, as on the command line).
    fn default() -> Self {
        match Cli::parse_from(["boxoffice"]) {
            Cli {
                command: None,
                serve,
            } => serve,
            Cli {
                command: Some(_), ..
            } => unreachable!("no subcommand was given"),
        }
    }
}

impl Config {
    /// The store's settings.
    pub fn store(&self) -> StoreOptions {
        StoreOptions {
            dir: self.data_dir.clone(),
            fsync: self.fsync,
            snapshot_every_events: self.snapshot_every_events,
            snapshot_interval: std::time::Duration::from_secs(self.snapshot_interval_secs),
        }
    }

    /// Connection limits, timeouts and load shedding.
    pub fn serve_options(&self) -> ServeOptions {
        let ms = std::time::Duration::from_millis;
        ServeOptions {
            header_read_timeout: ms(self.header_read_timeout_ms),
            body_read_timeout: ms(self.body_read_timeout_ms),
            keep_alive_timeout: ms(self.keep_alive_timeout_ms),
            connections_max: self.max_connections,
            drain_timeout: ms(self.shutdown_drain_ms),
            requests_in_flight_max: self.max_requests_in_flight,
            shed_wait: ms(self.shed_wait_ms),
        }
    }

    /// The engine's limits.
    pub fn rules(&self) -> Rules {
        let secs = |s: u32| Duration::seconds(i64::from(s));
        Rules {
            catalog: CatalogRules {
                seats_per_date_max: self.max_seats_per_date,
                seat_price_max: Won(self.max_balance),
            },
            date: DateRules {
                hold_ttl: secs(self.hold_ttl_secs),
                seats_per_reservation_max: self.max_seats_per_reservation as usize,
                seats_per_user_max: self.max_seats_per_user,
                refund_closes_before: secs(self.refund_until_secs_before),
            },
            queue: QueueRules {
                active_max: self.queue_active_max,
                active_ttl: secs(self.queue_active_ttl_secs),
                idle_timeout: secs(self.queue_idle_secs),
            },
            wallet: WalletRules {
                charge_max: Won(self.max_charge),
                balance_max: Won(self.max_balance),
                idempotency_ttl: IDEMPOTENCY_TTL,
            },
            mailbox_len: MAILBOX_LEN,
            wallet_shards: WALLET_SHARDS,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn with(args: &[&str]) -> Config {
        let mut all = vec!["boxoffice"];
        all.extend(args);
        Cli::parse_from(all).serve
    }

    #[test]
    fn cluster_mode_needs_nats_urls_and_the_shared_secrets() {
        assert!(with(&[]).cluster().unwrap().is_none(), "files by default");
        let secrets = [
            "--admin-key",
            "a",
            "--jwt-secret",
            "j",
            "--ticket-secret",
            "t",
        ];
        let bad = with(&[&["--log", "http://x"][..], &secrets].concat());
        assert!(bad.cluster().unwrap_err().contains("nats://"));
        let bare = with(&["--log", "nats://127.0.0.1:4222"]);
        assert!(bare.cluster().unwrap_err().contains("--ticket-secret"));
        let args = [
            &["--log", "nats://h:1, nats://h:2", "--listen", "127.0.0.1:9"][..],
            &secrets,
        ];
        let options = with(&args.concat()).cluster().unwrap().unwrap();
        assert_eq!(options.log.server_list(), ["nats://h:1", "nats://h:2"]);
        assert_eq!(options.advertise_url, "http://127.0.0.1:9");
        assert_eq!(options.log.subject(), "BOXOFFICE_LOG.log");
    }
}
