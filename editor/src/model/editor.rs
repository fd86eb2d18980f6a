//! The editor's state as a whole: the document, the graph, selection, clipboard and history. Every
//! edit goes through here so that it can be undone; nothing here draws.

use super::catalog::Catalog;
use super::document::{self, Document, DocumentError};
use super::graph::{EditError, EditorGraph, Group, LinkId, Pin};
use super::history::History;
use super::node::{NodeId, NodeInstance, NodeMode, Point};
use super::widgets::{SeedControl, SeedRandom, apply_seed_controls, has_seed_control, widget_index};
use super::{subgraph, subgraph_edit};
use kinograph_engine::{InputKind, NodeSchema};

/// ComfyUI's frontend-only primitive: a widget that feeds widget inputs of other nodes.
const PRIMITIVE: &str = "PrimitiveNode";
use kinograph_engine::{Conversion, WorkflowError, WorkflowFile, ui_from_prompt};
use serde_json::Value as Json;
use std::collections::{BTreeSet, HashMap};
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// How far a pasted or duplicated copy sits from the original, in canvas units.
const PASTE_OFFSET: Point = [30.0, 30.0];

/// A subgraph entered from the level above: the graph, selection and history left there.
struct Level {
    definition: String,
    name: String,
    /// The instance node it was entered through.
    instance: NodeId,
    parent: EditorGraph,
    parent_selection: BTreeSet<NodeId>,
    parent_history: History,
}

/// One open workflow and everything the user does to it.
pub struct Editor {
    pub catalog: Arc<Catalog>,
    pub document: Document,
    /// The graph shown: the workflow's root, or the inside of the subgraph entered last.
    graph: EditorGraph,
    history: History,
    /// The subgraphs entered, outermost first; the graphs they were entered from are kept in them, and a
    /// subgraph's graph is written back into its definition when it is left.
    levels: Vec<Level>,
    /// The schemas of the workflow's subgraph instances, by definition id.
    subgraph_schemas: HashMap<String, Arc<NodeSchema>>,
    /// The selected nodes.
    pub selection: BTreeSet<NodeId>,
    clipboard: Option<EditorGraph>,
    /// The links that fed the copied nodes from nodes not copied (for paste with links).
    clipboard_inputs: Vec<super::graph::Link>,
    /// Where the workflow was opened from or last saved to.
    pub path: Option<PathBuf>,
    /// Whether there are edits not saved.
    pub modified: bool,
    random: SeedRandom,
    /// The graph when the current gesture began.
    gesture: Option<EditorGraph>,
}

