//! The `terrastream` command line.

use terrastream::error_line::one_line;
use std::path::PathBuf;
use std::process::ExitCode;

use anyhow::Context;
use clap::{Parser, Subcommand};
use terrastream::map::{self, MapConfig};
use terrastream::telemetry::{LogFormat, init_logging};
use terrastream_ingest::memory::HeapBound;

/// Streaming Earth-observation foundation-model inference: STAC scenes in, TerraMind
/// embeddings and maps out.
#[derive(Debug, Parser)]
#[command(name = "terrastream", version, about)]
struct Cli {
    /// Log format (level from RUST_LOG, default info).
    #[arg(long, global = true, value_enum, default_value_t = LogFormat::Text, env = "TERRASTREAM_LOG_FORMAT")]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run a mapping job: the scenes of a config into GeoParquet embeddings, resumably
    /// (`terrastream map run.toml`), or show its plan (`terrastream map plan run.toml`).
    #[command(args_conflicts_with_subcommands = true, subcommand_negates_reqs = true)]
    Map {
        #[command(subcommand)]
        action: Option<MapAction>,
        #[command(flatten)]
        run: MapArgs,
    },
    /// SQL over the outputs (`terrastream sql "SELECT ..." --tables OUT`); without a query, an
    /// interactive shell.
    Sql(terrastream::sql::SqlArgs),
    /// Label every chip of an output store from a few labelled example points or polygons.
    Classify(terrastream::classify::ClassifyArgs),
    /// The chips most similar to a chip (by id) or to the chip under a point.
    Similar(terrastream::classify::similar::SimilarArgs),
    /// Flood mapping: water masks from Sentinel-1/2.
    #[command(subcommand)]
    Flood(FloodCommand),
    /// Inspect (Cloud-Optimized) GeoTIFFs.
    #[command(subcommand)]
    Cog(CogCommand),
    /// Run TerraMind on your own tensors.
    #[command(subcommand)]
    Model(ModelCommand),
    /// Query STAC APIs.
    #[command(subcommand)]
    Stac(StacCommand),
}

#[derive(Debug, Subcommand)]
enum MapAction {
    /// The work units (grid tile x period) with their scenes, chip estimates, shard and
    /// manifest state.
    Plan(MapArgs),
}

#[derive(Debug, Clone, clap::Args)]
struct MapArgs {
    /// The run config (TOML).
    #[arg(required = true)]
    config: Option<PathBuf>,
    /// Output location (directory, file:// or s3://bucket/prefix), overriding `output.dir`.
    #[arg(long)]
    out: Option<String>,
    /// This process's shard I/N (0-based). Without it: SLURM_ARRAY_TASK_ID/COUNT or
    /// JOB_COMPLETION_INDEX from the environment, else the whole run.
    #[arg(long)]
    shard: Option<String>,
    /// Print the summary (or plan) as JSON on stdout, without progress bars.
    #[arg(long)]
    json: bool,
    /// Keep running: plan and run again every SECONDS (new, late and updated scenes of a `stac`
    /// source are mapped as they appear; finished units are skipped) until SIGINT/SIGTERM.
    #[arg(long, value_name = "SECONDS")]
    watch: Option<f64>,
}

#[derive(Debug, Subcommand)]
enum StacCommand {
    /// Search items (following `next` links); prints one item per line (NDJSON).
    Search(terrastream::stac_cmd::SearchArgs),
    /// Poll a search for new items (watermark in --state); prints each new item once (NDJSON).
    Poll(terrastream::stac_cmd::PollArgs),
    /// Walk a static catalog (child and item links); prints its items (NDJSON).
    Catalog(terrastream::stac_cmd::CatalogArgs),
}

#[derive(Debug, Subcommand)]
enum FloodCommand {
    /// One water mask (1 water, 0 dry, 255 no data) as a COG from co-registered rasters on disk.
    Water(terrastream::flood::water_cmd::WaterArgs),
    /// One event, one shot: STAC search, water, change detection, flood map, polygons, summary.
    Run(terrastream::flood::run_cmd::RunArgs),
    /// The flood-mapping HTTP service (`flood serve flood.toml`): events by POST or from watched AOIs.
    Serve(terrastream::flood::serve::ServeArgs),
}

