//! A real HTTP server on 127.0.0.1 serving `../shared/data` with Range support (tower-http's
//! `ServeDir`), recording every request's path and `Range` header.

use std::net::SocketAddr;
use std::sync::{Arc, Mutex};

use axum::Router;
use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use tower_http::services::ServeDir;

/// One request: path and `Range` header.
#[derive(Debug, Clone)]
pub struct Logged {
    /// Request path.
    pub path: String,
    /// `Range` header, if any.
    pub range: Option<String>,
}

/// A running server; it stops with the test process.
pub struct DataServer {
    /// Where it listens.
    pub addr: SocketAddr,
    log: Arc<Mutex<Vec<Logged>>>,
}

impl DataServer {
    /// Serves `dir` on an ephemeral port.
    pub fn start(dir: std::path::PathBuf) -> Self {
        let log: Arc<Mutex<Vec<Logged>>> = Arc::default();
        let state = Arc::clone(&log);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt = tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            rt.block_on(async move {
                let app = Router::new()
                    .fallback_service(ServeDir::new(dir))
                    .layer(middleware::from_fn_with_state(state, record));
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                tx.send(listener.local_addr().expect("addr")).expect("send addr");
                axum::serve(listener, app).await.expect("serve");
            });
        });
        let addr = rx.recv().expect("server address");
        Self { addr, log }
    }

    /// `http://127.0.0.1:PORT`.
    pub fn url(&self) -> String {
        format!("http://{}", self.addr)
    }

    /// The requests so far.
    pub fn requests(&self) -> Vec<Logged> {
        self.log.lock().expect("log").clone()
    }
}

async fn record(State(log): State<Arc<Mutex<Vec<Logged>>>>, req: Request, next: Next) -> Response {
    let range = req.headers().get("range").and_then(|v| v.to_str().ok()).map(str::to_string);
    log.lock().expect("log").push(Logged { path: req.uri().path().to_string(), range });
    next.run(req).await
}
