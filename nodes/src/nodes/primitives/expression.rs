//! The expression language of `ComfyMathExpression`: the subset of Python that ComfyUI's `simpleeval` accepts
//! for numbers, parsed here into a small tree ([`evaluate`](super::expression_eval) computes it).
//!
//! Grammar, loosest binding first, as in Python: `x if c else y`; `or`; `and`; `not`; chained comparisons
//! (`< <= > >= == != in`, `not in`); `|`; `^`; `&`; `<< >>`; `+ -`; `* / // %`; unary `- + ~`; `**` (right
//! associative, binding tighter than a unary minus on its left); calls `f(x, y)`, subscripts `values[i]`,
//! parentheses, names, `True`/`False` and Python's number literals. Strings, lists, attributes, lambdas and
//! assignments are refused with an error, as simpleeval refuses most of them.

use std::fmt;

/// A number, with Python's three numeric types (a bool is an int in arithmetic).
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum Number {
    Bool(bool),
    Int(i128),
    Float(f64),
}

/// A binary arithmetic or bitwise operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BinaryOp {
    Add,
    Sub,
    Mul,
    Div,
    FloorDiv,
    Mod,
    Pow,
    LeftShift,
    RightShift,
    BitAnd,
    BitOr,
    BitXor,
}

/// A comparison operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum CompareOp {
    Less,
    LessEqual,
    Greater,
    GreaterEqual,
    Equal,
    NotEqual,
    In,
    NotIn,
}

/// A unary operator.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum UnaryOp {
    Negate,
    Plus,
    Invert,
    Not,
}

/// A parsed expression.
#[derive(Debug, Clone, PartialEq)]
pub enum Expr {
    Number(Number),
    Name(String),
    Unary(UnaryOp, Box<Expr>),
    Binary(BinaryOp, Box<Expr>, Box<Expr>),
    Compare(Box<Expr>, Vec<(CompareOp, Expr)>),
    And(Vec<Expr>),
    Or(Vec<Expr>),
    IfElse { condition: Box<Expr>, then: Box<Expr>, otherwise: Box<Expr> },
    Call(String, Vec<Expr>),
    Index(Box<Expr>, Box<Expr>),
}

/// Why an expression could not be parsed.
#[derive(Debug, Clone, PartialEq)]
pub struct SyntaxError {
    /// Character position (0-based) in the expression.
    pub position: usize,
    pub message: String,
}

impl fmt::Display for SyntaxError {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "syntax error at character {}: {}", self.position + 1, self.message)
    }
}

