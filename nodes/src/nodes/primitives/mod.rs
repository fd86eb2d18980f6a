//! Small utility nodes that need no models: primitives, strings, previews, text output.

mod delay;
mod expression;
mod expression_eval;
mod math_expression;
mod preview_any;
mod primitive_values;
mod resolution_selector;
mod save_text;
mod string_concatenate;
mod switch;

pub use delay::Delay;
pub use preview_any::PreviewAny;
pub use primitive_values::{PrimitiveBoolean, PrimitiveFloat, PrimitiveInt, PrimitiveString, PrimitiveStringMultiline};
pub use save_text::SaveText;
pub use string_concatenate::StringConcatenate;
pub use switch::ComfySwitchNode;

use kinograph_engine::Node;
use std::sync::Arc;

/// The primitive and utility nodes, to register with `Registry::register_all`.
pub fn nodes() -> Vec<Arc<dyn Node>> {
    vec![
        Arc::new(PrimitiveInt),
        Arc::new(PrimitiveFloat),
        Arc::new(PrimitiveString),
        Arc::new(PrimitiveStringMultiline),
        Arc::new(PrimitiveBoolean),
        Arc::new(StringConcatenate),
        Arc::new(PreviewAny),
        Arc::new(SaveText),
        Arc::new(Delay),
        Arc::new(ComfySwitchNode),
        Arc::new(math_expression::ComfyMathExpression),
        Arc::new(resolution_selector::ResolutionSelector),
    ]
}
