//! Planetary Computer SAS signing: blob hrefs get a read token for their storage container.
//!
//! Planetary Computer's assets live in Azure blob storage
//! (`https://<account>.blob.core.windows.net/<container>/<blob>`) and are read with a shared
//! access signature appended as the query string. Tokens come from
//! `GET <endpoint>/token/<account>/<container>`, which answers
//! `{"token": "<query>", "msft:expiry": "<RFC 3339>"}`. A token is fetched once per container
//! and reused until `refresh_margin` before its expiry; concurrent signers of one container wait
//! for a single request. An `Ocp-Apim-Subscription-Key` header is sent when a subscription key
//! is set (`PC_SDK_SUBSCRIPTION_KEY`), which raises the endpoint's rate limits.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use chrono::{DateTime, Utc};
use stac::Item;
use tokio::sync::Mutex as AsyncMutex;

use crate::stac_api::send_json;
use crate::store::RemoteOptions;
use crate::{Error, Result};

/// Planetary Computer's SAS endpoint.
pub const PC_SAS_URL: &str = "https://planetarycomputer.microsoft.com/api/sas/v1";

/// The environment variable holding a Planetary Computer subscription key.
pub const SUBSCRIPTION_KEY_ENV: &str = "PC_SDK_SUBSCRIPTION_KEY";

/// Blob hosts are `<account>` followed by this suffix.
const BLOB_HOST_SUFFIX: &str = ".blob.core.windows.net";

/// How tokens are fetched and when they are renewed.
#[derive(Debug, Clone)]
pub struct SasOptions {
    /// The SAS endpoint (tokens at `<endpoint>/token/<account>/<container>`).
    pub endpoint: String,
    /// A token is renewed when less than this is left before its expiry.
    pub refresh_margin: Duration,
    /// Sent as `Ocp-Apim-Subscription-Key` when set.
    pub subscription_key: Option<String>,
    /// Retries and timeouts of token requests.
    pub remote: RemoteOptions,
}

impl Default for SasOptions {
    /// Planetary Computer's endpoint, a 5 minute margin, the key from `PC_SDK_SUBSCRIPTION_KEY`.
    fn default() -> Self {
        Self {
            endpoint: PC_SAS_URL.to_string(),
            refresh_margin: Duration::from_secs(300),
            subscription_key: std::env::var(SUBSCRIPTION_KEY_ENV).ok().filter(|k| !k.is_empty()),
            remote: RemoteOptions::default(),
        }
    }
}

/// A SAS token for one storage container.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SasToken {
    /// The query string to append to blob hrefs (without `?`).
    pub token: String,
    /// When the token stops working.
    pub expiry: DateTime<Utc>,
}

/// The cached token of one container; locked while it is renewed.
type TokenSlot = Arc<AsyncMutex<Option<SasToken>>>;

/// Signs Azure blob hrefs with cached, self-renewing SAS tokens.
#[derive(Debug)]
pub struct SasSigner {
    options: SasOptions,
    http: reqwest::Client,
    tokens: Mutex<HashMap<(String, String), TokenSlot>>,
}

impl SasSigner {
    /// A signer with `options`.
    pub fn new(options: SasOptions) -> Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(options.remote.timeout)
            .user_agent(concat!("terrastream/", env!("CARGO_PKG_VERSION")))
            .build()
            .map_err(|e| Error::Href { href: options.endpoint.clone(), reason: e.to_string() })?;
        let options = SasOptions { endpoint: options.endpoint.trim_end_matches('/').to_string(), ..options };
        Ok(Self { options, http, tokens: Mutex::default() })
    }

    /// `href` with a valid token for its container as the query string (replacing any query it
    /// had); other hrefs unchanged.
    pub async fn sign_href(&self, href: &str) -> Result<String> {
        let Some((account, container)) = blob_container(href) else {
            return Ok(href.to_string());
        };
        let token = self.token(account, container).await?;
        let bare = href.split_once('?').map_or(href, |(b, _)| b);
        Ok(format!("{bare}?{}", token.token))
    }

    /// Signs every blob href among the assets of `item`.
    pub async fn sign_item(&self, item: &mut Item) -> Result<()> {
        for asset in item.assets.values_mut() {
            asset.href = self.sign_href(&asset.href).await?;
        }
        Ok(())
    }

    /// A token for `account`/`container` with more than the refresh margin left: the cached
    /// one, or a new one.
    pub async fn token(&self, account: &str, container: &str) -> Result<SasToken> {
        let slot = {
            let mut tokens = self.tokens.lock().unwrap_or_else(|p| p.into_inner());
            Arc::clone(tokens.entry((account.to_string(), container.to_string())).or_default())
        };
        let mut slot = slot.lock().await;
        let margin = chrono::Duration::from_std(self.options.refresh_margin).unwrap_or(chrono::Duration::MAX);
        if let Some(t) = slot.as_ref().filter(|t| Utc::now() + margin < t.expiry) {
            return Ok(t.clone());
        }
        let token = self.fetch(account, container).await?;
        *slot = Some(token.clone());
        Ok(token)
    }

    async fn fetch(&self, account: &str, container: &str) -> Result<SasToken> {
        let url = format!("{}/token/{account}/{container}", self.options.endpoint);
        let v = send_json(&self.options.remote, &url, || {
            let req = self.http.get(&url).header("accept", "application/json");
            match &self.options.subscription_key {
                Some(k) => req.header("Ocp-Apim-Subscription-Key", k),
                None => req,
            }
        })
        .await?;
        let herr = |reason: String| Error::Href { href: url.clone(), reason };
        let token = v.get("token").and_then(|t| t.as_str()).ok_or_else(|| herr("no \"token\" in the answer".into()))?;
        let expiry = v
            .get("msft:expiry")
            .and_then(|t| t.as_str())
            .ok_or_else(|| herr("no \"msft:expiry\" in the answer".into()))?;
        let expiry = DateTime::parse_from_rfc3339(expiry)
            .map_err(|e| herr(format!("msft:expiry {expiry:?}: {e}")))?
            .with_timezone(&Utc);
        tracing::debug!(account, container, %expiry, "SAS token");
        Ok(SasToken { token: token.trim_start_matches('?').to_string(), expiry })
    }
}

/// The storage account and container of an Azure blob href
/// (`https://<account>.blob.core.windows.net/<container>/...`).
pub fn blob_container(href: &str) -> Option<(&str, &str)> {
    let rest = href.strip_prefix("https://")?;
    let (host, path) = rest.split_once('/')?;
    let account = host.strip_suffix(BLOB_HOST_SUFFIX)?;
    let container = path.split(['/', '?']).next()?;
    (!account.is_empty() && !container.is_empty()).then_some((account, container))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn blob_hrefs_name_account_and_container() {
        let href = "https://sentinel2l2a01.blob.core.windows.net/sentinel2-l2/47/X/ML/B02_10m.tif";
        assert_eq!(blob_container(href), Some(("sentinel2l2a01", "sentinel2-l2")));
        assert_eq!(blob_container("https://planetarycomputer.microsoft.com/api/data/v1/item/preview.png"), None);
        assert_eq!(blob_container("https://sentinel2l2a01.blob.core.windows.net/"), None);
        assert_eq!(blob_container("http://sentinel2l2a01.blob.core.windows.net/c/x"), None);
    }
}
