//! One node on the canvas: title bar, sockets coloured by type, and a widget for each widget input,
//! drawn from the node's schema. Edits go straight to the model; pointer gestures are reported back to
//! the canvas, which owns dragging and wiring.

use super::style;
use crate::model::catalog::ROW_HEIGHT;
use crate::model::faults::{self, NodeFault};
use crate::model::node::TITLE_HEIGHT;
use crate::model::run::NodeRunState;
use crate::model::widgets::{SeedControl, has_seed_control, seed_control, shown_widgets};
use crate::model::{Editor, NodeId, NodeInstance, NodeMode};
use eframe::egui::{self, Color32, Pos2, Rect, Sense, Stroke, Vec2};
use kinograph_engine::{InputKind, InputSpec, NodeSchema};
use serde_json::Value as Json;
use std::collections::HashSet;

/// A socket's place on screen this frame.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct SocketPlace {
    pub node: NodeId,
    pub slot: usize,
    pub output: bool,
    pub center: Pos2,
}

/// Where a node's menu leaves the id of the subgraph instance to enter (read by the canvas).
pub const OPEN_SUBGRAPH: &str = "kinograph-open-subgraph";

/// What the user did to a node this frame.
#[derive(Debug, Default)]
pub struct NodeEvents {
    /// The node was pressed (selection); `shift` toggles.
    pub clicked: Option<bool>,
    /// The node is being dragged by this much (canvas units).
    pub dragged: Option<Vec2>,
    pub drag_started: bool,
    pub drag_stopped: bool,
    /// A wire drag began on this socket.
    pub wire_from: Option<SocketPlace>,
    /// A control of its shown output was used.
    pub output_action: Option<OutputAction>,
    /// A subgraph instance was double-clicked (or its menu asked): enter the subgraph.
    pub open_subgraph: bool,
}

/// What the controls under a shown output ask for.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum OutputAction {
    TogglePlay,
    Restart,
    ToggleMute,
    /// Show this frame (the sound follows).
    SeekFrame(usize),
    /// Go to this many seconds into a sound alone.
    SeekSeconds(f64),
}

/// How a node looks beyond its own contents: what the last check and the current run say of it.
#[derive(Default)]
pub struct NodeDecor<'a> {
    /// What the last check found wrong with it (empty when nothing).
    pub faults: &'a [NodeFault],
    pub run: Option<&'a NodeRunState>,
    /// The latest preview it sent.
    pub preview: Option<&'a egui::TextureHandle>,
    /// Every socket with a link on it, as (node, output, slot): gathered once a frame for all nodes.
    pub linked: Option<&'a HashSet<(NodeId, bool, usize)>>,
    /// Zoomed out too far for text to be read: draw the node's shape, sockets and run state only, and
    /// none of its text or widgets.
    pub simplified: bool,
    /// The frame of its output file to show now.
    pub output: Option<ShownOutput<'a>>,
}

/// One frame of an output file playing under its node, and where its playback is.
pub struct ShownOutput<'a> {
    /// The frame to show now (none for a sound alone).
    pub texture: Option<&'a egui::TextureHandle>,
    /// How many frames the output has, and which one is shown.
    pub frames: usize,
    pub frame: usize,
    pub file_name: Option<String>,
    /// How long its sound plays, when it has one.
    pub sound_seconds: Option<f64>,
    pub playing: bool,
    pub muted: bool,
    /// Seconds into the loop, and the loop's length.
    pub time: f64,
    pub length: f64,
    /// Why its sound is not heard (no audio output device), when it is not.
    pub silent_reason: Option<&'a str>,
}

/// The rectangle node `node` is drawn in, title bar included: its stored size, or taller when its
/// sockets and widgets need more rows.
pub fn node_rect(node: &NodeInstance, schema: Option<&NodeSchema>) -> Rect {
    if node.is_reroute() {
        return Rect::from_min_size(Pos2::new(node.pos[0], node.pos[1]), Vec2::new(node.size[0], node.size[1]));
    }
    let socket_rows = node.inputs.len().max(node.outputs.len());
    let widget_rows: usize = if node.is_note() {
        4
    } else {
        schema.map_or(0, |schema| shown_widgets(schema, node).into_iter().map(rows_of).sum())
    };
    let body_height = (6.0 + ROW_HEIGHT * (socket_rows + widget_rows) as f32).max(node.size[1]);
    let top_left = Pos2::new(node.pos[0], node.pos[1] - TITLE_HEIGHT);
    Rect::from_min_size(top_left, Vec2::new(node.size[0], TITLE_HEIGHT + body_height))
}

