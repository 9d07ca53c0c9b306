//! A [`Code`] in an atomic word, for the strategies whose published datum is a code pointer.

use std::fmt;

use crate::model::Code;
use crate::sync::{AtomicPtr, Ordering};

/// A [`Code`] in an atomic word. Used where the code pointer itself is the published datum: it
/// points to static code, so loading it needs no ordering of its own.
pub(crate) struct AtomicCode(AtomicPtr<()>);

impl AtomicCode {
    pub(crate) fn new(code: Code) -> Self {
        Self(AtomicPtr::new(code as *mut ()))
    }

    #[inline(always)]
    pub(crate) fn load(&self, order: Ordering) -> Code {
        let p = self.0.load(order);
        // SAFETY: the only values ever stored are `Code`s (see `new` and `store`), and a fn
        // pointer round-trips through `*mut ()` unchanged on every platform Rust supports.
        unsafe { std::mem::transmute::<*mut (), Code>(p) }
    }

    #[inline]
    pub(crate) fn store(&self, code: Code, order: Ordering) {
        self.0.store(code as *mut (), order);
    }
}

impl fmt::Debug for AtomicCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        // Relaxed: a debugging snapshot.
        write!(f, "AtomicCode({:p})", self.0.load(Ordering::Relaxed))
    }
}
