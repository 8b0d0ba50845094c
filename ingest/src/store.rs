//! Hrefs to `object_store` locations: local paths and `file://` URLs, `http(s)://` with range
//! requests, and `s3://` (anonymous, or with the usual `AWS_*` credentials).
//!
//! Remote stores are created once per host or bucket and shared, so connections are reused;
//! every remote store retries timeouts, 429 and 5xx answers with exponential backoff and jitter,
//! waiting at least what a `Retry-After` header asks ([`crate::retry_after`]), and the stores of
//! one host share a bound on concurrent requests ([`crate::limit`]).
//!
//! An `http(s)` href may carry a query string (a Planetary Computer SAS token): object_store's
//! HTTP store appends object paths to its base URL with `Url::path_segments_mut`, which keeps
//! the base URL's query, so the store is made for `scheme://host/?query` and every range request
//! carries the query. Such stores are keyed by host and query (a refreshed token gets a new one).

use std::collections::HashMap;
use std::path::{Path as FsPath, PathBuf};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::Duration;

use object_store::ObjectStore;
use object_store::aws::AmazonS3Builder;
use object_store::http::HttpBuilder;
use object_store::local::LocalFileSystem;
use object_store::path::Path;
use object_store::{BackoffConfig, ClientOptions, RetryConfig};
use rand::Rng;
use tokio::sync::Semaphore;

use crate::limit::{Limited, RequestBudget};
use crate::retry_after::RetryAfterConnector;
use crate::{Error, Result};

/// A readable location: a store and a path inside it.
#[derive(Debug, Clone)]
pub struct Location {
    /// The store.
    pub store: Arc<dyn ObjectStore>,
    /// The object's path in the store.
    pub path: Path,
}

/// Network settings of remote stores.
#[derive(Debug, Clone, PartialEq)]
pub struct RemoteOptions {
    /// Retries of a failed request (timeouts, connection errors, 429, 5xx).
    pub max_retries: usize,
    /// First backoff; it doubles (with jitter) up to `max_backoff`.
    pub init_backoff: Duration,
    /// Longest backoff.
    pub max_backoff: Duration,
    /// Time limit of one request.
    pub timeout: Duration,
    /// Requests in flight at once to one host (all stores of the host together).
    pub max_concurrency_per_host: usize,
}

impl RemoteOptions {
    /// The wait before retry `attempt` (1 for the first): `init_backoff` doubling per attempt up
    /// to `max_backoff`, with jitter (uniform over its upper half), so that clients that failed
    /// together do not retry together.
    pub fn backoff(&self, attempt: usize) -> Duration {
        let cap = self.max_backoff.as_secs_f64();
        let exp = (self.init_backoff.as_secs_f64() * 2f64.powi(attempt as i32 - 1)).min(cap);
        Duration::from_secs_f64(rand::rng().random_range(exp / 2.0..=exp.max(1e-3)))
    }
}

impl Default for RemoteOptions {
    fn default() -> Self {
        Self {
            max_retries: 5,
            init_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(15),
            timeout: Duration::from_secs(30),
            max_concurrency_per_host: 16,
        }
    }
}

static GLOBAL: OnceLock<Stores> = OnceLock::new();

/// Object stores by scheme and host, created on first use.
#[derive(Debug, Default)]
pub struct Stores {
    options: RemoteOptions,
    remote: Mutex<HashMap<String, Arc<dyn ObjectStore>>>,
    hosts: Mutex<HashMap<String, Arc<Semaphore>>>,
}

/// Stores made for signed hrefs (one per token) kept before the oldest are dropped; a store in
/// use stays alive through its `Arc`.
const MAX_SIGNED_STORES: usize = 256;

impl Stores {
    /// A registry whose remote stores use `options`.
    pub fn new(options: RemoteOptions) -> Self {
        Self { options, remote: Mutex::default(), hosts: Mutex::default() }
    }

    /// The network settings of this registry.
    pub fn options(&self) -> &RemoteOptions {
        &self.options
    }