/// Draws node `id` and its widgets; pushes its sockets' places into `sockets`.
pub fn show_node(
    ui: &mut egui::Ui,
    editor: &mut Editor,
    id: NodeId,
    decor: &NodeDecor<'_>,
    sockets: &mut Vec<SocketPlace>,
) -> NodeEvents {
    let mut events = NodeEvents::default();
    let Some(node) = editor.graph().node(id).cloned() else { return events };
    let catalog = std::sync::Arc::clone(&editor.catalog);
    let special_schema = editor.special_schema(&node);
    let schema = special_schema.as_deref().or_else(|| catalog.schema(&node.class_type));
    let widgets: Vec<&InputSpec> = schema.map(|s| shown_widgets(s, &node)).unwrap_or_default();
    let rect = node_rect(&node, schema);
    if node.is_reroute() {
        return show_reroute(ui, editor, &node, rect, decor, sockets);
    }
    let title_rect = Rect::from_min_size(rect.min, Vec2::new(node.size[0], TITLE_HEIGHT));

    let body = ui.interact(rect, ui.id().with(("node", id)), Sense::click_and_drag());
    let (title_color, body_color) = match node.mode {
        NodeMode::Bypassed => (style::BYPASSED, style::BYPASSED.gamma_multiply(0.6)),
        NodeMode::Muted => (style::MUTED, style::MUTED),
        _ if node.is_note() => (style::NOTE, style::NOTE),
        _ => (style::TITLE, style::BODY),
    };
    let painter = ui.painter();
    painter.rect_filled(rect, 6.0, body_color);
    painter.rect_filled(title_rect, egui::CornerRadius { nw: 6, ne: 6, sw: 0, se: 0 }, title_color);
    let outline = if !decor.faults.is_empty() || matches!(decor.run, Some(NodeRunState::Failed(_))) {
        Stroke::new(2.5, style::ERROR)
    } else if editor.selection.contains(&id) {
        Stroke::new(2.0, style::SELECTED)
    } else if matches!(decor.run, Some(NodeRunState::Running { .. })) {
        Stroke::new(2.5, style::RUNNING)
    } else {
        Stroke::new(1.0, Color32::from_gray(0x10))
    };
    painter.rect_stroke(rect, 6.0, outline, egui::StrokeKind::Outside);
    let title =
        node.title.clone().or_else(|| schema.map(|s| s.display_name.clone())).unwrap_or(node.class_type.clone());
    if !decor.simplified {
        let text_color = if node.mode == NodeMode::Muted { Color32::GRAY } else { Color32::from_gray(0xee) };
        painter.text(
            title_rect.left_center() + Vec2::new(10.0, 0.0),
            egui::Align2::LEFT_CENTER,
            &title,
            egui::FontId::proportional(14.0),
            text_color,
        );
    }

    draw_run_state(ui, title_rect, rect, decor);
    if let Some(output) = &decor.output {
        events.output_action = draw_output(ui, id, rect, output, decor.simplified);
    }

    events.open_subgraph = body.double_clicked() && editor.is_subgraph_instance(id);
    // A subgraph node's own button into it, at the right of its title bar, as ComfyUI has one.
    if editor.is_subgraph_instance(id) && !decor.simplified {
        let button =
            Rect::from_min_size(title_rect.right_top() + Vec2::new(-58.0, 5.0), Vec2::new(52.0, TITLE_HEIGHT - 10.0));
        let open = ui.put(button, egui::Button::new(egui::RichText::new("Enter").size(11.0)).small());
        if open.on_hover_text("Edit inside this subgraph (or double-click the node)").clicked() {
            events.open_subgraph = true;
        }
    }
    body_gestures(ui, &body, &mut events);
    body.context_menu(|ui| node_menu(ui, editor, &node, &title));

    events.wire_from = show_sockets(ui, id, &node, rect, decor, sockets);

    if decor.simplified {
        return events;
    }
    show_faults(ui, rect, decor);
    show_widgets(ui, editor, &node, rect, &widgets, decor);
    events
}

