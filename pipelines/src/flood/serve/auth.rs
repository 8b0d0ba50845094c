//! Bearer-token authentication: every endpoint but `/healthz` needs
//! `Authorization: Bearer <token>` with one of the configured tokens, else 401.

use std::sync::Arc;

use axum::extract::{Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};

/// The accepted tokens.
#[derive(Debug, Clone)]
pub struct Tokens(Arc<Vec<Vec<u8>>>);

impl Tokens {
    /// From the configured tokens.
    pub fn new(tokens: Vec<String>) -> Self {
        Self(Arc::new(tokens.into_iter().map(String::into_bytes).collect()))
    }

    /// Whether an `Authorization` header value carries an accepted token. Every token is
    /// compared in full, in time independent of where the bytes differ, so response times do not
    /// reveal a token's prefix.
    pub fn accepts(&self, authorization: Option<&[u8]>) -> bool {
        let Some(given) = authorization.and_then(|h| h.strip_prefix(b"Bearer ")) else {
            return false;
        };
        self.0.iter().fold(false, |ok, t| ok | same(t, given))
    }
}

fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

/// The middleware: 401 with `WWW-Authenticate: Bearer` unless the request carries a token.
pub async fn require_token(State(tokens): State<Tokens>, req: Request, next: Next) -> Response {
    if req.uri().path() == "/healthz" {
        return next.run(req).await;
    }
    let given = req.headers().get(header::AUTHORIZATION).map(|v| v.as_bytes());
    if tokens.accepts(given) {
        return next.run(req).await;
    }
    let msg = if given.is_some() {
        "invalid bearer token"
    } else {
        "missing bearer token (Authorization: Bearer ...)"
    };
    let mut resp = (
        StatusCode::UNAUTHORIZED,
        [(header::WWW_AUTHENTICATE, "Bearer")],
        super::routes::error_json("authorization", msg),
    )
        .into_response();
    super::routes::close_if_body_unread(&req, &mut resp);
    resp
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_configured_bearer_tokens_are_accepted() {
        let t = Tokens::new(vec!["alpha".into(), "beta-2".into()]);
        assert!(t.accepts(Some(b"Bearer alpha")));
        assert!(t.accepts(Some(b"Bearer beta-2")));
        assert!(!t.accepts(Some(b"Bearer alph")));
        assert!(!t.accepts(Some(b"Bearer alphaa")));
        assert!(!t.accepts(Some(b"bearer alpha")));
        assert!(!t.accepts(Some(b"Basic alpha")));
        assert!(!t.accepts(Some(b"Bearer ")));
        assert!(!t.accepts(None));
    }
}