    /// As [`Stores::open`], with every request through the location counted against `budget`.
    pub fn open_budgeted(&self, href: &str, base_dir: &FsPath, budget: &Arc<RequestBudget>) -> Result<Location> {
        let loc = self.open(href, base_dir)?;
        Ok(Location { store: Arc::new(Limited::new(loc.store, None, Some(Arc::clone(budget)))), path: loc.path })
    }

    /// The process-wide registry: default options unless [`Stores::configure_global`] came first.
    pub fn global() -> &'static Stores {
        GLOBAL.get_or_init(Stores::default)
    }

    /// Gives the process-wide registry `options` (a run's `[source.network]`). Returns false when
    /// it was already in use with other options, which then stay: stores already handed out
    /// cannot change their retry settings.
    pub fn configure_global(options: RemoteOptions) -> bool {
        let wanted = options.clone();
        GLOBAL.get_or_init(|| Stores::new(options)).options == wanted
    }

    /// Opens `href`: a local path (absolute, or relative to `base_dir`), a `file://` URL, an
    /// `http(s)://` URL or an `s3://bucket/key` URL.
    pub fn open(&self, href: &str, base_dir: &FsPath) -> Result<Location> {
        let herr = |reason: String| Error::Href { href: href.to_string(), reason };
        if let Some(rest) = href.strip_prefix("file://") {
            return local(href, PathBuf::from(rest), base_dir);
        }
        let Some((scheme, rest)) = href.split_once("://") else {
            return local(href, PathBuf::from(href), base_dir);
        };
        let (rest, query) = match rest.split_once('?') {
            Some((r, q)) if matches!(scheme, "http" | "https") => (r, Some(q)),
            _ => (rest, None),
        };
        let (host, key) = rest.split_once('/').unwrap_or((rest, ""));
        if host.is_empty() || key.is_empty() {
            return Err(herr("expected scheme://host/path".into()));
        }
        let path = Path::parse(key).map_err(|e| herr(e.to_string()))?;
        let host_key = format!("{scheme}://{host}");
        let (store_key, base_url) = match query {
            Some(q) => (format!("{host_key}?{q}"), format!("{host_key}/?{q}")),
            None => (host_key.clone(), host_key.clone()),
        };
        let mut remote = self.remote.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(store) = remote.get(&store_key) {
            return Ok(Location { store: Arc::clone(store), path });
        }
        let store: Arc<dyn ObjectStore> = match scheme {
            "http" | "https" => Arc::new(
                HttpBuilder::new()
                    .with_url(base_url)
                    .with_client_options(self.client_options())
                    .with_retry(self.retry())
                    .with_http_connector(RetryAfterConnector)
                    .build()
                    .map_err(|e| herr(e.to_string()))?,
            ),
            "s3" => {
                let builder = AmazonS3Builder::from_env().with_bucket_name(host).with_retry(self.retry());
                // Public buckets (sentinel-cogs) need no credentials: do not sign without them.
                let anonymous = std::env::var_os("AWS_ACCESS_KEY_ID").is_none();
                let builder =
                    if std::env::var_os("AWS_REGION").is_none() && std::env::var_os("AWS_DEFAULT_REGION").is_none() {
                        builder.with_region("us-west-2")
                    } else {
                        builder
                    };
                Arc::new(
                    builder
                        .with_http_connector(RetryAfterConnector)
                        .with_skip_signature(anonymous)
                        .with_client_options(self.client_options())
                        .build()
                        .map_err(|e| herr(e.to_string()))?,
                )
            }
            other => return Err(herr(format!("unsupported scheme {other}:// (file, http, https, s3)"))),
        };
        let permits = {
            let mut hosts = self.hosts.lock().unwrap_or_else(|p| p.into_inner());
            let n = self.options.max_concurrency_per_host.max(1);
            Arc::clone(hosts.entry(host_key).or_insert_with(|| Arc::new(Semaphore::new(n))))
        };
        let store: Arc<dyn ObjectStore> = Arc::new(Limited::new(store, Some(permits), None));
        if query.is_some() && remote.keys().filter(|k| k.contains('?')).count() >= MAX_SIGNED_STORES {
            remote.retain(|k, _| !k.contains('?'));
        }
        remote.insert(store_key, Arc::clone(&store));
        Ok(Location { store, path })
    }

    fn retry(&self) -> RetryConfig {
        RetryConfig {
            backoff: BackoffConfig {
                init_backoff: self.options.init_backoff,
                max_backoff: self.options.max_backoff,
                base: 2.0,
            },
            max_retries: self.options.max_retries,
            retry_timeout: Duration::from_secs(180),
        }
    }

    fn client_options(&self) -> ClientOptions {
        ClientOptions::new().with_timeout(self.options.timeout).with_allow_http(true)
    }
}

