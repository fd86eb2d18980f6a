//! One node instance on the canvas: its class, place, mode, sockets and widget values.

use serde_json::{Map, Value as Json};

/// A node id as files write it (a number in the root graph).
pub type NodeId = i64;

/// A point or size on the canvas, in canvas units (ComfyUI's `pos` and `size`).
pub type Point = [f32; 2];

/// Whether a node runs: ComfyUI's `mode` (0 always, 2 never, 4 bypass; others kept as read).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NodeMode {
    /// Runs normally (mode 0).
    Normal,
    /// Muted: neither it nor anything that needs it runs (mode 2).
    Muted,
    /// Bypassed: its inputs pass through to outputs of the same type (mode 4).
    Bypassed,
    /// A mode the editor does not interpret (1 "on event", 3 "on trigger"), kept as read.
    Other(i64),
}

impl NodeMode {
    /// The mode from ComfyUI's number.
    pub fn from_number(mode: i64) -> Self {
        match mode {
            0 => NodeMode::Normal,
            2 => NodeMode::Muted,
            4 => NodeMode::Bypassed,
            other => NodeMode::Other(other),
        }
    }

    /// ComfyUI's number for this mode.
    pub fn number(self) -> i64 {
        match self {
            NodeMode::Normal => 0,
            NodeMode::Muted => 2,
            NodeMode::Bypassed => 4,
            NodeMode::Other(other) => other,
        }
    }
}

/// An input or output socket.
#[derive(Debug, Clone, PartialEq)]
pub struct Socket {
    pub name: String,
    /// The type name (`MODEL`, `LATENT`, `INT`, `*`, ...).
    pub type_name: String,
    /// For an input: the widget input this socket feeds, when it converts a widget to a socket.
    pub widget: Option<String>,
    /// The socket's object as read from a file (`slot_index`, `label`, `shape`, ...), written back.
    pub fields: Map<String, Json>,
}

impl Socket {
    /// A socket with no stored fields.
    pub fn new(name: &str, type_name: &str) -> Self {
        Socket { name: name.to_string(), type_name: type_name.to_string(), widget: None, fields: Map::new() }
    }
}

/// A node instance.
#[derive(Debug, Clone, PartialEq)]
pub struct NodeInstance {
    pub id: NodeId,
    /// The backend class (`KSampler`), or a frontend-only type (`Note`, `Reroute`).
    pub class_type: String,
    /// A title the user gave; `None` shows the schema's display name.
    pub title: Option<String>,
    pub pos: Point,
    pub size: Point,
    pub mode: NodeMode,
    pub inputs: Vec<Socket>,
    pub outputs: Vec<Socket>,
    /// `widgets_values` as ComfyUI stores them: positional, with a seed's control keyword after it.
    pub widgets_values: Option<Json>,
    /// The node's object as read from a file, so that fields the editor does not know are written back.
    pub fields: Map<String, Json>,
}

impl NodeInstance {
    /// The positional widget values (empty when the node has none or stores an object).
    pub fn widget_list(&self) -> &[Json] {
        match &self.widgets_values {
            Some(Json::Array(values)) => values,
            _ => &[],
        }
    }

    /// Whether the canvas point lies inside the node's body (title bar included).
    pub fn contains(&self, point: Point) -> bool {
        let (min, max) = self.bounds();
        (min[0]..=max[0]).contains(&point[0]) && (min[1]..=max[1]).contains(&point[1])
    }

    /// The node's rectangle: top-left (including the title bar above `pos`) and bottom-right.
    pub fn bounds(&self) -> (Point, Point) {
        let top = if self.is_reroute() { self.pos[1] } else { self.pos[1] - TITLE_HEIGHT };
        ([self.pos[0], top], [self.pos[0] + self.size[0], self.pos[1] + self.size[1]])
    }

    /// Whether this is a subgraph's input or output node, drawn inside the subgraph but not a node of the
    /// file (its place is the definition's `inputNode`/`outputNode`).
    pub fn is_subgraph_io(&self) -> bool {
        self.id == super::subgraph::INPUT_NODE || self.id == super::subgraph::OUTPUT_NODE
    }

    /// Whether this is a reroute: a dot a link passes through, drawn without a title.
    pub fn is_reroute(&self) -> bool {
        self.class_type == "Reroute"
    }

    /// Whether this is a note (text shown on the canvas, never run).
    pub fn is_note(&self) -> bool {
        matches!(self.class_type.as_str(), "Note" | "MarkdownNote")
    }
}

/// The height of a node's title bar, which ComfyUI draws above `pos`.
pub const TITLE_HEIGHT: f32 = 30.0;
