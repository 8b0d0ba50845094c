//! Webhook notifications: when an event's map is ready (or failed), its JSON is POSTed to each
//! configured URL with `X-Terrastream-Signature: sha256=<hex HMAC-SHA256 of the body>`, so the
//! receiver can check it came from this service. A delivery that fails (connection error,
//! timeout, any non-2xx answer) is retried with exponential backoff and jitter, up to
//! `max_attempts` per URL. Deliveries are not persisted: a restart loses those in progress.

use std::sync::Arc;
use std::time::Duration;

use hmac::{Hmac, Mac as _};
use rand::Rng as _;
use sha2::Sha256;

use super::config::Webhooks;
use super::metrics::Metrics;

/// The signature header.
pub const SIGNATURE_HEADER: &str = "X-Terrastream-Signature";

/// `sha256=<hex>` of `body` under `secret`.
pub fn signature(secret: &[u8], body: &[u8]) -> String {
    // HMAC takes keys of any length, so this cannot fail.
    let mut mac = match Hmac::<Sha256>::new_from_slice(secret) {
        Ok(m) => m,
        Err(_) => unreachable!("HMAC accepts any key length"),
    };
    mac.update(body);
    let hex: String = mac.finalize().into_bytes().iter().map(|b| format!("{b:02x}")).collect();
    format!("sha256={hex}")
}

/// Sends notifications to the configured URLs.
#[derive(Debug, Clone)]
pub struct Notifier {
    urls: Arc<Vec<String>>,
    secret: Arc<Vec<u8>>,
    http: reqwest::Client,
    max_attempts: u32,
    initial_backoff: Duration,
    metrics: Arc<Metrics>,
}

impl Notifier {
    /// A notifier of `cfg`'s URLs signing with `secret`.
    pub fn new(cfg: &Webhooks, secret: Vec<u8>, metrics: Arc<Metrics>) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(Duration::from_secs_f64(cfg.timeout_s))
            .user_agent(concat!("terrastream/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            urls: Arc::new(cfg.urls.clone()),
            secret: Arc::new(secret),
            http,
            max_attempts: cfg.max_attempts,
            initial_backoff: Duration::from_millis(cfg.initial_backoff_ms),
            metrics,
        })
    }

    /// Delivers `payload` to every URL in the background.
    pub fn notify(&self, payload: &serde_json::Value) {
        let body = match serde_json::to_vec(payload) {
            Ok(b) => Arc::new(b),
            Err(e) => {
                tracing::error!("webhook payload not encodable: {e}");
                return;
            }
        };
        let sig = signature(&self.secret, &body);
        for url in self.urls.iter() {
            let (me, url, body, sig) = (self.clone(), url.clone(), body.clone(), sig.clone());
            tokio::spawn(async move { me.deliver(&url, body, &sig).await });
        }
    }

    async fn deliver(&self, url: &str, body: Arc<Vec<u8>>, sig: &str) {
        let mut backoff = self.initial_backoff;
        for attempt in 1..=self.max_attempts {
            let sent = self
                .http
                .post(url)
                .header(reqwest::header::CONTENT_TYPE, "application/json")
                .header(SIGNATURE_HEADER, sig)
                .body(body.as_ref().clone())
                .send()
                .await;
            let why = match sent {
                Ok(r) if r.status().is_success() => {
                    tracing::info!(url, attempt, "webhook delivered");
                    self.metrics.webhook("delivered");
                    return;
                }
                Ok(r) => format!("HTTP {}", r.status()),
                Err(e) => e.to_string(),
            };
            if attempt == self.max_attempts {
                tracing::error!(url, attempt, "webhook not delivered, giving up: {why}");
                self.metrics.webhook("gave_up");
                return;
            }
            // Jitter keeps many events' retries from hitting a recovering receiver together.
            let wait = backoff.mul_f64(rand::rng().random_range(0.75..1.25));
            tracing::warn!(url, attempt, retry_in_s = wait.as_secs_f64(), "webhook failed: {why}");
            tokio::time::sleep(wait).await;
            backoff = (backoff * 2).min(Duration::from_secs(300));
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_signature_is_rfc_4231_hmac_sha256() {
        // RFC 4231 test case 2.
        assert_eq!(
            signature(b"Jefe", b"what do ya want for nothing?"),
            "sha256=5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
    }
}