/// Opens `href` with the process-wide [`Stores`].
pub fn open(href: &str, base_dir: &FsPath) -> Result<Location> {
    Stores::global().open(href, base_dir)
}

fn local(href: &str, local: PathBuf, base_dir: &FsPath) -> Result<Location> {
    let herr = |reason: String| Error::Href { href: href.to_string(), reason };
    let abs = if local.is_absolute() { local } else { base_dir.join(local) };
    let abs = normalize(&std::path::absolute(&abs).map_err(|e| herr(e.to_string()))?);
    let path = Path::from_absolute_path(&abs).map_err(|e| herr(e.to_string()))?;
    static LOCAL: OnceLock<Arc<dyn ObjectStore>> = OnceLock::new();
    let store = LOCAL.get_or_init(|| Arc::new(LocalFileSystem::new()));
    Ok(Location { store: Arc::clone(store), path })
}

/// Removes `.` and `..` components without touching the file system (the file may not exist,
/// and that error belongs to the read, where it names the asset).
pub fn normalize(path: &FsPath) -> PathBuf {
    let mut out = PathBuf::new();
    for c in path.components() {
        match c {
            std::path::Component::ParentDir => {
                out.pop();
            }
            std::path::Component::CurDir => {}
            other => out.push(other),
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn relative_paths_resolve_against_the_base() {
        let loc = open("../b/B02.tif", FsPath::new("/data/a")).expect("local");
        assert_eq!(loc.path.as_ref(), "data/b/B02.tif");
        let loc = open("file:///x/y.tif", FsPath::new("/data")).expect("file url");
        assert_eq!(loc.path.as_ref(), "x/y.tif");
    }

    #[test]
    fn remote_stores_are_shared_per_host() {
        let stores = Stores::default();
        let a = stores.open("https://example.com/a/B02.tif", FsPath::new("/")).expect("https");
        let b = stores.open("https://example.com/b/B03.tif", FsPath::new("/")).expect("https");
        assert!(Arc::ptr_eq(&a.store, &b.store));
        assert_eq!(b.path.as_ref(), "b/B03.tif");
        let s3 = stores.open("s3://sentinel-cogs/sentinel-s2-l2a-cogs/x.tif", FsPath::new("/")).expect("s3");
        assert_eq!(s3.path.as_ref(), "sentinel-s2-l2a-cogs/x.tif");
    }

    #[test]
    fn signed_hrefs_keep_their_query_and_share_the_host_limit() {
        let stores = Stores::default();
        let a =
            stores.open("https://acc.blob.core.windows.net/c/x/B02.tif?sv=1&sig=a%2Bb", FsPath::new("/")).expect("a");
        let b =
            stores.open("https://acc.blob.core.windows.net/c/y/B03.tif?sv=1&sig=a%2Bb", FsPath::new("/")).expect("b");
        let c = stores.open("https://acc.blob.core.windows.net/c/y/B03.tif?sv=2&sig=zz", FsPath::new("/")).expect("c");
        assert_eq!(a.path.as_ref(), "c/x/B02.tif");
        assert!(Arc::ptr_eq(&a.store, &b.store));
        assert!(!Arc::ptr_eq(&a.store, &c.store), "another token needs another store");
        assert_eq!(stores.hosts.lock().expect("hosts").len(), 1);
    }

    #[test]
    fn unknown_schemes_are_named() {
        let err = open("ftp://example.com/B02.tif", FsPath::new("/")).expect_err("ftp");
        assert!(
            err.to_string().contains("ftp://example.com/B02.tif") && err.to_string().contains("unsupported scheme"),
            "{err}"
        );
    }
}
