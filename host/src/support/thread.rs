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

#[cfg(test)]
mod tests {
    use super::*;

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
