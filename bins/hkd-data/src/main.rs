//! `hkd-data`: prepare, import, inspect and subset hkd datasets.
//!
//! Every command writes our layout (a directory with `dataset.toml`, see docs/datasets.md)
//! through `hkd_datasets::write_split`; the work itself lives in the library.
#![forbid(unsafe_code)]
// Doc comments on clap types are --help text, written for the terminal (`<OUT>`,
// `DIR[:split]`), not rustdoc markup.
#![allow(rustdoc::invalid_html_tags, rustdoc::broken_intra_doc_links)]

use std::path::{Path, PathBuf};

use anyhow::{Context, Result, bail};
use clap::{Args, Parser, Subcommand};
use hkd_datasets::{
    Cifar10Part, Dataset, DatasetDir, ImageRange, Normalization, NpyImport, OpenOptions,
    SubsetSize, append_by_id, cifar10_class_names, csv_rows_where, load_cifar10_binary, parse_rows,
    write_split,
};
use tracing::{info, warn};

#[derive(Parser, Debug)]
#[command(
    name = "hkd-data",
    version,
    about = "Prepare, import, inspect and subset hkd datasets (CIFAR-10, CIFAR-10H, CINIC-10, CIFAR-100)."
)]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

// Parsed once per process: the size of a variant does not matter.
#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Command {
    /// Build a dataset from an official distribution.
    #[command(subcommand)]
    Prepare(Prepare),
    /// Add splits from .npy arrays or from another layout.
    #[command(subcommand)]
    Import(Import),
    /// Print per-split statistics: count, class histogram, pixel mean/std, human labels.
    Inspect(InspectArgs),
    /// Cut a stratified, seeded subset of splits into a dataset directory.
    Subset(SubsetArgs),
    /// Split one split into a stratified, seeded held-out part and the rest (e.g. train on
    /// 8,000 CIFAR-10H images, measure human alignment on the other 2,000).
    Holdout(HoldoutArgs),
    /// Write a copy of a split whose human label rows are permuted among the images of
    /// each hard class (seeded): same softness, no per-image human information.
    ShuffleHuman(ShuffleHumanArgs),
}

#[derive(Subcommand, Debug)]
enum Prepare {
    /// CIFAR-10 binaries + CIFAR-10H -> train = the 10,000 test images with human labels,
    /// val = the 50,000 training images (the paper's split).
    Cifar10(PrepareCifar10),
    /// CINIC-10 style PNG folders (<root>/<class>/*.png) -> one split.
    Cinic(PrepareCinic),
    /// The official CIFAR-100 python or binary release -> train (50,000) and test (10,000)
    /// with the 100 fine classes, CIFAR-100's normalisation and the coarse labels kept.
    Cifar100(PrepareCifar100),
}

