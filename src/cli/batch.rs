//! `pixelrefer-studio batch describe|track|ask`: the engines over a whole dataset.
//!
//! * one result file per input, `OUT/<input path with / as __>.regions.json`, written atomically,
//!   so a result that exists is complete and a rerun skips it (resume);
//! * `--shard I/N` keeps the inputs whose position in the sorted list is I modulo N: N copies of
//!   the same command (a Slurm array, a Kubernetes Indexed Job, Ray tasks) cover every input
//!   exactly once between them;
//! * a JSONL log per shard (`OUT/batch-log[.shard-I-of-N].jsonl`) with one line per input:
//!   status, seconds, error, where the model ran;
//! * a failed input is logged and the run goes on; the exit status says whether any failed.
//!
//! Inputs: `describe` and `ask` take projects (`*.prj.json`, every item with objects); `track`
//! takes prompt files (`X.prompts.json`, the format of `track --prompts`) beside their media `X`
//! (a video or a frame folder). `--inputs` is a folder (searched recursively), one such file, or
//! a text file listing them (one path per line, relative to the list's folder; `#` comments).

use super::Device;
use super::ask::AskArgs;
use crate::jobs::refer_job::describe_prompt;
use crate::project::{self, ChatTurn, Document, ModelRecord, Role};
use crate::refer::{CancelToken, PixelRefer, Variant};
use crate::runtime::{Manifest, SessionOptions};
use anyhow::{Context, Result, anyhow, bail};
use std::io::Write;
use std::path::{Path, PathBuf};
use std::time::Instant;

/// What a batch does to each input.
#[derive(Debug, Clone, Copy, PartialEq, Eq, clap::ValueEnum)]
pub enum BatchTask {
    /// Caption every object of every project (PixelRefer).
    Describe,
    /// Track prompt files through their videos (SAM 2).
    Track,
    /// Ask one question about every project's objects (PixelRefer).
    Ask,
}

/// Arguments of `batch`.
#[derive(Debug, Clone, clap::Args)]
pub struct BatchArgs {
    /// describe, track or ask.
    #[arg(value_enum)]
    pub task: BatchTask,
    /// A folder of inputs, one input, or a text file listing inputs.
    #[arg(long)]
    pub inputs: PathBuf,
    /// Folder for the results and the log.
    #[arg(long)]
    pub out: PathBuf,
    /// The model directory (PixelRefer for describe/ask, SAM 2 for track).
    #[arg(long)]
    pub model: PathBuf,
    /// The question (ask), with `<objectN>` tags or none for all objects.
    #[arg(long)]
    pub question: Option<String>,
    /// Run only shard I of N (0-based), e.g. `--shard $SLURM_ARRAY_TASK_ID/$N`.
    #[arg(long)]
    pub shard: Option<String>,
    /// Run the model on this inference server (grpc://HOST:PORT).
    #[arg(long)]
    pub remote: Option<String>,
    /// Where to run the model locally.
    #[arg(long, value_enum, default_value = "auto")]
    pub device: Device,
    /// Intra-op threads (0: one per core).
    #[arg(long, default_value_t = 0)]
    pub threads: usize,
    /// Most tokens per answer.
    #[arg(long, default_value_t = 512)]
    pub max_new_tokens: usize,
    /// Most frames of a video given to PixelRefer.
    #[arg(long, default_value_t = crate::refer::DEFAULT_MAX_VIDEO_FRAMES)]
    pub max_frames: usize,
}

/// Shard `index` of `count`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Shard {
    /// 0-based index.
    pub index: usize,
    /// Number of shards.
    pub count: usize,
}

impl Shard {
    /// Parses `I/N` with `0 <= I < N`.
    pub fn parse(text: &str) -> Result<Shard> {
        let bad = || anyhow!("--shard {text} is not accepted: give I/N with 0 <= I < N, e.g. 0/4");
        let (i, n) = text.trim().split_once('/').ok_or_else(bad)?;
        let index: usize = i.trim().parse().map_err(|_| bad())?;
        let count: usize = n.trim().parse().map_err(|_| bad())?;
        if count == 0 || index >= count {
            return Err(bad());
        }
        Ok(Shard { index, count })
    }

    /// Whether the input at `position` of the sorted list belongs to this shard.
    pub fn owns(&self, position: usize) -> bool {
        position % self.count == self.index
    }
}

/// The suffix of an input file of `task`.
fn input_suffix(task: BatchTask) -> &'static str {
    match task {
        BatchTask::Describe | BatchTask::Ask => ".prj.json",
        BatchTask::Track => ".prompts.json",
    }
}

