//! `pixelrefer-studio`: the desktop app and its headless commands.

use clap::{Parser, Subcommand};
use pixelrefer_studio::cli;
use std::path::PathBuf;

#[derive(Parser)]
#[command(
    name = "pixelrefer-studio",
    version,
    about = "Click, track, ask, export."
)]
struct Args {
    #[command(subcommand)]
    command: Option<Command>,
    /// Media file, image folder or `*.prj.json` project to open in the app.
    path: Option<PathBuf>,
    /// App: look for model directories here first (SAM 2 and PixelRefer).
    #[arg(long, global = false)]
    models: Option<PathBuf>,
    /// App: where SAM 2 runs, and the chat panel's default (auto: CUDA when available).
    #[arg(long, value_enum, default_value = "auto")]
    device: cli::Device,
    /// App: intra-op threads per model (0: one per core).
    #[arg(long, default_value_t = 0)]
    threads: usize,
    /// App: model catalogue replacing the built-in one (also `$PIXELREFER_CATALOG`).
    #[arg(long)]
    catalog: Option<PathBuf>,
    /// App: run the models on this inference server (grpc://HOST:PORT; Models > Server… too).
    #[arg(long)]
    remote: Option<String>,
    /// App: open PATH, a folder of images, as the frames of one video at this many frames per
    /// second (File > Open folder as video…).
    #[arg(long)]
    fps: Option<f64>,
}

#[derive(Subcommand)]
enum Command {
    /// Print JSON facts about an image, image folder or video.
    Info {
        /// The media.
        media: PathBuf,
    },
    /// Write one frame, as displayed, to a PNG.
    Frame {
        /// The media.
        media: PathBuf,
        /// Frame index (0-based).
        #[arg(long, default_value_t = 0)]
        index: u64,
        /// Output PNG.
        #[arg(long)]
        out: PathBuf,
    },
    /// Make a project from media and COCO annotations made by another tool.
    Import {
        /// The media the annotations belong to.
        #[arg(long)]
        media: PathBuf,
        /// COCO JSON with RLE or polygon segmentations.
        #[arg(long)]
        coco: PathBuf,
        /// Project file to write.
        #[arg(long)]
        out: PathBuf,
    },
    /// Ask PixelRefer about regions of an image or video.
    Ask(cli::ask::AskArgs),
    /// Export a project's masks and text.
    Export {
        /// The project file.
        project: PathBuf,
        /// What to write.
        #[arg(long, value_enum)]
        format: cli::project_cmds::ExportFormat,
        /// Output folder.
        #[arg(long)]
        out: PathBuf,
    },
    /// Model directory commands.
    Models {
        #[command(subcommand)]
        command: ModelsCommand,
    },
    /// Track objects through a video with SAM 2 and write a regions file.
    ///
    /// PROMPTS is JSON: {"objects":[{"id":0,"label":"dog","prompts":[{"frame":0,"points":[[x,y,1]],"box":null}]}]}
    /// (points [x, y, label] in frame pixels, label 1 positive / 0 negative; box [x0,y0,x1,y1]).
    /// Propagates forward from the earliest prompted frame and backward from it; progress on stderr.
    Track {
        /// The video (or a folder of frames).
        video: PathBuf,
        /// SAM 2 model directory.
        #[arg(long)]
        model: PathBuf,
        /// Prompts JSON (see above).
        #[arg(long)]
        prompts: PathBuf,
        /// Regions JSON to write (`*.regions.json`).
        #[arg(long)]
        out: PathBuf,
        /// Where to run the model.
        #[arg(long, value_enum, default_value = "auto")]
        device: cli::Device,
        /// Intra-op threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Run the model on this inference server instead (grpc://HOST:PORT).
        #[arg(long)]
        remote: Option<String>,
    },
    /// Run describe, track or ask over a whole dataset: one result file per input, resumable,
    /// shardable (--shard I/N) for Slurm arrays, Kubernetes Indexed Jobs or Ray.
    Batch(cli::batch::BatchArgs),
    /// Serve models to a team from one GPU server.
    Serve {
        #[command(subcommand)]
        command: ServeCommand,
    },
}

