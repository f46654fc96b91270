//! The `parley` command: `serve`, `migrate`, `token`. Thin: parse, set up
//! tracing, call the library.

use clap::{Parser, Subcommand};
use parley::{Application, config::Settings, http::auth::JwtKeys, persistence};

#[derive(Parser)]
#[command(
    name = "parley",
    version,
    about = "Realtime chat server for marketplaces"
)]
struct Cli {
    #[command(subcommand)]
    command: Option<Command>,
}

#[derive(Subcommand)]
enum Command {
    /// Apply migrations and serve HTTP + WebSocket (the default).
    Serve,
    /// Apply pending database migrations and exit.
    Migrate,
    /// Print a development JWT signed with the configured PARLEY_JWT_SECRET.
    Token {
        /// User id (the token's `sub`).
        #[arg(long)]
        user: String,
        /// Display name.
        #[arg(long)]
        name: String,
        /// One of recruiter, company, candidate, admin.
        #[arg(long)]
        role: String,
        #[arg(long)]
        email: Option<String>,
        /// Lifetime in seconds.
        #[arg(long, default_value_t = 86_400)]
        ttl: i64,
    },
}

/// Runs the command; a failure prints one readable line (with its causes)
/// and exits with status 1.
#[tokio::main]
async fn main() -> std::process::ExitCode {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PARLEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        // Colour only for a person at a terminal, not in log files and collectors.
        .with_ansi(std::io::IsTerminal::is_terminal(&std::io::stderr()))
        .init();
    let cli = Cli::parse();
    match run(cli.command.unwrap_or(Command::Serve)).await {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            eprintln!("parley: {e:#}");
            std::process::ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<()> {
    let settings = Settings::load()?;
    match command {
        Command::Serve => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await?
        }
        Command::Migrate => {
            let pool = persistence::connect_pool(&settings.database)?;
            let applied = persistence::migrations::run(&pool).await?;
            println!("{applied} migration(s) applied");
        }
        Command::Token {
            user,
            name,
            role,
            email,
            ttl,
        } => {
            anyhow::ensure!(
                parley::persistence::users::ROLES.contains(&role.as_str()),
                "--role must be one of {:?}",
                parley::persistence::users::ROLES
            );
            let token = JwtKeys::new(&settings.auth.jwt_secret).mint(
                &user,
                &name,
                &role,
                email.as_deref(),
                ttl,
            )?;
            println!("{token}");
        }
    }
    Ok(())
}
