//! A STAC API client: item search with paging through `next` links.
//!
//! Searches are POSTed to `<root>/search` (GET links are followed as given); every page is one
//! request, retried on timeouts, 429 and 5xx with exponential backoff and jitter, honouring
//! `Retry-After`. Items stream out through a bounded channel, so a search of millions of items
//! holds one page in memory.

use std::collections::HashSet;

use futures::{Stream, StreamExt};
use serde::Serialize;
use serde_json::{Map, Value};
use stac::Item;
use tokio::sync::mpsc;

use crate::store::RemoteOptions;
use crate::{Error, Result};

/// A STAC API item search (the body of `POST /search`).
#[derive(Debug, Clone, Default, Serialize, PartialEq)]
pub struct SearchParams {
    /// Collection ids.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub collections: Vec<String>,
    /// `[west, south, east, north]` in degrees.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub bbox: Option<[f64; 4]>,
    /// A GeoJSON geometry the items must intersect.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub intersects: Option<Value>,
    /// RFC 3339 instant or interval (`2024-04-01T00:00:00Z/2024-04-30T23:59:59Z`, `../2024-05-01T00:00:00Z`).
    #[serde(skip_serializing_if = "Option::is_none")]
    pub datetime: Option<String>,
    /// A CQL2 filter in cql2-json, e.g. `{"op": "<=", "args": [{"property": "eo:cloud_cover"}, 20]}`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub filter: Option<Value>,
    /// `cql2-json` when `filter` is set.
    #[serde(rename = "filter-lang", skip_serializing_if = "Option::is_none")]
    pub filter_lang: Option<String>,
    /// Sort fields, e.g. `[{"field": "properties.datetime", "direction": "asc"}]`.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    pub sortby: Vec<Value>,
    /// Page size requested from the server.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub limit: Option<u64>,
}

impl SearchParams {
    /// Parses `+field,-field` into `sortby` entries.
    pub fn sort_by(mut self, spec: &str) -> Self {
        for f in spec.split(',').map(str::trim).filter(|f| !f.is_empty()) {
            let (dir, name) = match f.strip_prefix('-') {
                Some(n) => ("desc", n),
                None => ("asc", f.strip_prefix('+').unwrap_or(f)),
            };
            self.sortby.push(serde_json::json!({"field": name, "direction": dir}));
        }
        self
    }
}

/// A client of one STAC API.
#[derive(Debug, Clone)]
pub struct StacClient {
    root: String,
    http: reqwest::Client,
    options: RemoteOptions,
}

/// One request of a search: where and how.
#[derive(Debug, Clone)]
enum PageRequest {
    Post { url: String, body: Value },
    Get { url: String },
}

impl StacClient {
    /// A client of the API whose landing page is `root` (e.g.
    /// `https://earth-search.aws.element84.com/v1`).
    pub fn new(root: &str, options: RemoteOptions) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(options.timeout)
            .user_agent(concat!("terrastream/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Href { href: root.into(), reason: e.to_string() })?;
        Ok(Self { root: root.trim_end_matches('/').to_string(), http, options })
    }

    /// Streams the items of `params`, following `next` links, stopping after `max_items` when
    /// given. Pages are fetched ahead of the consumer by at most one.
    pub fn search(
        &self,
        params: &SearchParams,
        max_items: Option<usize>,
    ) -> impl Stream<Item = Result<Item>> + Send + 'static {
        let (tx, rx) = mpsc::channel::<Result<Item>>(256);
        let client = self.clone();
        let first = match serde_json::to_value(params) {
            Ok(body) => Ok(PageRequest::Post { url: format!("{}/search", self.root), body }),
            Err(e) => Err(Error::Href { href: self.root.clone(), reason: format!("search body: {e}") }),
        };
        // Spawned when the stream is first polled, so a search can be made outside a runtime.
        let pages = async move {
            let mut next = match first {
                Ok(r) => Some(r),
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                    return;
                }
            };
            let mut sent = 0usize;
            let mut pages = 0usize;
            // APIs whose paging is not stable under concurrent writes repeat items across pages;
            // each (collection, id) goes out once.
            let mut seen: HashSet<(Option<String>, String)> = HashSet::new();
            // A `next` link back to a page already read would page forever.
            let mut fetched: HashSet<String> = HashSet::new();
            while let Some(request) = next.take() {
                if !fetched.insert(request.key()) {
                    let e = Error::Href {
                        href: request.url().to_string(),
                        reason: format!("the next link of page {pages} leads back to a page already read"),
                    };
                    let _ = tx.send(Err(e)).await;
                    return;
                }
                let page = match client.fetch(&request).await {
                    Ok(p) => p,
                    Err(e) => {
                        let _ = tx.send(Err(e)).await;
                        return;
                    }
                };
                pages += 1;
                let url = request.url().to_string();
                let features = page.get("features").and_then(Value::as_array).cloned().unwrap_or_default();
                for feature in features {
                    if max_items.is_some_and(|m| sent >= m) {
                        return;
                    }
                    let item = crate::item::parse_item(serde_json::from_value::<Item>(feature)).map_err(|e| Error::Href {
                        href: url.clone(),
                        reason: format!("page {pages}: not a STAC item: {e}"),
                    });
                    if let Ok(i) = &item
                        && !seen.insert((i.collection.clone(), i.id.clone()))
                    {
                        tracing::debug!(id = i.id, page = pages, "item repeated across pages, skipped");
                        continue;
                    }
                    if tx.send(item).await.is_err() {
                        return;
                    }
                    sent += 1;
                }
                next = next_request(&page, &request);
            }
        };
        futures::stream::once(async move {
            tokio::spawn(pages);
            futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) })
        })
        .flatten()
    }

    async fn fetch(&self, request: &PageRequest) -> Result<Value> {
        send_json(&self.options, request.url(), || match request {
            PageRequest::Post { url, body } => self
                .http
                .post(url)
                .header("content-type", "application/json")
                .header("accept", "application/geo+json, application/json")
                .body(body.to_string()),
            PageRequest::Get { url } => self.http.get(url).header("accept", "application/geo+json, application/json"),
        })
        .await
    }
}

