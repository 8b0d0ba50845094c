//! `Retry-After` on asset reads. object_store retries 429 and 5xx answers with its own backoff
//! but never sees the response headers, so a server that asks for 30 s gets hammered again after
//! 100 ms. [`RetryAfterConnector`] puts a thin HTTP service under object_store's retry loop: an
//! answer that carries `Retry-After` is handed back only after the wait the server asked for, so
//! the retry that follows comes no earlier than that (object_store's backoff comes on top).

use std::time::Duration;

use async_trait::async_trait;
use object_store::ClientOptions;
use object_store::client::{
    HttpClient, HttpConnector, HttpError, HttpRequest, HttpResponse, HttpService, ReqwestConnector,
};

/// The longest wait honoured: a server asking for more gets retried after this long, within
/// object_store's retry timeout (180 s here).
pub const MAX_RETRY_AFTER: Duration = Duration::from_secs(60);

/// The wait a `Retry-After` value asks for: delta-seconds (`120`) or an HTTP date
/// (`Wed, 21 Oct 2015 07:28:00 GMT`, a date in the past is no wait), capped at
/// [`MAX_RETRY_AFTER`]; `None` when it is neither.
pub fn parse_retry_after(value: &str) -> Option<Duration> {
    let value = value.trim();
    let wait = if let Ok(secs) = value.parse::<u64>() {
        Duration::from_secs(secs)
    } else {
        let at = chrono::DateTime::parse_from_rfc2822(value).ok()?;
        (at.with_timezone(&chrono::Utc) - chrono::Utc::now())
            .to_std()
            .unwrap_or(Duration::ZERO)
    };
    Some(wait.min(MAX_RETRY_AFTER))
}

/// Makes object_store's usual reqwest client, wrapped so that it honours `Retry-After` on 429
/// and 503 answers.
#[derive(Debug, Default, Clone, Copy)]
pub struct RetryAfterConnector;

impl HttpConnector for RetryAfterConnector {
    fn connect(&self, options: &ClientOptions) -> object_store::Result<HttpClient> {
        let inner = ReqwestConnector::default().connect(options)?;
        Ok(HttpClient::new(RetryAfterService { inner }))
    }
}

#[derive(Debug)]
struct RetryAfterService {
    inner: HttpClient,
}

#[async_trait]
impl HttpService for RetryAfterService {
    async fn call(&self, req: HttpRequest) -> Result<HttpResponse, HttpError> {
        let uri = req.uri().to_string();
        let res = self.inner.execute(req).await?;
        if matches!(res.status().as_u16(), 429 | 503) {
            let wait = res
                .headers()
                .get("retry-after")
                .and_then(|v| v.to_str().ok())
                .and_then(parse_retry_after);
            if let Some(wait) = wait {
                tracing::info!(url = %uri, status = res.status().as_u16(), ?wait, "server asked to retry later");
                tokio::time::sleep(wait).await;
            }
        }
        Ok(res)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn seconds_dates_and_junk() {
        assert_eq!(parse_retry_after(" 7 "), Some(Duration::from_secs(7)));
        assert_eq!(parse_retry_after("86400"), Some(MAX_RETRY_AFTER));
        assert_eq!(
            parse_retry_after("Wed, 21 Oct 2015 07:28:00 GMT"),
            Some(Duration::ZERO)
        );
        let soon = (chrono::Utc::now() + chrono::Duration::seconds(30)).to_rfc2822();
        let wait = parse_retry_after(&soon).expect("a date");
        assert!(
            wait > Duration::from_secs(27) && wait <= Duration::from_secs(30),
            "{wait:?}"
        );
        assert_eq!(parse_retry_after("soon"), None);
        assert_eq!(parse_retry_after("-3"), None);
    }
}
