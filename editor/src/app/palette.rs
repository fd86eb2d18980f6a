//! The node palette: opened by a double-click on the canvas, it lists node classes by category and
//! filters them as the user types; picking one adds it where the canvas was clicked.

use crate::model::{Catalog, Point};
use eframe::egui;
use std::collections::BTreeMap;

/// An open palette.
#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    /// Where the new node goes, in canvas units.
    pub at: Point,
    /// Where the window opens on screen.
    pub screen: egui::Pos2,
    pub query: String,
    focus_requested: bool,
}

/// What the user did with the palette this frame.
pub enum PaletteAction {
    None,
    Close,
    /// Add a node of this class.
    Add(String),
    /// Add a note.
    AddNote,
}

impl Palette {
    /// A palette adding at canvas point `at`, shown at screen point `screen`.
    pub fn new(at: Point, screen: egui::Pos2) -> Self {
        Palette { at, screen, query: String::new(), focus_requested: false }
    }

    /// Shows the palette window.
    pub fn show(&mut self, ctx: &egui::Context, catalog: &Catalog) -> PaletteAction {
        let mut action = PaletteAction::None;
        let mut open = true;
        egui::Window::new("Add node")
            .open(&mut open)
            .default_pos(self.screen)
            .default_size([300.0, 380.0])
            .collapsible(false)
            .show(ctx, |ui| {
                let search = ui
                    .horizontal(|ui| {
                        let label = ui.label("Search");
                        ui.add(egui::TextEdit::singleline(&mut self.query).hint_text("name or category"))
                            .labelled_by(label.id)
                    })
                    .inner;
                if !self.focus_requested {
                    search.request_focus();
                    self.focus_requested = true;
                }
                let found = catalog.search(&self.query);
                if search.lost_focus()
                    && ui.input(|i| i.key_pressed(egui::Key::Enter))
                    && let Some(first) = found.first()
                {
                    action = PaletteAction::Add(first.class_type.clone());
                }
                let mut by_category: BTreeMap<&str, Vec<_>> = BTreeMap::new();
                for schema in &found {
                    let category = if schema.category.is_empty() { "other" } else { schema.category.as_str() };
                    by_category.entry(category).or_default().push(*schema);
                }
                let searching = !self.query.trim().is_empty();
                if !searching && ui.button("Note").on_hover_text("Text on the canvas; never runs").clicked() {
                    action = PaletteAction::AddNote;
                }
                egui::ScrollArea::vertical().max_height(320.0).show(ui, |ui| {
                    for (category, schemas) in by_category {
                        egui::CollapsingHeader::new(category).open(searching.then_some(true)).show(ui, |ui| {
                            for schema in schemas {
                                let button = ui.button(&schema.display_name).on_hover_text(&schema.description);
                                if button.clicked() {
                                    action = PaletteAction::Add(schema.class_type.clone());
                                }
                            }
                        });
                    }
                });
                if ui.input(|i| i.key_pressed(egui::Key::Escape)) {
                    action = PaletteAction::Close;
                }
            });
        if open { action } else { PaletteAction::Close }
    }
}
