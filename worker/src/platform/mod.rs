//! What the Worker asks of the JavaScript runtime beyond `worker`'s own
//! API: the clock, randomness, timers, work after the response, and bounds
//! on waits. Nothing here knows the feed; everything above may use it.
//!
//! - [`background`]: `waitUntil` without a panic.
//! - [`deadline`]: the one timeout helper.
//! - [`timers`]: `setInterval`/`clearInterval` of workerd's global scope.

pub(crate) mod background;
pub(crate) mod deadline;
pub(crate) mod timers;

use wasm_bindgen::JsCast;

/// Milliseconds since the epoch, as JavaScript's `Date.now()`.
pub(crate) fn now_ms() -> f64 {
    worker::Date::now().as_millis() as f64
}

/// Fills `buf` from `crypto.getRandomValues`.
pub(crate) fn random_bytes(buf: &mut [u8]) -> worker::Result<()> {
    let crypto: web_sys::Crypto = js_sys::Reflect::get(&js_sys::global(), &"crypto".into())
        .map_err(worker::Error::from)?
        .dyn_into()
        .map_err(|_| worker::Error::RustError("no crypto global".into()))?;
    crypto
        .get_random_values_with_u8_array(buf)
        .map_err(worker::Error::from)?;
    Ok(())
}

/// A random id telling one construction of an object from the next (an
/// evicted and rebuilt object gets a new one).
pub(crate) fn instance_id() -> String {
    format!("{:016x}", (js_sys::Math::random() * 2f64.powi(53)) as u64)
}

/// Sets a Durable Object's alarm for the time `at_ms` (ms since the epoch).
/// (`set_alarm` reads a bare number as an offset from now.)
pub(crate) async fn alarm_at(state: &worker::State, at_ms: f64) -> worker::Result<()> {
    let when =
        worker::ScheduledTime::new(js_sys::Date::new(&wasm_bindgen::JsValue::from_f64(at_ms)));
    state.storage().set_alarm(when).await
}
