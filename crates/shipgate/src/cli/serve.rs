//! `shipgate serve` (with `--demo`), `shipgate config example` and `shipgate openapi`: the
//! commands that need no running server.
use std::path::PathBuf;

use clap::{Args, Subcommand};
use shipgate_server::{Application, Settings};

use crate::client::{CliError, CliResult};
use crate::exit;

#[derive(Args)]
pub struct ServeArgs {
    /// TOML configuration file (SHIPGATE_* environment variables override it).
    #[arg(long, env = "SHIPGATE_CONFIG")]
    config: Option<PathBuf>,
    /// Load demo data (teams, services, environments, 60 days of deployments) into an empty store.
    #[arg(long)]
    demo: bool,
}

#[derive(Subcommand)]
pub enum ConfigCmd {
    /// Print a commented example configuration.
    Example,
}

pub fn print_example_config() {
    print!("{}", shipgate_server::config::EXAMPLE);
}

pub fn print_openapi() -> CliResult<()> {
    println!(
        "{}",
        shipgate_server::routes::openapi()
            .to_pretty_json()
            .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))?
    );
    Ok(())
}

/// Startup lines go to stderr; a closed stderr must not bring the server down.
fn say(a: std::fmt::Arguments) {
    use std::io::Write;
    let _ = writeln!(std::io::stderr(), "{a}");
}

pub async fn serve(args: &ServeArgs) -> CliResult<()> {
    let mut settings = Settings::load(args.config.as_deref())?;
    shipgate_server::telemetry::init_tracing(&settings.log_format);
    if args.demo && std::env::var("SHIPGATE_DATABASE_URL").is_err() && args.config.is_none() {
        settings.database_url = "sqlite://shipgate-demo.db".into();
    }
    let (app, boot) = Application::build(
        settings.clone(),
        None,
        std::sync::Arc::new(shipgate_domain::time::SystemClock),
    )
    .await?;
    let url = format!(
        "http://{}:{}",
        settings
            .listen
            .rsplit_once(':')
            .map(|(h, _)| h)
            .unwrap_or("127.0.0.1"),
        app.port()
    );
    let mut token_line = boot
        .generated_admin_token
        .map(|t| format!("admin token (shown once): {t}"));
    if args.demo {
        let demo_token = seed_demo(&app, token_line.is_none()).await?;
        token_line = token_line.or(demo_token);
    }
    say(format_args!(
        "shipgate {} listening on {url} (store: {})",
        env!("CARGO_PKG_VERSION"),
        settings.database_url.split('?').next().unwrap_or("")
    ));
    if let Some(t) = &token_line {
        say(format_args!("{t}"));
        say(format_args!(
            "try:  SHIPGATE_URL={url} SHIPGATE_TOKEN=<token> shipgate running"
        ));
    }
    let stop = app.shutdown_token();
    tokio::spawn(stop_on_signal(move || stop.cancel()));
    app.run()
        .await
        .map_err(|e| CliError::new(exit::FAILURE, e.to_string()))
}

/// Seeds the demo data; with `need_token`, returns the line handing out a fresh admin token.
async fn seed_demo(app: &Application, need_token: bool) -> CliResult<Option<String>> {
    let store = app.store();
    let seeded = crate::demo::seed(store.as_ref()).await?;
    let mut token_line = None;
    if need_token {
        // A demo restarted on its old file: hand out a fresh admin token so it can be used at once.
        let t = crate::demo::demo_token(store.as_ref()).await?;
        token_line = Some(format!("admin token (demo): {t}"));
    }
    say(format_args!("demo data: {seeded}"));
    let approvals = crate::demo::seed_approvals(store.as_ref()).await?;
    say(format_args!("demo approvals: {approvals}"));
    Ok(token_line)
}

/// Waits for Ctrl-C (or SIGTERM), then stops the server: in-flight requests finish.
async fn stop_on_signal(stop: impl FnOnce() + Send) {
    let ctrl_c = tokio::signal::ctrl_c();
    #[cfg(unix)]
    {
        let mut term =
            match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
                Ok(t) => t,
                Err(_) => {
                    let _ = ctrl_c.await;
                    stop();
                    return;
                }
            };
        tokio::select! { _ = ctrl_c => {}, _ = term.recv() => {} }
    }
    #[cfg(not(unix))]
    let _ = ctrl_c.await;
    tracing::info!("shutting down: finishing in-flight requests");
    stop();
}
