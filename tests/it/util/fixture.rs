//! A test's fixture: `TestDir`, a directory of its own removed when dropped (even when
//! the test panics), and `Drill`, a drill config written there with the header every
//! end-to-end test shares, from which the daemon starts.

use std::{
    ffi::OsStr,
    fmt,
    ops::Deref,
    path::{Path, PathBuf},
};

use super::{temp_dir, Daemon};

/// A fresh, empty directory for one test (mode 755, as the daemon's trust checks ask),
/// removed with everything in it when dropped. It reads as the path it is: `dir.join(..)`,
/// `{dir:?}` in a config, `&dir` where a `&Path` is asked for.
pub struct TestDir(PathBuf);

impl TestDir {
    /// `nm-it-NAME-PID` under the system's temporary directory, emptied if a run before
    /// left it.
    pub fn new(name: &str) -> TestDir {
        TestDir(temp_dir(name))
    }
}

impl Deref for TestDir {
    type Target = Path;
    fn deref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<Path> for TestDir {
    fn as_ref(&self) -> &Path {
        &self.0
    }
}

impl AsRef<OsStr> for TestDir {
    fn as_ref(&self) -> &OsStr {
        self.0.as_os_str()
    }
}

impl fmt::Debug for TestDir {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

impl Drop for TestDir {
    fn drop(&mut self) {
        // A test may leave read-only directories behind (a journal it made unwritable):
        // made writable again first, so that they go too.
        make_writable(&self.0);
        let _ = std::fs::remove_dir_all(&self.0);
    }
}

/// Gives the owner write permission on every directory under `dir` (best effort).
fn make_writable(dir: &Path) {
    use std::os::unix::fs::PermissionsExt as _;
    let Ok(meta) = std::fs::symlink_metadata(dir) else {
        return;
    };
    if !meta.is_dir() {
        return;
    }
    let mode = meta.permissions().mode();
    if mode & 0o700 != 0o700 {
        let _ = std::fs::set_permissions(dir, std::fs::Permissions::from_mode(mode | 0o700));
    }
    if let Ok(entries) = std::fs::read_dir(dir) {
        for entry in entries.flatten() {
            make_writable(&entry.path());
        }
    }
}

/// A drill config to write into a test's directory: the header every end-to-end test
/// shares (every day and hour, no timer, the API on a free loopback port, the state in
/// that directory), changed field by field where a test needs it, then the test's own
/// settings.
///
/// ```ignore
/// let dir = TestDir::new("my-test");
/// let mut daemon = Drill::new(&dir)
///     .config(r#"faults: { "process-kill": () }"#)
///     .start(&["--seed", "1"]);
/// ```
pub struct Drill<'a> {
    dir: &'a Path,
    file_name: String,
    /// The header's fields, in order: (name, RON value).
    header: Vec<(String, String)>,
    /// The test's own settings, in order.
    rest: Vec<String>,
}

/// The API on a free loopback port.
const LISTEN: &str = r#"listen: "127.0.0.1:0""#;

impl<'a> Drill<'a> {
    /// The common header, its state in `dir`; the file is `dir/drill.ron`.
    pub fn new(dir: &'a Path) -> Drill<'a> {
        let header = vec![
            (
                "window".to_owned(),
                r#"(days: "*", time: "00:00-24:00")"#.to_owned(),
            ),
            ("timer".to_owned(), "(enabled: false)".to_owned()),
            ("http".to_owned(), format!("({LISTEN})")),
            ("state_dir".to_owned(), format!("{dir:?}")),
        ];
        Drill {
            dir,
            file_name: "drill.ron".to_owned(),
            header,
            rest: Vec::new(),
        }
    }

    /// Names the config file (`drill.ron` by default).
    pub fn named(mut self, file_name: &str) -> Self {
        self.file_name = file_name.to_owned();
        self
    }

    /// Sets a header field (`window`, `timer`, `http`, `state_dir`) to this RON value,
    /// or adds a field of that name to the header.
    pub fn set(mut self, field: &str, value: &str) -> Self {
        match self.header.iter_mut().find(|(name, _)| name == field) {
            Some((_, old)) => *old = value.to_owned(),
            None => self.header.push((field.to_owned(), value.to_owned())),
        }
        self
    }

    /// Leaves a header field out (the daemon's default holds): `without("timer")` runs
    /// the timer.
    pub fn without(mut self, field: &str) -> Self {
        self.header.retain(|(name, _)| name != field);
        self
    }

    /// The API on a free loopback port with these settings too (`tokens: {...}`).
    pub fn http(self, settings: &str) -> Self {
        let settings = settings.trim().trim_start_matches(',').trim_start();
        if settings.is_empty() {
            return self.set("http", &format!("({LISTEN})"));
        }
        self.set("http", &format!("({LISTEN}, {settings})"))
    }

    /// Adds the test's own settings (RON fields: `faults: {...}` and the like) after the
    /// header.
    pub fn config(mut self, settings: &str) -> Self {
        let settings = settings.trim().trim_end_matches(',').trim_end();
        if !settings.is_empty() {
            self.rest.push(settings.to_owned());
        }
        self
    }

    /// The config's text.
    pub fn text(&self) -> String {
        let mut text = String::from("(\n");
        for (name, value) in &self.header {
            text.push_str(&format!("    {name}: {value},\n"));
        }
        for settings in &self.rest {
            text.push_str(&format!("    {settings},\n"));
        }
        text.push(')');
        text
    }

    /// Writes the config into the directory; its path, as text for an argument or a
    /// script.
    pub fn write(self) -> String {
        let file = self.dir.join(&self.file_name);
        std::fs::write(&file, self.text()).expect("the config is written");
        file.to_str().expect("a temporary path is UTF-8").to_owned()
    }

    /// Writes the config and starts the daemon on it (a dry run) with these arguments
    /// too. Declare it after the directory: it is dropped (killed) first.
    pub fn start(self, args: &[&str]) -> Daemon {
        let config = self.write();
        Daemon::start(&with_config(&config, args))
    }
}

/// `--config FILE`, then `args`.
fn with_config<'a>(config: &'a str, args: &[&'a str]) -> Vec<&'a str> {
    let mut all = vec!["--config", config];
    all.extend_from_slice(args);
    all
}
