//! `terrastream stac search`: a STAC API search, items printed as NDJSON.

use std::io::Write;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use terrastream_ingest::stac_api::{SearchParams, StacClient};
use terrastream_ingest::store::RemoteOptions;

/// Options of `stac search`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SearchArgs {
    /// API root, e.g. https://earth-search.aws.element84.com/v1
    pub url: String,
    /// Collection ids.
    #[arg(long, value_delimiter = ',')]
    pub collections: Vec<String>,
    /// west,south,east,north in degrees.
    #[arg(long, allow_hyphen_values = true)]
    pub bbox: Option<String>,
    /// A GeoJSON geometry the items must intersect (inline JSON).
    #[arg(long)]
    pub intersects: Option<String>,
    /// RFC 3339 instant or interval (start/end, `..` open).
    #[arg(long)]
    pub datetime: Option<String>,
    /// CQL2 filter in cql2-json, e.g. '{"op":"<=","args":[{"property":"eo:cloud_cover"},20]}'.
    #[arg(long)]
    pub filter: Option<String>,
    /// Sort fields, e.g. -properties.datetime,id.
    #[arg(long, allow_hyphen_values = true)]
    pub sortby: Option<String>,
    /// Page size.
    #[arg(long)]
    pub limit: Option<u64>,
    /// Stop after this many items.
    #[arg(long)]
    pub max_items: Option<usize>,
}

/// Runs the search, writing one item per line to `out`; returns the item count.
pub async fn search(args: &SearchArgs, mut out: impl Write) -> Result<usize> {
    let bbox = match &args.bbox {
        Some(b) => {
            let v: Vec<f64> = b.split(',').map(|x| x.trim().parse::<f64>()).collect::<Result<_, _>>()
                .with_context(|| format!("--bbox {b:?}: expected west,south,east,north in degrees"))?;
            let [w, s, e, n] = v[..] else { bail!("--bbox {b:?}: expected four numbers") };
            Some([w, s, e, n])
        }
        None => None,
    };
    let json = |flag: &str, s: &Option<String>| -> Result<Option<serde_json::Value>> {
        s.as_ref().map(|s| serde_json::from_str(s).with_context(|| format!("{flag}: not JSON"))).transpose()
    };
    let filter = json("--filter", &args.filter)?;
    let mut params = SearchParams {
        collections: args.collections.clone(),
        bbox,
        intersects: json("--intersects", &args.intersects)?,
        datetime: args.datetime.clone(),
        filter_lang: filter.as_ref().map(|_| "cql2-json".to_string()),
        filter,
        limit: args.limit,
        ..Default::default()
    };
    if let Some(s) = &args.sortby {
        params = params.sort_by(s);
    }
    let client = StacClient::new(&args.url, RemoteOptions::default())?;
    let mut items = Box::pin(client.search(&params, args.max_items));
    let mut n = 0;
    while let Some(item) = items.next().await {
        let item = item?;
        serde_json::to_writer(&mut out, &item)?;
        out.write_all(b"\n")?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}
