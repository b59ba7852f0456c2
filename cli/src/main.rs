use clap::Parser;
use cli::args::{Cli, Command};
use cli::{export, history, travel, CliError};

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::History { order_id, json } => {
            let store = cli::connect(&cli.store_url).await?;
            history::run(
                store.as_ref(),
                &order_id,
                json,
                &mut std::io::stdout().lock(),
            )
            .await
        }
        Command::State { order_id, at, json } => {
            let store = cli::connect(&cli.store_url).await?;
            travel::run(
                store.as_ref(),
                &order_id,
                at,
                json,
                &mut std::io::stdout().lock(),
            )
            .await
        }
        Command::Export(args) => {
            let store = cli::connect(&cli.store_url).await?;
            let interrupt = async {
                let _ = tokio::signal::ctrl_c().await;
            };
            let s = export::run(store.as_ref(), &args, interrupt).await?;
            let resume = s
                .last_position
                .map(|p| format!("; continue with --after {p}"))
                .unwrap_or_default();
            if s.interrupted {
                eprintln!(
                    "interrupted: exported {} of {} events scanned{resume}",
                    s.exported, s.scanned
                );
            } else {
                eprintln!(
                    "exported {} of {} events scanned{}",
                    s.exported,
                    s.scanned,
                    s.last_position
                        .map(|p| format!(", up to position {p}"))
                        .unwrap_or_default()
                );
            }
            Ok(())
        }
        Command::Rebuild {
            projection,
            read_model_url,
        } => {
            if projection != projector::PROJECTION {
                return Err(CliError::Usage(format!(
                    "unknown projection '{projection}'; the one there is: {}",
                    projector::PROJECTION
                )));
            }
            let mut config = projector::Config::local(&cli.store_url);
            config.read_model_url = read_model_url
                .unwrap_or_else(|| cli.store_url.clone())
                .into();
            let projector = projector::Projector::connect(config)
                .await
                .map_err(|e| match e {
                    projector::ProjectorError::Store(s) => CliError::from(s),
                    other => CliError::Failed(other.to_string()),
                })?;
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} {human_pos} events replayed ({per_sec}) {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            let total = projector
                .rebuild(|p| {
                    bar.set_position(p.events);
                    if let Some(pos) = p.position {
                        bar.set_message(format!("at {pos}"));
                    }
                })
                .await
                .map_err(|e| CliError::Failed(format!("rebuild failed: {e}")))?;
            bar.finish_and_clear();
            eprintln!("rebuilt {projection}: {total} events replayed");
            Ok(())
        }
    }
}

#[tokio::main]
async fn main() {
    let cli = Cli::parse();
    if let Err(e) = run(cli).await {
        eprintln!("error: {e}");
        std::process::exit(e.exit_code());
    }
}