#[derive(Debug, Subcommand)]
enum ModelCommand {
    /// Encoder (and TiM) outputs for per-modality input tensors, named as the parity fixtures.
    Embed(terrastream::model_cmd::EmbedArgs),
    /// TiM generation of intermediate modalities; LULC ids decoded to a class map.
    Generate(terrastream::model_cmd::GenerateArgs),
}

#[derive(Debug, Subcommand)]
enum CogCommand {
    /// Size, tiles, compression, data type, CRS, transform, nodata and overviews, as JSON.
    Info {
        /// Path, file:// URL or URL of the GeoTIFF.
        href: String,
    },
    /// Read a window of the full-resolution image (all bands) into a NumPy .npy file, in the
    /// file's own data type, shape (bands, height, width).
    Read {
        /// Path, file:// URL or URL of the GeoTIFF.
        href: String,
        /// COL,ROW,WIDTH,HEIGHT in pixels.
        #[arg(long)]
        window: String,
        /// Output .npy file.
        #[arg(long)]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    // Before any thread allocates: a run's peak memory then stays flat as scenes stream through
    // (see terrastream_ingest::memory). `TERRASTREAM_BOUNDED_HEAP=0` keeps glibc's defaults;
    // `=mmap` trades speed for a little less memory.
    let heap_setting = std::env::var("TERRASTREAM_BOUNDED_HEAP").ok();
    let heap_bound = match heap_setting.as_deref() {
        Some("0") => None,
        Some("mmap") => Some(HeapBound::MmapThreshold),
        _ => Some(HeapBound::SingleArena),
    };
    let heap_bounded = heap_bound.is_some_and(terrastream_ingest::memory::bound_heap_growth);
    let cli = Cli::parse();
    init_logging(cli.log_format);
    // Panics that a stage recovers from (a third-party parser choking on a bad file) are
    // reported as that input's error; log them on one line instead of a backtrace.
    std::panic::set_hook(Box::new(|info| {
        let at = info.location().map(|l| format!("{}:{}", l.file(), l.line())).unwrap_or_default();
        let msg = terrastream_ingest::cog::panic_message(info.payload());
        tracing::error!(at, "internal panic: {msg}");
    }));
    if let Some(v) = heap_setting.filter(|v| !["0", "1", "mmap"].contains(&v.as_str())) {
        tracing::warn!("TERRASTREAM_BOUNDED_HEAP={v:?} is not 0, 1 or mmap; using 1 (one malloc arena)");
    }
    tracing::debug!(?heap_bound, applied = heap_bounded, "malloc heap bound");
    let runtime = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
        Ok(r) => r,
        Err(e) => {
            eprintln!("error: cannot start the async runtime: {e}");
            return ExitCode::FAILURE;
        }
    };
    match runtime.block_on(run(cli.command)) {
        Ok(code) => code,
        Err(e) => {
            eprintln!("error: {}", one_line(&e));
            ExitCode::FAILURE
        }
    }
}

