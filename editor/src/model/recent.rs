//! The list of recently opened and saved files, newest first, kept in a small text file.

use std::path::{Path, PathBuf};

/// How many files the list remembers.
const LENGTH: usize = 10;

/// Recently used workflow files.
#[derive(Debug, Clone, Default, PartialEq)]
pub struct RecentFiles {
    pub paths: Vec<PathBuf>,
    /// Where the list is kept; `None` keeps it in memory only.
    store: Option<PathBuf>,
}

impl RecentFiles {
    /// The list kept at `store` (one path per line); a missing or unreadable file gives an empty list.
    pub fn load(store: Option<PathBuf>) -> Self {
        let paths = store
            .as_deref()
            .and_then(|store| std::fs::read_to_string(store).ok())
            .map(|text| text.lines().filter(|line| !line.is_empty()).map(PathBuf::from).take(LENGTH).collect())
            .unwrap_or_default();
        RecentFiles { paths, store }
    }

    /// The usual place: `$XDG_CONFIG_HOME/kinograph/recent-files`, else `~/.config/kinograph/recent-files`.
    pub fn default_store() -> Option<PathBuf> {
        let config = std::env::var_os("XDG_CONFIG_HOME")
            .filter(|dir| !dir.is_empty())
            .map(PathBuf::from)
            .or_else(|| std::env::var_os("HOME").map(|home| PathBuf::from(home).join(".config")))?;
        Some(config.join("kinograph").join("recent-files"))
    }

    /// Puts `path` first and writes the list back. A list that cannot be written stays in memory: the
    /// error is returned for the status line, the editor goes on.
    pub fn add(&mut self, path: &Path) -> std::io::Result<()> {
        let path = std::fs::canonicalize(path).unwrap_or_else(|_| path.to_path_buf());
        self.paths.retain(|known| *known != path);
        self.paths.insert(0, path);
        self.paths.truncate(LENGTH);
        let Some(store) = &self.store else { return Ok(()) };
        if let Some(dir) = store.parent() {
            std::fs::create_dir_all(dir)?;
        }
        let text: String = self.paths.iter().flat_map(|path| [path.display().to_string(), "\n".to_string()]).collect();
        std::fs::write(store, text)
    }
}
