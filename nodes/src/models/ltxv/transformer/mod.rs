//! The LTX-Video transformer (`LTXVideoTransformer3DModel` in diffusers, `LTXVModel` in ComfyUI).
