//! `terrastream classify` and `terrastream similar`: few-shot mapping from embeddings.
//!
//! - [`examples`]: labelled points and polygons from GeoJSON.
//! - [`chips`]: chips and their embeddings streamed from an output store (through the SQL layer).
//! - [`classifier`]: class prototypes or k nearest examples, with rejection and margins.
//! - [`output`]: chip labels as GeoParquet, a class-map COG and PNG per grid tile.
//! - [`evaluate`]: accuracy, precision/recall and the confusion matrix on held-out examples.
//! - [`similar`]: the chips most similar to one chip or a point, through `nearest()`.
//!
//! An example labels the chips whose footprint contains its point; a polygon labels the chips
//! whose centre lies inside it (or, when none does, the chips containing its centre). An
//! example that lands on no chip is an error naming the feature.

pub mod chips;
pub mod classifier;
pub mod evaluate;
pub mod examples;
pub mod output;
pub mod similar;

use std::collections::{BTreeMap, HashMap};
use std::path::PathBuf;
use std::time::Instant;

use anyhow::{Context, Result, bail};
use serde_json::json;

use chips::ChipBatch;
use classifier::{Classifier, Method};
use evaluate::Evaluation;
use examples::{Example, Shape};

/// Arguments of `terrastream classify`.
#[derive(Debug, Clone, clap::Args)]
pub struct ClassifyArgs {
    /// The output store holding the embeddings (directory, file:// or s3:// URL).
    #[arg(long)]
    pub embeddings: String,
    /// GeoJSON FeatureCollection of labelled points or polygons (WGS 84); `"negative": true`
    /// marks examples of none of the labels.
    #[arg(long)]
    pub examples: PathBuf,
    /// The property holding the label.
    #[arg(long, default_value = "label")]
    pub label_property: String,
    /// How chips are labelled.
    #[arg(long, value_enum, default_value_t = Method::Prototype)]
    pub method: Method,
    /// Neighbours consulted by `--method knn`.
    #[arg(long, default_value_t = 5)]
    pub k: usize,
    /// Chips whose score is below this are labelled unknown (prototype: cosine similarity;
    /// knn: vote share).
    #[arg(long, allow_hyphen_values = true)]
    pub reject_below: Option<f32>,
    /// Held-out labelled GeoJSON to score the labels against (same format as --examples).
    #[arg(long)]
    pub evaluate: Option<PathBuf>,
    /// Output directory: labels.parquet, class_maps/<grid>.tif and .png, summary.json.
    #[arg(long)]
    pub out: PathBuf,
    /// Threads reading the store (default: all CPUs).
    #[arg(long)]
    pub threads: Option<usize>,
}

/// Chips an example selects in one batch.
fn matches(ex: &Example, chips: &ChipBatch, i: usize) -> Result<bool> {
    let b = chips.bbox(i)?;
    let inside_bbox = |p: (f64, f64)| p.0 >= b[0] && p.0 <= b[2] && p.1 >= b[1] && p.1 <= b[3];
    Ok(match &ex.shape {
        Shape::Point(p) => inside_bbox(*p) && examples::in_polygon(&chips.footprint(i)?, *p),
        Shape::Polygons(polys) => {
            let centre = ((b[0] + b[2]) / 2.0, (b[1] + b[3]) / 2.0);
            polys.iter().any(|p| examples::in_polygon(p, centre))
        }
    })
}

/// Fallback for polygons no chip centre falls in: the chips containing the polygon's centre.
fn centre_matches(ex: &Example, chips: &ChipBatch, i: usize) -> Result<bool> {
    let Shape::Polygons(polys) = &ex.shape else { return Ok(false) };
    for p in polys {
        let c = examples::ring_centre(&p[0]);
        let b = chips.bbox(i)?;
        if c.0 >= b[0] && c.0 <= b[2] && c.1 >= b[1] && c.1 <= b[3] && examples::in_polygon(&chips.footprint(i)?, c) {
            return Ok(true);
        }
    }
    Ok(false)
}

/// For each example, the chips it selects: `(chip id, embedding)`.
async fn example_chips(
    ctx: &datafusion::prelude::SessionContext,
    examples: &[Example],
) -> Result<Vec<Vec<(String, Vec<f32>)>>> {
    let mut found = vec![Vec::new(); examples.len()];
    let mut fallback = vec![Vec::new(); examples.len()];
    chips::scan(ctx, "SELECT * FROM embeddings", |batch| {
        for i in 0..batch.len() {
            for (e, ex) in examples.iter().enumerate() {
                if matches(ex, &batch, i)? {
                    found[e].push((batch.chip_id(i)?, batch.vector(i).to_vec()));
                } else if centre_matches(ex, &batch, i)? {
                    fallback[e].push((batch.chip_id(i)?, batch.vector(i).to_vec()));
                }
            }
        }
        Ok(())
    })
    .await?;
    for (e, f) in found.iter_mut().enumerate() {
        if f.is_empty() {
            *f = std::mem::take(&mut fallback[e]);
        }
        f.sort_by(|a, b| a.0.cmp(&b.0));
    }
    Ok(found)
}