impl Editor {
    /// An empty workflow.
    pub fn new(catalog: Arc<Catalog>) -> Self {
        let graph = EditorGraph { next_node_id: 1, next_link_id: 1, ..EditorGraph::default() };
        let seed =
            std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).map_or(0, |d| d.as_nanos() as u64);
        Editor {
            catalog,
            document: Document::default(),
            graph,
            history: History::default(),
            levels: Vec::new(),
            subgraph_schemas: HashMap::new(),
            selection: BTreeSet::new(),
            clipboard: None,
            clipboard_inputs: Vec::new(),
            path: None,
            modified: false,
            random: SeedRandom::new(seed),
            gesture: None,
        }
    }

    /// Opens UI workflow text in place of the current graph.
    pub fn open_text(&mut self, text: &str, origin: &str) -> Result<(), DocumentError> {
        let (document, graph) = document::parse(text, origin)?;
        self.replace(document, graph, None);
        Ok(())
    }

    /// Opens a UI workflow file in place of the current graph.
    pub fn open(&mut self, path: &Path) -> Result<(), DocumentError> {
        let (document, graph) = document::load(path)?;
        self.replace(document, graph, Some(path.to_path_buf()));
        Ok(())
    }

    /// Opens a workflow in any form `kinograph run` reads: UI or API JSON, or a PNG or MP4 output that
    /// carries one (its UI workflow where it has one, else its API prompt laid out as a graph). Only a
    /// UI JSON file becomes the place Save writes to; anything else opens untitled, so that saving never
    /// writes UI JSON over an image, a video or an API prompt.
    pub fn open_any(&mut self, path: &Path) -> Result<(), DocumentError> {
        let origin = path.display().to_string();
        let bytes = std::fs::read(path).map_err(|source| WorkflowError::Io { path: origin.clone(), source })?;
        let carried = kinograph_engine::workflow::embedded::container(&bytes).is_some();
        let (workflow, is_ui) = match WorkflowFile::load(path)? {
            WorkflowFile::Ui(workflow) => (workflow, true),
            WorkflowFile::Api(prompt) => {
                (ui_from_prompt(&prompt, self.catalog.registry(), self.catalog.environment())?, false)
            }
        };
        let (document, graph) = document::from_workflow(&workflow, &origin)?;
        let place = (is_ui && !carried).then(|| path.to_path_buf());
        self.replace(document, graph, place);
        Ok(())
    }

    fn replace(&mut self, document: Document, graph: EditorGraph, path: Option<PathBuf>) {
        self.document = document;
        self.graph = graph;
        self.levels.clear();
        self.refresh_subgraph_schemas();
        self.history.clear();
        self.gesture = None;
        self.selection.clear();
        self.path = path;
        self.modified = false;
    }

    /// Saves to `path` in the UI format and remembers it as the file's place.
    pub fn save(&mut self, path: &Path) -> Result<(), DocumentError> {
        let (document, root) = self.whole();
        document::save(&document, &root, path)?;
        self.path = Some(path.to_path_buf());
        self.modified = false;
        Ok(())
    }

    /// The workflow as UI-format JSON (with the subgraph being edited written into its definition).
    pub fn to_json(&self) -> Json {
        let (document, root) = self.whole();
        document::to_json(&document, &root)
    }

    /// The API prompt the engine would run.
    pub fn to_prompt(&self) -> Result<Conversion, DocumentError> {
        let (document, root) = self.whole();
        document::to_prompt(&document, &root, &self.catalog)
    }

    /// The document and root graph with every entered subgraph written into its definition.
    fn whole(&self) -> (Document, EditorGraph) {
        if self.levels.is_empty() {
            return (self.document.clone(), self.graph.clone());
        }
        let mut document = self.document.clone();
        let mut graph = self.graph.clone();
        for level in self.levels.iter().rev() {
            subgraph::write_definition(&mut document.fields, &level.definition, &graph);
            graph = level.parent.clone();
        }
        (document, graph)
    }

    /// The schema of `class_type`: a subgraph instance's (promoted widgets and all), else the catalog's.
    pub fn schema(&self, class_type: &str) -> Option<&NodeSchema> {
        self.subgraph_schemas.get(class_type).map(AsRef::as_ref).or_else(|| self.catalog.schema(class_type))
    }

    /// The schema `node` is drawn and edited with: its class's, a subgraph instance's, or for ComfyUI's
    /// `PrimitiveNode` the one its output's widget gives it ([`Editor::special_schema`]).
    pub fn node_schema(&self, node: &NodeInstance) -> Option<std::borrow::Cow<'_, NodeSchema>> {
        if node.class_type == PRIMITIVE {
            return self.primitive_schema(node).map(std::borrow::Cow::Owned);
        }
        self.schema(&node.class_type).map(std::borrow::Cow::Borrowed)
    }

    /// The schema of a node whose widgets are not its class's: a subgraph instance (its promoted widgets)
    /// or a `PrimitiveNode` (the widget it feeds). Shared, so that it can be held while the editor changes.
    pub fn special_schema(&self, node: &NodeInstance) -> Option<Arc<NodeSchema>> {
        if node.class_type == PRIMITIVE {
            return self.primitive_schema(node).map(Arc::new);
        }
        self.subgraph_schema(&node.class_type)
    }

    /// ComfyUI's `PrimitiveNode`: one widget, the one its output feeds (the output names it), with that
    /// widget's kind, range and options; numbers and lists get a control after generate, as ComfyUI gives
    /// them. `None` while its output feeds nothing.
    fn primitive_schema(&self, node: &NodeInstance) -> Option<NodeSchema> {
        let output = node.outputs.first()?;
        let link = self.graph.links.iter().find(|link| link.from_node == node.id)?;
        let target = self.graph.node(link.to_node)?;
        let target_widget = target.inputs.get(link.to_slot)?.widget.clone()?;
        let mut spec = self.schema(&target.class_type)?.input_spec(&target_widget)?.clone();
        spec.name = output.widget.clone().unwrap_or(target_widget);
        spec.optional = false;
        if matches!(spec.kind, InputKind::Int(_) | InputKind::Combo(_)) {
            spec = spec.control_after_generate();
        }
        Some(NodeSchema::new(PRIMITIVE).display_name("Primitive").input(spec).output(&output.type_name, &output.name))
    }

    /// The schema of a subgraph instance of `class_type` (a definition id), shared so that it can be held
    /// while the editor is changed.
    pub fn subgraph_schema(&self, class_type: &str) -> Option<Arc<NodeSchema>> {
        self.subgraph_schemas.get(class_type).cloned()
    }

    /// Whether `node` is an instance of one of the workflow's subgraphs.
    pub fn is_subgraph_instance(&self, node: NodeId) -> bool {
        self.graph.node(node).is_some_and(|instance| self.subgraph_schemas.contains_key(&instance.class_type))
    }

    fn refresh_subgraph_schemas(&mut self) {
        let fields = &self.document.fields;
        self.subgraph_schemas = subgraph::definition_ids(fields)
            .into_iter()
            .filter_map(|id| subgraph::instance_schema(fields, &id, &self.catalog).map(|schema| (id, Arc::new(schema))))
            .collect();
    }

    /// Enters the subgraph that instance `node` runs: the graph shown is then the definition's, with its
    /// input and output nodes. Edits inside change the definition, and so every instance of it.
    pub fn enter_subgraph(&mut self, node: NodeId) -> Result<(), DocumentError> {
        self.end_gesture();
        let definition = self
            .graph
            .node(node)
            .map(|instance| instance.class_type.clone())
            .filter(|class| self.subgraph_schemas.contains_key(class))
            .ok_or(DocumentError::NotASubgraph { node })?;
        let inner = subgraph::definition_graph(&self.document.fields, &definition, "the workflow")?;
        let name = subgraph::definition_name(&self.document.fields, &definition).unwrap_or_else(|| definition.clone());
        self.levels.push(Level {
            definition,
            name,
            instance: node,
            parent: std::mem::replace(&mut self.graph, inner),
            parent_selection: std::mem::take(&mut self.selection),
            parent_history: std::mem::take(&mut self.history),
        });
        Ok(())
    }

    /// Turns the selected nodes into a subgraph named `name` and puts an instance of it in their place,
    /// linked as they were; returns the instance. The definition is added to the workflow.
    pub fn convert_to_subgraph(&mut self, name: &str) -> Result<NodeId, EditError> {
        self.end_gesture();
        let selected = self.copyable_selection();
        let id = subgraph_edit::new_id(self.random.next_u64(), self.random.next_u64());
        let made = subgraph_edit::make(&self.graph, &selected, &id, name)?;
        let instance = self.edit(|graph| {
            let before = graph.clone();
            subgraph_edit::replace_with_instance(graph, &selected, &made).inspect_err(|_| *graph = before)
        })?;
        let definitions =
            self.document.fields.entry("definitions").or_insert_with(|| Json::Object(serde_json::Map::default()));
        if let Json::Object(definitions) = definitions {
            let list = definitions.entry("subgraphs").or_insert_with(|| Json::Array(Vec::new()));
            if let Json::Array(list) = list {
                list.push(Json::Object(made.definition));
            }
        }
        self.refresh_subgraph_schemas();
        self.selection = BTreeSet::from([instance]);
        Ok(instance)
    }

    /// Puts the nodes of subgraph instance `node` back in its place, linked as the instance was, its
    /// promoted values set on the widgets they fed; returns the nodes put back (selected).
    pub fn unpack_subgraph(&mut self, node: NodeId) -> Result<BTreeSet<NodeId>, EditError> {
        self.end_gesture();
        let class = self
            .graph
            .node(node)
            .map(|instance| instance.class_type.clone())
            .filter(|class| self.subgraph_schemas.contains_key(class))
            .ok_or(EditError::NotASubgraph(node))?;
        let inside = subgraph::definition_graph(&self.document.fields, &class, "the workflow")
            .map_err(|_| EditError::NotASubgraph(node))?;
        let inputs = inside.node(subgraph::INPUT_NODE).map(|io| io.outputs.clone()).unwrap_or_default();
        let values: std::collections::BTreeMap<usize, Json> = inputs
            .iter()
            .enumerate()
            .filter_map(|(slot, socket)| Some((slot, self.widget(node, &socket.name)?.clone())))
            .collect();
        let schemas: HashMap<String, Arc<NodeSchema>> = self.subgraph_schemas.clone();
        let catalog = Arc::clone(&self.catalog);
        let set_value = move |target: &mut NodeInstance, widget: &str, value: Json| {
            let schema =
                schemas.get(&target.class_type).map(AsRef::as_ref).or_else(|| catalog.schema(&target.class_type));
            if let Some(index) = schema.and_then(|schema| widget_index(schema, target, widget))
                && let Some(Json::Array(stored)) = target.widgets_values.as_mut()
                && index < stored.len()
            {
                stored[index] = value;
            }
        };
        let added = self.edit(|graph| {
            let before = graph.clone();
            subgraph_edit::unpack(graph, node, &inside, &values, set_value).inspect_err(|_| *graph = before)
        })?;
        self.selection.clone_from(&added);
        Ok(added)
    }

    /// Leaves the subgraph entered last, writing its graph into its definition; whether there was one.
    pub fn leave_subgraph(&mut self) -> bool {
        self.end_gesture();
        let Some(level) = self.levels.pop() else { return false };
        subgraph::write_definition(&mut self.document.fields, &level.definition, &self.graph);
        self.graph = level.parent;
        self.selection = level.parent_selection;
        self.history = level.parent_history;
        self.refresh_subgraph_schemas();
        true
    }

    /// Leaves subgraphs until `depth` are left entered (0: the root graph).
    pub fn leave_to(&mut self, depth: usize) {
        while self.levels.len() > depth && self.leave_subgraph() {}
    }

    /// The id node `node` of the graph shown has in the API prompt and in a run's events: the ids of the
    /// instances entered and its own, joined by `:` as the engine flattens subgraphs (`92:62`).
    pub fn prompt_id(&self, node: NodeId) -> String {
        let mut id = String::new();
        for level in &self.levels {
            id.push_str(&level.instance.to_string());
            id.push(':');
        }
        id.push_str(&node.to_string());
        id
    }

    /// The names of the subgraphs entered, outermost first (empty at the root).
    pub fn breadcrumb(&self) -> Vec<String> {
        self.levels.iter().map(|level| level.name.clone()).collect()
    }

    /// The graph as it is now.
    pub fn graph(&self) -> &EditorGraph {
        &self.graph
    }

    /// Runs one edit, recording the graph before it for undo; a refused edit records nothing.
    pub fn edit<T, E>(&mut self, change: impl FnOnce(&mut EditorGraph) -> Result<T, E>) -> Result<T, E> {
        let before = self.graph.clone();
        let result = change(&mut self.graph)?;
        if self.graph != before {
            if self.gesture.is_none() {
                self.history.record(before);
            }
            self.modified = true;
        }
        Ok(result)
    }

    /// Undoes the last edit; returns whether there was one.
    pub fn undo(&mut self) -> bool {
        self.end_gesture();
        let Some(previous) = self.history.undo(&self.graph) else { return false };
        self.graph = previous;
        self.forget_missing_selection();
        self.modified = true;
        true
    }

    /// Redoes the last undone edit; returns whether there was one.
    pub fn redo(&mut self) -> bool {
        let Some(next) = self.history.redo(&self.graph) else { return false };
        self.graph = next;
        self.forget_missing_selection();
        self.modified = true;
        true
    }

    /// Whether [`Editor::undo`] would do something.
    pub fn can_undo(&self) -> bool {
        self.history.can_undo()
    }

    /// Whether [`Editor::redo`] would do something.
    pub fn can_redo(&self) -> bool {
        self.history.can_redo()
    }

    fn forget_missing_selection(&mut self) {
        let graph = &self.graph;
        self.selection.retain(|id| graph.node(*id).is_some());
    }

    /// Adds a node of `class_type` at `pos` with its schema's defaults, selects it and returns its id.
    pub fn add_node(&mut self, class_type: &str, pos: Point) -> Option<NodeId> {
        let node = self.catalog.instantiate(class_type, pos)?;
        let id = self.edit(|graph| Ok::<_, EditError>(graph.add_node(node))).ok()?;
        self.selection = BTreeSet::from([id]);
        Some(id)
    }

    /// Adds a node of `class_type` at `pos` and links it to `pin` through its first compatible socket
    /// (see [`Catalog::compatible_slot`]), as one undo step; selects the new node. Refused, with nothing
    /// changed, when the class is unknown, has no such socket, or the link would be refused.
    pub fn add_connected(&mut self, class_type: &str, pos: Point, pin: Pin) -> Result<(NodeId, LinkId), EditError> {
        let node =
            self.catalog.instantiate(class_type, pos).ok_or_else(|| EditError::NoSuchClass(class_type.into()))?;
        let type_name = {
            let owner = self.graph.node(pin.node).ok_or(EditError::NoSuchNode(pin.node))?;
            let sockets = if pin.output { &owner.outputs } else { &owner.inputs };
            let socket = sockets.get(pin.slot).ok_or(if pin.output {
                EditError::NoSuchOutput { node: pin.node, slot: pin.slot }
            } else {
                EditError::NoSuchInput { node: pin.node, slot: pin.slot }
            })?;
            socket.type_name.clone()
        };
        let slot = self.catalog.compatible_slot(class_type, &type_name, pin.output).ok_or_else(|| {
            EditError::NoCompatibleSocket {
                class_type: class_type.into(),
                side: if pin.output { "input" } else { "output" },
                type_name: type_name.clone(),
            }
        })?;
        let (id, link) = self.edit(|graph| {
            // Both or neither: a refused link leaves no new node behind.
            let mut changed = graph.clone();
            let id = changed.add_node(node);
            let link = if pin.output {
                changed.connect(pin.node, pin.slot, id, slot)
            } else {
                changed.connect(id, slot, pin.node, pin.slot)
            }?;
            *graph = changed;
            Ok::<_, EditError>((id, link))
        })?;
        self.selection = BTreeSet::from([id]);
        Ok((id, link))
    }

    /// Adds a note holding `text` at `pos`.
    pub fn add_note(&mut self, text: &str, pos: Point) -> NodeId {
        let note = Catalog::note(text, pos);
        self.edit(|graph| Ok::<_, EditError>(graph.add_node(note))).unwrap_or_default()
    }

    /// Puts the file at `source` into the input folder for `node` to load, as a file dropped on ComfyUI's
    /// `LoadImage` or `LoadAudio` is uploaded: under its own name, or reused where the folder has the same
    /// bytes under that name, or numbered (`name (1).png`) beside a different file; then sets the node's
    /// file widget (`image`, `audio`) to it. Returns the name given.
    pub fn put_input_file(&mut self, node: NodeId, source: &Path) -> Result<String, InputFileError> {
        let class = self.graph.node(node).map(|n| n.class_type.clone()).ok_or(InputFileError::NoSuchNode(node))?;
        let widget = match class.as_str() {
            "LoadImage" => "image",
            "LoadAudio" => "audio",
            _ => return Err(InputFileError::NotALoader { node, class }),
        };
        let contents =
            std::fs::read(source).map_err(|error| InputFileError::Io(source.display().to_string(), error))?;
        let name = source.file_name().and_then(|n| n.to_str()).filter(|n| !n.starts_with('.')).ok_or_else(|| {
            InputFileError::Io(source.display().to_string(), std::io::Error::other("the file has no usable name"))
        })?;
        let folder = self.catalog.environment().input_dir.clone();
        std::fs::create_dir_all(&folder).map_err(|error| InputFileError::Io(folder.display().to_string(), error))?;
        let (stem, extension) = match name.rsplit_once('.') {
            Some((stem, extension)) if !stem.is_empty() => (stem.to_string(), format!(".{extension}")),
            _ => (name.to_string(), String::new()),
        };
        let mut chosen = name.to_string();
        for number in 1..10_000 {
            let target = folder.join(&chosen);
            match std::fs::read(&target) {
                Ok(existing) if existing == contents => break,
                Ok(_) => chosen = format!("{stem} ({number}){extension}"),
                Err(_) => {
                    std::fs::write(&target, &contents)
                        .map_err(|e| InputFileError::Io(target.display().to_string(), e))?;
                    break;
                }
            }
        }
        self.set_widget(node, widget, Json::String(chosen.clone())).map_err(InputFileError::Widget)?;
        Ok(chosen)
    }

    /// Adds a reroute at `pos` (a dot a link passes through) and returns its id.
    pub fn add_reroute(&mut self, pos: Point) -> NodeId {
        let reroute = Catalog::reroute(pos);
        self.edit(|graph| Ok::<_, EditError>(graph.add_node(reroute))).unwrap_or_default()
    }

    /// Links an output to an input (see [`EditorGraph::connect`]).
    pub fn connect(&mut self, from: NodeId, from_slot: usize, to: NodeId, to_slot: usize) -> Result<LinkId, EditError> {
        self.edit(|graph| graph.connect(from, from_slot, to, to_slot))
    }

    /// Removes the link into an input; returns whether there was one.
    pub fn disconnect(&mut self, node: NodeId, slot: usize) -> bool {
        self.edit(|graph| Ok::<_, EditError>(graph.disconnect(node, slot))).unwrap_or(false)
    }

    /// Links output `from_slot` of `from` to widget `widget` of `to`, as ComfyUI's front end lets any widget
    /// take a link of its type: the widget becomes an input socket of its type (unless it is one already),
    /// fed by the link. Its stored value stays, for when the link goes. Refused as [`Editor::connect`] refuses.
    pub fn connect_to_widget(
        &mut self,
        from: NodeId,
        from_slot: usize,
        to: NodeId,
        widget: &str,
    ) -> Result<LinkId, EditError> {
        let node = self.graph.node(to).ok_or(EditError::NoSuchNode(to))?;
        let spec = self
            .schema(&node.class_type)
            .and_then(|schema| schema.input_spec(widget))
            .filter(|spec| spec.kind.is_widget())
            .ok_or_else(|| EditError::NoSuchWidget { node: to, widget: widget.to_string() })?;
        let type_name = spec.kind.type_name().to_string();
        self.edit(|graph| {
            let before = graph.clone();
            let node = graph.node_mut(to).ok_or(EditError::NoSuchNode(to))?;
            let existing = node.inputs.iter().position(|socket| socket.widget.as_deref() == Some(widget));
            let slot = existing.unwrap_or_else(|| {
                let mut socket = super::node::Socket::new(widget, &type_name);
                socket.widget = Some(widget.to_string());
                node.inputs.push(socket);
                node.inputs.len() - 1
            });
            graph.connect(from, from_slot, to, slot).inspect_err(|_| *graph = before)
        })
    }

    /// Deletes the selected nodes and their links (a subgraph's input and output nodes stay).
    pub fn delete_selection(&mut self) -> usize {
        let mut selected = std::mem::take(&mut self.selection);
        selected.retain(|id| self.graph.node(*id).is_some_and(|node| !node.is_subgraph_io()));
        self.edit(|graph| Ok::<_, EditError>(graph.delete(&selected))).unwrap_or(0)
    }

    /// Moves the selected nodes by `delta`.
    pub fn move_selection(&mut self, delta: Point) {
        let selected = self.selection.clone();
        let _ = self.edit(|graph| {
            graph.move_by(&selected, delta);
            Ok::<_, EditError>(())
        });
    }

    /// Starts a gesture (a drag, a text being typed): edits until [`Editor::end_gesture`] become one undo
    /// step instead of one per frame or keystroke.
    pub fn begin_gesture(&mut self) {
        if self.gesture.is_none() {
            self.gesture = Some(self.graph.clone());
        }
    }

    /// Ends the gesture begun by [`Editor::begin_gesture`], recording it if it changed anything.
    pub fn end_gesture(&mut self) {
        if let Some(start) = self.gesture.take()
            && start != self.graph
        {
            self.history.record(start);
        }
    }

    /// Selects only `node`.
    pub fn select(&mut self, node: NodeId) {
        self.selection = BTreeSet::from([node]);
    }

    /// Adds `node` to the selection or takes it out (shift-click).
    pub fn toggle_selected(&mut self, node: NodeId) {
        if !self.selection.remove(&node) {
            self.selection.insert(node);
        }
    }

    /// Selects the nodes overlapping the box between two canvas corners; `add` keeps the current selection.
    pub fn select_box(&mut self, corner: Point, other: Point, add: bool) {
        let inside = self.graph.nodes_in_box(corner, other);
        if add {
            self.selection.extend(inside);
        } else {
            self.selection = inside;
        }
    }

    /// The selection without a subgraph's input and output nodes, which are never copied.
    fn copyable_selection(&self) -> BTreeSet<NodeId> {
        self.selection.iter().copied().filter(|id| self.graph.node(*id).is_some_and(|n| !n.is_subgraph_io())).collect()
    }

    /// Copies the selected nodes and the links among them.
    pub fn copy(&mut self) -> usize {
        let selected = self.copyable_selection();
        let part = self.graph.extract(&selected);
        let count = part.nodes.len();
        if count > 0 {
            self.clipboard = Some(part);
            self.clipboard_inputs = self
                .graph
                .links
                .iter()
                .filter(|link| selected.contains(&link.to_node) && !selected.contains(&link.from_node))
                .cloned()
                .collect();
        }
        count
    }

    /// Pastes the clipboard as [`Editor::paste`] does, and links the copies' inputs to the nodes outside the
    /// copy that fed the originals, where those are still there (ComfyUI's Ctrl+Shift+V).
    pub fn paste_with_links(&mut self) -> BTreeSet<NodeId> {
        let Some(part) = self.clipboard.clone() else { return BTreeSet::new() };
        let inputs = self.clipboard_inputs.clone();
        let added = self
            .edit(|graph| {
                let added = graph.insert(&part, PASTE_OFFSET);
                // `insert` gives the copies ids in the order of the part's nodes.
                let renamed: HashMap<NodeId, NodeId> =
                    part.nodes.iter().map(|n| n.id).zip(added.iter().copied()).collect();
                for link in &inputs {
                    if let Some(&to) = renamed.get(&link.to_node) {
                        let _ = graph.connect(link.from_node, link.from_slot, to, link.to_slot);
                    }
                }
                Ok::<_, EditError>(added)
            })
            .unwrap_or_default();
        self.selection.clone_from(&added);
        added
    }

    /// Pastes the clipboard beside where it was copied from and selects the copies.
    pub fn paste(&mut self) -> BTreeSet<NodeId> {
        let Some(part) = self.clipboard.clone() else { return BTreeSet::new() };
        let added = self.edit(|graph| Ok::<_, EditError>(graph.insert(&part, PASTE_OFFSET))).unwrap_or_default();
        self.selection.clone_from(&added);
        added
    }

    /// Copies and pastes the selection in one step, leaving the clipboard as it was.
    pub fn duplicate(&mut self) -> BTreeSet<NodeId> {
        let part = self.graph.extract(&self.copyable_selection());
        let added = self.edit(|graph| Ok::<_, EditError>(graph.insert(&part, PASTE_OFFSET))).unwrap_or_default();
        self.selection.clone_from(&added);
        added
    }

    /// Sets a node's title; an empty title goes back to the class's display name.
    pub fn set_title(&mut self, node: NodeId, title: &str) -> Result<(), EditError> {
        self.edit(|graph| {
            let node = graph.node_mut(node).ok_or(EditError::NoSuchNode(node))?;
            node.title = (!title.is_empty()).then(|| title.to_string());
            Ok(())
        })
    }

    /// Sets the selected nodes to `mode`, or back to normal when they all have it already (the toggle of
    /// Ctrl+B and Ctrl+M).
    pub fn toggle_mode(&mut self, mode: NodeMode) {
        let selected = self.selection.clone();
        let _ = self.edit(|graph| {
            let all = graph.nodes.iter().filter(|n| selected.contains(&n.id)).all(|n| n.mode == mode);
            let target = if all { NodeMode::Normal } else { mode };
            for node in graph.nodes.iter_mut().filter(|n| selected.contains(&n.id)) {
                node.mode = target;
            }
            Ok::<_, EditError>(())
        });
    }

    /// Sets the value of widget `name` on `node`. Nodes without a schema (notes) take a position instead:
    /// `name` is then the index as text.
    pub fn set_widget(&mut self, node: NodeId, name: &str, value: Json) -> Result<(), WidgetError> {
        if let Some((instance, input)) = self.promoted_input(node, name) {
            return self.set_promoted(instance, &input, value);
        }
        let index = self.widget_slot(node, name)?;
        // A dynamic combo's choice decides which widgets follow it: lay the values out again.
        let relaid = self.graph.node(node).and_then(|instance| {
            let schema = self.node_schema(instance)?;
            let schema = schema.as_ref();
            let dynamic = schema.input_spec(name).is_some_and(|input| !input.dynamic_options().is_empty());
            let choice = value.as_str()?;
            dynamic.then(|| super::widgets::with_choice(schema, instance, name, choice))
        });
        self.edit(|graph| {
            let node = graph.node_mut(node).ok_or(EditError::NoSuchNode(node))?;
            match (relaid, node.widgets_values.as_mut()) {
                (Some(relaid), _) => node.widgets_values = Some(Json::Array(relaid)),
                (None, Some(Json::Array(values))) => values[index] = value,
                (None, _) => {}
            }
            Ok::<_, EditError>(())
        })?;
        Ok(())
    }

    /// The value of widget `name` on `node`.
    pub fn widget(&self, node: NodeId, name: &str) -> Option<&Json> {
        if let Some((instance, input)) = self.promoted_input(node, name) {
            let parent = &self.levels.last()?.parent;
            let instance = parent.node(instance)?;
            let index = widget_index(self.schema(&instance.class_type)?, instance, &input)?;
            return instance.widget_list().get(index);
        }
        let index = self.widget_slot(node, name).ok()?;
        self.graph.node(node)?.widget_list().get(index)
    }

    /// Whether widget `name` of `node`, inside the subgraph entered last, is fed by one of the subgraph's
    /// promoted widgets: it then shows and edits the value on the instance it was entered through.
    pub fn is_promoted(&self, node: NodeId, name: &str) -> bool {
        self.promoted_input(node, name).is_some()
    }

    /// The instance node and its promoted widget that feed widget `name` of `node`.
    fn promoted_input(&self, node: NodeId, name: &str) -> Option<(NodeId, String)> {
        let level = self.levels.last()?;
        let inner = self.graph.node(node)?;
        let slot = inner.inputs.iter().position(|socket| socket.widget.as_deref() == Some(name))?;
        let link = self.graph.link_into(node, slot).filter(|link| link.from_node == subgraph::INPUT_NODE)?;
        let input = self.graph.node(subgraph::INPUT_NODE)?.outputs.get(link.from_slot)?.name.clone();
        let instance = level.parent.node(level.instance)?;
        let schema = self.subgraph_schemas.get(&instance.class_type)?;
        schema.input_spec(&input).filter(|spec| spec.kind.is_widget())?;
        Some((level.instance, input))
    }

    /// Sets promoted widget `input` of `instance` in the graph the subgraph was entered from. (Undo inside
    /// the subgraph does not reach it: it belongs to the level above.)
    fn set_promoted(&mut self, instance: NodeId, input: &str, value: Json) -> Result<(), WidgetError> {
        let no_widget = || WidgetError::NoWidget { node: instance, class_type: String::new(), name: input.to_string() };
        let level = self.levels.last().ok_or_else(no_widget)?;
        let node = level.parent.node(instance).ok_or_else(no_widget)?;
        let schema = self.subgraph_schemas.get(&node.class_type).ok_or_else(no_widget)?;
        let index = widget_index(schema, node, input).filter(|index| *index < node.widget_list().len());
        let index = index.ok_or_else(no_widget)?;
        let level = self.levels.last_mut().ok_or_else(no_widget)?;
        if let Some(Json::Array(values)) = level.parent.node_mut(instance).and_then(|n| n.widgets_values.as_mut())
            && values[index] != value
        {
            values[index] = value;
            self.modified = true;
        }
        Ok(())
    }

    fn widget_slot(&self, node_id: NodeId, name: &str) -> Result<usize, WidgetError> {
        let node = self.graph.node(node_id).ok_or(WidgetError::Edit(EditError::NoSuchNode(node_id)))?;
        let index = match self.node_schema(node) {
            Some(schema) => widget_index(&schema, node, name),
            None => name.parse().ok(),
        };
        index.filter(|index| *index < node.widget_list().len()).ok_or_else(|| WidgetError::NoWidget {
            node: node_id,
            class_type: node.class_type.clone(),
            name: name.to_string(),
        })
    }

    /// Sets the control mode of seed widget `name`.
    pub fn set_seed_control(&mut self, node: NodeId, name: &str, control: SeedControl) -> Result<(), WidgetError> {
        let class_type = self.graph.node(node).map(|n| n.class_type.clone()).unwrap_or_default();
        let schema = self.graph.node(node).and_then(|instance| self.node_schema(instance));
        let has_control = schema.is_some_and(|schema| has_seed_control(&schema, name));
        let index = self.widget_slot(node, name)?;
        let stored = self.graph.node(node).is_some_and(|n| n.widget_list().get(index + 1).is_some_and(Json::is_string));
        if !has_control || !stored {
            return Err(WidgetError::NoWidget { node, class_type, name: format!("{name} (control after generate)") });
        }
        let keyword = Json::from(control.keyword());
        self.edit(|graph| {
            if let Some(Json::Array(values)) = graph.node_mut(node).and_then(|n| n.widgets_values.as_mut()) {
                values[index + 1] = keyword;
            }
            Ok::<_, EditError>(())
        })?;
        Ok(())
    }

    /// Applies the seeds' control modes after a run was queued (one undoable edit).
    pub fn after_queue(&mut self) -> usize {
        let catalog = Arc::clone(&self.catalog);
        let mut random = self.random.clone();
        let changed = self
            .edit(|graph| Ok::<_, EditError>(apply_seed_controls(graph, &catalog, &mut || random.next_u64())))
            .unwrap_or(0);
        self.random = random;
        changed
    }

    /// Uses `state` for the random seeds that follow (tests make them reproducible this way).
    pub fn seed_random(&mut self, state: u64) {
        self.random = SeedRandom::new(state);
    }

    /// Adds a group around the selected nodes (or an empty one at the origin) titled `title`.
    pub fn group_selection(&mut self, title: &str) -> usize {
        let bounds: Vec<(Point, Point)> =
            self.graph.nodes.iter().filter(|n| self.selection.contains(&n.id)).map(NodeInstance::bounds).collect();
        let margin = 10.0;
        let bounding = if bounds.is_empty() {
            [0.0, 0.0, 300.0, 200.0]
        } else {
            let left = bounds.iter().map(|b| b.0[0]).fold(f32::INFINITY, f32::min) - margin;
            let top = bounds.iter().map(|b| b.0[1]).fold(f32::INFINITY, f32::min) - margin - 30.0;
            let right = bounds.iter().map(|b| b.1[0]).fold(f32::NEG_INFINITY, f32::max) + margin;
            let bottom = bounds.iter().map(|b| b.1[1]).fold(f32::NEG_INFINITY, f32::max) + margin;
            [left, top, right - left, bottom - top]
        };
        let group = Group { title: title.to_string(), bounding, fields: serde_json::Map::new() };
        self.edit(|graph| {
            graph.groups.push(group);
            Ok::<_, EditError>(graph.groups.len() - 1)
        })
        .unwrap_or_default()
    }

    /// Renames group `index`.
    pub fn rename_group(&mut self, index: usize, title: &str) -> Result<(), EditError> {
        self.edit(|graph| graph.rename_group(index, title))
    }

    /// Moves group `index` and the nodes wholly inside it by `delta` (a drag of its title bar: wrap the
    /// frames in a gesture to make them one undo step).
    pub fn move_group(&mut self, index: usize, delta: Point) -> Result<(), EditError> {
        self.edit(|graph| graph.move_group(index, delta))
    }

    /// Resizes group `index` to `size` (width, height), keeping its top-left corner.
    pub fn resize_group(&mut self, index: usize, size: Point) -> Result<(), EditError> {
        self.edit(|graph| graph.resize_group(index, size))
    }

    /// Removes group `index`, leaving its nodes.
    pub fn delete_group(&mut self, index: usize) -> Result<(), EditError> {
        self.edit(|graph| graph.delete_group(index))
    }
}

/// Why a dropped file could not be put in the input folder for a loader.
#[derive(Debug, thiserror::Error)]
pub enum InputFileError {
    #[error("there is no node {0}")]
    NoSuchNode(NodeId),
    #[error("node {node} is a {class}: files are dropped on LoadImage and LoadAudio nodes")]
    NotALoader { node: NodeId, class: String },
    #[error("{0}: {1}")]
    Io(String, std::io::Error),
    #[error(transparent)]
    Widget(WidgetError),
}

/// Why a widget could not be read or set.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
pub enum WidgetError {
    #[error(transparent)]
    Edit(#[from] EditError),
    #[error("node {node} ({class_type}) has no widget '{name}'")]
    NoWidget { node: NodeId, class_type: String, name: String },
}
