//! Whether a plugin file may be trusted with the daemon's privileges, decided before a
//! byte of it is mapped. The rule is sshd's StrictModes (and sudo's for its plugins): the
//! file and every directory up its path belong to root or to the daemon's own user, and
//! no one else can write to them. A symlink is followed and its target checked the same
//! way, as is the directory the link itself sits in.
//!
//! One relaxation: a directory with the sticky bit (`/tmp`) may be writable by others,
//! because there no one can remove or rename an entry they do not own; what lies below
//! it must still pass on its own.

use std::{
    os::unix::fs::{MetadataExt as _, PermissionsExt as _},
    path::{Path, PathBuf},
};

/// Whether plugin files are checked before loading.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default)]
pub enum Trust {
    /// Refuse a file that fails the checks (the default).
    #[default]
    Checked,
    /// Load it anyway, with a warning naming what failed
    /// (`--allow-untrusted-plugins`, for development as a user).
    Anyone,
}

impl Trust {
    /// The trust `--allow-untrusted-plugins` (or the config's `allow_untrusted_plugins`)
    /// asks for.
    pub fn allowing_untrusted(allow: bool) -> Self {
        if allow {
            Trust::Anyone
        } else {
            Trust::Checked
        }
    }
}

const GROUP_WRITE: u32 = 0o020;
const OTHER_WRITE: u32 = 0o002;
const STICKY: u32 = 0o1000;

/// Plugin files and directories judged before the sandbox's user namespace was entered,
/// as the user who runs it: inside, root's files show as owned by the overflow user
/// (65534), so every check there would refuse them. `sandbox` passes these in, and they
/// are taken as checked (see [`checked_outside`]).
static CHECKED_OUTSIDE: std::sync::OnceLock<std::collections::HashSet<PathBuf>> =
    std::sync::OnceLock::new();

/// Takes `paths` as judged already, outside the sandbox's namespace (the files and
/// directories as given, absolute, and as resolved). Set once, before any plugin loads.
pub fn checked_outside(paths: impl IntoIterator<Item = PathBuf>) {
    let _ = CHECKED_OUTSIDE.set(paths.into_iter().collect());
}

/// Whether `path` was judged outside the sandbox's namespace.
fn was_checked_outside(path: &Path) -> bool {
    CHECKED_OUTSIDE
        .get()
        .is_some_and(|paths| paths.contains(path))
}

/// Who may own what the daemon loads: root and the daemon's own (effective) user.
fn trusted_owner(uid: u32) -> bool {
    uid == 0 || uid == rustix::process::geteuid().as_raw()
}

/// Why `path` may not be trusted, or `Ok` with the file it resolves to. Every directory
/// of the path as written and of the resolved one is checked.
pub fn check(path: &Path) -> Result<PathBuf, String> {
    let absolute = std::path::absolute(path).map_err(|e| format!("cannot resolve it: {e}"))?;
    if was_checked_outside(&absolute) {
        return std::fs::canonicalize(&absolute).map_err(|e| format!("cannot resolve it: {e}"));
    }
    if let Some(dir) = absolute.parent() {
        check_dirs(dir)?;
    }
    check_links(&absolute)?;
    let resolved =
        std::fs::canonicalize(&absolute).map_err(|e| format!("cannot resolve it: {e}"))?;
    if resolved != absolute {
        if let Some(dir) = resolved.parent() {
            check_dirs(dir)?;
        }
    }
    let meta = std::fs::metadata(&resolved)
        .map_err(|e| format!("cannot read {}: {e}", resolved.display()))?;
    check_file(&resolved, &meta)?;
    Ok(resolved)
}

/// The file itself: a regular file, owned by root or the daemon's user, writable by no
/// one else.
pub fn check_file(file: &Path, meta: &std::fs::Metadata) -> Result<(), String> {
    let shown = file.display();
    if !meta.is_file() {
        return Err(format!("{shown} is not a regular file"));
    }
    if was_checked_outside(file) {
        return Ok(());
    }
    if !trusted_owner(meta.uid()) {
        return Err(format!(
            "{shown} is owned by uid {}, neither root nor the user the monkey runs as (chown root {shown})",
            meta.uid()
        ));
    }
    let mode = meta.permissions().mode();
    if mode & (GROUP_WRITE | OTHER_WRITE) != 0 {
        return Err(format!(
            "{shown} is writable by {} (mode {:o}; chmod go-w {shown})",
            who_writes(mode),
            mode & 0o7777
        ));
    }
    Ok(())
}

