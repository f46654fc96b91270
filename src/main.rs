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

#[tokio::main]
async fn main() -> anyhow::Result<()> {
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_env("PARLEY_LOG")
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_writer(std::io::stderr)
        .init();
    let cli = Cli::parse();
    let settings = Settings::from_env()?;
    match cli.command.unwrap_or(Command::Serve) {
        Command::Serve => {
            Application::build(settings)
                .await?
                .run_until_stopped()
                .await?
        }
        Command::Migrate => {
            let pool = persistence::connect_pool(&settings)?;
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
            let token = JwtKeys::new(&settings.jwt_secret).mint(
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
