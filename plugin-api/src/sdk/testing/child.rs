//! A process of the test's own, for the tests of a process fault: the only kind of process
//! a test may inject a real fault into (the machines the tests run on are shared).

/// A child process of the test (`sleep 60`), to scope a process fault to
/// (`scope: Tree(child.pid())`) and watch. When dropped, even by a panicking test, it is
/// killed through its own handle (never by a PID looked up again) and reaped.
///
/// ```
/// use nightmare_monkey_plugin_api::sdk::{process::stopped, testing::Child};
///
/// let child = Child::sleep();
/// assert_eq!(stopped(child.pid()), Some(false));
/// ```
#[derive(Debug)]
pub struct Child(std::process::Child);

impl Child {
    /// Starts `sleep 60`.
    ///
    /// # Panics
    ///
    /// When `sleep` cannot be started: the test cannot go on.
    pub fn sleep() -> Child {
        let child = std::process::Command::new("sleep")
            .arg("60")
            .spawn()
            .unwrap_or_else(|e| panic!("cannot start `sleep 60` for the test: {e}"));
        Child(child)
    }

    /// Its PID.
    pub fn pid(&self) -> u32 {
        self.0.id()
    }

    /// Ends it now: killed and reaped (its PID is free for another process after this).
    pub fn end(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

impl Drop for Child {
    fn drop(&mut self) {
        self.end();
    }
}