/// Every symlink on the way from `path` to the file: each owned by root or the
/// daemon's user (a link someone else planted is refused), and the directory each
/// points into checked like the file's.
fn check_links(path: &Path) -> Result<(), String> {
    let mut at = path.to_owned();
    for _ in 0..40 {
        let meta = match std::fs::symlink_metadata(&at) {
            Ok(meta) => meta,
            Err(_) => return Ok(()), // what cannot be read is refused by the resolution
        };
        if !meta.file_type().is_symlink() {
            return Ok(());
        }
        if !trusted_owner(meta.uid()) {
            return Err(format!(
                "the symlink {} is owned by uid {}, neither root nor the user the monkey runs as",
                at.display(),
                meta.uid()
            ));
        }
        let target = std::fs::read_link(&at).map_err(|e| format!("cannot resolve it: {e}"))?;
        at = match at.parent() {
            Some(dir) => dir.join(target),
            None => target,
        };
        if let Some(dir) = at.parent() {
            check_dirs(dir)?;
        }
    }
    Err("too many levels of symbolic links".to_owned())
}

/// A directory searched for plugins: as any directory on a plugin's path, and not
/// writable by others even if sticky (anyone could add files to it, which, refused or
/// not, could shadow a plugin's name).
/// A directory given relative to the working directory is judged with every directory
/// above it, and one reached through symlinks by the links and where they lead, as a
/// plugin file is.
pub fn check_plugin_dir(dir: &Path) -> Result<(), String> {
    let absolute = std::path::absolute(dir).map_err(|e| format!("cannot resolve it: {e}"))?;
    if was_checked_outside(&absolute) {
        return Ok(());
    }
    check_dirs(&absolute)?;
    check_links(&absolute)?;
    let resolved = std::fs::canonicalize(&absolute)
        .map_err(|e| format!("cannot read the directory {}: {e}", dir.display()))?;
    if resolved != absolute {
        check_dirs(&resolved)?;
    }
    let meta = std::fs::metadata(&resolved)
        .map_err(|e| format!("cannot read the directory {}: {e}", dir.display()))?;
    let mode = meta.permissions().mode();
    if mode & (GROUP_WRITE | OTHER_WRITE) != 0 {
        return Err(format!(
            "the plugin directory {} is writable by {} (mode {:o}): anyone could add plugins there (chmod go-w {})",
            dir.display(),
            who_writes(mode),
            mode & 0o7777,
            dir.display()
        ));
    }
    Ok(())
}

/// `dir` and every directory above it.
fn check_dirs(dir: &Path) -> Result<(), String> {
    for dir in dir.ancestors() {
        let shown = dir.display();
        let meta = std::fs::symlink_metadata(dir)
            .map_err(|e| format!("cannot read the directory {shown}: {e}"))?;
        if !trusted_owner(meta.uid()) {
            return Err(format!(
                "the directory {shown} is owned by uid {}, neither root nor the user the monkey runs as",
                meta.uid()
            ));
        }
        // A symlink's own mode means nothing; where it points is checked as resolved.
        if meta.file_type().is_symlink() {
            continue;
        }
        let mode = meta.permissions().mode();
        if mode & (GROUP_WRITE | OTHER_WRITE) != 0 && mode & STICKY == 0 {
            return Err(format!(
                "the directory {shown} is writable by {} (mode {:o}): anyone there could replace the plugin (chmod go-w {shown})",
                who_writes(mode),
                mode & 0o7777
            ));
        }
    }
    Ok(())
}

fn who_writes(mode: u32) -> &'static str {
    match (mode & GROUP_WRITE != 0, mode & OTHER_WRITE != 0) {
        (true, true) => "its group and everyone",
        (false, true) => "everyone",
        _ => "its group",
    }
}

#[cfg(test)]
mod tests {
    use std::os::unix::fs::PermissionsExt as _;

    use super::*;

