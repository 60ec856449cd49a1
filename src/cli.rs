//! The command line: `salesmetrics serve` runs the service; the other
//! subcommands are clients of a running server (see [`crate::client`]). The
//! benchmark harness is a binary of its own, `salesmetrics-bench`.

use clap::{Parser, Subcommand};

use crate::config::ServeConfig;

/// salesmetrics: sales KPIs from raw sales records, over gRPC.
#[derive(Debug, Parser)]
#[command(name = "salesmetrics", version, about, long_about = None)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// Subcommands.
#[derive(Debug, Subcommand)]
pub enum Command {
    /// Run the gRPC service (SQLite file ./salesmetrics.db on 127.0.0.1:50051 by default).
    // Boxed: the settings are far larger than any other command's arguments.
    Serve(Box<ServeConfig>),
    /// Show the KPIs of one scope and period as a table (or JSON).
    Kpis(crate::client::kpis::KpisArgs),
    /// Show KPIs over consecutive periods with a sparkline per KPI.
    Series(crate::client::kpis::SeriesArgs),
    /// Break KPIs down by rep, team, lead source, activity type or stage.
    Breakdown(crate::client::kpis::BreakdownArgs),
    /// List the KPI catalog: ids, names, units and formulas.
    Catalog(crate::client::kpis::CatalogArgs),
    /// Import records from CSV or NDJSON files.
    Import(crate::client::import::ImportArgs),
    /// Export stored records as CSV or NDJSON (the layout `import` reads).
    Export(crate::client::export::ExportArgs),
    /// Load a deterministic sample dataset and show last month's KPIs.
    Demo(crate::client::demo::DemoArgs),
    /// Write one period's KPIs, charts and breakdown as a self-contained HTML file.
    Report(crate::client::report::ReportArgs),
}

/// Runs the parsed command line.
pub async fn run(cli: Cli) -> anyhow::Result<()> {
    match cli.command {
        Command::Serve(config) => serve(*config).await,
        Command::Kpis(args) => crate::client::kpis::kpis(args).await,
        Command::Series(args) => crate::client::kpis::series(args).await,
        Command::Breakdown(args) => crate::client::kpis::breakdown(args).await,
        Command::Catalog(args) => crate::client::kpis::catalog(args).await,
        Command::Import(args) => crate::client::import::run(args).await,
        Command::Export(args) => crate::client::export::run(args).await,
        Command::Demo(args) => crate::client::demo::run(args).await,
        Command::Report(args) => crate::client::report::run(args).await,
    }
}

async fn serve(config: ServeConfig) -> anyhow::Result<()> {
    let telemetry = crate::telemetry::init(config.log_format, config.otlp_endpoint().as_deref())?;
    tracing::info!(?config, "starting salesmetrics");
    let result = serve_until_signal(config).await;
    // After the server stopped, so the spans of the last calls are sent too.
    telemetry.shutdown().await;
    result
}

async fn serve_until_signal(config: ServeConfig) -> anyhow::Result<()> {
    // Refuse an insecure set-up before touching the database (checked again
    // against the bound address in `serve`).
    config.check_security(config.listen)?;
    let database_url = config.database_url();
    let store = crate::store::connect_with(&database_url, config.store_options())
        .await
        .map_err(|err| anyhow::anyhow!(crate::store::explain_open_error(&database_url, &err)))?;
    store
        .ensure_tenant(crate::auth::DEFAULT_TENANT)
        .await
        .map_err(|err| anyhow::anyhow!("cannot create the default tenant: {err:#}"))?;
    // Before "listening" is logged: see `shutdown_signal`.
    let shutdown = shutdown_signal();
    let listener = tokio::net::TcpListener::bind(config.listen)
        .await
        .map_err(|err| anyhow::anyhow!("cannot listen on {}: {err}", config.listen))?;
    let metrics_listener = match config.metrics_listen {
        Some(address) => {
            let listener = crate::server::bind_metrics(address).await?;
            tracing::info!(address = %listener.local_addr()?, "serving metrics at /metrics");
            Some(listener)
        }
        None => None,
    };
    tracing::info!(address = %listener.local_addr()?, "listening");
    crate::server::serve_with_metrics(listener, metrics_listener, config, store, shutdown).await?;
    tracing::info!("stopped");
    Ok(())
}

/// A future that resolves on SIGINT (Ctrl-C), SIGTERM or SIGHUP, each
/// starting the same graceful drain. SIGHUP would otherwise end the process
/// at once (its default action), cutting in-flight calls; a closed terminal
/// or a supervisor's "reload" must not do that. Nothing is reloaded: restart
/// to pick up new settings or certificates.
///
/// The handlers are installed when this is called, not when the future is
/// first polled, so a signal sent as soon as "listening" is logged already
/// drains instead of killing the process.
fn shutdown_signal() -> impl std::future::Future<Output = ()> + Send + 'static {
    #[cfg(unix)]
    {
        use tokio::signal::unix::{SignalKind, signal};
        let installed: Vec<_> = [
            (SignalKind::interrupt(), "SIGINT"),
            (SignalKind::terminate(), "SIGTERM"),
            (SignalKind::hangup(), "SIGHUP"),
        ]
        .into_iter()
        .filter_map(|(kind, name)| match signal(kind) {
            Ok(handler) => Some((handler, name)),
            Err(err) => {
                tracing::error!(error = %err, signal = name, "cannot listen for the signal");
                None
            }
        })
        .collect();
        async move {
            if installed.is_empty() {
                return std::future::pending().await;
            }
            let received = installed.into_iter().map(|(mut handler, name)| {
                Box::pin(async move {
                    handler.recv().await;
                    name
                })
            });
            let (name, _, _) = futures::future::select_all(received).await;
            tracing::info!(signal = name, "signal received");
        }
    }
    #[cfg(not(unix))]
    async {
        if let Err(err) = tokio::signal::ctrl_c().await {
            tracing::error!(error = %err, "cannot listen for Ctrl-C");
            std::future::pending::<()>().await;
        }
    }
}
