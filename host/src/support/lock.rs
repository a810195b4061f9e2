//! Locks that outlive a panic. A thread that panicked while holding one of the
//! daemon's mutexes (a plugin call caught on its way out, a bug) must not take every
//! later request down with a poisoned lock: the data these locks guard (a budget, the
//! active faults, the seed streams) stays consistent at every await-free step, so the
//! guard is taken over as it is.

use std::sync::{Mutex, MutexGuard};

/// Locks `mutex`, taking it over if a panicking thread left it poisoned.
pub fn lock<T: ?Sized>(mutex: &Mutex<T>) -> MutexGuard<'_, T> {
    mutex
        .lock()
        .unwrap_or_else(|poisoned| poisoned.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_poisoned_lock_is_taken_over() {
        let mutex = std::sync::Arc::new(Mutex::new(1));
        let held = mutex.clone();
        let _ = std::thread::spawn(move || {
            let mut guard = held.lock().unwrap();
            *guard = 2;
            panic!("poisons the lock");
        })
        .join();
        assert!(mutex.is_poisoned());
        assert_eq!(*lock(&mutex), 2);
    }
}
