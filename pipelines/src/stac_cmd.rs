//! `terrastream stac search|poll|catalog`: STAC API searches, polling for new items and
//! static catalogs, items printed as NDJSON.

use std::io::Write;
use std::time::Duration;

use anyhow::{Context, Result, bail};
use futures::StreamExt;
use terrastream_ingest::catalog;
use terrastream_ingest::poll::{PollOptions, Poller};
use terrastream_ingest::provider::{Provider, SasOptions, SasSigner};
use terrastream_ingest::stac_api::{SearchParams, StacClient};
use terrastream_ingest::store::RemoteOptions;

/// Options of `stac search`.
#[derive(Debug, Clone, Default, clap::Args)]
pub struct SearchArgs {
    /// API root, e.g. https://earth-search.aws.element84.com/v1 (default: the provider's).
    pub url: Option<String>,
    /// earth-search, planetary-computer or generic (default: from the URL's host).
    #[arg(long)]
    pub provider: Option<Provider>,
    /// Sign the printed asset hrefs (Planetary Computer SAS tokens).
    #[arg(long)]
    pub sign: bool,
    /// SAS token endpoint for --sign (default: Planetary Computer's).
    #[arg(long)]
    pub sas_url: Option<String>,
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

/// Options of `stac poll`.
#[derive(Debug, Clone, clap::Args)]
pub struct PollArgs {
    /// The search to poll.
    #[command(flatten)]
    pub search: SearchArgs,
    /// Output prefix holding the watermark (`<state>/_state/watermark.json`): a directory or
    /// s3:// URL.
    #[arg(long)]
    pub state: String,
    /// Time between polls (`90s`, `10m`, `2h`, `3d`).
    #[arg(long, default_value = "10m", value_parser = parse_duration)]
    pub interval: Duration,
    /// How far before the latest acquisition seen each poll looks again.
    #[arg(long, default_value = "3d", value_parser = parse_duration)]
    pub lookback: Duration,
    /// Emit items again when their `updated` property changed.
    #[arg(long)]
    pub reprocess_updated: bool,
    /// Poll once and exit.
    #[arg(long)]
    pub once: bool,
}

/// Options of `stac catalog`.
#[derive(Debug, Clone, clap::Args)]
pub struct CatalogArgs {
    /// catalog.json, collection.json or item file: a path or http(s)/s3/file URL.
    pub href: String,
    /// Stop after this many items.
    #[arg(long)]
    pub max_items: Option<usize>,
}

/// `90s`, `10m`, `2h`, `3d` or plain seconds.
pub fn parse_duration(s: &str) -> Result<Duration, String> {
    let (num, unit) = s.trim().split_at(s.trim().find(|c: char| c.is_ascii_alphabetic()).unwrap_or(s.trim().len()));
    let n: f64 = num.trim().parse().map_err(|_| format!("{s:?}: expected a number with s, m, h or d"))?;
    let secs = match unit {
        "" | "s" => n,
        "m" => n * 60.0,
        "h" => n * 3600.0,
        "d" => n * 86_400.0,
        other => return Err(format!("{s:?}: unknown unit {other:?} (s, m, h, d)")),
    };
    Duration::try_from_secs_f64(secs).map_err(|e| format!("{s:?}: {e}"))
}

impl SearchArgs {
    /// The provider: `--provider`, else the URL's.
    fn provider(&self) -> Provider {
        self.provider.unwrap_or_else(|| self.url.as_deref().map_or(Provider::Generic, Provider::from_url))
    }

    /// The API root: the URL, else the provider's.
    fn root(&self) -> Result<String> {
        match (&self.url, self.provider().default_url()) {
            (Some(u), _) => Ok(u.clone()),
            (None, Some(u)) => Ok(u.to_string()),
            (None, None) => bail!("give the API URL or --provider earth-search|planetary-computer"),
        }
    }