/// One input and where its result goes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BatchInput {
    /// The input file.
    pub path: PathBuf,
    /// Its result file.
    pub output: PathBuf,
}

fn walk(dir: &Path, suffix: &str, depth: usize, found: &mut Vec<PathBuf>) -> Result<()> {
    if depth > 32 {
        return Ok(());
    }
    let entries =
        std::fs::read_dir(dir).with_context(|| format!("cannot list {}", dir.display()))?;
    for entry in entries {
        let entry = entry.with_context(|| format!("cannot list {}", dir.display()))?;
        let name = entry.file_name().to_string_lossy().into_owned();
        if name.starts_with('.') {
            continue;
        }
        let path = entry.path();
        let ty = entry.file_type()?;
        if ty.is_dir() {
            walk(&path, suffix, depth + 1, found)?;
        } else if name.ends_with(suffix) {
            found.push(path);
        }
    }
    Ok(())
}

/// The result file name of `input` (found under `root`): its relative path with `/` as `__`,
/// the input suffix replaced by `.regions.json`.
fn output_name(input: &Path, root: &Path, suffix: &str) -> String {
    let rel = input.strip_prefix(root).unwrap_or(input);
    let rel = if rel.as_os_str().is_empty() || rel.is_absolute() {
        Path::new(input.file_name().unwrap_or(input.as_os_str()))
    } else {
        rel
    };
    let joined: Vec<String> = rel
        .components()
        .filter_map(|c| match c {
            std::path::Component::Normal(s) => Some(s.to_string_lossy().into_owned()),
            _ => None,
        })
        .collect();
    let joined = joined.join("__");
    let stem = joined.strip_suffix(suffix).unwrap_or(&joined);
    format!("{stem}.regions.json")
}

/// Lists the inputs of `task` in a stable (sorted) order with their result paths.
pub fn list_inputs(task: BatchTask, inputs: &Path, out: &Path) -> Result<Vec<BatchInput>> {
    let suffix = input_suffix(task);
    let (root, mut files) = if inputs.is_dir() {
        let mut found = Vec::new();
        walk(inputs, suffix, 0, &mut found)?;
        (inputs.to_path_buf(), found)
    } else if inputs.to_string_lossy().ends_with(suffix) {
        let root = inputs.parent().unwrap_or(Path::new("")).to_path_buf();
        (root, vec![inputs.to_path_buf()])
    } else {
        let bytes = project::read_bounded(inputs, 64 << 20)
            .with_context(|| format!("cannot read the input list {}", inputs.display()))?;
        let text = String::from_utf8(bytes)
            .map_err(|_| anyhow!("{} is not a UTF-8 list of inputs", inputs.display()))?;
        if text.trim_start().starts_with(['{', '[']) {
            bail!(
                "{} is JSON, not a list of inputs (one path a line); a project given alone \
                 must be named *{suffix}",
                inputs.display()
            );
        }
        let base = inputs.parent().unwrap_or(Path::new("")).to_path_buf();
        let files: Vec<PathBuf> = text
            .lines()
            .map(str::trim)
            .filter(|l| !l.is_empty() && !l.starts_with('#'))
            .map(|l| base.join(l))
            .collect();
        // A missing input is reported and skipped, but a list naming nothing that exists is
        // not a list of inputs at all (a wrong file given by mistake).
        if !files.is_empty() && !files.iter().any(|f| f.exists()) {
            bail!(
                "none of the {} paths listed in {} exists; is it a list of inputs (one path a \
                 line, relative to its folder)?",
                files.len(),
                inputs.display()
            );
        }
        (base, files)
    };
    files.sort();
    files.dedup();
    let mut seen = std::collections::BTreeMap::new();
    let mut list = Vec::with_capacity(files.len());
    for path in files {
        let name = output_name(&path, &root, suffix);
        if let Some(other) = seen.insert(name.clone(), path.clone()) {
            bail!(
                "{} and {} would both write {name}; rename one",
                other.display(),
                path.display()
            );
        }
        list.push(BatchInput {
            output: out.join(name),
            path,
        });
    }
    Ok(list)
}

/// The model a batch loaded once.
enum Loaded {
    Refer(Box<PixelRefer>),
    Sam(std::sync::Arc<crate::segment::Sam2Model>),
}

impl Loaded {
    fn placement(&self) -> String {
        match self {
            Loaded::Refer(m) => m.provider().to_string(),
            Loaded::Sam(m) => m.provider().to_string(),
        }
    }
}

/// What one input came to.
enum Outcome {
    Done { detail: serde_json::Value },
    Failed { error: String, partial: bool },
}

