//! `TextGenerateLTX2Prompt` ("Generate LTX2 Prompt", ComfyUI's `comfy_extras/nodes_textgen.py`): LTX-2's
//! prompt enhancer. The user's prompt goes into a Gemma 3 chat with LTX-2's text-to-video system prompt, and
//! Gemma 3 (the LTX-2 text encoder) writes the detailed prompt, greedy or sampled
//! ([`kinograph_models::gemma3::generate`]).
//!
//! The inputs are those of ComfyUI's `TextGenerate`, whose `sampling_mode` is a dynamic combo: its "on"
//! settings arrive as `sampling_mode.temperature` and so on, declared here as optional and required by
//! `execute` when sampling is on. The `mtp` combo of newer ComfyUI versions (speculative decoding with a
//! multi-token-prediction head, which Gemma 3 has not) is not declared, so that the widget values of the
//! LTX-2.3 templates map without a mismatch; an API prompt that sets it still runs.
//!
//! The chat is tokenised as ComfyUI's Gemma 3 tokenizer does it (`Gemma3_12BTokenizer` through
//! `SDTokenizer`): `\(` and `\)` lose their backslash; the text is cut at `<end_of_turn>` and
//! `<image_soft_token>`, each piece encoded without `<bos>`; then the first id is dropped as if it were
//! `<bos>` and `<bos>` is put first. As the chat starts with `<start_of_turn>`, ComfyUI's model never sees that
//! first `<start_of_turn>`; it is dropped here too, so that the same weights write the same text.
//!
//! An `image` makes it image-to-video prompting, as ComfyUI does it: LTX-2's image-to-video system prompt
//! (unless one is given), `\n<image_soft_token>\n` at the start of the user turn, and Gemma 3's vision tower
//! ([`kinograph_models::gemma3::vision`], read from the same Gemma file when first needed) turning the image
//! (every frame of a batch, in order, each `mm_tokens_per_image` embeddings) into embeddings that take the
//! placeholder's place ([`kinograph_models::gemma3::prompt`]), attended causally as ComfyUI attends them. A
//! Gemma file with the text model only is an error that names it. ComfyUI's Gemma 3 tokenizer ignores `video`
//! and `audio`; so does this node, with a warning.

use crate::nodes::loaders::compute_device;
use crate::nodes::loaders::loaded_models::load_shared;
use crate::values::{GemmaText, Image, TextEncoder};
use kinograph_engine::prelude::*;
use kinograph_models::gemma3::image::comfy_pixel_values;
use kinograph_models::gemma3::{
    Gemma3Vision, GenerateOptions, ImageAttention, PromptEmbeddings, SamplingOptions, Stop, generate,
    generate_from_embeddings,
};
use kinograph_models::weights::WeightSource;
use std::ops::ControlFlow;
use std::sync::Arc;

/// ComfyUI's `LTX2_T2V_SYSTEM_PROMPT`, stripped as the node strips it.
pub const LTX2_T2V_SYSTEM_PROMPT: &str = r#"You are a Creative Assistant. Given a user's raw input prompt describing a scene or concept, expand it into a detailed video generation prompt with specific visuals and integrated audio to guide a text-to-video model.
#### Guidelines
- Strictly follow all aspects of the user's raw input: include every element requested (style, visuals, motions, actions, camera movement, audio).
    - If the input is vague, invent concrete details: lighting, textures, materials, scene settings, etc.
        - For characters: describe gender, clothing, hair, expressions. DO NOT invent unrequested characters.
- Use active language: present-progressive verbs ("is walking," "speaking"). If no action specified, describe natural movements.
- Maintain chronological flow: use temporal connectors ("as," "then," "while").
- Audio layer: Describe complete soundscape (background audio, ambient sounds, SFX, speech/music when requested). Integrate sounds chronologically alongside actions. Be specific (e.g., "soft footsteps on tile"), not vague (e.g., "ambient sound is present").
- Speech (only when requested):
    - For ANY speech-related input (talking, conversation, singing, etc.), ALWAYS include exact words in quotes with voice characteristics (e.g., "The man says in an excited voice: 'You won't believe what I just saw!'").
    - Specify language if not English and accent if relevant.
