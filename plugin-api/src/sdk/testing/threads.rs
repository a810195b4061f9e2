//! Threads of the test's own process, for the tests of a fault that works on threads of
//! its own (a CPU or memory hog): started by `inject`, gone after `revert`.

/// How many threads of this process have a name (`/proc/self/task/*/comm`) that starts
/// with `prefix`: what a fault's threads, named by it, are watched by
/// (`Contract::watch(|| threads_named("cpu-hog-"))`). Threads that end while they are
/// counted are not counted.
///
/// ```
/// use nightmare_monkey_plugin_api::sdk::testing::threads_named;
///
/// let before = threads_named("doc-burner");
/// let (started, running) = std::sync::mpsc::channel::<()>();
/// let (stop, stopped) = std::sync::mpsc::channel::<()>();
/// let burner = std::thread::Builder::new()
///     .name("doc-burner".to_owned())
///     .spawn(move || {
///         started.send(()).unwrap();
///         let _ = stopped.recv();
///     })
///     .unwrap();
/// running.recv().unwrap(); // named by now: a thread is named before it runs
/// assert_eq!(threads_named("doc-burner"), before + 1);
/// drop(stop);
/// burner.join().unwrap();
/// assert_eq!(threads_named("doc-burner"), before);
/// ```
pub fn threads_named(prefix: &str) -> usize {
    let Ok(tasks) = std::fs::read_dir("/proc/self/task") else {
        return 0;
    };
    tasks
        .flatten()
        .filter(|task| {
            std::fs::read_to_string(task.path().join("comm"))
                .is_ok_and(|name| name.starts_with(prefix))
        })
        .count()
}
