//! The canvas: pan and zoom (egui's `Scene`), groups (moved by their title bar with the nodes inside,
//! resized by their corner, renamed or deleted from their title's menu), links as bezier curves, nodes,
//! wiring pin to pin, box selection, and the double-click that opens the palette.

use super::Playback;
use super::node_view::{
    NodeDecor, NodeEvents, OPEN_SUBGRAPH, OutputAction, ShownOutput, SocketPlace, node_rect, show_node, widget_at,
};
use super::palette::Palette;
use super::style;
use crate::model::catalog::ROW_HEIGHT;
use crate::model::faults::Faults;
use crate::model::run::RunView;
use crate::model::{Editor, NodeId, NodeInstance, Pin};
use eframe::egui::{self, Color32, Pos2, Rect, Stroke, Vec2};
use std::collections::{HashMap, HashSet};

/// How far past a node's rectangle its sockets, outline and labels reach, in canvas units.
const SOCKET_REACH: f32 = 12.0;

/// Below this zoom, text is a few pixels high: nodes are drawn without text or widgets, which is also
/// what keeps a frame cheap when hundreds of nodes are in view.
const SIMPLIFIED_BELOW: f32 = 0.4;

/// Height of a group's title bar, the part that drags the group.
const GROUP_TITLE_HEIGHT: f32 = 34.0;
/// Side of the square handle at a group's bottom-right corner that resizes it.
const GROUP_HANDLE: f32 = 16.0;

/// What the runs put on the canvas: node states, the latest preview (and its node), the outputs.
#[derive(Clone, Copy)]
pub struct RunShown<'a> {
    pub run: &'a RunView,
    pub preview: Option<&'a (String, egui::TextureHandle)>,
    pub outputs: &'a HashMap<String, Playback>,
}

/// Pan, zoom and the gesture in progress.
pub struct Canvas {
    /// The part of the canvas in view (egui's `Scene` keeps it).
    pub view: Rect,
    /// A wire being dragged out of this socket.
    wire: Option<SocketPlace>,
    /// Whether that wire is a link lifted off an input (let go in empty space, it is removed) rather
    /// than one drawn fresh from a pin (let go in empty space, the palette offers what it can feed).
    lifted: bool,
    /// The canvas corner where a box selection began.
    box_start: Option<Pos2>,
    /// The paint layer the canvas is drawn on, whose transform maps canvas units to the screen.
    pub layer: Option<egui::LayerId>,
    /// The group whose title is being edited in its menu, and the text typed so far.
    group_title: Option<(usize, String)>,
    /// What the controls under shown outputs were asked this frame, by node (as the prompt names it).
    pub output_actions: Vec<(String, OutputAction)>,
}

impl Default for Canvas {
    fn default() -> Self {
        Canvas {
            view: Rect::from_min_size(Pos2::new(-50.0, -100.0), Vec2::new(1400.0, 900.0)),
            wire: None,
            lifted: false,
            box_start: None,
            layer: None,
            group_title: None,
            output_actions: Vec::new(),
        }
    }
}

/// Where a socket sits on the canvas.
pub fn socket_center(node: &NodeInstance, output: bool, slot: usize) -> Pos2 {
    let x = if output { node.pos[0] + node.size[0] } else { node.pos[0] };
    if node.is_reroute() {
        return Pos2::new(x, node.pos[1] + node.size[1] / 2.0);
    }
    Pos2::new(x, node.pos[1] + 6.0 + ROW_HEIGHT * (slot as f32 + 0.5))
}

/// How far a link's curve reaches out sideways from its ends.
fn pull(from: Pos2, to: Pos2) -> f32 {
    ((to.x - from.x).abs() * 0.5).max(40.0)
}

fn bezier(painter: &egui::Painter, from: Pos2, to: Pos2, color: Color32) {
    let pull = pull(from, to);
    let points = [from, from + Vec2::new(pull, 0.0), to - Vec2::new(pull, 0.0), to];
    painter.add(egui::epaint::CubicBezierShape::from_points_stroke(
        points,
        false,
        Color32::TRANSPARENT,
        Stroke::new(3.0, color),
    ));
}