#[derive(Debug, Clone, PartialEq)]
enum Token {
    Number(Number),
    Name(String),
    Symbol(&'static str),
    End,
}

const SYMBOLS: [&str; 25] = [
    "**", "//", "<<", ">>", "<=", ">=", "==", "!=", "+", "-", "*", "/", "%", "&", "|", "^", "~", "<", ">", "(", ")",
    ",", "[", "]", ":",
];

fn tokenize(text: &str) -> Result<Vec<(Token, usize)>, SyntaxError> {
    let chars: Vec<char> = text.chars().collect();
    let mut tokens = Vec::new();
    let mut at = 0;
    let error = |position: usize, message: String| Err(SyntaxError { position, message });
    while at < chars.len() {
        let c = chars[at];
        if c.is_whitespace() {
            at += 1;
        } else if c.is_ascii_digit() || (c == '.' && chars.get(at + 1).is_some_and(char::is_ascii_digit)) {
            let start = at;
            while at < chars.len() && (chars[at].is_ascii_alphanumeric() || chars[at] == '_' || chars[at] == '.') {
                // An exponent's sign belongs to the literal: `1e-3`.
                let exponent = matches!(chars[at], 'e' | 'E') && !is_radix_literal(&chars[start..at]);
                at += 1;
                if exponent && at < chars.len() && matches!(chars[at], '+' | '-') {
                    at += 1;
                }
            }
            let literal: String = chars[start..at].iter().collect();
            tokens.push((
                Token::Number(parse_number(&literal).map_err(|message| SyntaxError { position: start, message })?),
                start,
            ));
        } else if c.is_alphabetic() || c == '_' {
            let start = at;
            while at < chars.len() && (chars[at].is_alphanumeric() || chars[at] == '_') {
                at += 1;
            }
            tokens.push((Token::Name(chars[start..at].iter().collect()), start));
        } else if c == '\'' || c == '"' {
            return error(at, "strings are not supported; the expression must compute a number".into());
        } else if let Some(symbol) =
            SYMBOLS.iter().find(|symbol| chars[at..].iter().take(symbol.len()).copied().eq(symbol.chars()))
        {
            tokens.push((Token::Symbol(symbol), at));
            at += symbol.len();
        } else {
            return error(at, format!("unexpected character '{c}'"));
        }
    }
    tokens.push((Token::End, chars.len()));
    Ok(tokens)
}

fn is_radix_literal(chars: &[char]) -> bool {
    chars.len() >= 2 && chars[0] == '0' && matches!(chars[1], 'x' | 'X' | 'o' | 'O' | 'b' | 'B')
}

/// A Python number literal: `12`, `1_000`, `0x1f`, `0o17`, `0b101`, `1.5`, `.5`, `1.`, `1e3`, `2.5E-3`.
fn parse_number(literal: &str) -> Result<Number, String> {
    let invalid = || format!("invalid number literal '{literal}'");
    if literal.contains("__") || literal.ends_with('_') {
        return Err(invalid());
    }
    let digits: String = literal.chars().filter(|&c| c != '_').collect();
    let lower = digits.to_ascii_lowercase();
    for (prefix, radix) in [("0x", 16), ("0o", 8), ("0b", 2)] {
        if let Some(rest) = lower.strip_prefix(prefix) {
            let rest = rest.strip_prefix('_').unwrap_or(rest);
            return i128::from_str_radix(rest, radix).map(Number::Int).map_err(|_| invalid());
        }
    }
    if lower.ends_with('j') {
        return Err(format!("complex numbers are not supported ('{literal}')"));
    }
    if lower.chars().all(|c| c.is_ascii_digit()) {
        if lower.len() > 1 && lower.starts_with('0') && lower.chars().any(|c| c != '0') {
            return Err(format!("leading zeros are not allowed in '{literal}' (Python syntax); use 0o for octal"));
        }
        return lower.parse::<i128>().map(Number::Int).map_err(|_| format!("'{literal}' is too large an integer"));
    }
    if lower.chars().all(|c| c.is_ascii_digit() || matches!(c, '.' | 'e' | '+' | '-'))
        && lower.matches('.').count() <= 1
    {
        return lower.parse::<f64>().map(Number::Float).map_err(|_| invalid());
    }
    Err(invalid())
}

/// Parses a whole expression.
pub fn parse(text: &str) -> Result<Expr, SyntaxError> {
    let mut parser = Parser { tokens: tokenize(text)?, at: 0 };
    let expr = parser.ternary()?;
    match parser.peek() {
        Token::End => Ok(expr),
        _ => parser.fail("unexpected text after the expression"),
    }
}

struct Parser {
    tokens: Vec<(Token, usize)>,
    at: usize,
}

impl Parser {
    fn peek(&self) -> &Token {
        &self.tokens[self.at].0
    }

    fn position(&self) -> usize {
        self.tokens[self.at].1
    }

    fn fail<T>(&self, message: &str) -> Result<T, SyntaxError> {
        let found = match self.peek() {
            Token::End => "the end of the expression".to_string(),
            Token::Symbol(symbol) => format!("'{symbol}'"),
            Token::Name(name) => format!("'{name}'"),
            Token::Number(_) => "a number".to_string(),
        };
        Err(SyntaxError { position: self.position(), message: format!("{message} (found {found})") })
    }

    fn eat_symbol(&mut self, symbol: &str) -> bool {
        if matches!(self.peek(), Token::Symbol(found) if *found == symbol) {
            self.at += 1;
            return true;
        }
        false
    }