/// What a press or drag of a node's body does: select (Shift toggles), move.
fn body_gestures(ui: &egui::Ui, body: &egui::Response, events: &mut NodeEvents) {
    if body.clicked() || body.drag_started() {
        events.clicked = Some(ui.input(|i| i.modifiers.shift));
    }
    events.drag_started = body.drag_started();
    if body.dragged() {
        events.dragged = Some(body.drag_delta());
    }
    events.drag_stopped = body.drag_stopped();
}

/// A reroute as ComfyUI draws it: a small pill in the colour of the type passing through, its input on the
/// left end and its output on the right, no title or widgets.
fn show_reroute(
    ui: &mut egui::Ui,
    editor: &mut Editor,
    node: &NodeInstance,
    rect: Rect,
    decor: &NodeDecor<'_>,
    sockets: &mut Vec<SocketPlace>,
) -> NodeEvents {
    let mut events = NodeEvents::default();
    let id = node.id;
    let body = ui.interact(rect, ui.id().with(("node", id)), Sense::click_and_drag());
    let type_name = node.outputs.first().map_or("*", |socket| socket.type_name.as_str());
    let color = style::type_color(type_name);
    let outline = if editor.selection.contains(&id) {
        Stroke::new(2.0, style::SELECTED)
    } else {
        Stroke::new(1.0, Color32::from_gray(0x10))
    };
    let painter = ui.painter();
    painter.rect_filled(rect, rect.height() / 2.0, style::BODY);
    painter.rect_stroke(rect, rect.height() / 2.0, outline, egui::StrokeKind::Outside);
    painter.circle_filled(rect.center(), 4.0, color);
    body_gestures(ui, &body, &mut events);
    body.on_hover_text(format!("Reroute: {type_name}")).context_menu(|ui| node_menu(ui, editor, node, "Reroute"));
    for (output, center) in [(false, rect.left_center()), (true, rect.right_center())] {
        let place = SocketPlace { node: id, slot: 0, output, center };
        let linked = decor.linked.is_some_and(|linked| linked.contains(&(id, output, 0)));
        let handle = ui.interact(
            Rect::from_center_size(center, Vec2::splat(14.0)),
            ui.id().with(("socket", id, output, 0)),
            Sense::drag(),
        );
        if linked {
            ui.painter().circle_filled(center, 4.0, color);
        } else {
            ui.painter().circle_stroke(center, 3.5, Stroke::new(1.5, color));
        }
        if handle.drag_started() {
            events.wire_from = Some(place);
        }
        sockets.push(place);
    }
    events
}

/// Draws the node's input and output sockets, row by row, and records where they are; returns the socket
/// a wire drag started from, if any.
fn show_sockets(
    ui: &mut egui::Ui,
    id: NodeId,
    node: &NodeInstance,
    rect: Rect,
    decor: &NodeDecor<'_>,
    sockets: &mut Vec<SocketPlace>,
) -> Option<SocketPlace> {
    let mut wire_from = None;
    let socket_rows = node.inputs.len().max(node.outputs.len());
    let mut row_y = node.pos[1] + 6.0 + ROW_HEIGHT / 2.0;
    for slot in 0..socket_rows {
        for (output, socket) in [(false, node.inputs.get(slot)), (true, node.outputs.get(slot))] {
            let Some(socket) = socket else { continue };
            let x = if output { rect.right() } else { rect.left() };
            let center = Pos2::new(x, row_y);
            let place = SocketPlace { node: id, slot, output, center };
            let linked = decor.linked.is_some_and(|linked| linked.contains(&(id, output, slot)));
            let color = style::type_color(&socket.type_name);
            let handle = ui.interact(
                Rect::from_center_size(center, Vec2::splat(16.0)),
                ui.id().with(("socket", id, output, slot)),
                Sense::drag(),
            );
            let painter = ui.painter();
            if linked {
                painter.circle_filled(center, 5.0, color);
            } else {
                painter.circle_stroke(center, 4.5, Stroke::new(2.0, color));
            }
            let fault = if output { None } else { faults::on_input(decor.faults, &socket.name) };
            if !decor.simplified {
                let (anchor, offset) =
                    if output { (egui::Align2::RIGHT_CENTER, -12.0) } else { (egui::Align2::LEFT_CENTER, 12.0) };
                painter.text(
                    center + Vec2::new(offset, 0.0),
                    anchor,
                    &socket.name,
                    egui::FontId::proportional(12.0),
                    if fault.is_some() { style::ERROR } else { Color32::from_gray(0xbb) },
                );
            }
            let handle = match fault {
                Some(fault) => handle.on_hover_text(format!("{}: {}", socket.type_name, fault.message)),
                None => handle.on_hover_text(&socket.type_name),
            };
            if handle.drag_started() {
                wire_from = Some(place);
            }
            sockets.push(place);
        }
        row_y += ROW_HEIGHT;
    }

    wire_from
}