impl Canvas {
    /// Frames every node and group, with a margin; an empty graph keeps the current view.
    pub fn fit(&mut self, editor: &Editor) {
        let graph = editor.graph();
        let nodes = graph.nodes.iter().map(|node| {
            let (min, max) = node.bounds();
            Rect::from_min_max(Pos2::new(min[0], min[1]), Pos2::new(max[0], max[1]))
        });
        let groups = graph.groups.iter().map(|group| {
            let [left, top, width, height] = group.bounding;
            Rect::from_min_size(Pos2::new(left, top), Vec2::new(width, height))
        });
        if let Some(bounds) = nodes.chain(groups).reduce(Rect::union) {
            self.view = bounds.expand(40.0);
        }
    }

    /// Draws the canvas and handles its gestures; returns a message for the status line (a refused
    /// connection and its reason).
    pub fn show(
        &mut self,
        ui: &mut egui::Ui,
        editor: &mut Editor,
        palette: &mut Option<Palette>,
        faults: &Faults,
        shown: &RunShown<'_>,
    ) -> Option<String> {
        let RunShown { run, preview, outputs } = *shown;
        let now = ui.input(|i| i.time);
        let mut message = None;
        let mut scene_layer = None;
        let mut enter = None;
        // Space held: the primary button pans too, as in ComfyUI.
        let space = ui.input(|i| i.key_down(egui::Key::Space)) && !ui.ctx().egui_wants_keyboard_input();
        let mut pan = egui::DragPanButtons::SECONDARY | egui::DragPanButtons::MIDDLE;
        if space {
            pan |= egui::DragPanButtons::PRIMARY;
        }
        let scene = egui::Scene::new().zoom_range(0.1..=2.0).drag_pan_buttons(pan);
        let mut view = self.view;
        let background = scene
            .show(ui, &mut view, |ui| {
                scene_layer = Some(ui.layer_id());
                // What lies wholly outside the view is neither laid out nor drawn: with hundreds of nodes
                // open, most of them usually are.
                let visible = ui.clip_rect();
                let scale = ui.ctx().layer_transform_to_global(ui.layer_id()).map_or(1.0, |t| t.scaling);
                let simplified = scale < SIMPLIFIED_BELOW;
                self.show_groups(ui, editor, visible);
                Self::draw_links(ui, editor, visible);
                let mut sockets = Vec::new();
                let linked: HashSet<(NodeId, bool, usize)> = editor
                    .graph()
                    .links
                    .iter()
                    .flat_map(|link| [(link.from_node, true, link.from_slot), (link.to_node, false, link.to_slot)])
                    .collect();
                let shown: Vec<NodeId> = editor
                    .graph()
                    .nodes
                    .iter()
                    .filter(|node| {
                        let key = editor.prompt_id(node.id);
                        // A preview or an output hangs below the node, outside its rectangle.
                        preview.is_some_and(|(sender, _)| *sender == key)
                            || outputs.contains_key(&key)
                            || visible.intersects(node_rect(node, editor.schema(&node.class_type)).expand(SOCKET_REACH))
                    })
                    .map(|node| node.id)
                    .collect();
                for id in shown {
                    let key = editor.prompt_id(id);
                    let decor = NodeDecor {
                        faults: faults.get(&id).map_or(&[], Vec::as_slice),
                        run: run.nodes.get(&key),
                        preview: preview.filter(|(node, _)| *node == key).map(|(_, texture)| texture),
                        linked: Some(&linked),
                        simplified,
                        output: outputs.get(&key).map(|playback| {
                            let frame = playback.transport.frame_at(now);
                            ShownOutput {
                                texture: playback.frames.get(frame),
                                frames: playback.frames.len(),
                                frame,
                                file_name: playback.file.file_name().map(|n| n.to_string_lossy().into_owned()),
                                sound_seconds: playback.sound_seconds,
                                playing: playback.transport.is_playing(),
                                muted: playback.transport.is_muted(),
                                time: playback.transport.time_at(now),
                                length: playback.transport.length(),
                                silent_reason: playback.sound.as_ref().and_then(|sound| sound.silent_reason()),
                            }
                        }),
                    };
                    let events = show_node(ui, editor, id, &decor, &mut sockets);
                    if let Some(action) = events.output_action {
                        self.output_actions.push((key, action));
                    }
                    if events.open_subgraph {
                        enter = Some(id);
                    }
                    self.apply_node_events(editor, id, &events);
                }
                let asked: Option<NodeId> = ui.data_mut(|data| data.remove_temp(egui::Id::new(OPEN_SUBGRAPH)));
                enter = enter.or(asked);
                message = self.finish_wire(ui, editor, &sockets, palette);
            })
            .response;
        self.view = view;
        self.layer = scene_layer;
        self.handle_background(ui, editor, palette, &background, scene_layer);
        if let Some(node) = enter {
            message = Some(self.enter_subgraph(editor, node));
        }
        message
    }