    fn eat_keyword(&mut self, keyword: &str) -> bool {
        if matches!(self.peek(), Token::Name(found) if found == keyword) {
            self.at += 1;
            return true;
        }
        false
    }

    fn expect_symbol(&mut self, symbol: &str) -> Result<(), SyntaxError> {
        if self.eat_symbol(symbol) { Ok(()) } else { self.fail(&format!("expected '{symbol}'")) }
    }

    fn ternary(&mut self) -> Result<Expr, SyntaxError> {
        if matches!(self.peek(), Token::Name(name) if name == "lambda") {
            return self.fail("lambdas are not supported");
        }
        let then = self.or()?;
        if !self.eat_keyword("if") {
            return Ok(then);
        }
        let condition = self.or()?;
        if !self.eat_keyword("else") {
            return self.fail("expected 'else'");
        }
        let otherwise = self.ternary()?;
        Ok(Expr::IfElse { condition: Box::new(condition), then: Box::new(then), otherwise: Box::new(otherwise) })
    }

    fn or(&mut self) -> Result<Expr, SyntaxError> {
        let mut operands = vec![self.and()?];
        while self.eat_keyword("or") {
            operands.push(self.and()?);
        }
        Ok(if operands.len() == 1 { operands.remove(0) } else { Expr::Or(operands) })
    }

    fn and(&mut self) -> Result<Expr, SyntaxError> {
        let mut operands = vec![self.not()?];
        while self.eat_keyword("and") {
            operands.push(self.not()?);
        }
        Ok(if operands.len() == 1 { operands.remove(0) } else { Expr::And(operands) })
    }

    fn not(&mut self) -> Result<Expr, SyntaxError> {
        if self.eat_keyword("not") {
            return Ok(Expr::Unary(UnaryOp::Not, Box::new(self.not()?)));
        }
        self.comparison()
    }

    fn comparison(&mut self) -> Result<Expr, SyntaxError> {
        let first = self.binary(0)?;
        let mut rest = Vec::new();
        loop {
            let op = match self.peek() {
                Token::Symbol("<") => CompareOp::Less,
                Token::Symbol("<=") => CompareOp::LessEqual,
                Token::Symbol(">") => CompareOp::Greater,
                Token::Symbol(">=") => CompareOp::GreaterEqual,
                Token::Symbol("==") => CompareOp::Equal,
                Token::Symbol("!=") => CompareOp::NotEqual,
                Token::Name(name) if name == "in" => CompareOp::In,
                Token::Name(name) if name == "is" => return self.fail("'is' is not supported; use '=='"),
                Token::Name(name)
                    if name == "not" && matches!(&self.tokens[self.at + 1].0, Token::Name(next) if next == "in") =>
                {
                    self.at += 1;
                    CompareOp::NotIn
                }
                _ => break,
            };
            self.at += 1;
            rest.push((op, self.binary(0)?));
        }
        Ok(if rest.is_empty() { first } else { Expr::Compare(Box::new(first), rest) })
    }

    /// The binary operators from `|` (level 0) to `* / // %` (level 5).
    fn binary(&mut self, level: usize) -> Result<Expr, SyntaxError> {
        const LEVELS: [&[(&str, BinaryOp)]; 6] = [
            &[("|", BinaryOp::BitOr)],
            &[("^", BinaryOp::BitXor)],
            &[("&", BinaryOp::BitAnd)],
            &[("<<", BinaryOp::LeftShift), (">>", BinaryOp::RightShift)],
            &[("+", BinaryOp::Add), ("-", BinaryOp::Sub)],
            &[("*", BinaryOp::Mul), ("/", BinaryOp::Div), ("//", BinaryOp::FloorDiv), ("%", BinaryOp::Mod)],
        ];
        let next =
            |parser: &mut Parser| if level + 1 < LEVELS.len() { parser.binary(level + 1) } else { parser.unary() };
        let mut left = next(self)?;
        'operators: loop {
            for (symbol, op) in LEVELS[level] {
                if self.eat_symbol(symbol) {
                    let right = next(self)?;
                    left = Expr::Binary(*op, Box::new(left), Box::new(right));
                    continue 'operators;
                }
            }
            return Ok(left);
        }
    }

