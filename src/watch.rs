//! Watching the configuration file (SPEC 9, `sync.watch_config`): a change reloads it as
//! SIGHUP does.
//!
//! Owns: the watch of the file's folder and the debounce. It must not read or apply the
//! config: it only says that the file changed.

use std::sync::Arc;
use std::time::Duration;

use tokio::sync::Notify;

/// How long the config file must be quiet after a change before it is reloaded: editors write
/// in several steps (temp file, rename, chmod).
pub const CONFIG_DEBOUNCE: Duration = Duration::from_millis(300);

/// Watches the config file's folder (not the file: an editor's rename-save replaces the
/// inode) and notifies `reload` once the file has been quiet for [`CONFIG_DEBOUNCE`].
/// A watch that cannot be set up is logged; SIGHUP still works.
pub fn watch_config_file(
    path: &std::path::Path,
    reload: Arc<Notify>,
) -> Option<notify::RecommendedWatcher> {
    use notify::{RecursiveMode, Watcher};
    let folder = path.parent()?.to_path_buf();
    let name = path.file_name()?.to_owned();
    let (tx, mut rx) = tokio::sync::mpsc::unbounded_channel::<()>();
    let handler = move |event: notify::Result<notify::Event>| {
        if let Ok(event) = event {
            let ours = event
                .paths
                .iter()
                .any(|p| p.file_name() == Some(name.as_os_str()));
            if ours && !matches!(event.kind, notify::EventKind::Access(_)) {
                let _ = tx.send(());
            }
        }
    };
    let mut watcher = match notify::recommended_watcher(handler) {
        Ok(w) => w,
        Err(e) => {
            tracing::warn!(error = %e, "cannot watch the configuration file; SIGHUP still reloads");
            return None;
        }
    };
    if let Err(e) = watcher.watch(&folder, RecursiveMode::NonRecursive) {
        tracing::warn!(folder = %folder.display(), error = %e, "cannot watch the configuration folder; SIGHUP still reloads");
        return None;
    }
    tokio::spawn(async move {
        while rx.recv().await.is_some() {
            // Debounce: wait until no event came for CONFIG_DEBOUNCE.
            loop {
                match tokio::time::timeout(CONFIG_DEBOUNCE, rx.recv()).await {
                    Ok(Some(())) => continue,
                    Ok(None) => return,
                    Err(_) => break,
                }
            }
            tracing::info!("the configuration file changed");
            reload.notify_one();
        }
    });
    Some(watcher)
}