    /// Enters the subgraph instance `node` runs and shows all of it; the message for the status line.
    pub fn enter_subgraph(&mut self, editor: &mut Editor, node: NodeId) -> String {
        self.wire = None;
        match editor.enter_subgraph(node) {
            Ok(()) => {
                self.fit(editor);
                format!("Inside {}: the top bar leads back out", editor.breadcrumb().join(" › "))
            }
            Err(error) => format!("Not opened: {error}"),
        }
    }

    /// What a node's gestures this frame do to the selection, the node positions and the wire.
    fn apply_node_events(&mut self, editor: &mut Editor, id: NodeId, events: &NodeEvents) {
        if let Some(shift) = events.clicked {
            if shift {
                editor.toggle_selected(id);
            } else if !editor.selection.contains(&id) {
                editor.select(id);
            }
        }
        if events.drag_started {
            editor.begin_gesture();
        }
        if let Some(delta) = events.dragged {
            editor.move_selection([delta.x, delta.y]);
        }
        if events.drag_stopped {
            editor.end_gesture();
        }
        if let Some(start) = events.wire_from {
            let wire = Self::start_wire(editor, start);
            self.lifted = wire != start;
            self.wire = Some(wire);
        }
    }

    /// The canvas background's gestures: a double click opens the node palette there, a click clears
    /// the selection, a drag draws a selection box.
    fn handle_background(
        &mut self,
        ui: &egui::Ui,
        editor: &mut Editor,
        palette: &mut Option<Palette>,
        background: &egui::Response,
        scene_layer: Option<egui::LayerId>,
    ) {
        let to_canvas = |pos: Pos2| {
            scene_layer.and_then(|layer| ui.ctx().layer_transform_from_global(layer)).map_or(pos, |t| t * pos)
        };
        // The background belongs to the canvas layer, so its pointer positions are in canvas units
        // already; the context's pointer is on screen.
        if background.double_clicked()
            && let (Some(at), Some(screen)) = (background.interact_pointer_pos(), ui.ctx().pointer_latest_pos())
        {
            *palette = Some(Palette::new([at.x, at.y], screen));
        } else if background.clicked() {
            editor.selection.clear();
        }
        let space = ui.input(|i| i.key_down(egui::Key::Space));
        if background.drag_started_by(egui::PointerButton::Primary) && !space {
            self.box_start = background.interact_pointer_pos();
        }
        if let (Some(start), Some(pointer)) = (self.box_start, ui.ctx().pointer_latest_pos()) {
            let end = to_canvas(pointer);
            if background.drag_stopped() {
                let add = ui.input(|i| i.modifiers.shift);
                editor.select_box([start.x, start.y], [end.x, end.y], add);
                self.box_start = None;
            } else if let Some(layer) = scene_layer {
                let painter = ui.ctx().layer_painter(layer);
                let rect = Rect::from_two_pos(start, end);
                painter.rect(
                    rect,
                    0.0,
                    Color32::from_white_alpha(12),
                    Stroke::new(1.0, Color32::WHITE),
                    egui::StrokeKind::Inside,
                );
            }
        }
    }