    /// The signer of printed hrefs, with --sign.
    fn signer(&self) -> Result<Option<SasSigner>> {
        if !self.sign {
            return Ok(None);
        }
        if self.sas_url.is_none() && !self.provider().signs_hrefs() {
            bail!(
                "--sign: provider {} does not sign hrefs (use --provider planetary-computer or --sas-url)",
                self.provider()
            );
        }
        let mut options = SasOptions::default();
        if let Some(u) = &self.sas_url {
            options.endpoint = u.clone();
        }
        Ok(Some(SasSigner::new(options)?))
    }

    /// The search body.
    fn params(&self) -> Result<SearchParams> {
        let bbox = match &self.bbox {
            Some(b) => {
                let v: Vec<f64> = b
                    .split(',')
                    .map(|x| x.trim().parse::<f64>())
                    .collect::<Result<_, _>>()
                    .with_context(|| format!("--bbox {b:?}: expected west,south,east,north in degrees"))?;
                let [w, s, e, n] = v[..] else { bail!("--bbox {b:?}: expected four numbers") };
                Some([w, s, e, n])
            }
            None => None,
        };
        let json = |flag: &str, s: &Option<String>| -> Result<Option<serde_json::Value>> {
            s.as_ref().map(|s| serde_json::from_str(s).with_context(|| format!("{flag}: not JSON"))).transpose()
        };
        let filter = json("--filter", &self.filter)?;
        let mut params = SearchParams {
            collections: self.collections.clone(),
            bbox,
            intersects: json("--intersects", &self.intersects)?,
            datetime: self.datetime.clone(),
            filter_lang: filter.as_ref().map(|_| "cql2-json".to_string()),
            filter,
            limit: self.limit,
            ..Default::default()
        };
        if let Some(s) = &self.sortby {
            params = params.sort_by(s);
        }
        Ok(params)
    }
}

/// Writes `item` as one NDJSON line, signed when `signer` is given.
async fn write_item(out: &mut impl Write, mut item: stac::Item, signer: Option<&SasSigner>) -> Result<()> {
    if let Some(s) = signer {
        s.sign_item(&mut item).await?;
    }
    serde_json::to_writer(&mut *out, &item)?;
    out.write_all(b"\n")?;
    Ok(())
}

/// Runs the search, writing one item per line to `out`; returns the item count.
pub async fn search(args: &SearchArgs, mut out: impl Write) -> Result<usize> {
    let params = args.params()?;
    let signer = args.signer()?;
    let client = StacClient::new(&args.root()?, RemoteOptions::default())?;
    let mut items = Box::pin(client.search(&params, args.max_items));
    let mut n = 0;
    while let Some(item) = items.next().await {
        write_item(&mut out, item?, signer.as_ref()).await?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}

/// Polls the search: prints the new items of each poll, then stores the watermark; with
/// `--once` after the first poll, else every `--interval`. Returns the items printed.
pub async fn poll(args: &PollArgs, mut out: impl Write) -> Result<usize> {
    let search = &args.search;
    if search.max_items.is_some() {
        bail!("--max-items does not apply to poll: every new item is emitted and then counted as seen");
    }
    let signer = search.signer()?;
    let client = StacClient::new(&search.root()?, RemoteOptions::default())?;
    let options =
        PollOptions { interval: args.interval, lookback: args.lookback, reprocess_updated: args.reprocess_updated };
    let mut poller = Poller::open(client, search.params()?, options, &args.state).await?;
    let mut n = 0;
    loop {
        let items = poller.poll().await?;
        for item in items {
            write_item(&mut out, item, signer.as_ref()).await?;
            n += 1;
        }
        out.flush()?;
        // Committed after printing: a crash in between prints the items again (at least once).
        poller.commit().await.with_context(|| format!("watermark {}", poller.state_href()))?;
        if args.once {
            return Ok(n);
        }
        tokio::time::sleep(args.interval).await;
    }
}

/// Walks a static catalog, writing its items (asset hrefs made absolute) one per line.
pub async fn catalog(args: &CatalogArgs, mut out: impl Write) -> Result<usize> {
    let mut items = Box::pin(catalog::walk(&args.href).take(args.max_items.unwrap_or(usize::MAX)));
    let mut n = 0;
    while let Some(item) = items.next().await {
        write_item(&mut out, item?.item, None).await?;
        n += 1;
    }
    out.flush()?;
    Ok(n)
}
