//! The `stac-server` crate (memory backend) on 127.0.0.1, loaded with real items, counting
//! search requests. Items can be added while it runs: the memory backend shares its item table
//! between clones, so the test keeps one and adds through it.

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};

use axum::extract::{Request, State};
use axum::middleware::{self, Next};
use axum::response::Response;
use stac::api::TransactionClient;
use stac::{Collection, Item};
use stac_server::{Api, MemoryBackend};

/// A running STAC API.
pub struct StacApi {
    /// Landing page URL.
    pub url: String,
    searches: Arc<AtomicUsize>,
    backend: MemoryBackend,
    runtime: tokio::runtime::Handle,
}

impl StacApi {
    /// Starts a server holding `collection` and `items`.
    pub fn start(collection: Collection, items: Vec<Item>) -> Self {
        let searches = Arc::new(AtomicUsize::new(0));
        let counter = Arc::clone(&searches);
        let (tx, rx) = std::sync::mpsc::channel();
        std::thread::spawn(move || {
            let rt =
                tokio::runtime::Builder::new_multi_thread().worker_threads(2).enable_all().build().expect("runtime");
            let handle = rt.handle().clone();
            rt.block_on(async move {
                let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.expect("bind");
                let url = format!("http://{}", listener.local_addr().expect("addr"));
                let mut backend = MemoryBackend::new();
                backend.add_collection(collection).await.expect("collection");
                backend.add_items(items).await.expect("items");
                let api = Api::new(backend.clone(), &url).expect("api");
                let app = stac_server::routes::from_api(api).layer(middleware::from_fn_with_state(counter, count));
                tx.send((url, backend, handle)).expect("send url");
                axum::serve(listener, app).await.expect("serve");
            });
        });
        let (url, backend, runtime) = rx.recv().expect("server url");
        Self { url, searches, backend, runtime }
    }

    /// Adds `item` to the running server (an item whose id is already there is added again:
    /// the memory backend keeps both).
    pub fn add_item(&self, item: Item) {
        let mut backend = self.backend.clone();
        self.runtime.block_on(async move { backend.add_item(item).await }).expect("add item");
    }

    /// Adds a second (third, ...) collection to the running server.
    pub fn add_collection(&self, collection: Collection) {
        let mut backend = self.backend.clone();
        self.runtime.block_on(async move { backend.add_collection(collection).await }).expect("add collection");
    }

    /// Requests to `/search` so far.
    pub fn searches(&self) -> usize {
        self.searches.load(Ordering::SeqCst)
    }
}

async fn count(State(n): State<Arc<AtomicUsize>>, req: Request, next: Next) -> Response {
    if req.uri().path().ends_with("/search") {
        n.fetch_add(1, Ordering::SeqCst);
    }
    next.run(req).await
}