#[derive(Args, Debug)]
struct PrepareCifar100 {
    /// Folder of the unpacked cifar-100-python.tar.gz (train, test, meta) or
    /// cifar-100-binary.tar.gz (train.bin, test.bin, *_label_names.txt), or the folder
    /// holding cifar-100-python/ or cifar-100-binary/.
    #[arg(long)]
    src: PathBuf,
    /// Output dataset directory (must not exist yet).
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct PrepareCifar10 {
    /// Folder with data_batch_1..5.bin and test_batch.bin (or cifar-10-batches-bin/ inside it).
    #[arg(long)]
    cifar10: PathBuf,
    /// CIFAR-10H cifar10h-probs.npy (float64 10000×10, row i = test image i).
    #[arg(long)]
    cifar10h: PathBuf,
    /// Output dataset directory.
    #[arg(long)]
    out: PathBuf,
}

#[derive(Args, Debug)]
struct PrepareCinic {
    /// Folder of class folders (e.g. CINIC-10's test/), or CINIC-10's top folder with
    /// train/valid/test inside (each becomes a split of that name).
    #[arg(long)]
    root: PathBuf,
    /// Keep only ImageNet-derived images (leave out CINIC's cifar10-* files).
    #[arg(long)]
    imagenet_only: bool,
    /// Output dataset directory.
    #[arg(long)]
    out: PathBuf,
    /// Split name when --root is a single folder of class folders.
    #[arg(long, default_value = "cinic")]
    split: String,
}

#[allow(clippy::large_enum_variant)]
#[derive(Subcommand, Debug)]
enum Import {
    /// Add (or replace, or --append to) a split from .npy arrays.
    Npy(ImportNpy),
    /// Convert every split of a directory in another layout (the original project's npy
    /// files, CIFAR-10 binaries, PNG class folders) to our layout.
    Original(ImportOriginal),
}

#[derive(Args, Debug)]
struct ImportNpy {
    /// Output dataset directory (created, or its dataset.toml updated).
    #[arg(long)]
    out: PathBuf,
    /// Split name.
    #[arg(long)]
    split: String,
    /// Images: uint8/float32/float64, N×32×32×3 or N×3×32×32.
    #[arg(long)]
    images: PathBuf,
    /// Hard labels: one per image (or, with --labels-by-id, one per id).
    #[arg(long)]
    labels: PathBuf,
    /// Human label distributions N×C (float), or integer vote counts.
    #[arg(long)]
    human: Option<PathBuf>,
    /// Integer id of each image (e.g. its CIFAR-10 index); default: its row in --images.
    #[arg(long)]
    ids: Option<PathBuf>,
    /// Row `id` of --labels is the label of the image with that id.
    #[arg(long)]
    labels_by_id: bool,
    /// Row `id` of --human is the human label of the image with that id.
    #[arg(long)]
    human_by_id: bool,
    /// Keep only these rows of --images, e.g. `0..1000` or `0..10,50,60..70`.
    #[arg(long)]
    rows: Option<String>,
    /// Keep only rows whose CSV column equals a value: FILE.csv:COLUMN=VALUE (CSV data
    /// line i describes image row i). Combined with --rows, both must hold.
    #[arg(long)]
    rows_where: Option<String>,
    /// Keep only the rows listed (as integers) in this .npy file.
    #[arg(long)]
    rows_from: Option<PathBuf>,
    /// Add the rows to the existing split, skipping ids it already has.
    #[arg(long)]
    append: bool,
    /// Scale of float images: auto, unit ([0, 1]) or byte ([0, 255]).
    #[arg(long, default_value = "auto")]
    range: ImageRange,
    /// Class names, comma-separated (default: CIFAR-10's).
    #[arg(long, value_delimiter = ',')]
    classes: Option<Vec<String>>,
    #[command(flatten)]
    norm: NormArgs,
    /// Free text recorded in the manifest: where the split comes from.
    #[arg(long)]
    source: Option<String>,
}

#[derive(Args, Debug)]
struct NormArgs {
    /// Normalisation mean R,G,B in [0, 1] units (default CIFAR-10's 0.4914,0.4822,0.4465).
    #[arg(long, value_delimiter = ',', num_args = 3)]
    mean: Option<Vec<f32>>,
    /// Normalisation std R,G,B (default CIFAR-10's 0.2023,0.1994,0.2010).
    #[arg(long, value_delimiter = ',', num_args = 3)]
    std: Option<Vec<f32>>,
}

impl NormArgs {
    fn normalization(&self) -> Result<Normalization> {
        let mut n = Normalization::CIFAR10;
        if let Some(m) = &self.mean {
            n.mean = m.as_slice().try_into().context("--mean needs 3 values")?;
        }
        if let Some(s) = &self.std {
            n.std = s.as_slice().try_into().context("--std needs 3 values")?;
        }
        n.validate()?;
        Ok(n)
    }
}

#[derive(Args, Debug)]
struct ImportOriginal {
    /// Directory in another layout (train10k_images.npy, ... of the original project).
    #[arg(long)]
    from: PathBuf,
    /// Output dataset directory.
    #[arg(long)]
    out: PathBuf,
    /// Scale of float images: auto, unit ([0, 1]) or byte ([0, 255]).
    #[arg(long, default_value = "auto")]
    range: ImageRange,
}

#[derive(Args, Debug)]
struct InspectArgs {
    /// Dataset directory (any supported layout).
    dir: PathBuf,
    /// Only these splits (default: all).
    #[arg(long)]
    split: Vec<String>,
    /// Print JSON instead of text.
    #[arg(long)]
    json: bool,
}

#[derive(Args, Debug)]
struct SubsetArgs {
    /// Source dataset directory (any supported layout).
    #[arg(long)]
    from: PathBuf,
    /// Output dataset directory (may already hold other splits; may equal --from).
    #[arg(long)]
    out: PathBuf,
    /// Splits to cut (default: all splits of --from).
    #[arg(long)]
    split: Vec<String>,
    /// Images per class.
    #[arg(long, conflicts_with = "total", required_unless_present = "total")]
    per_class: Option<usize>,
    /// Images in all, spread over classes in proportion to their counts.
    #[arg(long)]
    total: Option<usize>,
    /// Seed of the draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[path = "../../shared/runtime.rs"]
mod runtime;

#[derive(Args, Debug)]
struct HoldoutArgs {
    /// Source dataset directory (any supported layout).
    #[arg(long)]
    from: PathBuf,
    /// Output dataset directory (may already hold other splits; may equal --from).
    #[arg(long)]
    out: PathBuf,
    /// The split to divide.
    #[arg(long, default_value = "train")]
    split: String,
    /// Images held out, spread over classes in proportion to their counts.
    #[arg(long)]
    held_out: usize,
    /// Name of the split of the remaining images.
    #[arg(long)]
    rest_name: String,
    /// Name of the held-out split.
    #[arg(long)]
    held_out_name: String,
    /// Seed of the draw.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

#[derive(Args, Debug)]
struct ShuffleHumanArgs {
    /// Source dataset directory (any supported layout).
    #[arg(long)]
    from: PathBuf,
    /// Output dataset directory (may already hold other splits; may equal --from).
    #[arg(long)]
    out: PathBuf,
    /// The split whose human labels are shuffled.
    #[arg(long)]
    split: String,
    /// Name of the shuffled copy.
    #[arg(long)]
    name: String,
    /// Seed of the permutation.
    #[arg(long, default_value_t = 0)]
    seed: u64,
}

fn main() -> std::process::ExitCode {
    runtime::init_logging("info", true);
    let cli = match runtime::parse_cli::<Cli>("hkd-data") {
        Ok(cli) => cli,
        Err(code) => return code,
    };
    match run(cli) {
        Ok(()) => std::process::ExitCode::SUCCESS,
        Err(e) => {
            // an output that cannot be written is a failure (1); an input that is missing,
            // unreadable or refused is bad input (2): nothing was written
            let writing = e.chain().any(|c| {
                matches!(
                    c.downcast_ref::<hkd_datasets::DatasetError>(),
                    Some(hkd_datasets::DatasetError::Io { action, .. })
                        if !matches!(*action, "read" | "open" | "list directory")
                )
            });
            let code = if writing {
                runtime::EXIT_FAILED
            } else {
                runtime::EXIT_USAGE
            };
            runtime::fail("hkd-data", e.as_ref(), code)
        }
    }
}

fn run(cli: Cli) -> Result<()> {
    match cli.command {
        Command::Prepare(Prepare::Cifar10(a)) => prepare_cifar10(&a),
        Command::Prepare(Prepare::Cinic(a)) => prepare_cinic(&a),
        Command::Prepare(Prepare::Cifar100(a)) => prepare_cifar100(&a),
        Command::Import(Import::Npy(a)) => import_npy(&a),
        Command::Import(Import::Original(a)) => import_original(&a),
        Command::Inspect(a) => inspect(&a),
        Command::Subset(a) => subset(&a),
        Command::Holdout(a) => holdout(&a),
        Command::ShuffleHuman(a) => shuffle_human(&a),
    }
}

fn save(out: &Path, split: &str, dataset: &Dataset, source: &str) -> Result<()> {
    write_split(out, split, dataset, Some(source))?;
    info!(split, images = dataset.len(), out = %out.display(), "wrote split");
    Ok(())
}

fn prepare_cifar10(a: &PrepareCifar10) -> Result<()> {
    let test = load_cifar10_binary(&a.cifar10, Cifar10Part::Test)?;
    let probs = read_human_rows(&a.cifar10h, test.num_classes())?;
    if probs.len() != test.len() * test.num_classes() {
        bail!(
            "{}: {} human label rows, but test_batch.bin has {} images; CIFAR-10H row i must be test image i",
            a.cifar10h.display(),
            probs.len() / test.num_classes(),
            test.len()
        );
    }
    let mut parts = test.into_parts();
    parts.human = Some(probs);
    let train = Dataset::new(parts)?;
    save(
        &a.out,
        "train",
        &train,
        "CIFAR-10 test_batch.bin (10,000 images) with CIFAR-10H human labels; ids = CIFAR-10 test index",
    )?;
    let val = load_cifar10_binary(&a.cifar10, Cifar10Part::Train)?;
    save(
        &a.out,
        "val",
        &val,
        "CIFAR-10 data_batch_1..5.bin (50,000 images); ids = CIFAR-10 train index",
    )
}

/// CIFAR-10H rows through the library's validated reader.
fn read_human_rows(path: &Path, classes: usize) -> Result<Vec<f64>> {
    hkd_datasets::read_human_npy(path, classes)
        .with_context(|| format!("reading human labels {}", path.display()))
}

fn prepare_cifar100(a: &PrepareCifar100) -> Result<()> {
    let prepared = hkd_datasets::prepare_cifar100(&a.src, &a.out)?;
    for (split, images) in &prepared.splits {
        info!(split, images, out = %a.out.display(), "wrote split");
    }
    info!(out = %a.out.display(), release = prepared.release, "CIFAR-100 ready");
    Ok(())
}

fn prepare_cinic(a: &PrepareCinic) -> Result<()> {
    let options = OpenOptions {
        imagenet_only: a.imagenet_only,
        ..OpenOptions::default()
    };
    let dir = DatasetDir::open_with(&a.root, &options)?;
    if dir.layout() != hkd_datasets::Layout::ImageFolders {
        bail!(
            "{}: expected CINIC-10 style PNG class folders (<root>/<class>/*.png), found the {} layout",
            a.root.display(),
            dir.layout().name()
        );
    }
    let which = if a.imagenet_only {
        "ImageNet-derived images only"
    } else {
        "all images"
    };
    for name in dir.split_names() {
        let dataset = dir.load_split(&name)?;
        let out_name = if name == "all" {
            a.split.clone()
        } else {
            name.clone()
        };
        save(
            &a.out,
            &out_name,
            &dataset,
            &format!(
                "PNG class folders {} ({which})",
                dir.root()
                    .join(if name == "all" { "" } else { &name })
                    .display()
            ),
        )?;
    }
    Ok(())
}

fn import_npy(a: &ImportNpy) -> Result<()> {
    let mut rows: Option<Vec<usize>> = a.rows.as_deref().map(parse_rows).transpose()?;
    let mut restrict = |keep: Vec<usize>| {
        rows = Some(match rows.take() {
            None => keep,
            Some(current) => {
                let keep: std::collections::HashSet<usize> = keep.into_iter().collect();
                current.into_iter().filter(|r| keep.contains(r)).collect()
            }
        });
    };
    if let Some(spec) = &a.rows_where {
        let (file, cond) = spec
            .rsplit_once(':')
            .context("--rows-where wants FILE.csv:COLUMN=VALUE")?;
        let (column, value) = cond
            .split_once('=')
            .context("--rows-where wants FILE.csv:COLUMN=VALUE")?;
        let keep = csv_rows_where(Path::new(file), column, value)?;
        info!(
            file,
            column,
            value,
            rows = keep.len(),
            "rows selected by CSV"
        );
        restrict(keep);
    }
    if let Some(path) = &a.rows_from {
        let keep = hkd_datasets::read_index_npy(path)?;
        restrict(keep);
    }
    if rows.as_ref().is_some_and(|r| r.is_empty()) {
        bail!("the row selection keeps no rows");
    }
    let import = NpyImport {
        images: a.images.clone(),
        labels: a.labels.clone(),
        human: a.human.clone(),
        ids: a.ids.clone(),
        labels_by_id: a.labels_by_id,
        human_by_id: a.human_by_id,
        rows,
        image_range: a.range,
        class_names: a.classes.clone().unwrap_or_else(cifar10_class_names),
        normalization: a.norm.normalization()?,
    };
    let dataset = import.load()?;
    let mut source = a
        .source
        .clone()
        .unwrap_or_else(|| format!("imported from {}", a.images.display()));
    let dataset = if a.append {
        let dir = DatasetDir::open(&a.out).with_context(|| {
            format!("--append needs an existing dataset at {}", a.out.display())
        })?;
        let existing = dir.load_split(&a.split)?;
        let (merged, stats) = append_by_id(&existing, &dataset)?;
        info!(
            added = stats.added,
            skipped_duplicate_ids = stats.skipped,
            "appended"
        );
        if stats.skipped_with_different_pixels > 0 {
            warn!(
                count = stats.skipped_with_different_pixels,
                "rows skipped as duplicate ids have different pixels from the kept image"
            );
        }
        if let Some(old) = dir
            .manifest()
            .and_then(|m| m.splits.get(&a.split))
            .and_then(|e| e.source.clone())
        {
            source = format!("{old}; then appended: {source}");
        }
        merged
    } else {
        dataset
    };
    save(&a.out, &a.split, &dataset, &source)
}

fn import_original(a: &ImportOriginal) -> Result<()> {
    let dir = DatasetDir::open_with(
        &a.from,
        &OpenOptions {
            image_range: a.range,
            ..OpenOptions::default()
        },
    )?;
    info!(layout = dir.layout().name(), splits = ?dir.split_names(), "importing");
    for name in dir.split_names() {
        let dataset = dir.load_split(&name)?;
        save(
            &a.out,
            &name,
            &dataset,
            &format!(
                "split {name} of {} ({} layout)",
                a.from.display(),
                dir.layout().name()
            ),
        )?;
    }
    Ok(())
}

fn inspect(a: &InspectArgs) -> Result<()> {
    let dir = DatasetDir::open(&a.dir)?;
    let names = if a.split.is_empty() {
        dir.split_names()
    } else {
        a.split.clone()
    };
    let mut json = Vec::new();
    if !a.json {
        println!("{} ({} layout)", a.dir.display(), dir.layout().name());
    }
    for name in names {
        let d = dir.load_split(&name)?;
        let s = d.summary();
        if a.json {
            json.push(serde_json::json!({
                "split": name,
                "classes": d.class_names(),
                "normalization": d.normalization(),
                "summary": s,
            }));
            continue;
        }
        println!(
            "\nsplit {name}: {} images, {} classes",
            s.count,
            d.num_classes()
        );
        let hist: Vec<String> = d
            .class_names()
            .iter()
            .zip(&s.class_counts)
            .map(|(c, n)| format!("{c} {n}"))
            .collect();
        println!("  classes: {}", hist.join(", "));
        println!(
            "  pixel mean (R,G,B): {:.4} {:.4} {:.4}   std: {:.4} {:.4} {:.4}",
            s.pixel_mean[0],
            s.pixel_mean[1],
            s.pixel_mean[2],
            s.pixel_std[0],
            s.pixel_std[1],
            s.pixel_std[2]
        );
        let n = d.normalization();
        println!("  normalisation used: mean {:?} std {:?}", n.mean, n.std);
        match &s.human {
            Some(h) => println!(
                "  human labels: mean entropy {:.4} nats, unanimous rows {:.1}%, majority = label {:.1}%, mean p(label) {:.4}",
                h.mean_entropy_nats,
                100.0 * h.unanimous_share,
                100.0 * h.majority_agrees_with_label,
                h.mean_true_class_probability
            ),
            None => println!("  human labels: none"),
        }
        if let Some(ids) = d.ids() {
            let (lo, hi) = ids
                .iter()
                .fold((i64::MAX, i64::MIN), |(lo, hi), &v| (lo.min(v), hi.max(v)));
            if !ids.is_empty() {
                println!("  ids: {lo}..={hi}");
            }
        }
    }
    if a.json {
        println!("{}", serde_json::to_string_pretty(&json)?);
    }
    Ok(())
}

/// Where a split came from, as its manifest says (or its directory and name).
fn source_of(dir: &DatasetDir, from: &Path, split: &str) -> String {
    dir.manifest()
        .and_then(|m| m.splits.get(split))
        .and_then(|e| e.source.clone())
        .unwrap_or_else(|| format!("split {split} of {}", from.display()))
}

fn holdout(a: &HoldoutArgs) -> Result<()> {
    if a.rest_name == a.held_out_name {
        bail!(
            "--rest-name and --held-out-name are both `{}`: give the two parts different names",
            a.rest_name
        );
    }
    let dir = DatasetDir::open(&a.from)?;
    let d = dir.load_split(&a.split)?;
    let (rest, held) = d.holdout(a.held_out, a.seed)?;
    let old = source_of(&dir, &a.from, &a.split);
    let n = d.len();
    save(
        &a.out,
        &a.rest_name,
        &rest,
        &format!(
            "{old}; the {} of {n} images not held out (seed {})",
            rest.len(),
            a.seed
        ),
    )?;
    save(
        &a.out,
        &a.held_out_name,
        &held,
        &format!(
            "{old}; {} of {n} images held out, stratified (seed {})",
            held.len(),
            a.seed
        ),
    )
}

fn shuffle_human(a: &ShuffleHumanArgs) -> Result<()> {
    let dir = DatasetDir::open(&a.from)?;
    let d = dir.load_split(&a.split)?;
    let shuffled = d.shuffle_human_within_class(a.seed)?;
    let old = source_of(&dir, &a.from, &a.split);
    save(
        &a.out,
        &a.name,
        &shuffled,
        &format!(
            "{old}; human label rows permuted within each hard class (seed {})",
            a.seed
        ),
    )
}

fn subset(a: &SubsetArgs) -> Result<()> {
    let dir = DatasetDir::open(&a.from)?;
    let names = if a.split.is_empty() {
        dir.split_names()
    } else {
        a.split.clone()
    };
    let size = match (a.per_class, a.total) {
        (Some(k), _) => SubsetSize::PerClass(k),
        (None, Some(n)) => SubsetSize::Total(n),
        (None, None) => bail!("give --per-class K or --total N"),
    };
    // Load everything first so that --out may equal --from.
    let mut cut = Vec::new();
    for name in &names {
        let d = dir.load_split(name)?;
        let rows = d.stratified_rows(size, a.seed)?;
        cut.push((name.clone(), d.select(&rows)?, d.len()));
    }
    for (name, d, from_len) in cut {
        let what = match size {
            SubsetSize::PerClass(k) => format!("{k} per class"),
            SubsetSize::Total(n) => format!("{n} in all"),
        };
        let old = dir
            .manifest()
            .and_then(|m| m.splits.get(&name))
            .and_then(|e| e.source.clone())
            .unwrap_or_else(|| format!("split {name} of {}", a.from.display()));
        save(
            &a.out,
            &name,
            &d,
            &format!(
                "{old}; stratified subset: {what} of {from_len}, seed {}",
                a.seed
            ),
        )?;
    }
    Ok(())
}