/// Sends the request `build` makes (a fresh one per attempt) and parses the answer as JSON;
/// timeouts, connection errors, 429 and 5xx are retried with exponential backoff and full
/// jitter, honouring `Retry-After` (seconds or an HTTP date). Errors name `url`.
pub(crate) async fn send_json(
    options: &RemoteOptions,
    url: &str,
    build: impl Fn() -> reqwest::RequestBuilder,
) -> Result<Value> {
    let herr = |reason: String| Error::Href { href: url.to_string(), reason };
    let mut attempt = 0usize;
    loop {
        let retry_after = match build().send().await {
            Ok(resp) if resp.status().is_success() => match resp.bytes().await {
                Ok(bytes) => return serde_json::from_slice(&bytes).map_err(|e| herr(format!("not JSON: {e}"))),
                // The connection dropped mid-body: as transient as a failed connect.
                Err(e) if attempt < options.max_retries => {
                    tracing::debug!(url, "body cut short: {e}");
                    None
                }
                Err(e) => return Err(herr(format!("body: {e} after {attempt} retries"))),
            },
            Ok(resp) if resp.status().as_u16() == 429 || resp.status().is_server_error() => {
                let wait = resp
                    .headers()
                    .get("retry-after")
                    .and_then(|v| v.to_str().ok())
                    .and_then(crate::retry_after::parse_retry_after);
                if attempt >= options.max_retries {
                    return Err(herr(format!("HTTP {} after {} retries", resp.status(), attempt)));
                }
                wait
            }
            Ok(resp) => {
                let status = resp.status();
                let text = resp.text().await.unwrap_or_default();
                return Err(herr(format!("HTTP {status}: {}", text.chars().take(300).collect::<String>())));
            }
            Err(e) if (e.is_timeout() || e.is_connect() || e.is_request()) && attempt < options.max_retries => None,
            Err(e) => return Err(herr(e.to_string())),
        };
        attempt += 1;
        let backoff = options.backoff(attempt);
        tracing::warn!(url, attempt, ?backoff, "request failed, retrying");
        tokio::time::sleep(retry_after.unwrap_or(backoff)).await;
    }
}

impl PageRequest {
    fn url(&self) -> &str {
        match self {
            PageRequest::Post { url, .. } | PageRequest::Get { url } => url,
        }
    }

    /// What makes two requests the same page: method, URL and body.
    fn key(&self) -> String {
        match self {
            PageRequest::Post { url, body } => format!("POST {url} {body}"),
            PageRequest::Get { url } => format!("GET {url}"),
        }
    }
}

/// The request for the page after `page`, from its `next` link.
fn next_request(page: &Value, previous: &PageRequest) -> Option<PageRequest> {
    let link = page.get("links")?.as_array()?.iter().find(|l| l.get("rel").and_then(Value::as_str) == Some("next"))?;
    let href = link.get("href")?.as_str()?.to_string();
    let method = link.get("method").and_then(Value::as_str).unwrap_or("GET");
    if !method.eq_ignore_ascii_case("POST") {
        return Some(PageRequest::Get { url: href });
    }
    let body = link.get("body").cloned().unwrap_or(Value::Object(Map::new()));
    let merge = link.get("merge").and_then(Value::as_bool).unwrap_or(false);
    let body = match (merge, previous) {
        (true, PageRequest::Post { body: prev, .. }) => {
            let mut merged = prev.as_object().cloned().unwrap_or_default();
            if let Some(b) = body.as_object() {
                merged.extend(b.clone());
            }
            Value::Object(merged)
        }
        _ => body,
    };
    Some(PageRequest::Post { url: href, body })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn search_body_is_stac_api_json() {
        let p = SearchParams { collections: vec!["sentinel-2-l2a".into()], limit: Some(3), ..Default::default() }
            .sort_by("-properties.eo:cloud_cover,id");
        let v = serde_json::to_value(&p).expect("json");
        assert_eq!(v["collections"][0], "sentinel-2-l2a");
        assert_eq!(v["sortby"][0]["direction"], "desc");
        assert_eq!(v["sortby"][1]["field"], "id");
        assert!(v.get("bbox").is_none());
    }

    #[test]
    fn next_links_merge_post_bodies() {
        let prev = PageRequest::Post {
            url: "http://x/search".into(),
            body: serde_json::json!({"limit": 3, "collections": ["a"]}),
        };
        let page = serde_json::json!({"links": [{"rel": "next", "href": "http://x/search", "method": "POST", "merge": true, "body": {"skip": 3}}]});
        match next_request(&page, &prev) {
            Some(PageRequest::Post { body, .. }) => {
                assert_eq!(body["skip"], 3);
                assert_eq!(body["limit"], 3);
            }
            other => panic!("{other:?}"),
        }
        let page = serde_json::json!({"links": [{"rel": "next", "href": "http://x/search?token=abc"}]});
        assert!(matches!(next_request(&page, &prev), Some(PageRequest::Get { .. })));
        assert!(next_request(&serde_json::json!({"links": []}), &prev).is_none());
    }
}