    fn unary(&mut self) -> Result<Expr, SyntaxError> {
        for (symbol, op) in [("-", UnaryOp::Negate), ("+", UnaryOp::Plus), ("~", UnaryOp::Invert)] {
            if self.eat_symbol(symbol) {
                return Ok(Expr::Unary(op, Box::new(self.unary()?)));
            }
        }
        self.power()
    }

    fn power(&mut self) -> Result<Expr, SyntaxError> {
        let base = self.postfix()?;
        if self.eat_symbol("**") {
            // The exponent may carry its own sign: `2 ** -1`.
            let exponent = self.unary()?;
            return Ok(Expr::Binary(BinaryOp::Pow, Box::new(base), Box::new(exponent)));
        }
        Ok(base)
    }

    fn postfix(&mut self) -> Result<Expr, SyntaxError> {
        let mut expr = self.atom()?;
        loop {
            if self.eat_symbol("[") {
                let index = self.ternary()?;
                if matches!(self.peek(), Token::Symbol(":")) {
                    return self.fail("slices are not supported");
                }
                self.expect_symbol("]")?;
                expr = Expr::Index(Box::new(expr), Box::new(index));
            } else if matches!(self.peek(), Token::Symbol("(")) {
                let Expr::Name(function) = expr else { return self.fail("only named functions can be called") };
                self.at += 1;
                let mut arguments = Vec::new();
                if !self.eat_symbol(")") {
                    loop {
                        arguments.push(self.ternary()?);
                        if self.eat_symbol(")") {
                            break;
                        }
                        self.expect_symbol(",")?;
                        if self.eat_symbol(")") {
                            break;
                        }
                    }
                }
                expr = Expr::Call(function, arguments);
            } else {
                return Ok(expr);
            }
        }
    }

    fn atom(&mut self) -> Result<Expr, SyntaxError> {
        let token = self.peek().clone();
        match token {
            Token::Number(number) => {
                self.at += 1;
                Ok(Expr::Number(number))
            }
            Token::Name(name) => {
                const KEYWORDS: [&str; 9] = ["and", "or", "not", "if", "else", "in", "is", "lambda", "None"];
                if KEYWORDS.contains(&name.as_str()) {
                    return self.fail("expected a value");
                }
                self.at += 1;
                Ok(match name.as_str() {
                    "True" => Expr::Number(Number::Bool(true)),
                    "False" => Expr::Number(Number::Bool(false)),
                    _ => Expr::Name(name),
                })
            }
            Token::Symbol("(") => {
                self.at += 1;
                let inner = self.ternary()?;
                if matches!(self.peek(), Token::Symbol(",")) {
                    return self.fail("tuples are not supported");
                }
                self.expect_symbol(")")?;
                Ok(inner)
            }
            Token::Symbol("[") => self.fail("lists are not supported"),
            _ => self.fail("expected a value"),
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn precedence_follows_python() {
        let minus_square = parse("-2 ** 2").unwrap();
        assert!(matches!(minus_square, Expr::Unary(UnaryOp::Negate, _)));
        let right_assoc = parse("2 ** 3 ** 2").unwrap();
        let Expr::Binary(BinaryOp::Pow, _, exponent) = right_assoc else { panic!("not a power") };
        assert!(matches!(*exponent, Expr::Binary(BinaryOp::Pow, _, _)));
        assert!(matches!(parse("1 < a < 5").unwrap(), Expr::Compare(_, ref rest) if rest.len() == 2));
    }

    #[test]
    fn literals_and_errors() {
        assert_eq!(parse("0x10").unwrap(), Expr::Number(Number::Int(16)));
        assert_eq!(parse("1_000.5e-1").unwrap(), Expr::Number(Number::Float(100.05)));
        assert!(parse("a +").unwrap_err().message.contains("expected a value"));
        assert!(parse("'x'").unwrap_err().message.contains("strings"));
        assert!(parse("007").is_err());
    }
}
