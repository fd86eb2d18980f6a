//! ComfyUI's prompt-weighting syntax, as its `SDTokenizer` reads it before tokenizing (the T5-XXL path
//! that `CLIPLoader` type `ltxv` uses goes through it too):
//! - `(text)` multiplies the weight of `text` by 1.1, and nesting multiplies again;
//! - `(text:1.3)` sets it to 1.3 (the number after the last colon; if that is not a number, the colon
//!   and what follows stay in the text and the weight is ×1.1);
//! - `\(` and `\)` are literal parentheses;
//! - an unmatched `)` stays in the text, and an unclosed `(` leaves the rest as one segment that keeps
//!   its `(`.
//!
//! Each segment is tokenized on its own, which is why the result can differ from tokenizing the whole
//! prompt. Textual-inversion `embedding:` names are not interpreted. Numbers are read with Rust's float
//! parser after trimming spaces, which accepts what Python's `float` does except `_` digit separators.

/// A run of prompt text and its weight.
#[derive(Debug, Clone, PartialEq)]
pub struct WeightedText {
    pub text: String,
    pub weight: f64,
}

/// Splits `prompt` into weighted runs, in order. Runs with weight 1 are kept too.
pub fn parse_prompt_weights(prompt: &str) -> Vec<WeightedText> {
    // Escaped parentheses are hidden behind control characters while the brackets are matched.
    let escaped = prompt.replace("\\)", "\0\u{1}").replace("\\(", "\0\u{2}");
    let mut runs = Vec::new();
    weigh(&escaped, 1.0, &mut runs);
    for run in &mut runs {
        run.text = run.text.replace("\0\u{1}", ")").replace("\0\u{2}", "(");
    }
    runs
}

fn weigh(text: &str, weight: f64, runs: &mut Vec<WeightedText>) {
    for group in bracket_groups(text) {
        let inner = group.strip_prefix('(').and_then(|rest| rest.strip_suffix(')'));
        match inner {
            Some(inner) if group.chars().count() >= 2 => {
                let (inner, group_weight) = match inner.rfind(':') {
                    Some(colon) if colon > 0 => match inner[colon + 1..].trim().parse::<f64>() {
                        Ok(explicit) => (&inner[..colon], explicit),
                        Err(_) => (inner, weight * 1.1),
                    },
                    _ => (inner, weight * 1.1),
                };
                weigh(inner, group_weight, runs);
            }
            _ => runs.push(WeightedText { text: group.clone(), weight }),
        }
    }
}

/// Cuts `text` into top-level pieces: plain text, and bracketed groups `( … )` with their nesting.
fn bracket_groups(text: &str) -> Vec<String> {
    let mut groups = Vec::new();
    let mut current = String::new();
    let mut depth: i64 = 0;
    for character in text.chars() {
        match character {
            '(' => {
                if depth == 0 {
                    if !current.is_empty() {
                        groups.push(std::mem::take(&mut current));
                    }
                    current.push('(');
                } else {
                    current.push('(');
                }
                depth += 1;
            }
            ')' => {
                depth -= 1;
                current.push(')');
                if depth == 0 {
                    groups.push(std::mem::take(&mut current));
                }
            }
            other => current.push(other),
        }
    }
    if !current.is_empty() {
        groups.push(current);
    }
    groups
}

#[cfg(test)]
mod tests {
    use super::*;

    fn runs(prompt: &str) -> Vec<(String, f64)> {
        parse_prompt_weights(prompt).into_iter().map(|run| (run.text, (run.weight * 1e6).round() / 1e6)).collect()
    }

    fn run(text: &str, weight: f64) -> (String, f64) {
        (text.to_string(), weight)
    }

    #[test]
    fn plain_text_is_one_run() {
        assert_eq!(runs("a cat at night"), [run("a cat at night", 1.0)]);
        assert!(runs("").is_empty());
    }

    #[test]
    fn parentheses_multiply_and_numbers_set() {
        assert_eq!(runs("a (red) cat"), [run("a ", 1.0), run("red", 1.1), run(" cat", 1.0)]);
        assert_eq!(runs("((red))"), [run("red", 1.21)]);
        assert_eq!(runs("a (red cat:1.5) b"), [run("a ", 1.0), run("red cat", 1.5), run(" b", 1.0)]);
        assert_eq!(runs("(a (b:0.5) c:1.2)"), [run("a ", 1.2), run("b", 0.5), run(" c", 1.2)]);
        assert_eq!(runs("(time: 12:30)"), [run("time: 12", 30.0)], "the number after the last colon");
        assert_eq!(runs("(time: 12:30am)"), [run("time: 12:30am", 1.1)], "not a number after the last colon");
        assert_eq!(runs("(x: 2 )"), [run("x", 2.0)]);
        assert_eq!(runs("(:2)"), [run(":2", 1.1)], "a colon at the start is text");
    }

    #[test]
    fn escapes_and_unbalanced_brackets_stay_text() {
        assert_eq!(runs(r"a \(b\) c"), [run("a (b) c", 1.0)]);
        assert_eq!(runs("a) b"), [run("a) b", 1.0)]);
        assert_eq!(runs("a (b"), [run("a ", 1.0), run("(b", 1.0)]);
        assert!(runs("()").is_empty());
    }
}
