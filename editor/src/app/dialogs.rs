//! Native open and save dialogs: the desktop's file chooser, through the XDG desktop portal on Linux (so
//! the build needs no GTK), run on a thread of their own so that the window never waits on them. Where no
//! portal answers (a bare X server, a remote session) the dialog comes back empty and the File field in the
//! menu bar still takes a typed path.

use std::path::PathBuf;
use std::sync::mpsc::{Receiver, channel};

/// What a dialog was asked for.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DialogKind {
    Open,
    Save,
}

/// The dialog open now, if any.
pub struct FileDialogs {
    pending: Option<(DialogKind, Receiver<Option<PathBuf>>)>,
    /// Whether a desktop session bus is there to reach the file chooser portal through.
    chooser: bool,
}

impl Default for FileDialogs {
    fn default() -> Self {
        FileDialogs { pending: None, chooser: session_bus() }
    }
}

/// Whether the desktop's session bus can be reached (its address, or the usual socket).
fn session_bus() -> bool {
    std::env::var_os("DBUS_SESSION_BUS_ADDRESS").is_some_and(|address| !address.is_empty())
        || std::env::var_os("XDG_RUNTIME_DIR").is_some_and(|dir| PathBuf::from(dir).join("bus").exists())
}

impl FileDialogs {
    /// Dialogs that never reach a file chooser (a desktop without one; tests).
    pub fn without_chooser() -> Self {
        FileDialogs { pending: None, chooser: false }
    }

    /// Whether a dialog is open.
    pub fn is_open(&self) -> bool {
        self.pending.is_some()
    }

    /// Opens a dialog of `kind` starting in `folder` (with `name` for a save); `wake` is called when it
    /// closes. Asking while one is open does nothing.
    pub fn ask(
        &mut self,
        kind: DialogKind,
        folder: Option<PathBuf>,
        name: Option<String>,
        wake: impl Fn() + Send + 'static,
    ) {
        if self.pending.is_some() {
            return;
        }
        let (sender, receiver) = channel();
        if !self.chooser {
            // Answered at once: there is nothing to ask.
            let _ = sender.send(None);
            self.pending = Some((kind, receiver));
            wake();
            return;
        }
        let spawned = std::thread::Builder::new().name("kinograph-file-dialog".into()).spawn(move || {
            let mut dialog = rfd::FileDialog::new().add_filter("Workflow", &["json"]).add_filter("Any file", &["*"]);
            if let Some(folder) = folder {
                dialog = dialog.set_directory(folder);
            }
            let chosen = match kind {
                DialogKind::Open => dialog.add_filter("Picture or video with a workflow", &["png", "mp4"]).pick_file(),
                DialogKind::Save => {
                    if let Some(name) = name {
                        dialog = dialog.set_file_name(name);
                    }
                    dialog.save_file()
                }
            };
            let _ = sender.send(chosen);
            wake();
        });
        if spawned.is_ok() {
            self.pending = Some((kind, receiver));
        }
    }

    /// The dialog's answer once it has closed: what it was for, and the path chosen (`None`: cancelled, or
    /// no file chooser on this desktop).
    pub fn poll(&mut self) -> Option<(DialogKind, Option<PathBuf>)> {
        let (kind, receiver) = self.pending.as_ref()?;
        let answer = match receiver.try_recv() {
            Ok(chosen) => (*kind, chosen),
            Err(std::sync::mpsc::TryRecvError::Empty) => return None,
            Err(std::sync::mpsc::TryRecvError::Disconnected) => (*kind, None),
        };
        self.pending = None;
        Some(answer)
    }
}