/// Runs `batch`.
pub fn run(args: &BatchArgs) -> Result<()> {
    let options = super::session_options(args.device, args.threads, args.remote.as_deref())?;
    let shard = args.shard.as_deref().map(Shard::parse).transpose()?;
    let question = match (args.task, &args.question) {
        (BatchTask::Ask, Some(q)) if !q.trim().is_empty() => Some(q.clone()),
        (BatchTask::Ask, _) => bail!("batch ask needs --question"),
        (_, Some(_)) => bail!("--question is for batch ask only"),
        (_, None) => None,
    };
    let all = list_inputs(args.task, &args.inputs, &args.out)?;
    if all.is_empty() {
        bail!(
            "no inputs: {} has no {} files",
            args.inputs.display(),
            input_suffix(args.task)
        );
    }
    let mine: Vec<BatchInput> = all
        .into_iter()
        .enumerate()
        .filter(|(i, _)| shard.is_none_or(|s| s.owns(*i)))
        .map(|(_, x)| x)
        .collect();
    if args.out.exists() && !args.out.is_dir() {
        bail!(
            "--out {} is a file; a batch writes its results and log into a folder",
            args.out.display()
        );
    }
    std::fs::create_dir_all(&args.out)
        .with_context(|| format!("cannot create {}", args.out.display()))?;
    let log_path = args.out.join(match shard {
        Some(s) => format!("batch-log.shard-{}-of-{}.jsonl", s.index, s.count),
        None => "batch-log.jsonl".to_string(),
    });
    let mut log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(&log_path)
        .with_context(|| format!("cannot open the log {}", log_path.display()))?;
    let todo: Vec<&BatchInput> = mine.iter().filter(|x| !x.output.is_file()).collect();
    let skipped = mine.len() - todo.len();
    eprintln!(
        "[batch] {} inputs in this shard, {skipped} already done, {} to run; log {}",
        mine.len(),
        todo.len(),
        log_path.display()
    );
    if todo.is_empty() {
        return Ok(());
    }
    let model = load_model(args.task, &args.model, &options)?;
    let placement = model.placement();
    eprintln!("[batch] {} on {placement}", args.model.display());
    let cancel = super::cancel_on_ctrl_c("the batch");
    let bar = indicatif::ProgressBar::new(todo.len() as u64);
    bar.set_style(
        indicatif::ProgressStyle::with_template(
            "[batch] {bar:30} {pos}/{len} {elapsed_precise} eta {eta} {msg}",
        )
        .unwrap_or_else(|_| indicatif::ProgressStyle::default_bar()),
    );
    let mut model = model;
    let mut failed = 0usize;
    let mut done = 0usize;
    for input in todo {
        if cancel.is_cancelled() {
            break;
        }
        bar.set_message(input.path.display().to_string());
        let started = Instant::now();
        let outcome = run_one(args, question.as_deref(), &mut model, input, &cancel);
        let seconds = started.elapsed().as_secs_f64();
        let (status, error, detail) = match outcome {
            Outcome::Done { detail } => {
                done += 1;
                ("done", None, detail)
            }
            Outcome::Failed { error, partial } => {
                if cancel.is_cancelled() {
                    ("cancelled", Some(error), serde_json::Value::Null)
                } else {
                    failed += 1;
                    bar.suspend(|| eprintln!("[batch] {}: {error}", input.path.display()));
                    (
                        if partial { "partial" } else { "failed" },
                        Some(error),
                        serde_json::Value::Null,
                    )
                }
            }
        };
        let line = serde_json::json!({
            "input": input.path,
            "output": input.output,
            "task": format!("{:?}", args.task).to_lowercase(),
            "status": status,
            "error": error,
            "seconds": seconds,
            "placement": placement,
            "shard": shard.map(|s| format!("{}/{}", s.index, s.count)),
            "finished_unix": std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_secs()),
            "detail": detail,
        });
        writeln!(log, "{line}")
            .and_then(|()| log.flush())
            .with_context(|| format!("cannot write the log {}", log_path.display()))?;
        bar.inc(1);
    }
    bar.finish_and_clear();
    eprintln!("[batch] {done} done, {failed} failed, {skipped} skipped before");
    if cancel.is_cancelled() {
        bail!("cancelled; run the same command again to resume");
    }
    if failed > 0 {
        bail!(
            "{failed} input(s) failed (see {}); run the same command again to retry them",
            log_path.display()
        );
    }
    Ok(())
}

