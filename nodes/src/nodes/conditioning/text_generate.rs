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
//! Image-aware prompting (an `image` or `video` input) needs Gemma 3's vision tower and projector,
//! which kinograph does not implement yet: connecting either is an error that says so.

use crate::values::{GemmaText, TextEncoder};
use kinograph_engine::prelude::*;
use kinograph_models::gemma3::{GenerateOptions, SamplingOptions, Stop, generate};
use std::ops::ControlFlow;

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
            .input(InputSpec::socket("image", "IMAGE").optional())
            .input(InputSpec::socket("video", "IMAGE").optional().tooltip("Video frames as an image batch (24 fps)."))
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
        for visual in ["image", "video"] {
            if inputs.get(visual).is_some() {
                return Err(NodeError::input(
                    visual,
                    "image-aware prompting needs Gemma 3's vision tower, which is not supported yet; disconnect \
                     it to write the prompt from the text alone",
                ));
            }
        }
        if inputs.get("audio").is_some() {
            context.warn("Gemma 3 takes no audio; the audio input is ignored, as ComfyUI ignores it");
        }
        let system = inputs.optional_string("system_prompt")?.map(python_strip).unwrap_or_default();
        let system = if system.is_empty() { LTX2_T2V_SYSTEM_PROMPT } else { system };
        let chat = ltx2_chat(system, prompt);
        let ids = comfy_prompt_ids(&gemma, &chat)?;
        let max_length = usize::try_from(inputs.int("max_length")?)
            .map_err(|_| NodeError::input("max_length", "must be at least 1"))?;
        let end_of_turn = gemma.tokenizer.token_id(END_OF_TURN);
        let options = GenerateOptions {
            max_new_tokens: max_length,
            stop_tokens: [Some(gemma.tokenizer.eos_id()), end_of_turn].into_iter().flatten().collect(),
            sampling: sampling_options(inputs)?,
        };
        let generation = generate(&gemma.model, &ids, &options, |step, _| {
            let done = step as u64 + 1;
            if context.progress(done, max_length as u64).is_err() {
                ControlFlow::Break(())
            } else {
                ControlFlow::Continue(())
            }
        })
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

/// The Gemma 3 chat `TextGenerateLTX2Prompt` writes (without an image).
pub fn ltx2_chat(system: &str, prompt: &str) -> String {
    format!(
        "<start_of_turn>system\n{system}<end_of_turn>\n<start_of_turn>user\n\nUser Raw Input Prompt: \
         {prompt}.<end_of_turn>\n<start_of_turn>model\n"
    )
}

/// The ids ComfyUI's Gemma 3 tokenizer gives for `text` (see the module docs).
fn comfy_prompt_ids(gemma: &GemmaText, text: &str) -> Result<Vec<u32>, NodeError> {
    let tokenizer = &gemma.tokenizer;
    let text = text.replace("\\)", "\0\u{1}").replace("\\(", "\0\u{2}").replace("\0\u{1}", ")").replace("\0\u{2}", "(");
    let encode = |part: &str| tokenizer.encode(part).map_err(|e| NodeError::input("prompt", e));
    let vocab = gemma.model.config().vocab_size;
    let special_id = |special: &str| -> Result<u32, NodeError> {
        let id = if special == END_OF_TURN { tokenizer.token_id(END_OF_TURN) } else { Some(IMAGE_SOFT_TOKEN_ID) };
        id.filter(|&id| (id as usize) < vocab).ok_or_else(|| {
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
    if let Some(&id) = prompt.iter().find(|&&id| id as usize >= vocab) {
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
            ltx2_chat("Be brief.", "a cat"),
            "<start_of_turn>system\nBe brief.<end_of_turn>\n<start_of_turn>user\n\nUser Raw Input Prompt: a cat.\
             <end_of_turn>\n<start_of_turn>model\n"
        );
        assert!(LTX2_T2V_SYSTEM_PROMPT.starts_with("You are a Creative Assistant. Given a user's raw input prompt"));
        assert!(LTX2_T2V_SYSTEM_PROMPT.ends_with("she concludes cheerfully, lowering the phone."));
        assert_eq!(LTX2_T2V_SYSTEM_PROMPT.chars().count(), 4174);
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