/// The node's widgets under its sockets (a note's text, or one row per widget input not fed by a link).
fn show_widgets(
    ui: &mut egui::Ui,
    editor: &mut Editor,
    node: &NodeInstance,
    rect: Rect,
    widgets: &[&InputSpec],
    decor: &NodeDecor<'_>,
) {
    let id = node.id;
    let socket_rows = node.inputs.len().max(node.outputs.len());
    let mut widget_top = node.pos[1] + 6.0 + ROW_HEIGHT * socket_rows as f32;
    let width = node.size[0] - 20.0;
    if node.is_note() {
        let area =
            Rect::from_min_size(Pos2::new(rect.left() + 10.0, widget_top), Vec2::new(width, ROW_HEIGHT * 4.0 - 4.0));
        let mut text = node.widget_list().first().and_then(Json::as_str).unwrap_or_default().to_string();
        let response = ui.put(area, egui::TextEdit::multiline(&mut text).desired_rows(4).id_salt(("note", id)));
        track(editor, &response);
        if response.changed() {
            let _ = editor.set_widget(id, "0", Json::String(text));
        }
        return;
    }
    for &input in widgets {
        let height = ROW_HEIGHT * rows_of(input) as f32;
        let area = Rect::from_min_size(Pos2::new(rect.left() + 10.0, widget_top + 2.0), Vec2::new(width, height - 4.0));
        widget_top += height;
        // A widget fed by a subgraph's promoted widget shows and edits that value; other links hide it.
        let linked = !editor.is_promoted(id, &input.name)
            && node.inputs.iter().enumerate().any(|(slot, socket)| {
                socket.widget.as_deref() == Some(input.name.as_str()) && editor.graph().link_into(id, slot).is_some()
            });
        let mut child = ui
            .new_child(egui::UiBuilder::new().max_rect(area).layout(egui::Layout::left_to_right(egui::Align::Center)));
        child.set_clip_rect(area.intersect(ui.clip_rect()));
        let fault = faults::on_input(decor.faults, &input.name);
        if linked {
            let label = child.label(format!("{} (linked)", input.name));
            if let Some(fault) = fault {
                label.on_hover_text(&fault.message);
            }
            continue;
        }
        widget_row(&mut child, editor, node, input, fault);
    }
}

/// The faults of a node, one line each under its rectangle, prefixed by the input at fault.
fn show_faults(ui: &mut egui::Ui, rect: Rect, decor: &NodeDecor<'_>) {
    if decor.faults.is_empty() {
        return;
    }
    let text = decor
        .faults
        .iter()
        .map(|fault| match &fault.input {
            Some(input) => format!("{input}: {}", fault.message),
            None => fault.message.clone(),
        })
        .collect::<Vec<_>>()
        .join("\n");
    let area = Rect::from_min_size(rect.left_bottom() + Vec2::new(0.0, 4.0), Vec2::new(rect.width(), 200.0));
    let mut child =
        ui.new_child(egui::UiBuilder::new().max_rect(area).layout(egui::Layout::top_down(egui::Align::Min)));
    child.add(egui::Label::new(egui::RichText::new(text).color(style::ERROR).size(11.0)).wrap());
}

