//! `terrastream flood run`: one event, one shot. The settings come from `--config` (an
//! [`EventConfig`] as TOML; unknown keys are errors), overridden by flags; the AOI is a GeoJSON
//! file, inline GeoJSON or `west,south,east,north`.

use std::path::PathBuf;

use anyhow::{Context, Result, bail};
use chrono::{DateTime, NaiveDate, Utc};

use super::aoi::Aoi;
use super::event::{EventConfig, EventOutcome, EventRequest, run_event};

/// Arguments of `flood run`.
#[derive(Debug, Clone, clap::Args)]
pub struct RunArgs {
    /// The AOI: a GeoJSON file (geometry, Feature or FeatureCollection of one feature), inline
    /// GeoJSON, or `west,south,east,north` in degrees.
    #[arg(long, allow_hyphen_values = true)]
    pub aoi: String,
    /// When the flood happened: RFC 3339 (`2024-10-29T18:00:00Z`) or a date (midnight UTC).
    #[arg(long)]
    pub event_time: String,
    /// STAC API root URL (overrides the config's `stac`).
    #[arg(long)]
    pub stac: Option<String>,
    /// Event settings (TOML; the keys of the `[mapping]` table of flood.toml).
    #[arg(long)]
    pub config: Option<PathBuf>,
    /// Event name, used as the output item's id.
    #[arg(long)]
    pub name: Option<String>,
    /// Output directory.
    #[arg(long)]
    pub out: PathBuf,
}

/// Runs `flood run` and returns the outcome.
pub async fn run(args: &RunArgs) -> Result<EventOutcome> {
    let mut cfg = match &args.config {
        Some(p) => {
            let text = std::fs::read_to_string(p).with_context(|| format!("--config {}", p.display()))?;
            toml::from_str::<EventConfig>(&text).with_context(|| format!("--config {}", p.display()))?
        }
        None => EventConfig::default(),
    };
    if let Some(s) = &args.stac {
        cfg.stac = s.clone();
    }
    if cfg.stac.is_empty() {
        bail!("no STAC API: give --stac URL or `stac` in --config");
    }
    let req = EventRequest {
        name: args.name.clone(),
        aoi: parse_aoi(&args.aoi)?,
        event_time: parse_time(&args.event_time)?,
    };
    run_event(&cfg, &req, &args.out).await
}

/// `--aoi`: a bbox, inline GeoJSON or a GeoJSON file, as a GeoJSON geometry.
pub fn parse_aoi(arg: &str) -> Result<serde_json::Value> {
    let t = arg.trim();
    let numbers: Option<Vec<f64>> = t.split(',').map(|p| p.trim().parse().ok()).collect();
    if let Some(n) = numbers.filter(|n| n.len() == 4) {
        return Ok(Aoi::from_bbox([n[0], n[1], n[2], n[3]])
            .with_context(|| format!("--aoi {t}"))?
            .to_geojson());
    }
    let value: serde_json::Value = if t.starts_with('{') {
        serde_json::from_str(t).context("--aoi: not valid JSON")?
    } else {
        let bytes =
            std::fs::read(t).with_context(|| format!("--aoi {t}: not a bbox, inline GeoJSON or a readable file"))?;
        serde_json::from_slice(&bytes).with_context(|| format!("--aoi {t}: not JSON"))?
    };
    let geometry = match value.get("type").and_then(|v| v.as_str()) {
        Some("FeatureCollection") => match value.get("features").and_then(|f| f.as_array()).map(Vec::as_slice) {
            Some([one]) => one.get("geometry").cloned().unwrap_or_default(),
            _ => bail!("--aoi {t}: a FeatureCollection must hold exactly one feature"),
        },
        Some("Feature") => value.get("geometry").cloned().unwrap_or_default(),
        _ => value,
    };
    Aoi::from_geojson(&geometry, "--aoi")?;
    Ok(geometry)
}

/// `--event-time`: RFC 3339, or a date meaning its midnight UTC.
pub fn parse_time(arg: &str) -> Result<DateTime<Utc>> {
    if let Ok(t) = DateTime::parse_from_rfc3339(arg) {
        return Ok(t.with_timezone(&Utc));
    }
    match NaiveDate::parse_from_str(arg, "%Y-%m-%d") {
        Ok(d) => Ok(d.and_hms_opt(0, 0, 0).context("midnight")?.and_utc()),
        Err(_) => bail!("--event-time {arg:?}: expected RFC 3339 (2024-10-29T18:00:00Z) or a date (2024-10-29)"),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn aoi_and_time_forms() {
        let g = parse_aoi("-0.5,39.2,-0.3,39.5").expect("bbox");
        assert_eq!(g["type"], "Polygon");
        assert_eq!(g["coordinates"][0][2], serde_json::json!([-0.3, 39.5]));
        let inline =
            parse_aoi(r#"{"type":"Feature","geometry":{"type":"Polygon","coordinates":[[[0,0],[1,0],[1,1],[0,0]]]}}"#)
                .expect("feature");
        assert_eq!(inline["type"], "Polygon");
        assert!(parse_aoi("1,2,3").is_err(), "three numbers are a (missing) file name");
        assert!(parse_aoi("2,0,1,1").is_err(), "west > east");
        assert_eq!(
            parse_time("2024-10-29").expect("date").to_rfc3339(),
            "2024-10-29T00:00:00+00:00"
        );
        assert_eq!(
            parse_time("2024-10-29T18:00:00+02:00").expect("rfc").to_rfc3339(),
            "2024-10-29T16:00:00+00:00"
        );
        assert!(parse_time("29/10/2024").is_err());
    }
}
