//! A TCP pass-through in front of the Worker that a test controls: it cuts
//! every connection at once or a single one, and can refuse new ones with an
//! HTTP 503, as a network fault or an edge outage would look to whoever is
//! on the other side.

use std::collections::HashMap;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use tokio::io::AsyncWriteExt;
use tokio::net::{TcpListener, TcpStream};
use tokio::task::AbortHandle;

struct Shared {
    upstream: Mutex<String>,
    refusing: AtomicBool,
    next: AtomicU64,
    open: Mutex<HashMap<u64, AbortHandle>>,
}

/// The pass-through; dropping it stops accepting (open connections end with
/// their tasks when the runtime does).
pub struct Cutter {
    /// `http://127.0.0.1:<port>`, the port the pass-through bound itself.
    pub url: String,
    shared: Arc<Shared>,
    accept: AbortHandle,
}

impl Drop for Cutter {
    fn drop(&mut self) {
        self.accept.abort();
        self.cut_all();
    }
}

impl Cutter {
    /// Listens on a free port of 127.0.0.1 and forwards to `upstream`
    /// (`host:port`).
    pub async fn start(upstream: &str) -> anyhow::Result<Self> {
        let listener = TcpListener::bind("127.0.0.1:0").await?;
        let url = format!("http://{}", listener.local_addr()?);
        let shared = Arc::new(Shared {
            upstream: Mutex::new(upstream.to_string()),
            refusing: AtomicBool::new(false),
            next: AtomicU64::new(0),
            open: Mutex::new(HashMap::new()),
        });
        let accepting = Arc::clone(&shared);
        let accept = tokio::spawn(async move {
            while let Ok((conn, _)) = listener.accept().await {
                let _ = conn.set_nodelay(true);
                serve(&accepting, conn);
            }
        })
        .abort_handle();
        Ok(Self {
            url,
            shared,
            accept,
        })
    }

    /// Forwards new connections to `upstream` from now on.
    pub fn set_upstream(&self, upstream: &str) {
        if let Ok(mut current) = self.shared.upstream.lock() {
            *current = upstream.to_string();
        }
    }

    /// Cuts every open connection; returns how many there were.
    pub fn cut_all(&self) -> usize {
        let open: Vec<AbortHandle> = match self.shared.open.lock() {
            Ok(mut open) => open.drain().map(|(_, h)| h).collect(),
            Err(_) => Vec::new(),
        };
        for handle in &open {
            handle.abort();
        }
        open.len()
    }

    /// Cuts one open connection, the `pick`-th modulo how many are open.
    /// Returns whether there was one.
    pub fn cut_one(&self, pick: usize) -> bool {
        let handle = match self.shared.open.lock() {
            Ok(mut open) => {
                let mut ids: Vec<u64> = open.keys().copied().collect();
                ids.sort_unstable();
                match ids.get(pick % ids.len().max(1)) {
                    Some(id) => open.remove(id),
                    None => None,
                }
            }
            Err(_) => None,
        };
        handle.map(|h| h.abort()).is_some()
    }

    /// While on, every open connection is cut and every new one is answered
    /// `503` and closed.
    pub fn refuse(&self, on: bool) {
        self.shared.refusing.store(on, Ordering::SeqCst);
        if on {
            self.cut_all();
        }
    }

    /// Connections open now.
    pub fn open(&self) -> usize {
        self.shared.open.lock().map(|o| o.len()).unwrap_or(0)
    }
}

fn serve(shared: &Arc<Shared>, mut conn: TcpStream) {
    let id = shared.next.fetch_add(1, Ordering::SeqCst);
    let upstream = shared
        .upstream
        .lock()
        .map(|u| u.clone())
        .unwrap_or_default();
    let refusing = shared.refusing.load(Ordering::SeqCst);
    let mine = Arc::clone(shared);
    let task = tokio::spawn(async move {
        if refusing {
            let body = r#"{"error":{"code":"unavailable","message":"refused by the test's pass-through"}}"#;
            let answer = format!(
                "HTTP/1.1 503 Service Unavailable\r\ncontent-type: application/json\r\ncontent-length: {}\r\nconnection: close\r\n\r\n{body}",
                body.len()
            );
            let _ = conn.write_all(answer.as_bytes()).await;
            let _ = conn.shutdown().await;
        } else if let Ok(mut up) = TcpStream::connect(&upstream).await {
            let _ = up.set_nodelay(true);
            let _ = tokio::io::copy_bidirectional(&mut conn, &mut up).await;
        }
        if let Ok(mut open) = mine.open.lock() {
            open.remove(&id);
        }
    });
    if let Ok(mut open) = shared.open.lock() {
        open.insert(id, task.abort_handle());
        // A task that ended before its handle was kept removed nothing.
        if task.is_finished() {
            open.remove(&id);
        }
    }
}