/// The run's mark on a node: a progress bar along the title's foot, a word for its state, and the
/// latest preview under the node.
fn draw_run_state(ui: &egui::Ui, title_rect: Rect, rect: Rect, decor: &NodeDecor<'_>) {
    let painter = ui.painter();
    let word = match decor.run {
        Some(NodeRunState::Running { value, max }) if *max > 0 => {
            let fraction = *value as f32 / *max as f32;
            let bar = Rect::from_min_size(
                title_rect.left_bottom() - Vec2::new(0.0, 3.0),
                Vec2::new(title_rect.width() * fraction, 3.0),
            );
            painter.rect_filled(bar, 0.0, style::RUNNING);
            Some(format!("{value}/{max}"))
        }
        Some(NodeRunState::Running { .. }) => Some("running".into()),
        Some(NodeRunState::Cached) => Some("cached".into()),
        Some(NodeRunState::Queued) => Some("waiting".into()),
        Some(NodeRunState::Failed(message)) => Some(format!("failed: {message}")),
        Some(NodeRunState::Done) => Some("done".into()),
        None => None,
    };
    if let Some(word) = word.filter(|_| !decor.simplified) {
        let color =
            if matches!(decor.run, Some(NodeRunState::Failed(_))) { style::ERROR } else { Color32::from_gray(0x99) };
        painter.text(
            title_rect.right_center() - Vec2::new(8.0, 0.0),
            egui::Align2::RIGHT_CENTER,
            word,
            egui::FontId::proportional(11.0),
            color,
        );
    }
    if let Some(texture) = decor.preview {
        let size = texture.size_vec2();
        let height = rect.width() * size.y / size.x.max(1.0);
        let area = Rect::from_min_size(rect.left_bottom() + Vec2::new(0.0, 6.0), Vec2::new(rect.width(), height));
        painter.image(texture.id(), area, Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)), Color32::WHITE);
    }
}

/// The output file under the node: a line naming it (what screen readers and tests find), the
/// playback controls of a video or sound (play or pause, restart, mute, a position slider), then the
/// current frame. Returns the control used, if any.
fn draw_output(
    ui: &mut egui::Ui,
    id: NodeId,
    rect: Rect,
    output: &ShownOutput<'_>,
    simplified: bool,
) -> Option<OutputAction> {
    let line = Rect::from_min_size(rect.left_bottom() + Vec2::new(0.0, 4.0), Vec2::new(rect.width(), ROW_HEIGHT));
    let mut below = line.bottom();
    let mut action = None;
    if !simplified {
        let name = output.file_name.as_deref().unwrap_or("output");
        let picture = if output.frames > 1 {
            Some(format!("video, {} frames", output.frames))
        } else {
            output.texture.map(|_| "image".to_string())
        };
        let text = match (picture, output.sound_seconds) {
            (Some(picture), Some(seconds)) => format!("Output {name}: {picture}, sound {seconds:.2} s"),
            (Some(picture), None) => format!("Output {name}: {picture}"),
            (None, Some(seconds)) => format!("Output {name}: sound, {seconds:.2} s"),
            (None, None) => format!("Output {name}"),
        };
        ui.put(line, egui::Label::new(egui::RichText::new(text).size(12.0).color(Color32::from_gray(0xbb))));
        if output.frames > 1 || output.sound_seconds.is_some() {
            let row = Rect::from_min_size(line.left_bottom(), Vec2::new(rect.width(), ROW_HEIGHT));
            below = row.bottom() + 2.0;
            action = output_controls(ui, id, row, output);
        }
        if let Some(reason) = output.silent_reason {
            let note = Rect::from_min_size(Pos2::new(rect.left(), below), Vec2::new(rect.width(), ROW_HEIGHT));
            below = note.bottom();
            let text = format!("Sound not heard: {reason}");
            ui.put(
                note,
                egui::Label::new(egui::RichText::new(text).size(11.0).color(Color32::from_gray(0x99))).truncate(),
            );
        }
    }
    if let Some(texture) = output.texture {
        let size = texture.size_vec2();
        let height = rect.width() * size.y / size.x.max(1.0);
        let area = Rect::from_min_size(Pos2::new(rect.left(), below), Vec2::new(rect.width(), height));
        ui.painter().image(texture.id(), area, Rect::from_min_max(Pos2::ZERO, Pos2::new(1.0, 1.0)), Color32::WHITE);
    }
    action
}