/// Runs `classify`; returns the summary (also written to `<out>/summary.json`).
pub async fn classify(args: &ClassifyArgs) -> Result<serde_json::Value> {
    let started = Instant::now();
    let train = examples::read(&args.examples, &args.label_property)?;
    let holdout = match &args.evaluate {
        Some(p) => examples::read(p, &args.label_property).context("--evaluate")?,
        None => vec![],
    };
    if holdout.iter().any(|e| e.label.is_none()) {
        bail!("--evaluate {}: negative examples have no label to score against", args.evaluate.as_ref().map(|p| p.display().to_string()).unwrap_or_default());
    }
    let ctx = chips::open(&args.embeddings, args.threads).await?;
    let mut all = train.clone();
    all.extend(holdout.iter().cloned());
    let selected = example_chips(&ctx, &all).await?;
    for (n, (ex, chips)) in all.iter().zip(&selected).enumerate() {
        if chips.is_empty() {
            let file = if n < train.len() { Some(&args.examples) } else { args.evaluate.as_ref() };
            bail!(
                "{}: {} ({}) lies outside every chip of {}",
                file.map(|p| p.display().to_string()).unwrap_or_default(),
                ex.name,
                ex.label.as_deref().unwrap_or("negative"),
                args.embeddings
            );
        }
    }
    let training: Vec<(Option<String>, Vec<f32>)> = train
        .iter()
        .zip(&selected)
        .flat_map(|(ex, chips)| chips.iter().map(move |(_, v)| (ex.label.clone(), v.clone())))
        .collect();
    let classifier = Classifier::train(args.method, &training, args.k, args.reject_below)?;
    // Held-out chips and their true label (a chip claimed by two labels is left out).
    let mut truth: HashMap<String, Option<usize>> = HashMap::new();
    for (ex, chips) in holdout.iter().zip(&selected[train.len()..]) {
        let label = ex.label.as_ref().and_then(|l| classifier.labels.binary_search(l).ok());
        if label.is_none() {
            bail!("--evaluate: {} has label {:?}, which no training example has (labels: {:?})", ex.name, ex.label, classifier.labels);
        }
        for (id, _) in chips {
            truth.entry(id.clone()).and_modify(|t| if *t != label { *t = None }).or_insert(label);
        }
    }
    let trained = started.elapsed().as_secs_f64();

    std::fs::create_dir_all(&args.out).with_context(|| format!("--out {}", args.out.display()))?;
    let mut labels_out = output::LabelsWriter::new(args.out.join("labels.parquet"));
    let mut maps = output::ClassMaps::default();
    let mut evaluation = Evaluation::new(&classifier.labels);
    let mut counts: BTreeMap<String, u64> = BTreeMap::new();
    let mut chips_total = 0u64;
    let threads = args.threads.unwrap_or_else(|| std::thread::available_parallelism().map_or(1, |n| n.get()));
    let classify_start = Instant::now();
    chips::scan(&ctx, "SELECT * FROM embeddings", |batch| {
        if batch.dim != classifier.dim() {
            bail!("embeddings of length {} in {}, examples' were {}", batch.dim, args.embeddings, classifier.dim());
        }
        let decisions = classifier::classify_all(&classifier, &batch.vectors, threads);
        for (i, d) in decisions.iter().enumerate() {
            let name = d.label.map_or(output::UNKNOWN, |l| classifier.labels[l].as_str());
            *counts.entry(name.to_string()).or_default() += 1;
            if let Some(t) = truth.get(&batch.chip_id(i)?) {
                if t.is_some() {
                    evaluation.add(*t, d.label);
                }
            }
        }
        chips_total += batch.len() as u64;
        labels_out.write(&batch, &decisions, &classifier.labels)?;
        maps.add(&batch, &decisions)
    })
    .await?;
    let classify_s = classify_start.elapsed().as_secs_f64();
    let labels_path = labels_out.finish()?;
    let written = maps.write(&args.out, &classifier.labels)?;
    let mut area: BTreeMap<String, f64> = BTreeMap::new();
    let mut class_maps = vec![];
    for (path, pixels, pixel_m2) in &written {
        for (value, n) in pixels {
            let name = match *value {
                output::NODATA => continue,
                output::UNKNOWN_CLASS => output::UNKNOWN.to_string(),
                v => classifier.labels[v as usize - 1].clone(),
            };
            *area.entry(name).or_default() += *n as f64 * pixel_m2 / 1e6;
        }
        class_maps.push(json!({"cog": path, "png": path.with_extension("png")}));
    }
    let mut summary = json!({
        "embeddings": args.embeddings,
        "method": args.method,
        "k": (args.method == Method::Knn).then_some(args.k),
        "reject_below": args.reject_below,
        "labels": classifier.labels,
        "examples": train.len(),
        "example_chips": training.len(),
        "chips": chips_total,
        "chips_per_label": counts,
        "area_km2_per_label": area,
        "outputs": {"labels": labels_path, "class_maps": class_maps},
        "seconds": {"examples": trained, "classify": classify_s, "total": started.elapsed().as_secs_f64()},
    });
    if args.evaluate.is_some() {
        let e = evaluation.finish();
        eprintln!("{}", e.table());
        summary["evaluation"] = serde_json::to_value(&e)?;
    }
    let path = args.out.join("summary.json");
    std::fs::write(&path, serde_json::to_string_pretty(&summary)?).with_context(|| format!("write {}", path.display()))?;
    Ok(summary)
}
