//! Static STAC catalogs: a `catalog.json` or `collection.json` (on disk, `file://`, `http(s)://`
//! or `s3://`) walked through its `child` and `item` links, depth first in link order, yielding
//! its items.
//!
//! Relative link hrefs are resolved against the document that holds them, and so are the asset
//! hrefs of the items (see [`SceneItem::from_href`]). An item file may also be an
//! ItemCollection (`FeatureCollection`). A document that cannot be read is one error in the
//! stream (naming its href) and the walk goes on; a document reached twice is read once.

use std::collections::HashSet;

use futures::{Stream, StreamExt};
use serde_json::Value;
use stac::Item;
use tokio::sync::mpsc;

use crate::item::{SceneItem, read_href, resolve_href};
use crate::{Error, Result};

/// Item files read at once from one catalog.
const ITEM_CONCURRENCY: usize = 8;

/// Streams the items of the static catalog, collection, item or item collection at `href`.
/// Items are read ahead of the consumer by at most a few dozen, on a task spawned when the
/// stream is first polled (so the stream can be made outside a runtime).
pub fn walk(href: &str) -> impl Stream<Item = Result<SceneItem>> + Send + 'static {
    let root = href.to_string();
    futures::stream::once(async move {
        let (tx, rx) = mpsc::channel::<Result<SceneItem>>(32);
        tokio::spawn(run(root, tx));
        futures::stream::unfold(rx, |mut rx| async move { rx.recv().await.map(|i| (i, rx)) })
    })
    .flatten()
}

/// Walks from `root`, sending items to `tx` until the walk ends or the receiver is dropped.
async fn run(root: String, tx: mpsc::Sender<Result<SceneItem>>) {
    let mut stack = vec![root];
    let mut visited = HashSet::new();
    while let Some(href) = stack.pop() {
        if !visited.insert(href.clone()) {
            continue;
        }
        let doc = match read_json(&href).await {
            Ok(d) => d,
            Err(e) => {
                if tx.send(Err(e)).await.is_err() {
                    return;
                }
                continue;
            }
        };
        match doc.get("type").and_then(Value::as_str) {
            Some("Feature") | Some("FeatureCollection") => {
                for item in items_of(doc, &href) {
                    if tx.send(item).await.is_err() {
                        return;
                    }
                }
            }
            Some("Catalog") | Some("Collection") => {
                let items: Vec<String> = links(&doc, "item", &href).filter(|h| visited.insert(h.clone())).collect();
                let mut loaded = futures::stream::iter(items)
                    .map(|h| async move { read_json(&h).await.map(|d| (d, h)) })
                    .buffered(ITEM_CONCURRENCY);
                while let Some(doc) = loaded.next().await {
                    let items = match doc {
                        Ok((doc, h)) => items_of(doc, &h),
                        Err(e) => vec![Err(e)],
                    };
                    for item in items {
                        if tx.send(item).await.is_err() {
                            return;
                        }
                    }
                }
                // Depth first, children in link order: push them reversed.
                let children: Vec<String> = links(&doc, "child", &href).collect();
                stack.extend(children.into_iter().rev());
            }
            other => {
                let e = Error::Href {
                    href: href.clone(),
                    reason: format!("not a STAC catalog, collection or item (type {other:?})"),
                };
                if tx.send(Err(e)).await.is_err() {
                    return;
                }
            }
        }
    }
}

async fn read_json(href: &str) -> Result<Value> {
    let bytes = read_href(href).await?;
    serde_json::from_slice(&bytes).map_err(|e| Error::Href { href: href.to_string(), reason: format!("not JSON: {e}") })
}

/// The resolved hrefs of the links of `doc` (read from `base`) with relation `rel`.
fn links<'a>(doc: &'a Value, rel: &'a str, base: &'a str) -> impl Iterator<Item = String> + 'a {
    doc.get("links")
        .and_then(Value::as_array)
        .into_iter()
        .flatten()
        .filter(move |l| l.get("rel").and_then(Value::as_str) == Some(rel))
        .filter_map(|l| l.get("href").and_then(Value::as_str))
        .map(move |h| resolve_href(base, h))
}

/// The items of an item (`Feature`) or item collection (`FeatureCollection`) document.
fn items_of(doc: Value, href: &str) -> Vec<Result<SceneItem>> {
    let features = match doc {
        Value::Object(mut o) if o.get("type").and_then(Value::as_str) == Some("FeatureCollection") => {
            match o.remove("features") {
                Some(Value::Array(f)) => f,
                _ => Vec::new(),
            }
        }
        Value::Object(o) if o.get("type").and_then(Value::as_str) == Some("Feature") => vec![Value::Object(o)],
        _ => {
            return vec![Err(Error::Href {
                href: href.to_string(),
                reason: "not a STAC item or item collection".into(),
            })];
        }
    };
    features
        .into_iter()
        .map(|f| {
            crate::item::parse_item(serde_json::from_value::<Item>(f))
                .map(|item| SceneItem::from_item(item, href))
                .map_err(|e| Error::Href { href: href.to_string(), reason: format!("not a STAC item: {e}") })
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn item(id: &str) -> Value {
        serde_json::json!({
            "type": "Feature", "stac_version": "1.0.0", "id": id, "geometry": null, "properties": {"datetime": "2024-01-01T00:00:00Z"},
            "links": [], "assets": {"B02": {"href": "./B02.tif"}}
        })
    }

    #[tokio::test]
    async fn walks_children_and_items_depth_first_and_reads_each_once() {
        let tmp = tempfile::tempdir().expect("tmp");
        let d = tmp.path();
        let write = |p: &str, v: Value| {
            let p = d.join(p);
            std::fs::create_dir_all(p.parent().expect("parent")).expect("mkdir");
            std::fs::write(p, v.to_string()).expect("write");
        };
        write(
            "catalog.json",
            serde_json::json!({"type": "Catalog", "id": "root", "links": [
            {"rel": "child", "href": "./a/collection.json"}, {"rel": "child", "href": "b/catalog.json"},
            {"rel": "item", "href": "./x/x.json"}, {"rel": "self", "href": "./catalog.json"}]}),
        );
        write(
            "a/collection.json",
            serde_json::json!({"type": "Collection", "id": "a", "links": [
            {"rel": "item", "href": "./y/y.json"}, {"rel": "parent", "href": "../catalog.json"},
            {"rel": "child", "href": "../catalog.json"}]}),
        );
        write(
            "b/catalog.json",
            serde_json::json!({"type": "Catalog", "id": "b", "links": [{"rel": "item", "href": "../missing.json"}]}),
        );
        write("x/x.json", item("x"));
        write("a/y/y.json", item("y"));
        let root = d.join("catalog.json").display().to_string();
        let got: Vec<Result<SceneItem>> = walk(&root).collect().await;
        let ids: Vec<String> = got.iter().filter_map(|r| r.as_ref().ok()).map(|i| i.id().to_string()).collect();
        assert_eq!(ids, ["x", "y"]);
        let y = got[1].as_ref().expect("y");
        assert_eq!(y.item.assets["B02"].href, d.join("a/y/B02.tif").display().to_string());
        let errs: Vec<String> = got.iter().filter_map(|r| r.as_ref().err()).map(ToString::to_string).collect();
        assert_eq!(errs.len(), 1, "{errs:?}");
        assert!(errs[0].contains(&d.join("missing.json").display().to_string()), "{errs:?}");
    }
}