/// Play or pause, restart, mute (with sound) and a position slider, in one row.
fn output_controls(ui: &mut egui::Ui, id: NodeId, row: Rect, output: &ShownOutput<'_>) -> Option<OutputAction> {
    let mut child = ui.new_child(
        egui::UiBuilder::new()
            .id_salt(("output controls", id))
            .max_rect(row)
            .layout(egui::Layout::left_to_right(egui::Align::Center)),
    );
    child.set_clip_rect(row.intersect(ui.clip_rect()));
    child.spacing_mut().item_spacing.x = 4.0;
    let small = |text: &str| egui::Button::new(egui::RichText::new(text).size(11.0));
    let mut action = None;
    if child.add(small(if output.playing { "Pause" } else { "Play" })).clicked() {
        action = Some(OutputAction::TogglePlay);
    }
    if child.add(small("Restart")).clicked() {
        action = Some(OutputAction::Restart);
    }
    if output.sound_seconds.is_some() && child.add(small(if output.muted { "Unmute" } else { "Mute" })).clicked() {
        action = Some(OutputAction::ToggleMute);
    }
    child.spacing_mut().slider_width = child.available_width().max(20.0);
    if output.frames > 1 {
        let mut frame = output.frame;
        let slider = egui::Slider::new(&mut frame, 0..=output.frames - 1).show_value(false);
        if child.add(slider).changed() {
            action = Some(OutputAction::SeekFrame(frame));
        }
    } else if output.length > 0.0 {
        let mut time = output.time;
        let slider = egui::Slider::new(&mut time, 0.0..=output.length).show_value(false);
        if child.add(slider).changed() {
            action = Some(OutputAction::SeekSeconds(time));
        }
    }
    action
}

/// The widget of `node` whose row holds canvas point `point`, if any: where a wire let go on a widget
/// turns that widget into an input.
pub fn widget_at(node: &NodeInstance, schema: &NodeSchema, point: Pos2) -> Option<String> {
    if node.is_note() || point.x < node.pos[0] || point.x > node.pos[0] + node.size[0] {
        return None;
    }
    let socket_rows = node.inputs.len().max(node.outputs.len());
    let mut top = node.pos[1] + 6.0 + ROW_HEIGHT * socket_rows as f32;
    for input in shown_widgets(schema, node) {
        let bottom = top + ROW_HEIGHT * rows_of(input) as f32;
        if (top..bottom).contains(&point.y) {
            return Some(input.name.clone());
        }
        top = bottom;
    }
    None
}

/// How many rows a widget takes.
fn rows_of(input: &InputSpec) -> usize {
    match &input.kind {
        InputKind::String(options) if options.multiline => 4,
        _ => 1,
    }
}

/// Begins or ends an undo gesture around a widget's drag or focus.
fn track(editor: &mut Editor, response: &egui::Response) {
    if response.drag_started() || response.gained_focus() {
        editor.begin_gesture();
    }
    if response.drag_stopped() || response.lost_focus() {
        editor.end_gesture();
    }
}

