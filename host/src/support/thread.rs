//! Work that may block for long, run on a thread of its own rather than on the async
//! runtime's pool of blocking threads: the injections fill that pool (a few at once),
//! and the kill switch, shutdown and due reverts must never queue behind them.

/// Runs `work` on a new thread named `name` and waits for its answer without blocking
/// the runtime. `None` if the thread could not be started or `work` panicked.
pub(crate) async fn on_own_thread<T: Send + 'static>(
    name: &str,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (answer, answered) = tokio::sync::oneshot::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = answer.send(work());
        })
        .ok()?;
    answered.await.ok()
}

/// Runs `work` on a new thread named `name` and waits for its answer at most `timeout`
/// (for callers outside the runtime). `None` if it did not answer in time (it goes on,
/// abandoned), panicked, or its thread could not be started.
pub(crate) fn within<T: Send + 'static>(
    name: &str,
    timeout: std::time::Duration,
    work: impl FnOnce() -> T + Send + 'static,
) -> Option<T> {
    let (answer, answered) = std::sync::mpsc::channel();
    std::thread::Builder::new()
        .name(name.to_owned())
        .spawn(move || {
            let _ = answer.send(work());
        })
        .ok()?;
    answered.recv_timeout(timeout).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn within_gives_up_on_work_that_does_not_answer_in_time() {
        use std::time::Duration;
        assert_eq!(within("test", Duration::from_secs(60), || 7), Some(7));
        let (_keep, never) = std::sync::mpsc::channel::<()>();
        let started = std::time::Instant::now();
        let hung = within("test", Duration::from_millis(20), move || never.recv().ok());
        assert_eq!(hung, None);
        assert!(started.elapsed() < Duration::from_secs(10));
    }

    #[tokio::test]
    async fn answers_from_its_own_thread_even_with_the_blocking_pool_full() {
        let here = std::thread::current().id();
        let there = on_own_thread("test", || std::thread::current().id()).await;
        assert!(there.is_some_and(|t| t != here));
        assert_eq!(on_own_thread("test", || 7).await, Some(7));
        let panicked: Option<()> = on_own_thread("test", || panic!("boom")).await;
        assert_eq!(panicked, None);
    }
}