    /// Draws the groups in view and handles their gestures: dragging the title bar moves the group and
    /// the nodes inside it, dragging the corner handle resizes it (each drag one undo step), and the
    /// title's context menu renames or deletes it.
    fn show_groups(&mut self, ui: &egui::Ui, editor: &mut Editor, visible: Rect) {
        for index in 0..editor.graph().groups.len() {
            // A group deleted from its menu shortens the list while it is walked.
            let Some(group) = editor.graph().groups.get(index) else { break };
            let [left, top, width, height] = group.bounding;
            let rect = Rect::from_min_size(Pos2::new(left, top), Vec2::new(width, height));
            if !visible.intersects(rect) {
                continue;
            }
            let color = group
                .fields
                .get("color")
                .and_then(serde_json::Value::as_str)
                .and_then(|hex| Color32::from_hex(hex).ok())
                .unwrap_or(Color32::from_rgb(0x3f, 0x78, 0x9e));
            let title = group.title.clone();
            let painter = ui.painter();
            painter.rect_filled(rect, 4.0, color.gamma_multiply(0.25));
            painter.rect_stroke(rect, 4.0, Stroke::new(1.0, color), egui::StrokeKind::Inside);
            painter.text(
                rect.min + Vec2::new(8.0, 6.0),
                egui::Align2::LEFT_TOP,
                &title,
                egui::FontId::proportional(20.0),
                Color32::from_gray(0xdd),
            );
            let handle = Rect::from_min_max(rect.max - Vec2::splat(GROUP_HANDLE), rect.max);
            painter.add(egui::Shape::convex_polygon(
                vec![handle.right_top(), handle.right_bottom(), handle.left_bottom()],
                color.gamma_multiply(0.8),
                Stroke::NONE,
            ));

            let bar = Rect::from_min_size(rect.min, Vec2::new(width, GROUP_TITLE_HEIGHT.min(height)));
            let bar = ui
                .interact(bar, ui.id().with(("group title", index)), egui::Sense::click_and_drag())
                .on_hover_cursor(egui::CursorIcon::Grab);
            bar.widget_info(|| egui::WidgetInfo::labeled(egui::WidgetType::Other, true, format!("group {title}")));
            if bar.drag_started() {
                editor.begin_gesture();
            }
            if bar.dragged() {
                let delta = bar.drag_delta();
                let _ = editor.move_group(index, [delta.x, delta.y]);
            }
            if bar.drag_stopped() {
                editor.end_gesture();
            }
            bar.context_menu(|ui| {
                let (_, text) = self.group_title.get_or_insert_with(|| (index, title.clone()));
                let field = ui
                    .horizontal(|ui| {
                        let label = ui.label("Group title");
                        ui.text_edit_singleline(text).labelled_by(label.id)
                    })
                    .inner;
                let enter = field.lost_focus() && ui.input(|i| i.key_pressed(egui::Key::Enter));
                if ui.button("Rename group").clicked() || enter {
                    let _ = editor.rename_group(index, text.trim());
                    self.group_title = None;
                    ui.close();
                }
                if ui.button("Delete group (keep its nodes)").clicked() {
                    let _ = editor.delete_group(index);
                    self.group_title = None;
                    ui.close();
                }
            });
            if !bar.context_menu_opened() && self.group_title.as_ref().is_some_and(|(open, _)| *open == index) {
                self.group_title = None;
            }

            let corner = ui
                .interact(handle, ui.id().with(("group corner", index)), egui::Sense::drag())
                .on_hover_cursor(egui::CursorIcon::ResizeNwSe);
            if corner.drag_started() {
                editor.begin_gesture();
            }
            if corner.dragged()
                && let Some(group) = editor.graph().groups.get(index)
            {
                let delta = corner.drag_delta();
                let size = [group.bounding[2] + delta.x, group.bounding[3] + delta.y];
                let _ = editor.resize_group(index, size);
            }
            if corner.drag_stopped() {
                editor.end_gesture();
            }
        }
    }