/// The widget for one input, labelled with its name; AccessKit reads the label.
/// A fault on the input colours its label and explains itself on hover.
fn widget_row(
    ui: &mut egui::Ui,
    editor: &mut Editor,
    node: &NodeInstance,
    input: &InputSpec,
    fault: Option<&NodeFault>,
) {
    let id = node.id;
    let Some(current) = editor.widget(id, &input.name).cloned() else {
        ui.label(format!("{}: no stored value", input.name));
        return;
    };
    let name = input.name.as_str();
    let label = match fault {
        Some(fault) => ui.label(egui::RichText::new(name).color(style::ERROR)).on_hover_text(&fault.message),
        None => ui.label(name),
    };
    let mut value: Option<Json> = None;
    match &input.kind {
        InputKind::Int(options) => {
            let mut number = current.as_i64().unwrap_or(options.default as i64);
            let low = options.min.map_or(i64::MIN, |m| i64::try_from(m).unwrap_or(i64::MIN));
            let high = options.max.map_or(i64::MAX, |m| i64::try_from(m).unwrap_or(i64::MAX));
            let step = options.step.unwrap_or(1).max(1) as f64;
            let response =
                ui.add(egui::DragValue::new(&mut number).range(low..=high).speed(step)).labelled_by(label.id);
            track(editor, &response);
            if response.changed() {
                value = Some(Json::from(number));
            }
            let special = editor.special_schema(node);
            let catalog = std::sync::Arc::clone(&editor.catalog);
            let schema = special.as_deref().or_else(|| catalog.schema(&node.class_type));
            if let Some(schema) = schema.filter(|schema| has_seed_control(schema, name))
                && let Some(mut control) = seed_control(schema, node, name)
            {
                let before = control;
                egui::ComboBox::from_id_salt(("seed-control", id, name)).selected_text(control.keyword()).show_ui(
                    ui,
                    |ui| {
                        for mode in SeedControl::ALL {
                            ui.selectable_value(&mut control, mode, mode.keyword());
                        }
                    },
                );
                if control != before {
                    let _ = editor.set_seed_control(id, name, control);
                }
            }
        }
        InputKind::Float(options) => {
            let mut number = current.as_f64().unwrap_or(options.default);
            let range = options.min.unwrap_or(f64::MIN)..=options.max.unwrap_or(f64::MAX);
            let step = options.step.unwrap_or(0.01);
            let response = if options.slider && options.min.is_some() && options.max.is_some() {
                ui.add(egui::Slider::new(&mut number, range).step_by(step))
            } else {
                ui.add(egui::DragValue::new(&mut number).range(range).speed(step).max_decimals(4))
            };
            let response = response.labelled_by(label.id);
            track(editor, &response);
            if response.changed() {
                value = Some(Json::from(number));
            }
        }
        InputKind::String(options) => {
            let mut text = current.as_str().unwrap_or_default().to_string();
            let edit = if options.multiline {
                egui::TextEdit::multiline(&mut text).desired_rows(3)
            } else {
                egui::TextEdit::singleline(&mut text)
            };
            let response = ui.add(edit.id_salt(("text", id, name))).labelled_by(label.id);
            track(editor, &response);
            if response.changed() {
                value = Some(Json::String(text));
            }
        }
        InputKind::Boolean(options) => {
            let mut on = current.as_bool().unwrap_or(options.default);
            let text = if on { options.label_on.as_deref() } else { options.label_off.as_deref() }.unwrap_or("");
            if ui.checkbox(&mut on, text).labelled_by(label.id).changed() {
                value = Some(Json::Bool(on));
            }
        }
        InputKind::Combo(options) => {
            let mut chosen = current.as_str().unwrap_or_default().to_string();
            let before = chosen.clone();
            let combo = egui::ComboBox::from_id_salt(("combo", id, name)).selected_text(&chosen).show_ui(ui, |ui| {
                for option in &options.options {
                    ui.selectable_value(&mut chosen, option.clone(), option);
                }
            });
            let _ = combo.response.labelled_by(label.id);
            if chosen != before {
                value = Some(Json::String(chosen));
            }
        }
        InputKind::Socket(_) => {}
    }
    if let Some(value) = value {
        let _ = editor.set_widget(id, name, value);
    }
}

/// The right-click menu of a node: title, run mode, duplicate, delete.
fn node_menu(ui: &mut egui::Ui, editor: &mut Editor, node: &NodeInstance, title: &str) {
    if !editor.selection.contains(&node.id) {
        editor.select(node.id);
    }
    let mut text = title.to_string();
    ui.horizontal(|ui| {
        ui.label("Title");
        let response = ui.text_edit_singleline(&mut text);
        track(editor, &response);
        if response.changed() {
            let _ = editor.set_title(node.id, &text);
        }
    });
    if ui.button(if node.mode == NodeMode::Bypassed { "Stop bypassing" } else { "Bypass" }).clicked() {
        editor.toggle_mode(NodeMode::Bypassed);
        ui.close();
    }
    if ui.button(if node.mode == NodeMode::Muted { "Unmute" } else { "Mute" }).clicked() {
        editor.toggle_mode(NodeMode::Muted);
        ui.close();
    }
    if ui.button("Group").on_hover_text("Put the selected nodes in a new group (Ctrl+G)").clicked() {
        editor.group_selection("Group");
        ui.close();
    }
    if ui.button("Duplicate").clicked() {
        editor.duplicate();
        ui.close();
    }
    if ui.button("Convert to subgraph").on_hover_text("Put the selected nodes in a subgraph of their own").clicked() {
        let _ = editor.convert_to_subgraph("New Subgraph");
        ui.close();
    }
    if editor.is_subgraph_instance(node.id) {
        if ui.button("Open subgraph").on_hover_text("Edit inside (or double-click the node)").clicked() {
            ui.data_mut(|data| data.insert_temp(egui::Id::new(OPEN_SUBGRAPH), node.id));
            ui.close();
        }
        if ui.button("Unpack subgraph").on_hover_text("Put its nodes back in its place").clicked() {
            let _ = editor.unpack_subgraph(node.id);
            ui.close();
        }
    }
    if ui.button("Delete").clicked() {
        editor.delete_selection();
        ui.close();
    }
}
