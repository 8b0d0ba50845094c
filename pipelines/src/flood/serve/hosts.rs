//! Which asset hrefs the service may read: a STAC API can return any href, and the service must
//! not become a way to make it fetch arbitrary URLs or local files. An href is allowed when a
//! configured `[[mapping.rewrite]]` applies to it (the operator's own mirror), or when it is an
//! http(s) URL whose host is on the allowed list.

use anyhow::{Context as _, bail};
use futures::StreamExt as _;
use terrastream_ingest::item::HrefRewrite;
use terrastream_ingest::stac_api::{SearchParams, StacClient};
use terrastream_ingest::store::RemoteOptions;

use crate::flood::event::{EventConfig, EventRequest};

/// `host` or `host:port` of a URL (the port only when the URL names one).
pub fn authority(url: &reqwest::Url) -> Option<String> {
    let host = url.host_str()?.to_ascii_lowercase();
    Some(match url.port() {
        Some(p) => format!("{host}:{p}"),
        None => host,
    })
}

/// Whether `pattern` (`host`, `host:port` or `*.domain`) admits the URL's host and port. A
/// pattern without a port admits any port of that host.
fn admits(pattern: &str, url: &reqwest::Url) -> bool {
    let Some(host) = url.host_str().map(str::to_ascii_lowercase) else {
        return false;
    };
    let pattern = pattern.trim().to_ascii_lowercase();
    if let Some(domain) = pattern.strip_prefix("*.") {
        return host.ends_with(&format!(".{domain}"));
    }
    match pattern.rsplit_once(':') {
        Some((h, p)) if p.parse::<u16>().is_ok() => h == host && url.port_or_known_default() == p.parse().ok(),
        _ => pattern == host,
    }
}

/// Checks one asset href against `allowed` hosts (empty: any href is allowed) and the configured
/// `rewrites`; the error names the href and its host.
pub fn check_href(allowed: &[String], rewrites: &[HrefRewrite], href: &str) -> anyhow::Result<()> {
    if allowed.is_empty() || rewrites.iter().any(|r| href.starts_with(&r.prefix)) {
        return Ok(());
    }
    let Ok(url) = reqwest::Url::parse(href) else {
        bail!("asset href {href:?}: not a URL, and no configured rewrite applies (local paths are refused)");
    };
    if !matches!(url.scheme(), "http" | "https") {
        bail!(
            "asset href {href:?}: scheme {:?} refused (only http and https)",
            url.scheme()
        );
    }
    if allowed.iter().any(|p| admits(p, &url)) {
        return Ok(());
    }
    let host = authority(&url).unwrap_or_default();
    bail!("asset href {href:?}: host {host:?} is not an allowed asset host (assets.allowed_hosts)")
}

/// Checks, before an event is mapped, the data assets of every item its searches can return
/// (the Sentinel-1 and, when configured, Sentinel-2 collections over the AOI, from the reference
/// window before the event to the post-event window after it); returns how many items were
/// checked. An asset is data unless its roles say otherwise (thumbnails, metadata, overviews are
/// never read by the mapping).
pub async fn preflight(cfg: &EventConfig, allowed: &[String], req: &EventRequest) -> anyhow::Result<usize> {
    if allowed.is_empty() {
        return Ok(0);
    }
    let days = crate::time_span::days;
    let (from, to) = (
        req.event_time - days(cfg.reference_days),
        req.event_time + days(cfg.after_days),
    );
    let fmt = |t: chrono::DateTime<chrono::Utc>| t.to_rfc3339_opts(chrono::SecondsFormat::Secs, true);
    let mut collections = vec![cfg.s1_collection.clone()];
    collections.extend(cfg.s2_collection.clone());
    let params = SearchParams {
        collections,
        intersects: Some(req.aoi.clone()),
        datetime: Some(format!("{}/{}", fmt(from), fmt(to))),
        ..SearchParams::default()
    };
    let client = StacClient::new(&cfg.stac, RemoteOptions::default())?;
    let mut items = Box::pin(client.search(&params, None));
    let mut n = 0;
    while let Some(item) = items.next().await {
        let item = item.with_context(|| format!("searching {} for the event's scenes", cfg.stac))?;
        n += 1;
        for (key, asset) in &item.assets {
            let data = asset.roles.is_empty() || asset.roles.iter().any(|r| r == "data");
            if data {
                check_href(allowed, &cfg.rewrite, &asset.href)
                    .with_context(|| format!("item {}, asset {key}", item.id))?;
            }
        }
    }
    Ok(n)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn allowed() -> Vec<String> {
        vec![
            "sentinel-cogs.s3.us-west-2.amazonaws.com".into(),
            "*.blob.core.windows.net".into(),
            "127.0.0.1:8080".into(),
        ]
    }

    #[test]
    fn hosts_on_the_list_pass_and_others_are_named() {
        let a = allowed();
        check_href(&a, &[], "https://sentinel-cogs.s3.us-west-2.amazonaws.com/x/B04.tif").expect("listed");
        check_href(&a, &[], "https://SENTINEL-COGS.s3.us-west-2.amazonaws.com:443/x").expect("case, default port");
        check_href(&a, &[], "https://sentinel2l2a01.blob.core.windows.net/c/x.tif").expect("wildcard");
        check_href(&a, &[], "http://127.0.0.1:8080/a.tif").expect("host and port");
        let e = check_href(&a, &[], "http://127.0.0.1:9999/a.tif").expect_err("other port");
        assert!(e.to_string().contains("\"127.0.0.1:9999\""), "{e}");
        let e = check_href(&a, &[], "https://evil.example/blob.core.windows.net/x").expect_err("other host");
        assert!(e.to_string().contains("evil.example"), "{e}");
        assert!(
            check_href(&a, &[], "https://blob.core.windows.net.evil/x").is_err(),
            "suffix tricks"
        );
    }

    #[test]
    fn local_paths_and_other_schemes_are_refused_unless_rewritten() {
        let a = allowed();
        assert!(check_href(&a, &[], "/etc/passwd").is_err());
        assert!(check_href(&a, &[], "file:///etc/passwd").is_err());
        assert!(check_href(&a, &[], "s3://bucket/key").is_err());
        let r = [HrefRewrite {
            prefix: "s3://mirror/".into(),
            replace: "/data/".into(),
        }];
        check_href(&a, &r, "s3://mirror/key.tif").expect("operator's rewrite");
        check_href(&[], &[], "/anything").expect("no list: anything");
    }
}
