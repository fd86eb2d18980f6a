//! Colours of sockets and links by type, and of node states.

use eframe::egui::Color32;

/// The colour of a socket or link carrying `type_name`, close to ComfyUI's so that graphs look familiar;
/// unknown types get a stable colour from their name.
pub fn type_color(type_name: &str) -> Color32 {
    match type_name {
        "MODEL" => Color32::from_rgb(0xb3, 0x9d, 0xdb),
        "CLIP" => Color32::from_rgb(0xff, 0xd5, 0x00),
        "VAE" => Color32::from_rgb(0xff, 0x6e, 0x6e),
        "LATENT" => Color32::from_rgb(0xff, 0x9c, 0xf9),
        "CONDITIONING" => Color32::from_rgb(0xff, 0xa9, 0x31),
        "IMAGE" => Color32::from_rgb(0x64, 0xb5, 0xf6),
        "MASK" => Color32::from_rgb(0x81, 0xc7, 0x84),
        "SAMPLER" => Color32::from_rgb(0xec, 0xb4, 0xb4),
        "SIGMAS" => Color32::from_rgb(0xcd, 0xff, 0xcd),
        "NOISE" => Color32::from_rgb(0xb0, 0xb0, 0xb0),
        "GUIDER" => Color32::from_rgb(0x66, 0xff, 0xff),
        "VIDEO" => Color32::from_rgb(0x88, 0xdd, 0xaa),
        "INT" | "FLOAT" | "STRING" | "BOOLEAN" | "COMBO" => Color32::from_rgb(0xa0, 0xc0, 0xa0),
        "*" => Color32::from_gray(0xdd),
        other => {
            let hash =
                other.bytes().fold(0x811c_9dc5_u32, |hash, byte| (hash ^ u32::from(byte)).wrapping_mul(0x0100_0193));
            let [r, g, b, _] = hash.to_le_bytes();
            Color32::from_rgb(r / 2 + 0x60, g / 2 + 0x60, b / 2 + 0x60)
        }
    }
}

/// Title bar colour of a normal node.
pub const TITLE: Color32 = Color32::from_rgb(0x35, 0x35, 0x35);
/// Body colour of a normal node.
pub const BODY: Color32 = Color32::from_rgb(0x2a, 0x2a, 0x2a);
/// Tint of a bypassed node.
pub const BYPASSED: Color32 = Color32::from_rgb(0x6a, 0x2a, 0x6a);
/// Tint of a muted node.
pub const MUTED: Color32 = Color32::from_rgb(0x20, 0x20, 0x20);
/// Outline of a selected node.
pub const SELECTED: Color32 = Color32::WHITE;
/// Outline of a node the last check found fault with.
pub const ERROR: Color32 = Color32::from_rgb(0xff, 0x40, 0x40);
/// Outline and progress of a running node.
pub const RUNNING: Color32 = Color32::from_rgb(0x40, 0xd0, 0x60);
/// A note's body.
pub const NOTE: Color32 = Color32::from_rgb(0x43, 0x3f, 0x2a);
