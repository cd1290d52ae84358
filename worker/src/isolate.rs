//! The isolate's state: everything the Worker keeps from one request to the
//! next. workerd runs many requests in one isolate, one at a time on one
//! thread, and lets them share plain data (and, for the feeds, the objects
//! a live request made; see `clients::feed`).
//!
//! Each layer defines the type of its own state; this module only holds one
//! value of each, made on first use, so the state has one home without this
//! base layer knowing the layers above it. What lives here:
//! - `config::Config`: the checked configuration, parsed once;
//! - `access::keys::KeyStore`: the key cache and the key-id map;
//! - `access::limits::Ledger`: the leases of open streams and the failure
//!   counters;
//! - `objects::directory::DirectoryCopy`: the isolate's copy of the games;
//! - `routes::ingest::Recorded`: the games it saw recorded there;
//! - `clients::feed::Feeds`: the feeds by stream;
//! - `clients::client::ClientIds`: the next client id.

use std::any::{Any, TypeId};
use std::cell::RefCell;
use std::collections::HashMap;
use std::rc::Rc;

thread_local! {
    static SLOTS: RefCell<HashMap<TypeId, Rc<dyn Any>>> = RefCell::new(HashMap::new());
}

/// The isolate's one value of `T`, made with `T::default()` on first use.
/// `T` keeps its own interior mutability (`Cell`/`RefCell` fields): the
/// slot is shared, never borrowed while a caller holds it.
pub(crate) fn get<T: Default + 'static>() -> Rc<T> {
    get_or(T::default)
}

/// The isolate's one value of `T`, made with `make` on first use.
pub(crate) fn get_or<T: 'static>(make: impl FnOnce() -> T) -> Rc<T> {
    let id = TypeId::of::<T>();
    if let Some(found) = SLOTS.with(|slots| slots.borrow().get(&id).cloned())
        && let Ok(value) = found.downcast::<T>()
    {
        return value;
    }
    // Made outside the borrow: `make` may itself read other slots.
    let value = Rc::new(make());
    SLOTS.with(|slots| {
        let erased: Rc<dyn Any> = value.clone();
        slots.borrow_mut().insert(id, erased);
    });
    value
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::cell::Cell;

    #[derive(Default)]
    struct Counter(Cell<u32>);

    #[test]
    fn one_value_per_type_made_once() {
        get::<Counter>().0.set(get::<Counter>().0.get() + 1);
        get::<Counter>().0.set(get::<Counter>().0.get() + 1);
        assert_eq!(get::<Counter>().0.get(), 2);
        let made = get_or(|| 7u64);
        assert_eq!(*made, 7);
        assert_eq!(*get_or(|| 9u64), 7, "made on first use only");
    }
}
