//! The pause file's watcher: inotify on the file's directory, on a thread of its own.
//! When the file appears the monkey is paused and every active fault is reverted at once.

use std::sync::Arc;

use crate::{dispatch::SWITCH_WAIT, engine::Engine, output::log};

/// Watches the pause file's directory (inotify, no polling) on a thread of its own: when
/// the file appears the monkey is paused and every active fault is reverted at once.
/// Requests check the file themselves, so this only has to catch the faults in effect.
/// The thread sleeps in `read` until something happens in that directory.
pub fn watch(engine: Arc<Engine>, file: std::path::PathBuf) {
    use rustix::fs::inotify;
    let Some(dir) = file
        .parent()
        .filter(|d| !d.as_os_str().is_empty())
        .map(|d| d.to_owned())
    else {
        return;
    };
    let watched = inotify::init(inotify::CreateFlags::CLOEXEC).and_then(|fd| {
        inotify::add_watch(
            &fd,
            &dir,
            inotify::WatchFlags::CREATE
                | inotify::WatchFlags::MOVED_TO
                | inotify::WatchFlags::DELETE
                | inotify::WatchFlags::MOVED_FROM,
        )?;
        Ok(fd)
    });
    let fd = match watched {
        Ok(fd) => fd,
        Err(e) => {
            log::line(format!(
                "warning: cannot watch {} ({e}): the pause file is still honoured on every request, but faults in effect are reverted only when they are due",
                dir.display()
            ));
            return;
        }
    };
    let mut was = file.exists();
    if was {
        log::line(format!(
            "Nightmare Monkey is paused: {} exists",
            file.display()
        ));
    }
    let spawned = std::thread::Builder::new()
        .name("pause-file".to_owned())
        .spawn(move || {
            let mut buf = [0u8; 4096];
            // The events themselves do not matter: what counts is whether the file exists.
            while rustix::io::read(&fd, &mut buf).is_ok() {
                let now = file.exists();
                if now && !was {
                    log::line(format!(
                        "Nightmare Monkey is paused: {} exists",
                        file.display()
                    ));
                    for left in engine.revert_all("pause", SWITCH_WAIT) {
                        log::line(format!(
                            "Revert (pause): {} ({}) is still being reverted: its plugin has not answered yet",
                            left.id, left.fault
                        ));
                    }
                } else if !now && was {
                    match engine.paused() {
                        // The API's switch still holds it.
                        Some(why) => log::line(format!(
                            "{} was removed; Nightmare Monkey is still paused: {why}",
                            file.display()
                        )),
                        None => log::line(format!(
                            "Nightmare Monkey is playing again: {} was removed",
                            file.display()
                        )),
                    }
                }
                was = now;
            }
        });
    if let Err(e) = spawned {
        log::line(format!("warning: cannot start the pause file watcher: {e}"));
    }
}