- Style: Include visual style at the beginning: "Style: <style>, <rest of prompt>." Default to cinematic-realistic if unspecified. Omit if unclear.
- Visual and audio only: NO non-visual/auditory senses (smell, taste, touch).
- Restrained language: Avoid dramatic/exaggerated terms. Use mild, natural phrasing.
    - Colors: Use plain terms ("red dress"), not intensified ("vibrant blue," "bright red").
    - Lighting: Use neutral descriptions ("soft overhead light"), not harsh ("blinding light").
    - Facial features: Use delicate modifiers for subtle features (i.e., "subtle freckles").

#### Important notes:
- Analyze the user's raw input carefully. In cases of FPV or POV, exclude the description of the subject whose POV is requested.
- Camera motion: DO NOT invent camera motion unless requested by the user.
- Speech: DO NOT modify user-provided character dialogue unless it's a typo.
- No timestamps or cuts: DO NOT use timestamps or describe scene cuts unless explicitly requested.
- Format: DO NOT use phrases like "The scene opens with...". Start directly with Style (optional) and chronological scene description.
- Format: DO NOT start your response with special characters.
- DO NOT invent dialogue unless the user mentions speech/talking/singing/conversation.
- If the user's raw input prompt is highly detailed, chronological and in the requested format: DO NOT make major edits or introduce new elements. Add/enhance audio descriptions if missing.

#### Output Format (Strict):
- Single continuous paragraph in natural language (English).
- NO titles, headings, prefaces, code fences, or Markdown.
- If unsafe/invalid, return original user prompt. Never ask questions or clarifications.

Your output quality is CRITICAL. Generate visually rich, dynamic prompts with integrated audio for high-quality video generation.

#### Example
Input: "A woman at a coffee shop talking on the phone"
Output:
Style: realistic with cinematic lighting. In a medium close-up, a woman in her early 30s with shoulder-length brown hair sits at a small wooden table by the window. She wears a cream-colored turtleneck sweater, holding a white ceramic coffee cup in one hand and a smartphone to her ear with the other. Ambient cafe sounds fill the space—espresso machine hiss, quiet conversations, gentle clinking of cups. The woman listens intently, nodding slightly, then takes a sip of her coffee and sets it down with a soft clink. Her face brightens into a warm smile as she speaks in a clear, friendly voice, 'That sounds perfect! I'd love to meet up this weekend. How about Saturday afternoon?' She laughs softly—a genuine chuckle—and shifts in her chair. Behind her, other patrons move subtly in and out of focus. 'Great, I'll see you then,' she concludes cheerfully, lowering the phone."#;

/// ComfyUI's `LTX2_I2V_SYSTEM_PROMPT`, stripped as the node strips it: the system prompt with an image.
pub const LTX2_I2V_SYSTEM_PROMPT: &str = r#"You are a Creative Assistant. Given a user's raw input prompt describing a scene or concept, expand it into a detailed video generation prompt with specific visuals and integrated audio to guide a text-to-video model.
You are a Creative Assistant writing concise, action-focused image-to-video prompts. Given an image (first frame) and user Raw Input Prompt, generate a prompt to guide video generation from that image.

