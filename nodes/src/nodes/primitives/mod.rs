//! Small utility nodes that need no models: primitives, strings, previews, text output.

mod delay;
mod preview_any;
mod primitive_values;
mod save_text;
mod string_concatenate;

pub use delay::Delay;
pub use preview_any::PreviewAny;
pub use primitive_values::{PrimitiveBoolean, PrimitiveFloat, PrimitiveInt, PrimitiveString, PrimitiveStringMultiline};
pub use save_text::SaveText;
pub use string_concatenate::StringConcatenate;

use kinograph_engine::Registry;

/// Registers the utility nodes.
pub fn register(registry: &mut Registry) {
    let nodes: [std::sync::Arc<dyn kinograph_engine::Node>; 9] = [
        std::sync::Arc::new(PrimitiveInt),
        std::sync::Arc::new(PrimitiveFloat),
        std::sync::Arc::new(PrimitiveString),
        std::sync::Arc::new(PrimitiveStringMultiline),
        std::sync::Arc::new(PrimitiveBoolean),
        std::sync::Arc::new(StringConcatenate),
        std::sync::Arc::new(PreviewAny),
        std::sync::Arc::new(SaveText),
        std::sync::Arc::new(Delay),
    ];
    for node in nodes {
        registry.register_arc(node).expect("built-in node names are unique");
    }
}
