use clap::Parser;
use cli::args::{Cli, Command};
use cli::workflows::CliWorkflow;
use cli::{export, history, travel, CliError};

async fn run(cli: Cli) -> Result<(), CliError> {
    match cli.command {
        Command::History { id, workflow, json } => {
            let workflow = CliWorkflow::named(&workflow.name)?;
            let store = cli::connect(cli.store_url.expose()).await?;
            history::run(
                store.as_ref(),
                &workflow,
                &id,
                json,
                &mut std::io::stdout().lock(),
            )
            .await
        }
        Command::State {
            id,
            workflow,
            at,
            json,
        } => {
            let workflow = CliWorkflow::named(&workflow.name)?;
            let store = cli::connect(cli.store_url.expose()).await?;
            travel::run(
                store.as_ref(),
                &workflow,
                &id,
                at,
                json,
                &mut std::io::stdout().lock(),
            )
            .await
        }
        Command::Export(args) => {
            let store = cli::connect(cli.store_url.expose()).await?;
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
            blue_green,
            rollback,
            read_model_url,
        } => {
            let mut config = projector::Config::local(cli.store_url.expose());
            config.read_model_url = read_model_url.unwrap_or_else(|| cli.store_url.clone());
            let registered = projector::startup::register(&config)
                .await
                .map_err(|e| match e {
                    projector::ProjectorError::Store(s) => CliError::from(s),
                    other => CliError::Failed(other.to_string()),
                })?;
            let Some(runtime) = registered.iter().find(|r| r.name() == projection) else {
                let known: Vec<_> = registered.iter().map(|r| r.name()).collect();
                return Err(CliError::Usage(format!(
                    "unknown projection '{projection}'; the projector's projections: {}",
                    known.join(", ")
                )));
            };
            let bar = indicatif::ProgressBar::new_spinner();
            bar.set_style(
                indicatif::ProgressStyle::with_template(
                    "{spinner} {elapsed_precise} {human_pos} events replayed ({per_sec}) {msg}",
                )
                .unwrap_or_else(|_| indicatif::ProgressStyle::default_spinner()),
            );
            let mut progress = |p: projector::Progress| {
                bar.set_position(p.events);
                if let Some(pos) = p.position {
                    bar.set_message(format!("at {pos}"));
                }
            };
            if !(blue_green || rollback) {
                let total = runtime
                    .rebuild(&mut progress)
                    .await
                    .map_err(|e| CliError::Failed(format!("rebuild failed: {e}")))?;
                bar.finish_and_clear();
                eprintln!("rebuilt {projection}: {total} events replayed");
                return Ok(());
            }
            let (what, switched) = if rollback {
                ("rollback", runtime.rollback(&mut progress).await)
            } else {
                (
                    "blue/green rebuild",
                    runtime.rebuild_blue_green(&mut progress).await,
                )
            };
            bar.finish_and_clear();
            let switched = switched.map_err(|e| match e {
                projector::ProjectorError::NoPreviousVersion(_)
                | projector::ProjectorError::BlueGreenRunning(_) => {
                    CliError::Usage(format!("{what} refused: {e}"))
                }
                other => CliError::Failed(format!("{what} failed: {other}")),
            })?;
            let position = switched
                .position
                .map_or_else(|| "the start".to_owned(), |p| p.to_string());
            eprintln!(
                "{what} of {projection} switched in at {position}: {} events replayed beforehand, \
                 {} at the switch; the replaced version is kept for `milestone rebuild {projection} \
                 --rollback`",
                switched.replayed, switched.applied_at_switch
            );
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
