//! The HTTP API: `POST /events`, `GET /events`, `GET /events/{id}`, the maps under
//! `/outputs/<id>/...`, `/healthz` and `/metrics`. Errors are JSON `{"error": {"field", "message"}}`.

use std::sync::Arc;
use std::time::Instant;

use axum::Router;
use axum::body::{Body, Bytes};
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Request, State};
use axum::http::{StatusCode, header};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde_json::{Value, json};
use tower_http::services::ServeDir;

use super::Service;
use super::auth::{Tokens, require_token};
use super::store::{EventRecord, Submitted, is_event_id};
use super::validate::parse_request;

/// The service's routes, behind bearer-token auth (but `/healthz`) and response counting.
pub fn router(svc: Arc<Service>, tokens: Tokens) -> Router {
    let outputs = ServeDir::new(&svc.maps_dir);
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .route("/events", get(list_events).post(post_event))
        .route("/events/{id}", get(get_event))
        .nest_service("/outputs", outputs)
        .layer(DefaultBodyLimit::max(svc.cfg.limits.max_body_bytes))
        .layer(middleware::from_fn_with_state(tokens, require_token))
        .layer(middleware::from_fn_with_state(Arc::clone(&svc), observe))
        .with_state(svc)
}

/// `{"error": {"field": ..., "message": ...}}` as a response body.
pub fn error_json(field: &str, message: &str) -> Response {
    json_response(&json!({"error": {"field": field, "message": message}}))
}

/// Adds `Connection: close` to a response sent without reading the request's body: the
/// connection cannot carry another request (hyper closes it), and a keep-alive client must
/// know before it writes the next one.
pub fn close_if_body_unread<B>(req: &axum::http::Request<B>, resp: &mut Response) {
    let h = req.headers();
    let has_body = h.contains_key(header::TRANSFER_ENCODING)
        || h
            .get(header::CONTENT_LENGTH)
            .and_then(|v| v.to_str().ok())
            .is_some_and(|v| v.trim() != "0");
    if has_body {
        resp.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
    }
}

fn json_response(v: &Value) -> Response {
    let body = serde_json::to_vec_pretty(v).unwrap_or_default();
    ([(header::CONTENT_TYPE, "application/json")], Body::from(body)).into_response()
}

fn error(status: StatusCode, field: &str, message: &str) -> Response {
    (status, error_json(field, message)).into_response()
}

/// A record as the API shows it: the record with links to itself and its outputs.
pub fn event_json(rec: &EventRecord) -> Value {
    let mut v = serde_json::to_value(rec).unwrap_or(Value::Null);
    let outputs: Vec<String> = rec.files.iter().map(|f| format!("/outputs/{}/{f}", rec.id)).collect();
    v["links"] = json!({"self": format!("/events/{}", rec.id), "outputs": outputs});
    v
}

async fn post_event(State(svc): State<Arc<Service>>, body: Result<Bytes, BytesRejection>) -> Response {
    let body = match body {
        Ok(b) => b,
        Err(r) => {
            // The body was not read to its end (too large, or cut off): no keep-alive after this.
            let mut resp = error(r.status(), "body", &r.body_text());
            resp.headers_mut().insert(header::CONNECTION, axum::http::HeaderValue::from_static("close"));
            return resp;
        }
    };
    let req = match parse_request(&body, &svc.mapping, chrono::Utc::now()) {
        Ok(r) => r,
        Err(e) => {
            tracing::info!(
                field = e.field,
                status = e.status.as_u16(),
                "event refused: {}",
                e.message
            );
            return error(e.status, &e.field, &e.message);
        }
    };
    let (id, what) = match svc.submit(&req, "api") {
        Ok(x) => x,
        Err(e) => {
            tracing::error!("cannot store an event: {e:#}");
            return error(
                StatusCode::INTERNAL_SERVER_ERROR,
                "event",
                "the event could not be stored",
            );
        }
    };
    let Some(rec) = svc.store.get(&id) else {
        return error(StatusCode::INTERNAL_SERVER_ERROR, "event", "the event vanished");
    };
    let status = match what {
        Submitted::New | Submitted::Retried => StatusCode::ACCEPTED,
        Submitted::Existing => StatusCode::OK,
    };
    let mut resp = json_response(&event_json(&rec));
    *resp.status_mut() = status;
    if let Ok(loc) = format!("/events/{id}").parse() {
        resp.headers_mut().insert(header::LOCATION, loc);
    }
    resp
}

async fn get_event(State(svc): State<Arc<Service>>, Path(id): Path<String>) -> Response {
    match svc.store.get(&id).filter(|_| is_event_id(&id)) {
        Some(rec) => json_response(&event_json(&rec)),
        None => error(StatusCode::NOT_FOUND, "id", &format!("no event {id:?}")),
    }
}

async fn list_events(State(svc): State<Arc<Service>>) -> Response {
    let events: Vec<Value> = svc
        .store
        .list()
        .iter()
        .map(|r| {
            json!({
                "id": r.id, "name": r.request.name, "event_time": r.request.event_time, "status": r.status,
                "source": r.source, "created": r.created, "links": {"self": format!("/events/{}", r.id)},
            })
        })
        .collect();
    json_response(&json!({"events": events}))
}

async fn metrics(State(svc): State<Arc<Service>>) -> Response {
    let text = svc.metrics.render(&svc.store.counts());
    ([(header::CONTENT_TYPE, "text/plain; version=0.0.4")], text).into_response()
}

/// Counts every response by status and logs it.
async fn observe(State(svc): State<Arc<Service>>, req: Request, next: Next) -> Response {
    let (method, path) = (req.method().clone(), req.uri().path().to_string());
    let t = Instant::now();
    let resp = next.run(req).await;
    let code = resp.status().as_u16();
    svc.metrics.http_response(code);
    tracing::debug!(%method, path, code, ms = t.elapsed().as_secs_f64() * 1e3, "http");
    resp
}
