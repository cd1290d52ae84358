//! Work that must outlive the response that started it.

use worker::Context;

/// Runs `work` under the request's `waitUntil`, so the runtime does not cancel
/// it when the response ends (a stream's release runs just as its client
/// left). `worker::Context::wait_until` panics if `waitUntil` throws; a panic
/// would take the isolate and every stream in it down, so this calls the
/// binding itself and falls back to a plain task.
pub(crate) fn after_response(ctx: &Context, work: impl std::future::Future<Output = ()> + 'static) {
    let promise = wasm_bindgen_futures::future_to_promise(async move {
        work.await;
        Ok(wasm_bindgen::JsValue::UNDEFINED)
    });
    let raw: &worker::worker_sys::Context = ctx.as_ref();
    if raw.wait_until(&promise).is_err() {
        // The promise runs anyway; only its hold on the request is missing.
        worker::console_error!("waitUntil refused; work after the response may be cut short");
    }
}