fn load_model(task: BatchTask, dir: &Path, options: &SessionOptions) -> Result<Loaded> {
    Ok(match task {
        BatchTask::Track => Loaded::Sam(super::sam_cmds::load_sam2(dir, options)?),
        BatchTask::Describe | BatchTask::Ask => {
            let model = PixelRefer::load(dir, options)
                .with_context(|| format!("cannot load the model in {}", dir.display()))?;
            for w in model.warnings() {
                eprintln!("warning: {w}");
            }
            Loaded::Refer(Box::new(model))
        }
    })
}

fn run_one(
    args: &BatchArgs,
    question: Option<&str>,
    model: &mut Loaded,
    input: &BatchInput,
    cancel: &CancelToken,
) -> Outcome {
    let result = match (args.task, model) {
        (BatchTask::Track, Loaded::Sam(sam)) => track_one(sam, input, cancel),
        (_, Loaded::Refer(refer)) => refer_one(args, question, refer, input, cancel)
            .map_err(|e| (super::one_sentence(&e), false)),
        _ => Err(("the loaded model does not fit the task".to_string(), false)),
    };
    match result {
        Ok(detail) => Outcome::Done { detail },
        Err((error, partial)) => Outcome::Failed { error, partial },
    }
}

/// Tracks one prompt file; a propagation that fails midway writes what it tracked to
/// `NAME.partial.regions.json` (the input stays to do, so a rerun tries it again).
fn track_one(
    model: &std::sync::Arc<crate::segment::Sam2Model>,
    input: &BatchInput,
    cancel: &CancelToken,
) -> std::result::Result<serde_json::Value, (String, bool)> {
    let plain = |e: anyhow::Error| (super::one_sentence(&e), false);
    let text = input.path.to_string_lossy();
    let media = PathBuf::from(text.strip_suffix(".prompts.json").unwrap_or(&text));
    let (prompts, checked) = super::sam_cmds::read_prompt_file(&input.path).map_err(plain)?;
    // the media and the mask files are inputs too: neither result file may be one of them
    let mut inputs: Vec<&Path> = vec![&media, &input.path];
    inputs.extend(super::sam_cmds::mask_files(&checked));
    for out in [input.output.clone(), partial_path(&input.output)] {
        project::check_output_path(&out, &inputs).map_err(|e| plain(e.into()))?;
    }
    let frames = crate::jobs::MediaFrames::open(&media)
        .map_err(|e| (format!("{}: {e}", media.display()), false))?;
    super::sam_cmds::check_prompts_fit(
        &checked,
        frames.count,
        frames.info.width,
        frames.info.height,
    )
    .map_err(|e| (format!("{}: {e}", input.path.display()), false))?;
    let tracked = super::sam_cmds::track_loaded(model, &media, frames, &prompts, &checked, cancel)
        .map_err(plain)?;
    if let Some(why) = tracked.failure {
        let partial = partial_path(&input.output);
        project::export_regions(&tracked.doc, &partial).map_err(|e| {
            (
                format!("{why}; could not keep the partial result: {e}"),
                true,
            )
        })?;
        return Err((
            format!(
                "{why}; the {} masks tracked before it are in {}",
                tracked.masks,
                partial.display()
            ),
            true,
        ));
    }
    project::export_regions(&tracked.doc, &input.output).map_err(|e| (e.to_string(), false))?;
    let _ = std::fs::remove_file(partial_path(&input.output));
    Ok(serde_json::json!({ "masks": tracked.masks }))
}

fn partial_path(output: &Path) -> PathBuf {
    let name = output
        .file_name()
        .map(|n| n.to_string_lossy().into_owned())
        .unwrap_or_default();
    let stem = name.strip_suffix(".regions.json").unwrap_or(&name);
    output.with_file_name(format!("{stem}.partial.regions.json"))
}

fn ask_args(args: &BatchArgs, project: &Path, item: usize, question: String) -> AskArgs {
    AskArgs {
        model: args.model.clone(),
        image: None,
        video: None,
        project: Some(project.to_path_buf()),
        item,
        masks: Vec::new(),
        regions: None,
        fps: None,
        max_frames: args.max_frames,
        question,
        json: true,
        max_new_tokens: args.max_new_tokens,
        temperature: None,
        top_p: None,
        seed: 0,
        device: args.device,
        threads: args.threads,
        remote: args.remote.clone(),
    }
}

