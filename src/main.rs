//! The `boxoffice` binary: parse the command line, then serve or print a token.

use anyhow::Context;
use boxoffice::app;
use boxoffice::config::{Cli, Command, Config, LogFormat};
use boxoffice::domain::UserId;
use boxoffice::engine::clock::SystemClock;
use clap::Parser;
use std::sync::Arc;

/// mimalloc rather than the system allocator: every request and every hold allocate
/// and free small objects across threads, which glibc's malloc made a tenth of the
/// server's CPU. It is built without transparent huge pages (`no_thp`): with them
/// every large array (a date's seat view, its taken-seat bits) filled 2 MB pages, six
/// bytes a seat instead of one, and each page was zeroed whole on first touch, which
/// slowed recovery. On a host whose THP setting is `always` rather than `madvise`, set
/// `MIMALLOC_ALLOW_THP=0` for the same effect.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

fn main() -> std::process::ExitCode {
    // Errors are told in a sentence (with their causes), never with a backtrace: they
    // are the operator's to act on, not a bug report.
    match run() {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("error: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

fn run() -> anyhow::Result<()> {
    let cli = Cli::parse();
    match cli.command {
        Some(Command::Token(args)) => {
            println!(
                "{}",
                boxoffice::http::auth::token_for_secret(
                    &args.jwt_secret,
                    UserId(args.user),
                    args.ttl_secs
                )
            );
            Ok(())
        }
        Some(Command::Serve(config)) => serve(*config),
        None => serve(cli.serve),
    }
}

fn serve(config: Config) -> anyhow::Result<()> {
    let filter =
        tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "info".into());
    let logs = tracing_subscriber::fmt().with_env_filter(filter);
    match config.log_format {
        LogFormat::Text => logs
            .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stdout()))
            .init(),
        LogFormat::Json => logs.json().with_current_span(true).init(),
    }
    // A mistake in the cluster flags is told as such, before anything starts.
    config.cluster().map_err(anyhow::Error::msg)?;
    let runtime = tokio::runtime::Runtime::new().context("starting the async runtime")?;
    runtime.block_on(async {
        let listener = tokio::net::TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("binding {}", config.listen))?;
        let app = app::build(&config, Arc::new(SystemClock))
            .await
            .with_context(|| format!("opening the data directory {}", config.data_dir.display()))?;
        for line in &app.banner {
            tracing::info!("{line}");
        }
        tracing::info!("listening on http://{}", listener.local_addr()?);
        if let Some(deposed) = app.deposed.clone() {
            tokio::spawn(restart_when_deposed(deposed));
        }
        app::serve_with(
            listener,
            app.router.clone(),
            config.serve_options(),
            shutdown_signal(),
        )
        .await
        .context("serving")?;
        tracing::info!("stopping: writing what is queued and a final snapshot");
        app.shutdown().await;
        tracing::info!("stopped");
        Ok(())
    })
}

/// A cluster node that lost the leadership stops acknowledging at once; its memory may
/// hold effects of writes the log never took, so it starts again (the same process
/// id, arguments and environment) and follows the log from what the log holds. The
/// short pause lets the answers already refused reach their clients.
async fn restart_when_deposed(mut deposed: tokio::sync::watch::Receiver<bool>) {
    if deposed.wait_for(|d| *d).await.is_err() {
        return;
    }
    tracing::warn!("no longer leading: starting again as a follower");
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    let Ok(exe) = std::env::current_exe() else {
        tracing::error!("cannot find this program to start it again; exiting");
        std::process::exit(75);
    };
    #[cfg(unix)]
    {
        use std::os::unix::process::CommandExt;
        let error = std::process::Command::new(exe)
            .args(std::env::args_os().skip(1))
            .exec();
        tracing::error!("starting again failed: {error}; exiting");
    }
    std::process::exit(75);
}

/// Resolves on SIGINT or SIGTERM.
async fn shutdown_signal() {
    let interrupt = tokio::signal::ctrl_c();
    #[cfg(unix)]
    let terminate = async {
        match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
            Ok(mut signal) => {
                signal.recv().await;
            }
            Err(_) => std::future::pending().await,
        }
    };
    #[cfg(not(unix))]
    let terminate = std::future::pending::<()>();
    tokio::select! {
        _ = interrupt => {}
        _ = terminate => {}
    }
}