    fn dir(name: &str) -> PathBuf {
        // Under the system's temporary directory (root's, sticky: it passes), whatever
        // the directories above the checkout are like.
        let dir = std::env::temp_dir().join(format!("nm-trust-{name}-{}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).unwrap();
        std::fs::set_permissions(&dir, std::fs::Permissions::from_mode(0o755)).unwrap();
        dir.canonicalize().unwrap()
    }

    fn chmod(path: &Path, mode: u32) {
        std::fs::set_permissions(path, std::fs::Permissions::from_mode(mode)).unwrap();
    }

    #[test]
    fn a_file_nobody_else_can_write_in_a_tree_nobody_else_can_write_passes() {
        let d = dir("ok");
        let file = d.join("libx.so");
        std::fs::write(&file, b"x").unwrap();
        chmod(&file, 0o644);
        assert_eq!(check(&file), Ok(file.canonicalize().unwrap()));
    }

    #[test]
    fn writable_files_and_directories_are_refused_with_the_fix() {
        let d = dir("writable");
        let file = d.join("libx.so");
        std::fs::write(&file, b"x").unwrap();
        chmod(&file, 0o664);
        let shown = file.display();
        assert_eq!(
            check(&file),
            Err(format!(
                "{shown} is writable by its group (mode 664; chmod go-w {shown})"
            ))
        );
        chmod(&file, 0o646);
        assert!(check(&file)
            .unwrap_err()
            .contains("writable by everyone (mode 646"));
        chmod(&file, 0o644);
        chmod(&d, 0o777);
        assert_eq!(
            check(&file),
            Err(format!(
                "the directory {} is writable by its group and everyone (mode 777): anyone there could replace the plugin (chmod go-w {})",
                d.display(),
                d.display()
            ))
        );
        // Sticky, like /tmp: no one can replace an entry they do not own.
        chmod(&d, 0o1777);
        assert!(check(&file).is_ok());
        chmod(&d, 0o755);
    }

    #[test]
    fn a_symlink_is_judged_by_its_target_and_by_where_it_sits() {
        let d = dir("link");
        let open = d.join("open");
        std::fs::create_dir(&open).unwrap();
        let file = open.join("libx.so");
        std::fs::write(&file, b"x").unwrap();
        chmod(&file, 0o644);
        let link = d.join("libx.so");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        chmod(&open, 0o755);
        assert_eq!(check(&link), Ok(file.canonicalize().unwrap()));
        chmod(&open, 0o777);
        assert!(check(&link).unwrap_err().starts_with(&format!(
            "the directory {} is writable",
            open.canonicalize().unwrap().display()
        )));
        chmod(&open, 0o755);
        assert!(check(&d.join("missing.so"))
            .unwrap_err()
            .starts_with("cannot resolve it"));
        assert_eq!(
            check(&open),
            Err(format!(
                "{} is not a regular file",
                open.canonicalize().unwrap().display()
            ))
        );
    }

    #[test]
    fn a_symlink_someone_else_planted_is_refused_and_a_sticky_dir_is_not_searched() {
        let d = dir("planted");
        let file = d.join("libx.so");
        std::fs::write(&file, b"x").unwrap();
        chmod(&file, 0o644);
        let link = d.join("zz.so");
        std::os::unix::fs::symlink(&file, &link).unwrap();
        assert!(check(&link).is_ok());
        if rustix::process::geteuid().is_root() {
            rustix::fs::chownat(
                rustix::fs::CWD,
                &link,
                Some(rustix::fs::Uid::from_raw(4321)),
                None,
                rustix::fs::AtFlags::SYMLINK_NOFOLLOW,
            )
            .unwrap();
            assert_eq!(
                check(&link),
                Err(format!(
                    "the symlink {} is owned by uid 4321, neither root nor the user the monkey runs as",
                    link.display()
                ))
            );
        }
        assert!(check_plugin_dir(&d).is_ok());
        chmod(&d, 0o1777);
        assert!(check_plugin_dir(&d).unwrap_err().contains(
            "is writable by its group and everyone (mode 1777): anyone could add plugins there"
        ));
        chmod(&d, 0o755);
    }

    #[test]
    fn a_plugin_dir_is_judged_whole_when_relative_or_reached_through_a_link() {
        let d = dir("reldir");
        // Relative to the working directory (the crate's), up and over to `d`.
        let cwd = std::env::current_dir().unwrap();
        let up = "../".repeat(cwd.components().count() - 1);
        let relative = PathBuf::from(format!(
            "{up}{}",
            d.display().to_string().trim_start_matches('/')
        ));
        assert!(relative.is_relative());
        assert_eq!(check_plugin_dir(&relative), Ok(()));
        // A link from a good directory into one anyone can write (not sticky).
        let open = d.join("open");
        std::fs::create_dir(&open).unwrap();
        std::fs::create_dir(open.join("plugins")).unwrap();
        chmod(&open.join("plugins"), 0o755);
        chmod(&open, 0o777);
        let link = d.join("plugins");
        std::os::unix::fs::symlink(open.join("plugins"), &link).unwrap();
        assert_eq!(
            check_plugin_dir(&link),
            Err(format!(
                "the directory {} is writable by its group and everyone (mode 777): anyone there could replace the plugin (chmod go-w {})",
                open.display(),
                open.display()
            ))
        );
        chmod(&open, 0o755);
        assert_eq!(check_plugin_dir(&link), Ok(()));
    }

    #[test]
    fn a_file_of_another_user_is_refused() {
        if rustix::process::geteuid().as_raw() != 0 {
            return; // only root can give a file away
        }
        let d = dir("owner");
        let file = d.join("libx.so");
        std::fs::write(&file, b"x").unwrap();
        chmod(&file, 0o644);
        rustix::fs::chown(&file, Some(rustix::fs::Uid::from_raw(4321)), None).unwrap();
        assert!(check(&file)
            .unwrap_err()
            .contains("is owned by uid 4321, neither root nor the user the monkey runs as"));
        rustix::fs::chown(&d, Some(rustix::fs::Uid::from_raw(4321)), None).unwrap();
        assert!(check(&file).unwrap_err().starts_with(&format!(
            "the directory {} is owned by uid 4321",
            d.canonicalize().unwrap().display()
        )));
    }
}
