//! `setInterval`/`clearInterval` of the global scope (web-sys's bindings
//! expect a `Window` or `WorkerGlobalScope`, which workerd's global is not).

use std::time::Duration;

use js_sys::{Function, Reflect};
use wasm_bindgen::closure::Closure;
use wasm_bindgen::{JsCast, JsValue};

fn global_fn(name: &str) -> Result<Function, JsValue> {
    Reflect::get(&js_sys::global(), &name.into())?.dyn_into::<Function>()
}

/// Calls `callback` every `every`; returns the timer's id.
pub(crate) fn set_interval(
    callback: &Closure<dyn FnMut(JsValue)>,
    every: Duration,
) -> Result<JsValue, JsValue> {
    global_fn("setInterval")?.call2(
        &JsValue::UNDEFINED,
        callback.as_ref(),
        &JsValue::from(every.as_millis() as f64),
    )
}

/// Stops the timer `id`.
pub(crate) fn clear_interval(id: &JsValue) {
    if let Ok(clear) = global_fn("clearInterval") {
        let _ = clear.call1(&JsValue::UNDEFINED, id);
    }
}