/// Describes (or asks about) every item with objects of one project and writes its regions.
fn refer_one(
    args: &BatchArgs,
    question: Option<&str>,
    model: &mut PixelRefer,
    input: &BatchInput,
    cancel: &CancelToken,
) -> Result<serde_json::Value> {
    let mut doc: Document = project::load_project(&input.path)?;
    let record = refer_record(model);
    let mut answers = 0usize;
    let mut tokens = 0usize;
    for index in 0..doc.items.len() {
        let ids: Vec<u32> = doc.items[index]
            .objects
            .iter()
            .filter(|o| o.frames.values().any(|a| a.mask.is_some()))
            .map(|o| o.id)
            .collect();
        if ids.is_empty() {
            continue;
        }
        match question {
            None => {
                for id in ids {
                    let a = super::ask::answer_with(
                        model,
                        &ask_args(args, &input.path, index, describe_prompt(id)),
                        cancel,
                    )?;
                    tokens += a.generated_tokens;
                    answers += 1;
                    if let Some(o) = doc.items[index].objects.iter_mut().find(|o| o.id == id) {
                        o.caption = a.text.trim().to_string();
                    }
                }
            }
            Some(q) => {
                let a = super::ask::answer_with(
                    model,
                    &ask_args(args, &input.path, index, q.to_string()),
                    cancel,
                )?;
                tokens += a.generated_tokens;
                answers += 1;
                let chat = &mut doc.items[index].chat;
                chat.push(ChatTurn {
                    role: Role::User,
                    text: q.to_string(),
                    frame: 0,
                    model: None,
                });
                chat.push(ChatTurn {
                    role: Role::Assistant,
                    text: a.text.trim().to_string(),
                    frame: 0,
                    model: Some(record.id.clone()),
                });
            }
        }
    }
    if answers == 0 {
        bail!("no object has a mask");
    }
    if !doc.models.iter().any(|m| m.id == record.id) {
        doc.models.push(record);
    }
    project::export_regions(&doc, &input.output)?;
    Ok(serde_json::json!({ "answers": answers, "generated_tokens": tokens }))
}

fn refer_record(model: &PixelRefer) -> ModelRecord {
    let kind = match model.variant() {
        Variant::Full => "pixelrefer",
        Variant::Lite => "pixelrefer-lite",
    };
    let variant = Manifest::load(model.dir())
        .map(|m| m.variant)
        .unwrap_or_default();
    ModelRecord {
        id: format!("{kind}-{variant}"),
        kind: kind.into(),
        variant,
        files: Manifest::load(model.dir())
            .map(|m| m.files)
            .unwrap_or_default(),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn shards_cover_every_input_exactly_once() {
        for count in 1..=7 {
            let shards: Vec<Shard> = (0..count)
                .map(|i| Shard::parse(&format!("{i}/{count}")).expect("valid"))
                .collect();
            for position in 0..50 {
                let owners = shards.iter().filter(|s| s.owns(position)).count();
                assert_eq!(owners, 1, "position {position} of {count} shards");
            }
        }
        for bad in ["", "1", "2/2", "-1/3", "0/0", "a/b", "1/2/3"] {
            assert!(Shard::parse(bad).is_err(), "{bad}");
        }
    }

    #[test]
    fn a_file_that_is_not_a_list_of_inputs_is_refused() {
        let dir = tempfile::tempdir().expect("temp dir");
        let out = dir.path().join("out");
        std::fs::write(dir.path().join("a.prj.json"), "{}").expect("write");
        let cases = [
            ("project.json", "{\n  \"version\": 2\n}\n", "is JSON"),
            ("array.json", " [\"a.prj.json\"]", "is JSON"),
            ("notes.txt", "hello\nworld\n", "none of the 2 paths"),
        ];
        for (name, text, says) in cases {
            let list = dir.path().join(name);
            std::fs::write(&list, text).expect("write");
            let err = match list_inputs(BatchTask::Describe, &list, &out) {
                Ok(found) => panic!("{name}: listed {} inputs", found.len()),
                Err(e) => e.to_string(),
            };
            assert!(err.contains(says), "{err}");
        }
        // A list with one missing entry among present ones still lists both.
        let list = dir.path().join("list.txt");
        std::fs::write(&list, "a.prj.json\n# note\nmissing.prj.json\n").expect("write");
        let found = list_inputs(BatchTask::Describe, &list, &out).expect("a list");
        assert_eq!(found.len(), 2);
    }

    #[test]
    fn output_names_keep_folders_apart() {
        let root = Path::new("/data");
        assert_eq!(
            output_name(Path::new("/data/a/b/clip.prj.json"), root, ".prj.json"),
            "a__b__clip.regions.json"
        );
        assert_eq!(
            output_name(
                Path::new("/elsewhere/x.mp4.prompts.json"),
                root,
                ".prompts.json"
            ),
            "x.mp4.regions.json"
        );
    }
}
