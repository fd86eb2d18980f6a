//! The node palette: opened by a double-click on the canvas, it lists node classes by category and
//! filters them as the user types; picking one adds it where the canvas was clicked. Opened by letting
//! go of a wire in empty space, it lists only the classes that can join the wire's pin.

use crate::model::{Catalog, Pin, Point};
use eframe::egui;
use std::collections::{BTreeMap, BTreeSet};

/// An open palette.
#[derive(Debug, Clone, PartialEq)]
pub struct Palette {
    /// Where the new node goes, in canvas units.
    pub at: Point,
    /// Where the window opens on screen.
    pub screen: egui::Pos2,
    pub query: String,
    focus_requested: bool,
    /// Opened by letting go of a wire: the pin it came from and its type, and the classes that have a
    /// socket to join it (the only ones listed).
    pub from: Option<(Pin, String, BTreeSet<String>)>,
}

/// What the user did with the palette this frame.
pub enum PaletteAction {
    None,
    Close,
    /// Add a node of this class.
    Add(String),
    /// Add a note.
    AddNote,
    /// A reroute, to be added where the palette was opened.
    AddReroute,
}

impl Palette {
    /// A palette adding at canvas point `at`, shown at screen point `screen`.
    pub fn new(at: Point, screen: egui::Pos2) -> Self {
        Palette { at, screen, query: String::new(), focus_requested: false, from: None }
    }

    /// A palette offering only the classes a link from `pin` (of type `type_name`) could reach; the
    /// node picked is added at `at` and linked to the pin.
    pub fn for_pin(at: Point, screen: egui::Pos2, pin: Pin, type_name: &str, catalog: &Catalog) -> Self {
        let classes = catalog
            .compatible_classes(type_name, pin.output)
            .into_iter()
            .map(|schema| schema.class_type.clone())
            .collect();
        Palette { from: Some((pin, type_name.to_string(), classes)), ..Palette::new(at, screen) }
    }

    /// Shows the palette window.
    pub fn show(&mut self, ctx: &egui::Context, catalog: &Catalog) -> PaletteAction {
        let mut action = PaletteAction::None;
        let mut open = true;
        let title = match &self.from {
            Some((pin, type_name, _)) if pin.output => format!("Add node taking {type_name}"),
            Some((_, type_name, _)) => format!("Add node giving {type_name}"),
            None => "Add node".into(),
        };
        egui::Window::new(title)
            .id(egui::Id::new("palette"))
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
                let mut found = catalog.search(&self.query);
                if let Some((_, _, classes)) = &self.from {
                    found.retain(|schema| classes.contains(&schema.class_type));
                }
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
                if !searching
                    && self.from.is_none()
                    && ui.button("Note").on_hover_text("Text on the canvas; never runs").clicked()
                {
                    action = PaletteAction::AddNote;
                }
                if !searching
                    && self.from.is_none()
                    && ui.button("Reroute").on_hover_text("A dot a link passes through").clicked()
                {
                    action = PaletteAction::AddReroute;
                }
                egui::ScrollArea::vertical().max_height(320.0).show(ui, |ui| {
                    for (category, schemas) in by_category {
                        egui::CollapsingHeader::new(category)
                            .open((searching || self.from.is_some()).then_some(true))
                            .show(ui, |ui| {
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
