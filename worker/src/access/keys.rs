//! API key records in KV: the presented key is hashed and looked up there;
//! the plaintext key is never stored, logged or echoed.
//!
//! KV layout: `key:<sha256 hex>` → the key's record (the only lookup the
//! streams need) and `id:<key id>` → `<sha256 hex>` (so a key can be revoked
//! by id without ever storing the key).

use std::cell::RefCell;
use std::collections::HashMap;

use shared::apikey::{self, ApiKeyRecord};
use worker::Env;

use crate::access::keycache::{Decision, KNOWN_MAX, KeyCache};
use crate::config::KEYS;
use crate::error::{ApiError, ApiResult};
use crate::platform::now_ms;

/// Prefix of the KV entry naming a key id's hash.
pub(crate) const ID_PREFIX: &str = "id:";

/// The isolate's knowledge of keys (see `crate::isolate`).
#[derive(Default)]
pub(crate) struct KeyStore {
    /// Records by `key:<sha256>`, under the rules of [`KeyCache`].
    cache: RefCell<KeyCache>,
    /// Key id → `key:<sha256>`: never changes once written, so kept for good
    /// (bounded like the record cache).
    ids: RefCell<HashMap<String, String>>,
}

fn store() -> std::rc::Rc<KeyStore> {
    crate::isolate::get()
}

/// The key's record, `Ok(None)` if unknown. Answers from this isolate's cache
/// (rules in [`crate::access::keycache`]): every open stream re-checks its
/// key, and each KV read made inside a long-lived request also holds memory
/// until that request ends (measured: about 4 KB per read), so 10 000 streams
/// of one key cost one read per period instead of 10 000.
pub(crate) async fn lookup(env: &Env, kv_key: &str) -> ApiResult<Option<ApiKeyRecord>> {
    let ttl_ms = crate::config::get(env).stream.key_cache.as_millis() as f64;
    let keys = store();
    let decision = keys.cache.borrow_mut().decide(kv_key, now_ms(), ttl_ms);
    if let Decision::Use(record) = decision {
        return Ok(record);
    }
    let record = match env.kv(KEYS)?.get(kv_key).json::<ApiKeyRecord>().await {
        Ok(record) => record,
        Err(err) => {
            keys.cache.borrow_mut().failed(kv_key);
            worker::console_error!("API key lookup failed: {err}");
            return Err(ApiError::unavailable(
                "API key store unavailable, retry shortly",
            ));
        }
    };
    keys.cache
        .borrow_mut()
        .store(kv_key, record.clone(), now_ms());
    Ok(record)
}

/// `key:<sha256>` of the key with id `id` (KV `id:<id>`), `Ok(None)` if no
/// such key. Used for browser tokens, which name their parent key by id.
pub(crate) async fn kv_key_of_id(env: &Env, id: &str) -> ApiResult<Option<String>> {
    let keys = store();
    if let Some(known) = keys.ids.borrow().get(id).cloned() {
        return Ok(Some(known));
    }
    let Some(hash) = env
        .kv(KEYS)?
        .get(&format!("{ID_PREFIX}{id}"))
        .text()
        .await?
    else {
        return Ok(None);
    };
    let kv_key = format!("{}{hash}", apikey::KV_PREFIX);
    let mut ids = keys.ids.borrow_mut();
    // Only ids of tokens whose tag verified get here: no junk floods it.
    if ids.len() >= KNOWN_MAX {
        ids.clear();
    }
    ids.insert(id.to_string(), kv_key.clone());
    Ok(Some(kv_key))
}

/// Drops a key from this isolate's cache (after the admin route changed it).
pub(crate) fn forget(kv_key: &str) {
    store().cache.borrow_mut().forget(kv_key);
}

/// Whether a record is still good for an open stream.
pub(crate) fn usable(record: &ApiKeyRecord) -> bool {
    record.check_usable(now_ms() as i64).is_ok()
}
