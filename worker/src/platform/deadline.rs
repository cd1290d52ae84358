//! Bounds on how long the Worker or an object waits for another part: an
//! object that does not answer must not leave a client, a feed or a stream's
//! batches waiting for good.

use std::future::Future;
use std::time::Duration;

use futures_util::future::{Either, select};

/// `future`'s output, or `None` once `limit` passed (the future is dropped
/// then; a request it started may still complete, unheard).
pub(crate) async fn within<T>(limit: Duration, future: impl Future<Output = T>) -> Option<T> {
    let timeout = worker::Delay::from(limit);
    futures_util::pin_mut!(future);
    match select(future, timeout).await {
        Either::Left((output, _)) => Some(output),
        Either::Right(_) => None,
    }
}