async fn run(command: Command) -> anyhow::Result<ExitCode> {
    match command {
        Command::Map { action: Some(MapAction::Plan(args)), .. } => {
            let (cfg, path, shard) = map_setup(&args)?;
            let mut out = std::io::stdout().lock();
            terrastream::map_cmd::print_plan(&cfg, shard.0, args.json, &mut out)
                .await
                .with_context(|| format!("map plan {}", path.display()))?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Map { action: None, run: args } => {
            let (cfg, path, (shard, source)) = map_setup(&args)?;
            let options = map::RunOptions { shard, shard_source: Some(source), quiet: args.json, search_from: None };
            if let Some(secs) = args.watch {
                let interval = std::time::Duration::try_from_secs_f64(secs)
                    .ok()
                    .filter(|d| !d.is_zero())
                    .with_context(|| format!("--watch {secs}: give a positive number of seconds"))?;
                terrastream::map_cmd::watch(&cfg, options, interval, |cycle, summary| {
                    if args.json {
                        // One line per cycle: a stream of JSON objects.
                        println!("{}", serde_json::to_string(summary).unwrap_or_default());
                    } else {
                        println!("cycle {cycle}:\n{summary}");
                    }
                    for failure in &summary.failures {
                        eprintln!("error: {failure}");
                    }
                })
                .await
                .with_context(|| format!("map --watch {}", path.display()))?;
                return Ok(ExitCode::SUCCESS);
            }
            let summary = map::run(&cfg, options).await.with_context(|| format!("map {}", path.display()))?;
            if args.json {
                println!("{}", serde_json::to_string_pretty(&summary)?);
            } else {
                println!("{summary}");
            }
            for failure in &summary.failures {
                eprintln!("error: {failure}");
            }
            Ok(if summary.ok() { ExitCode::SUCCESS } else { ExitCode::FAILURE })
        }
        Command::Sql(args) => {
            terrastream::sql::run(&args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Flood(FloodCommand::Water(args)) => {
            let summary = terrastream::flood::water_cmd::water(&args).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Flood(FloodCommand::Run(args)) => {
            let outcome = terrastream::flood::run_cmd::run(&args).await?;
            println!("{}", serde_json::to_string_pretty(&outcome.summary)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Flood(FloodCommand::Serve(args)) => {
            terrastream::flood::serve::serve(&args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Classify(args) => {
            let summary = terrastream::classify::classify(&args).await?;
            println!("{}", serde_json::to_string_pretty(&summary)?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Similar(args) => {
            terrastream::classify::similar::similar(&args).await?;
            Ok(ExitCode::SUCCESS)
        }
        Command::Model(ModelCommand::Embed(args)) => {
            let names = tokio::task::spawn_blocking(move || terrastream::model_cmd::embed(&args)).await??;
            println!("wrote {}", names.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Model(ModelCommand::Generate(args)) => {
            let names = tokio::task::spawn_blocking(move || terrastream::model_cmd::generate(&args)).await??;
            println!("wrote {}", names.join(", "));
            Ok(ExitCode::SUCCESS)
        }
        Command::Stac(StacCommand::Search(args)) => {
            let n = terrastream::stac_cmd::search(&args, std::io::stdout().lock()).await?;
            tracing::info!(items = n, "search done");
            Ok(ExitCode::SUCCESS)
        }
        Command::Stac(StacCommand::Poll(args)) => {
            let n = terrastream::stac_cmd::poll(&args, std::io::stdout().lock()).await?;
            tracing::info!(items = n, "poll done");
            Ok(ExitCode::SUCCESS)
        }
        Command::Stac(StacCommand::Catalog(args)) => {
            let n = terrastream::stac_cmd::catalog(&args, std::io::stdout().lock()).await?;
            tracing::info!(items = n, "catalog done");
            Ok(ExitCode::SUCCESS)
        }
        Command::Cog(CogCommand::Info { href }) => {
            println!("{:#}", terrastream::cog::info(&href).await?);
            Ok(ExitCode::SUCCESS)
        }
        Command::Cog(CogCommand::Read { href, window, out }) => {
            terrastream::cog::read(&href, terrastream::cog::parse_window(&window)?, &out).await?;
            Ok(ExitCode::SUCCESS)
        }
    }
}

/// The config (with `--out` applied), its path and the shard of a `map` command.
fn map_setup(args: &MapArgs) -> anyhow::Result<(MapConfig, PathBuf, (map::shard::Shard, map::shard::ShardSource))> {
    let path = args.config.clone().context("map: give the run config (TOML)")?;
    let mut cfg = MapConfig::from_path(&path)?;
    if let Some(out) = &args.out {
        map::output::OutputLocation::parse(out).context("--out")?;
        cfg.output.dir = out.clone();
    }
    let shard = map::shard::Shard::resolve(args.shard.as_deref(), |k| std::env::var(k).ok(), cfg.run.shards)?;
    Ok((cfg, path, shard))
}

