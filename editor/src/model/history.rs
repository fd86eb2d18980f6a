//! Undo and redo: a snapshot of the graph before each edit.
//!
//! Workflows hold tens of nodes, so a whole-graph snapshot is small and makes every edit undoable
//! without an inverse for each kind of edit.

use super::graph::EditorGraph;

/// How many edits can be undone.
const DEPTH: usize = 200;

/// The undo and redo stacks.
#[derive(Debug, Clone, Default)]
pub struct History {
    undo: Vec<EditorGraph>,
    redo: Vec<EditorGraph>,
}

impl History {
    /// Records the graph as it was before an edit; clears what could be redone.
    pub fn record(&mut self, before: EditorGraph) {
        if self.undo.len() == DEPTH {
            self.undo.remove(0);
        }
        self.undo.push(before);
        self.redo.clear();
    }

    /// Steps back: returns the graph to restore, given the current one.
    pub fn undo(&mut self, current: &EditorGraph) -> Option<EditorGraph> {
        let previous = self.undo.pop()?;
        self.redo.push(current.clone());
        Some(previous)
    }

    /// Steps forward again after an undo.
    pub fn redo(&mut self, current: &EditorGraph) -> Option<EditorGraph> {
        let next = self.redo.pop()?;
        self.undo.push(current.clone());
        Some(next)
    }

    /// Whether there is an edit to undo.
    pub fn can_undo(&self) -> bool {
        !self.undo.is_empty()
    }

    /// Whether there is an undone edit to redo.
    pub fn can_redo(&self) -> bool {
        !self.redo.is_empty()
    }

    /// Forgets everything (a new file was opened).
    pub fn clear(&mut self) {
        self.undo.clear();
        self.redo.clear();
    }
}