    fn draw_links(ui: &egui::Ui, editor: &Editor, visible: Rect) {
        let painter = ui.painter();
        let graph = editor.graph();
        let nodes: HashMap<NodeId, &NodeInstance> = graph.nodes.iter().map(|node| (node.id, node)).collect();
        for link in &graph.links {
            let (Some(from), Some(to)) = (nodes.get(&link.from_node), nodes.get(&link.to_node)) else { continue };
            let (start, end) = (socket_center(from, true, link.from_slot), socket_center(to, false, link.to_slot));
            // The curve stays inside the box of its control points.
            let reach = pull(start, end) + 2.0;
            if !visible.intersects(Rect::from_two_pos(start, end).expand2(Vec2::new(reach, 2.0))) {
                continue;
            }
            bezier(painter, start, end, style::type_color(&link.type_name));
        }
    }

    /// A wire starts at the socket pressed; pressing a linked input lifts its link off, to be dropped
    /// on another input or let go to remove it.
    fn start_wire(editor: &mut Editor, start: SocketPlace) -> SocketPlace {
        if start.output {
            return start;
        }
        let Some(link) = editor.graph().link_into(start.node, start.slot).cloned() else { return start };
        editor.disconnect(start.node, start.slot);
        let source =
            editor.graph().node(link.from_node).map_or(start.center, |node| socket_center(node, true, link.from_slot));
        SocketPlace { node: link.from_node, slot: link.from_slot, output: true, center: source }
    }

    /// Draws the wire being dragged and connects it where it is dropped.
    /// Let go away from any socket, a wire drawn fresh from a pin opens the palette there, offering
    /// the classes with a socket it could join.
    fn finish_wire(
        &mut self,
        ui: &egui::Ui,
        editor: &mut Editor,
        sockets: &[SocketPlace],
        palette: &mut Option<Palette>,
    ) -> Option<String> {
        let wire = self.wire?;
        let screen = ui.ctx().pointer_latest_pos()?;
        let pointer = ui.ctx().layer_transform_from_global(ui.layer_id()).map_or(screen, |t| t * screen);
        let type_name = editor
            .graph()
            .node(wire.node)
            .and_then(|node| if wire.output { node.outputs.get(wire.slot) } else { node.inputs.get(wire.slot) })
            .map(|socket| socket.type_name.clone());
        let color = type_name.as_deref().map_or(Color32::GRAY, style::type_color);
        let (from, to) = if wire.output { (wire.center, pointer) } else { (pointer, wire.center) };
        bezier(ui.painter(), from, to, color);
        if !ui.input(|i| i.pointer.any_released()) {
            return None;
        }
        self.wire = None;
        let target = sockets
            .iter()
            .filter(|socket| socket.output != wire.output)
            .min_by(|a, b| a.center.distance(pointer).total_cmp(&b.center.distance(pointer)))
            .filter(|socket| socket.center.distance(pointer) < 14.0);
        let point = Pos2::new(pointer.x, pointer.y);
        if target.is_none()
            && wire.output
            && let Some(node) = editor.graph().node_at([pointer.x, pointer.y])
            && let Some(widget) = editor
                .graph()
                .node(node)
                .zip(editor.graph().node(node).and_then(|n| editor.schema(&n.class_type)))
                .and_then(|(instance, schema)| widget_at(instance, schema, point))
        {
            return match editor.connect_to_widget(wire.node, wire.slot, node, &widget) {
                Ok(_) => Some(format!("Widget '{widget}' of node {node} is now an input, linked")),
                Err(error) => Some(format!("Not connected: {error}")),
            };
        }
        let Some(target) = target else {
            if !self.lifted
                && let Some(type_name) = type_name
                && editor.graph().node_at([pointer.x, pointer.y]).is_none()
            {
                let pin = Pin { node: wire.node, output: wire.output, slot: wire.slot };
                *palette = Some(Palette::for_pin([pointer.x, pointer.y], screen, pin, &type_name, &editor.catalog));
            }
            return None;
        };
        let (output, input) = if wire.output { (wire, *target) } else { (*target, wire) };
        match editor.connect(output.node, output.slot, input.node, input.slot) {
            Ok(_) => None,
            Err(error) => Some(format!("Not connected: {error}")),
        }
    }
}