#### Guidelines:
- Analyze the Image: Identify Subject, Setting, Elements, Style and Mood.
- Follow user Raw Input Prompt: Include all requested motion, actions, camera movements, audio, and details. If in conflict with the image, prioritize user request while maintaining visual consistency (describe transition from image to user's scene).
- Describe only changes from the image: Don't reiterate established visual details. Inaccurate descriptions may cause scene cuts.
- Active language: Use present-progressive verbs ("is walking," "speaking"). If no action specified, describe natural movements.
- Chronological flow: Use temporal connectors ("as," "then," "while").
- Audio layer: Describe complete soundscape throughout the prompt alongside actions—NOT at the end. Align audio intensity with action tempo. Include natural background audio, ambient sounds, effects, speech or music (when requested). Be specific (e.g., "soft footsteps on tile") not vague (e.g., "ambient sound").
- Speech (only when requested): Provide exact words in quotes with character's visual/voice characteristics (e.g., "The tall man speaks in a low, gravelly voice"), language if not English and accent if relevant. If general conversation mentioned without text, generate contextual quoted dialogue. (i.e., "The man is talking" input -> the output should include exact spoken words, like: "The man is talking in an excited voice saying: 'You won't believe what I just saw!' His hands gesture expressively as he speaks, eyebrows raised with enthusiasm. The ambient sound of a quiet room underscores his animated speech.")
- Style: Include visual style at beginning: "Style: <style>, <rest of prompt>." If unclear, omit to avoid conflicts.
- Visual and audio only: Describe only what is seen and heard. NO smell, taste, or tactile sensations.
- Restrained language: Avoid dramatic terms. Use mild, natural, understated phrasing.

#### Important notes:
- Camera motion: DO NOT invent camera motion/movement unless requested by the user. Make sure to include camera motion only if specified in the input.
- Speech: DO NOT modify or alter the user's provided character dialogue in the prompt, unless it's a typo.
- No timestamps or cuts: DO NOT use timestamps or describe scene cuts unless explicitly requested.
- Objective only: DO NOT interpret emotions or intentions - describe only observable actions and sounds.
- Format: DO NOT use phrases like "The scene opens with..." / "The video starts...". Start directly with Style (optional) and chronological scene description.
- Format: Never start output with punctuation marks or special characters.
- DO NOT invent dialogue unless the user mentions speech/talking/singing/conversation.
- Your performance is CRITICAL. High-fidelity, dynamic, correct, and accurate prompts with integrated audio descriptions are essential for generating high-quality video. Your goal is flawless execution of these rules.

#### Output Format (Strict):
- Single concise paragraph in natural English. NO titles, headings, prefaces, sections, code fences, or Markdown.
- If unsafe/invalid, return original user prompt. Never ask questions or clarifications.

#### Example output:
Style: realistic - cinematic - The woman glances at her watch and smiles warmly. She speaks in a cheerful, friendly voice, "I think we're right on time!" In the background, a café barista prepares drinks at the counter. The barista calls out in a clear, upbeat tone, "Two cappuccinos ready!" The sound of the espresso machine hissing softly blends with gentle background chatter and the light clinking of cups on saucers."#;

/// The token ComfyUI's Gemma 3 tokenizer puts where an image's embeddings go.
const IMAGE_SOFT_TOKEN: &str = "<image_soft_token>";
const IMAGE_SOFT_TOKEN_ID: u32 = 262_144;
const END_OF_TURN: &str = "<end_of_turn>";

/// `TextGenerateLTX2Prompt`.
pub struct TextGenerateLtx2Prompt;

impl Node for TextGenerateLtx2Prompt {
    fn schema(&self, _: &Environment) -> NodeSchema {
        let sampling = |name: &str| format!("sampling_mode.{name}");
        NodeSchema::new("TextGenerateLTX2Prompt")
            .display_name("Generate LTX2 Prompt")
            .category("text")
            .description("Expands a short prompt into a detailed LTX-2 video prompt with Gemma 3.")
            .input(InputSpec::socket("clip", "CLIP").tooltip("LTX-2's Gemma 3 text encoder."))
            .input(InputSpec::multiline("prompt", "").dynamic_prompts())
            .input(InputSpec::socket("image", "IMAGE").optional().tooltip("The first frame: the prompt describes it."))
            .input(
                InputSpec::socket("video", "IMAGE")
                    .optional()
                    .tooltip("Video frames as an image batch (24 fps); Gemma 3 ignores them, as in ComfyUI."),
            )
            .input(InputSpec::socket("audio", "AUDIO").optional())
            .input(InputSpec::int("max_length", 512).min(1).max(32768).tooltip("The most tokens to generate."))
            .input(
                InputSpec::dynamic_combo(
                    "sampling_mode",
                    [
                        (
                            "on",
                            &[
                                "temperature",
                                "top_k",
                                "top_p",
                                "min_p",
                                "repetition_penalty",
                                "seed",
                                "presence_penalty",
                            ][..],
                        ),
                        ("off", &[][..]),
                    ],
                )
                .tooltip("'off' takes the most likely token."),
            )
            .input(InputSpec::float(&sampling("temperature"), 0.7).min(0.01).max(2.0).step(0.000_001).optional())
            .input(InputSpec::int(&sampling("top_k"), 64).min(0).max(1000).optional())
            .input(InputSpec::float(&sampling("top_p"), 0.95).min(0.0).max(1.0).step(0.01).optional())
            .input(InputSpec::float(&sampling("min_p"), 0.05).min(0.0).max(1.0).step(0.01).optional())
            .input(InputSpec::float(&sampling("repetition_penalty"), 1.05).min(0.0).max(5.0).step(0.01).optional())
            .input(InputSpec::int(&sampling("seed"), 0).min(0).max(u64::MAX).optional())
            .input(InputSpec::float(&sampling("presence_penalty"), 0.0).min(0.0).max(5.0).step(0.01).optional())
            .input(InputSpec::boolean("thinking", false).optional().tooltip("Thinking mode; Gemma 3 has none."))
            .input(
                InputSpec::boolean("use_default_template", true)
                    .optional()
                    .tooltip("The chat template; this node always writes its own."),
            )
            .input(
                InputSpec::string("system_prompt", "")
                    .force_input()
                    .optional()
                    .tooltip("Replaces LTX-2's system prompt when not empty."),
            )
            .output("STRING", "generated_text")
            .output("STRING", "thinking")
    }

    fn execute(&self, inputs: &NodeInputs, context: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let gemma = inputs.object::<TextEncoder>("clip")?.gemma()?.clone();
        let prompt = inputs.string("prompt")?;
        let image = inputs.optional_object::<Image>("image")?;
        for ignored in ["video", "audio"] {
            if inputs.get(ignored).is_some() {
                context.warn(&format!(
                    "Gemma 3 takes no {ignored}; the {ignored} input is ignored, as ComfyUI ignores it"
                ));
            }
        }
        let system = inputs.optional_string("system_prompt")?.map(python_strip).unwrap_or_default();
        let default_system = if image.is_some() { LTX2_I2V_SYSTEM_PROMPT } else { LTX2_T2V_SYSTEM_PROMPT };
        let system = if system.is_empty() { default_system } else { system };
        let chat = ltx2_chat(system, prompt, image.is_some());
        let ids = comfy_prompt_ids(&gemma, &chat)?;
        let prompt_embeddings = match &image {
            Some(image) => Some(image_prompt(&gemma, &ids, image)?),
            None => None,
        };
        let max_length = usize::try_from(inputs.int("max_length")?)
            .map_err(|_| NodeError::input("max_length", "must be at least 1"))?;
        let end_of_turn = gemma.tokenizer.token_id(END_OF_TURN);
        let options = GenerateOptions {
            max_new_tokens: max_length,
            stop_tokens: [Some(gemma.tokenizer.eos_id()), end_of_turn].into_iter().flatten().collect(),
            sampling: sampling_options(inputs)?,
        };
        let on_token = |step: usize, _| {
            let done = step as u64 + 1;
            if context.progress(done, max_length as u64).is_err() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        };
        let generation = match &prompt_embeddings {
            Some(prompt) => generate_from_embeddings(&gemma.model, prompt, &options, on_token),
            None => generate(&gemma.model, &ids, &options, on_token),
        }
        .map_err(|e| NodeError::msg(format!("Gemma 3 generation failed: {e}")))?;
        if generation.stop == Stop::Cancelled {
            context.check_interrupted()?;
        }
        let kept: Vec<u32> =
            generation.tokens.into_iter().filter(|&id| Some(id) != end_of_turn && id != IMAGE_SOFT_TOKEN_ID).collect();
        let text =
            gemma.tokenizer.decode(&kept).map_err(|e| NodeError::msg(format!("decoding Gemma's tokens: {e}")))?;
        let (text, thinking) = split_thinking(&text);
        let text = if text.is_empty() { prompt.to_string() } else { text };
        Ok(NodeOutput::new(vec![Value::from(text), Value::from(thinking)]))
    }
}

/// The Gemma 3 chat `TextGenerateLTX2Prompt` writes; with an image, its placeholder opens the user turn.
pub fn ltx2_chat(system: &str, prompt: &str, with_image: bool) -> String {
    let media = if with_image { "\n<image_soft_token>\n" } else { "" };
    format!(
        "<start_of_turn>system\n{system}<end_of_turn>\n<start_of_turn>user\n{media}\nUser Raw Input Prompt: \
         {prompt}.<end_of_turn>\n<start_of_turn>model\n"
    )
}

/// The prompt's embeddings with `image` (every frame) in place of its placeholder: the vision tower of the
/// Gemma file, loaded once and shared, on ComfyUI's preprocessing of the frames.
fn image_prompt(gemma: &GemmaText, ids: &[u32], image: &Image) -> Result<PromptEmbeddings, NodeError> {
    let file = &gemma.gemma_file;
    let vision = load_shared("gemma3-vision", file, || {
        let source = Arc::new(
            WeightSource::open(std::slice::from_ref(file))
                .map_err(|e| NodeError::input("clip", format!("cannot read {}: {e}", file.display())))?,
        );
        if kinograph_models::gemma3::is_gemma3_gguf(&source) {
            return Err(NodeError::input(
                "image",
                format!(
                    "{} is a llama.cpp GGUF of Gemma 3, which holds only the text model: its vision tower is in a \
                     separate mmproj file, which kinograph does not read; load the safetensors Gemma \
                     (gemma_3_12B_it*.safetensors) for prompts with an image",
                    file.display()
                ),
            ));
        }
        Gemma3Vision::load(&source, gemma.model.config(), &compute_device())
            .map_err(|e| NodeError::input("image", format!("cannot use the image: {e}")))
    })?;
    let fail = |e: candle_core::Error| NodeError::input("image", format!("encoding the image for Gemma 3: {e}"));
    let pixels = comfy_pixel_values(&image.pixels, vision.config().image_size).map_err(fail)?;
    let pixels = pixels.to_device(gemma.model.device()).map_err(fail)?;
    let embeddings = vision.encode(&pixels).map_err(fail)?;
    PromptEmbeddings::new(&gemma.model, ids, IMAGE_SOFT_TOKEN_ID, &[embeddings], ImageAttention::Causal)
        .map_err(|e| NodeError::msg(format!("the prompt with the image: {e}")))
}

/// The ids ComfyUI's Gemma 3 tokenizer gives for `text` (see the module docs).
fn comfy_prompt_ids(gemma: &GemmaText, text: &str) -> Result<Vec<u32>, NodeError> {
    let tokenizer = &gemma.tokenizer;
    let text = text.replace("\\)", "\0\u{1}").replace("\\(", "\0\u{2}").replace("\0\u{1}", ")").replace("\0\u{2}", "(");
    let encode = |part: &str| tokenizer.encode(part).map_err(|e| NodeError::input("prompt", e));
    let vocab = gemma.model.config().vocab_size;
    let special_id = |special: &str| -> Result<u32, NodeError> {
        if special == IMAGE_SOFT_TOKEN {
            // Replaced by an image's embeddings; a placeholder left without one is checked when embedded.
            return Ok(IMAGE_SOFT_TOKEN_ID);
        }
        tokenizer.token_id(END_OF_TURN).filter(|&id| (id as usize) < vocab).ok_or_else(|| {
            NodeError::input("prompt", format!("this Gemma model has no {special} token, which the text contains"))
        })
    };
    let mut ids = Vec::new();
    let mut rest = text.as_str();
    let mut found_special = false;
    while let Some((at, special)) =
        [END_OF_TURN, IMAGE_SOFT_TOKEN].iter().filter_map(|s| rest.find(s).map(|at| (at, *s))).min()
    {
        found_special = true;
        ids.extend(encode(&rest[..at])?);
        ids.push(special_id(special)?);
        rest = &rest[at + special.len()..];
    }
    ids.extend(encode(rest)?);
    if !found_special {
        ids.insert(0, tokenizer.bos_id());
    }
    let mut prompt = vec![tokenizer.bos_id()];
    prompt.extend(ids.into_iter().skip(1));
    if let Some(&id) = prompt.iter().find(|&&id| id as usize >= vocab && id != IMAGE_SOFT_TOKEN_ID) {
        return Err(NodeError::input(
            "clip",
            format!(
                "the tokenizer gives id {id}, outside the model's vocabulary of {vocab}: tokenizer and model differ"
            ),
        ));
    }
    Ok(prompt)
}

/// `None` for sampling mode "off"; the "on" settings otherwise, each required.
fn sampling_options(inputs: &NodeInputs) -> Result<Option<SamplingOptions>, NodeError> {
    match inputs.string("sampling_mode")? {
        "off" => return Ok(None),
        "on" => {}
        other => return Err(NodeError::input("sampling_mode", format!("'{other}' is not 'on' or 'off'"))),
    }
    let float = |name: &str| inputs.float(&format!("sampling_mode.{name}"));
    let count = |name: &str| -> Result<u64, NodeError> {
        let name = format!("sampling_mode.{name}");
        let value = inputs.int_wide(&name)?;
        u64::try_from(value).map_err(|_| NodeError::input(&name, format!("{value} is below 0")))
    };
    Ok(Some(SamplingOptions {
        temperature: float("temperature")?,
        top_k: count("top_k")? as usize,
        top_p: float("top_p")?,
        min_p: float("min_p")?,
        repetition_penalty: float("repetition_penalty")?,
        presence_penalty: inputs.optional_float("sampling_mode.presence_penalty")?.unwrap_or(0.0),
        seed: count("seed")?,
    }))
}

/// ComfyUI's split of the generated text at `</think>`: (the answer, the reasoning), both stripped. Text with
/// neither an opening `<think>` nor a closing `</think>` is all answer.
fn split_thinking(generated: &str) -> (String, String) {
    let (reasoning, text) = match generated.split_once("</think>") {
        Some((reasoning, text)) => (reasoning, text),
        None if python_strip(generated).starts_with("<think>") => (generated, ""),
        None => ("", generated),
    };
    (python_strip(text).to_string(), python_strip(&reasoning.replacen("<think>", "", 1)).to_string())
}

/// `str.strip()`: Unicode white space and the separators U+001C to U+001F.
fn python_strip(text: &str) -> &str {
    text.trim_matches(|c: char| c.is_whitespace() || ('\u{1c}'..='\u{1f}').contains(&c))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_chat_and_the_system_prompt_are_comfyuis() {
        assert_eq!(
            ltx2_chat("Be brief.", "a cat", false),
            "<start_of_turn>system\nBe brief.<end_of_turn>\n<start_of_turn>user\n\nUser Raw Input Prompt: a cat.\
             <end_of_turn>\n<start_of_turn>model\n"
        );
        assert!(LTX2_T2V_SYSTEM_PROMPT.starts_with("You are a Creative Assistant. Given a user's raw input prompt"));
        assert!(LTX2_T2V_SYSTEM_PROMPT.ends_with("she concludes cheerfully, lowering the phone."));
        assert_eq!(LTX2_T2V_SYSTEM_PROMPT.chars().count(), 4174);
        assert_eq!(
            ltx2_chat("Be brief.", "a cat", true),
            "<start_of_turn>system\nBe brief.<end_of_turn>\n<start_of_turn>user\n\n<image_soft_token>\n\nUser Raw \
             Input Prompt: a cat.<end_of_turn>\n<start_of_turn>model\n"
        );
        assert!(LTX2_I2V_SYSTEM_PROMPT.starts_with("You are a Creative Assistant. Given a user's raw input prompt"));
        assert!(LTX2_I2V_SYSTEM_PROMPT.contains("\nYou are a Creative Assistant writing concise, action-focused"));
        assert!(LTX2_I2V_SYSTEM_PROMPT.ends_with("the light clinking of cups on saucers."));
    }

    #[test]
    fn thinking_is_split_off_as_comfyui_splits_it() {
        let split = |text: &str| split_thinking(text);
        assert_eq!(split(" plain answer \n"), ("plain answer".into(), String::new()));
        assert_eq!(split("<think> plan </think> answer"), ("answer".into(), "plan".into()));
        assert_eq!(split("plan</think>answer"), ("answer".into(), "plan".into()));
        assert_eq!(split("  <think>cut short"), (String::new(), "cut short".into()));
    }
}