#[derive(Subcommand)]
enum ServeCommand {
    /// Write a Triton model repository (ONNX Runtime backend, one model per graph) from model
    /// directories; start it with `tritonserver --model-repository REPO`.
    TritonRepo {
        /// Model directories (SAM 2, PixelRefer, PixelRefer-Lite).
        #[arg(required = true)]
        dirs: Vec<PathBuf>,
        /// The repository folder (created, or added to).
        #[arg(long)]
        out: PathBuf,
        /// Run instances on the server's CPUs instead of its GPUs.
        #[arg(long)]
        cpu: bool,
        /// Instances of each model (per GPU).
        #[arg(long, default_value_t = 1)]
        instances: u32,
        /// Largest dynamic batch of the batchable graphs (0: no batching).
        #[arg(long, default_value_t = 8)]
        max_batch: u32,
    },
    /// Check a server: its name, version and models, and which local models it can run.
    Check {
        /// The server (grpc://HOST:PORT).
        url: String,
        /// Look for local model directories here first (as the app's --models).
        #[arg(long)]
        models: Option<PathBuf>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
}

#[derive(Subcommand)]
enum ModelsCommand {
    /// Installed models, and the catalogue's models with sizes, licences and what is
    /// recommended for this machine.
    List {
        /// Look here first (as the app's --models).
        #[arg(long)]
        models: Option<PathBuf>,
        /// Catalogue file replacing the built-in one (also `$PIXELREFER_CATALOG`).
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
    },
    /// Download a catalogue model from the Hugging Face hub (resumable; `HF_ENDPOINT`,
    /// `HF_TOKEN`, `HF_HOME` honoured), export it, check it against the PyTorch reference and
    /// install it. Ctrl-C cancels.
    Fetch {
        /// Catalogue name (`models list`).
        name: String,
        /// Install into this folder (default: ~/.local/share/pixelrefer-studio/models).
        #[arg(long)]
        models: Option<PathBuf>,
        /// Catalogue file replacing the built-in one (also `$PIXELREFER_CATALOG`).
        #[arg(long)]
        catalog: Option<PathBuf>,
        /// Where the reference check runs the model.
        #[arg(long, value_enum, default_value = "cpu")]
        device: cli::Device,
        /// Intra-op threads for the reference check (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Delete an installed model directory (its download stays in the hub cache).
    Remove {
        /// The installed model's folder name.
        name: String,
        /// Look here first (as the app's --models).
        #[arg(long)]
        models: Option<PathBuf>,
    },
    /// How far a model (e.g. an int8 / int4 export) drifts from a reference model (its fp32
    /// export). PixelRefer: greedy token agreement over many steps with the reference's tokens
    /// fed to both, and the largest logit difference. SAM 2: the IoU of every mask, for clicks
    /// on one frame and two objects tracked through the frames.
    Compare {
        /// The reference model directory (the fp32 export).
        reference: PathBuf,
        /// The model to compare with it.
        other: PathBuf,
        /// PixelRefer: greedy steps compared.
        #[arg(long, default_value_t = 64)]
        steps: usize,
        /// SAM 2: frames tracked (the image shifted a little per frame).
        #[arg(long, default_value_t = 8)]
        frames: usize,
        /// Image to use (default: a synthetic one); two fixed regions are the objects.
        #[arg(long)]
        image: Option<PathBuf>,
        /// One JSON object instead of text.
        #[arg(long)]
        json: bool,
        /// Intra-op threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
    },
    /// Replay a model directory's bundled reference cases (SAM 2, PixelRefer, PixelRefer-Lite)
    /// and check parity with the official pipelines (exits non-zero beyond the tolerances).
    Verify {
        /// The model directory.
        dir: PathBuf,
        /// Where to run the model.
        #[arg(long, value_enum, default_value = "auto")]
        device: cli::Device,
        /// Intra-op threads (0: one per core).
        #[arg(long, default_value_t = 0)]
        threads: usize,
        /// Run the model on this inference server instead (grpc://HOST:PORT).
        #[arg(long)]
        remote: Option<String>,
    },
}

fn main() -> std::process::ExitCode {
    env_logger::Builder::from_env(env_logger::Env::default().default_filter_or("info")).init();
    let args = Args::parse();
    let result = match args.command {
        Some(Command::Info { media }) => cli::media_cmds::info(&media),
        Some(Command::Frame { media, index, out }) => cli::media_cmds::frame(&media, index, &out),
        Some(Command::Import { media, coco, out }) => {
            cli::project_cmds::import(&media, &coco, &out)
        }
        Some(Command::Export {
            project,
            format,
            out,
        }) => cli::project_cmds::export(&project, format, &out),
        Some(Command::Models {
            command:
                ModelsCommand::List {
                    models,
                    catalog,
                    json,
                },
        }) => cli::models_cmds::list(models.as_deref(), catalog.as_deref(), json),
        Some(Command::Models {
            command:
                ModelsCommand::Fetch {
                    name,
                    models,
                    catalog,
                    device,
                    threads,
                },
        }) => cli::session_options(device, threads, None)
            .map_err(anyhow::Error::from)
            .and_then(|session| {
                cli::models_cmds::fetch(&name, models.as_deref(), catalog.as_deref(), session)
            }),
        Some(Command::Models {
            command: ModelsCommand::Remove { name, models },
        }) => cli::models_cmds::remove(&name, models.as_deref()),
        Some(Command::Models {
            command:
                ModelsCommand::Compare {
                    reference,
                    other,
                    steps,
                    frames,
                    image,
                    json,
                    threads,
                },
        }) => cli::session_options(cli::Device::Cpu, threads, None)
            .map_err(anyhow::Error::from)
            .and_then(|options| {
                let probe = cli::models_cmds::CompareProbe {
                    image: image.as_deref(),
                    steps,
                    frames,
                };
                cli::models_cmds::compare(&reference, &other, probe, json, &options)
            }),
        Some(Command::Models {
            command:
                ModelsCommand::Verify {
                    dir,
                    device,
                    threads,
                    remote,
                },
        }) => cli::session_options(device, threads, remote.as_deref())
            .map_err(anyhow::Error::from)
            .and_then(|options| cli::sam_cmds::verify(&dir, &options)),
        Some(Command::Track {
            video,
            model,
            prompts,
            out,
            device,
            threads,
            remote,
        }) => cli::session_options(device, threads, remote.as_deref())
            .map_err(anyhow::Error::from)
            .and_then(|options| cli::sam_cmds::track(&video, &model, &prompts, &out, &options)),
        Some(Command::Ask(ask)) => cli::ask::run(&ask),
        Some(Command::Batch(batch)) => cli::batch::run(&batch),
        Some(Command::Serve {
            command:
                ServeCommand::TritonRepo {
                    dirs,
                    out,
                    cpu,
                    instances,
                    max_batch,
                },
        }) => cli::serve_cmds::triton_repo(&dirs, &out, cpu, instances, max_batch),
        Some(Command::Serve {
            command: ServeCommand::Check { url, models, json },
        }) => cli::serve_cmds::check(&url, models.as_deref(), json),
        None => open_app(AppArgs {
            path: args.path,
            models: args.models,
            device: args.device,
            threads: args.threads,
            catalog: args.catalog,
            remote: args.remote,
            fps: args.fps,
        }),
    };
    match result {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(err) => {
            eprintln!("error: {}", cli::one_sentence(&err));
            std::process::ExitCode::FAILURE
        }
    }
}

/// What the app takes from the command line (the options without a subcommand).
#[cfg_attr(not(feature = "gui"), allow(dead_code))]
struct AppArgs {
    path: Option<PathBuf>,
    models: Option<PathBuf>,
    device: cli::Device,
    threads: usize,
    catalog: Option<PathBuf>,
    remote: Option<String>,
    fps: Option<f64>,
}

/// Opens the desktop app on `path` (no subcommand).
#[cfg(feature = "gui")]
fn open_app(args: AppArgs) -> anyhow::Result<()> {
    let session = cli::session_options(args.device, args.threads, args.remote.as_deref())?;
    check_frames_fps(args.path.as_deref(), args.fps)?;
    pixelrefer_studio::ui::run(
        args.path,
        pixelrefer_studio::ui::AppOptions {
            models_dir: args.models,
            catalog: args.catalog,
            session,
            frames_fps: args.fps,
        },
    )
}

/// A build without the `gui` feature has no window to open: it says so and names the commands.
#[cfg(not(feature = "gui"))]
fn open_app(_args: AppArgs) -> anyhow::Result<()> {
    anyhow::bail!(
        "this build of pixelrefer-studio is the command line only (built without the `gui` feature), so it has no window to open; give it a command such as `track`, `ask`, `export` or `models verify` (see --help)"
    )
}

/// Refuses `--fps` without a folder to open, or a rate `media::open_frames` would refuse, before
/// the window opens.
#[cfg(feature = "gui")]
fn check_frames_fps(path: Option<&std::path::Path>, fps: Option<f64>) -> anyhow::Result<()> {
    let Some(fps) = fps else {
        return Ok(());
    };
    let max = pixelrefer_studio::media::MAX_FRAMES_FPS;
    if !(fps.is_finite() && fps > 0.0 && fps <= max) {
        anyhow::bail!("--fps must be above 0 and at most {max}, not {fps}");
    }
    match path {
        Some(p) if p.is_dir() => Ok(()),
        Some(p) => anyhow::bail!(
            "--fps opens a folder of images as a video, but {} is not a folder",
            p.display()
        ),
        None => anyhow::bail!("--fps needs a folder of images to open as a video"),
    }
}
