//! Dynamic prompts, as ComfyUI's editor resolves them before queueing: C comments (`/* */`, `//` to the
//! end of the line) are removed, then each `{a|b|c}` group (nested groups allowed) is replaced by one of
//! its options, itself resolved the same way. A backslash escapes the next character, and both are kept,
//! as the editor does.
//!
//! The editor draws options with `Math.random()`; kinograph draws them from a seeded generator so a
//! conversion is reproducible: the same seed, node id, input name and text always give the same choice.

/// A small deterministic generator (splitmix64).
#[derive(Debug, Clone)]
pub struct Chooser {
    state: u64,
}

impl Chooser {
    /// A generator for one widget: `seed` mixed with the node id, the input name and the text, so a
    /// widget's choices change when it does, and not when another part of the workflow is edited.
    pub fn for_widget(seed: u64, node_id: &str, input: &str, text: &str) -> Self {
        let mut hasher = crate::content_hash::Hasher::new();
        hasher.update(&seed.to_le_bytes());
        for part in [node_id, input, text] {
            hasher.update(&(part.len() as u64).to_le_bytes());
            hasher.update(part.as_bytes());
        }
        let digest = hasher.finalize();
        let mut bytes = [0_u8; 8];
        bytes.copy_from_slice(&digest[..8]);
        Chooser { state: u64::from_le_bytes(bytes) }
    }

    fn next(&mut self) -> u64 {
        self.state = self.state.wrapping_add(0x9E37_79B9_7F4A_7C15);
        let mut z = self.state;
        z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
        z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
        z ^ (z >> 31)
    }

    /// An index in `0..count` (`count` > 0).
    fn pick(&mut self, count: usize) -> usize {
        (self.next() % count as u64) as usize
    }
}

/// Whether `text` has anything to resolve (a group or a comment).
pub fn has_dynamic_parts(text: &str) -> bool {
    text.contains('{') || text.contains("/*") || text.contains("//")
}

/// Resolves comments and `{a|b}` groups in `text`.
pub fn resolve(text: &str, chooser: &mut Chooser) -> String {
    resolve_depth(text, chooser, 0)
}

/// Deeper nesting than this is left as written: it would only come from a pathological prompt.
const MAX_DEPTH: usize = 64;

fn resolve_depth(text: &str, chooser: &mut Chooser, depth: usize) -> String {
    let chars: Vec<char> = strip_comments(text).chars().collect();
    if depth > MAX_DEPTH {
        return chars.into_iter().collect();
    }
    let mut out = String::with_capacity(chars.len());
    let mut i = 0;
    while i < chars.len() {
        let c = chars[i];
        i += 1;
        match c {
            '\\' => {
                out.push('\\');
                if let Some(&next) = chars.get(i) {
                    out.push(next);
                    i += 1;
                }
            }
            '{' => {
                let options = read_group(&chars, &mut i);
                let chosen = &options[chooser.pick(options.len())];
                out.push_str(&resolve_depth(chosen, chooser, depth + 1));
            }
            _ => out.push(c),
        }
    }
    out
}

/// Reads a group's options up to its closing brace (or the end of the text); `i` is just past `{`.
fn read_group(chars: &[char], i: &mut usize) -> Vec<String> {
    let mut options = Vec::new();
    let mut current = String::new();
    let mut depth = 0_usize;
    while *i < chars.len() {
        let c = chars[*i];
        *i += 1;
        match c {
            '\\' => {
                current.push('\\');
                if let Some(&next) = chars.get(*i) {
                    current.push(next);
                    *i += 1;
                }
                continue;
            }
            '{' => depth += 1,
            '}' if depth == 0 => break,
            '}' => depth -= 1,
            '|' if depth == 0 => {
                options.push(std::mem::take(&mut current));
                continue;
            }
            _ => {}
        }
        current.push(c);
    }
    options.push(current);
    options
}

/// Removes `/* ... */` (shortest match) and `// ...` up to the end of the line, like the editor's
/// regular expression; an unclosed `/*` stays as written.
pub fn strip_comments(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut rest = text;
    while let Some(position) = rest.find('/') {
        out.push_str(&rest[..position]);
        let tail = &rest[position..];
        if let Some(body) = tail.strip_prefix("/*")
            && let Some(end) = body.find("*/")
        {
            rest = &body[end + 2..];
        } else if tail.starts_with("//") {
            let end = tail.find(['\n', '\r', '\u{2028}', '\u{2029}']).unwrap_or(tail.len());
            rest = &tail[end..];
        } else {
            out.push('/');
            rest = &tail[1..];
        }
    }
    out.push_str(rest);
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chooser() -> Chooser {
        Chooser::for_widget(1, "6", "text", "")
    }

    #[test]
    fn comments_are_stripped() {
        let input = "/*\nStart\n*/Hello /* this is a comment */ world!\n// it\nEnd";
        assert_eq!(strip_comments(input), "Hello  world!\n\nEnd");
        assert_eq!(strip_comments("a /* open"), "a /* open");
    }

    #[test]
    fn groups_resolve_to_one_option_deterministically() {
        let resolved = resolve("a {red|green|blue} fox", &mut chooser());
        assert!(["a red fox", "a green fox", "a blue fox"].contains(&resolved.as_str()), "{resolved}");
        assert_eq!(resolved, resolve("a {red|green|blue} fox", &mut chooser()));
    }

    #[test]
    fn nested_groups_and_escapes() {
        for seed in 0..20 {
            let mut chooser = Chooser::for_widget(seed, "1", "text", "");
            let resolved = resolve("{x|{y|z}} \\{kept\\}", &mut chooser);
            assert!(["x \\{kept\\}", "y \\{kept\\}", "z \\{kept\\}"].contains(&resolved.as_str()), "{resolved}");
        }
        assert_eq!(resolve("{only}", &mut chooser()), "only");
        assert!(resolve("{a|}", &mut Chooser::for_widget(3, "1", "t", "")).len() <= 1);
    }

    #[test]
    fn every_option_is_reachable() {
        let mut seen = std::collections::HashSet::new();
        for seed in 0..64 {
            seen.insert(resolve("{a|b|c}", &mut Chooser::for_widget(seed, "1", "text", "")));
        }
        assert_eq!(seen.len(), 3);
    }
}
