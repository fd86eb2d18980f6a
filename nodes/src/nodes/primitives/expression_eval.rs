//! Evaluates a parsed [`Expr`] with Python's number semantics, as ComfyUI's `simpleeval` does: `/` is true
//! division, `//` and `%` floor towards minus infinity, `int ** negative int` is a float, bools are ints in
//! arithmetic, `and`/`or` return an operand, comparisons chain. Integers are 128-bit here (Python's are
//! unbounded): a result beyond that is an error, as one beyond a float is in ComfyUI. The functions are
//! ComfyUI's table: `sum min max abs round pow sqrt ceil floor log log2 log10 sin cos tan int float`.

use super::expression::{BinaryOp, CompareOp, Expr, Number, UnaryOp};
use std::cmp::Ordering;

/// simpleeval's `MAX_POWER`: the largest base or exponent `**` takes.
const MAX_POWER: f64 = 4_000_000.0;
/// ComfyUI's cap on the exponent of `pow()`.
const MAX_POW_EXPONENT: f64 = 4000.0;
/// simpleeval's `MAX_SHIFT`.
const MAX_SHIFT: i128 = 10_000;

/// A value during evaluation: a number, or the `values` list.
#[derive(Debug, Clone, PartialEq)]
pub enum Val {
    Number(Number),
    List(Vec<Number>),
}

/// The names an expression can read: the connected inputs `a`..`z` and `values`.
pub trait Names {
    fn lookup(&self, name: &str) -> Result<Val, String>;
}

/// Evaluates `expr`; errors are messages in words (Python's exception kind first).
pub fn evaluate(expr: &Expr, names: &dyn Names) -> Result<Val, String> {
    Ok(match expr {
        Expr::Number(number) => Val::Number(*number),
        Expr::Name(name) => names.lookup(name)?,
        Expr::Unary(op, operand) => Val::Number(unary(*op, &evaluate(operand, names)?)?),
        Expr::Binary(op, left, right) => {
            let (left, right) = (number(&evaluate(left, names)?)?, number(&evaluate(right, names)?)?);
            Val::Number(binary(*op, left, right)?)
        }
        Expr::Compare(first, rest) => {
            let mut left = evaluate(first, names)?;
            for (op, right) in rest {
                let right = evaluate(right, names)?;
                if !compare(*op, &left, &right)? {
                    return Ok(Val::Number(Number::Bool(false)));
                }
                left = right;
            }
            Val::Number(Number::Bool(true))
        }
        Expr::And(operands) | Expr::Or(operands) => {
            let stop_on = matches!(expr, Expr::Or(_));
            let mut value = Val::Number(Number::Bool(!stop_on));
            for operand in operands {
                value = evaluate(operand, names)?;
                if truthy(&value) == stop_on {
                    break;
                }
            }
            value
        }
        Expr::IfElse { condition, then, otherwise } => {
            if truthy(&evaluate(condition, names)?) {
                evaluate(then, names)?
            } else {
                evaluate(otherwise, names)?
            }
        }
        Expr::Call(function, arguments) => {
            let arguments =
                arguments.iter().map(|argument| evaluate(argument, names)).collect::<Result<Vec<_>, _>>()?;
            Val::Number(call(function, &arguments)?)
        }
        Expr::Index(list, index) => {
            let Val::List(items) = evaluate(list, names)? else {
                return Err("TypeError: only 'values' can be indexed".into());
            };
            let index = match number(&evaluate(index, names)?)? {
                Number::Float(_) => return Err("TypeError: list indices must be integers, not float".into()),
                other => int_of(other),
            };
            let position = if index < 0 { index + items.len() as i128 } else { index };
            let item = usize::try_from(position).ok().and_then(|position| items.get(position));
            Val::Number(
                *item.ok_or_else(|| format!("IndexError: index {index} is out of range for {} values", items.len()))?,
            )
        }
    })
}

fn number(value: &Val) -> Result<Number, String> {
    match value {
        Val::Number(number) => Ok(*number),
        Val::List(_) => Err("TypeError: 'values' is a list; use sum(values), max(values), values[0], ...".into()),
    }
}

/// Python's truth value.
pub fn truthy(value: &Val) -> bool {
    match value {
        Val::Number(Number::Bool(b)) => *b,
        Val::Number(Number::Int(i)) => *i != 0,
        Val::Number(Number::Float(f)) => *f != 0.0,
        Val::List(items) => !items.is_empty(),
    }
}

fn int_of(number: Number) -> i128 {
    match number {
        Number::Bool(b) => i128::from(b),
        Number::Int(i) => i,
        Number::Float(f) => f as i128,
    }
}

/// The number as a float (Python's `float(x)`).
pub fn float_of(number: Number) -> f64 {
    match number {
        Number::Bool(b) => f64::from(u8::from(b)),
        Number::Int(i) => i as f64,
        Number::Float(f) => f,
    }
}

/// Both operands as ints, or `None` if either is a float.
fn ints(left: Number, right: Number) -> Option<(i128, i128)> {
    match (left, right) {
        (Number::Float(_), _) | (_, Number::Float(_)) => None,
        _ => Some((int_of(left), int_of(right))),
    }
}

fn too_large() -> String {
    "OverflowError: the integer result is too large (beyond 128 bits)".into()
}

fn finite(value: f64, what: &str) -> Result<Number, String> {
    if value.is_infinite() {
        Err(format!("OverflowError: {what} is too large for a float"))
    } else {
        Ok(Number::Float(value))
    }
}

fn unary(op: UnaryOp, value: &Val) -> Result<Number, String> {
    if op == UnaryOp::Not {
        return Ok(Number::Bool(!truthy(value)));
    }
    Ok(match (op, number(value)?) {
        (UnaryOp::Negate, Number::Float(f)) => Number::Float(-f),
        (UnaryOp::Negate, other) => Number::Int(int_of(other).checked_neg().ok_or_else(too_large)?),
        (UnaryOp::Plus, Number::Float(f)) => Number::Float(f),
        (UnaryOp::Plus, other) => Number::Int(int_of(other)),
        (UnaryOp::Invert, Number::Float(_)) => return Err("TypeError: bad operand type for unary ~: 'float'".into()),
        (UnaryOp::Invert, other) => Number::Int(!int_of(other)),
        (UnaryOp::Not, _) => unreachable!("handled above"),
    })
}

fn binary(op: BinaryOp, left: Number, right: Number) -> Result<Number, String> {
    let integers = ints(left, right);
    let (a, b) = (float_of(left), float_of(right));
    Ok(match op {
        BinaryOp::Add | BinaryOp::Sub | BinaryOp::Mul => match integers {
            Some((x, y)) => Number::Int(
                match op {
                    BinaryOp::Add => x.checked_add(y),
                    BinaryOp::Sub => x.checked_sub(y),
                    _ => x.checked_mul(y),
                }
                .ok_or_else(too_large)?,
            ),
            None => Number::Float(match op {
                BinaryOp::Add => a + b,
                BinaryOp::Sub => a - b,
                _ => a * b,
            }),
        },
        BinaryOp::Div => {
            if b == 0.0 {
                return Err("ZeroDivisionError: division by zero".into());
            }
            finite(a / b, "the quotient")?
        }
        BinaryOp::FloorDiv | BinaryOp::Mod => {
            if b == 0.0 {
                return Err("ZeroDivisionError: integer division or modulo by zero".into());
            }
            if let Some((x, y)) = integers {
                let (quotient, remainder) = floor_div_mod(x, y).ok_or_else(too_large)?;
                Number::Int(if op == BinaryOp::FloorDiv { quotient } else { remainder })
            } else {
                let (quotient, remainder) = float_div_mod(a, b);
                Number::Float(if op == BinaryOp::FloorDiv { quotient } else { remainder })
            }
        }
        BinaryOp::Pow => {
            if a.abs() > MAX_POWER || b.abs() > MAX_POWER {
                return Err(format!("NumberTooHigh: {a} ** {b} is not evaluated (limit {MAX_POWER})"));
            }
            power(left, right)?
        }
        BinaryOp::LeftShift | BinaryOp::RightShift | BinaryOp::BitAnd | BinaryOp::BitOr | BinaryOp::BitXor => {
            let Some((x, y)) = integers else {
                return Err(format!("TypeError: {op:?} needs integers, not floats"));
            };
            match op {
                BinaryOp::LeftShift | BinaryOp::RightShift => {
                    if y.abs() > MAX_SHIFT {
                        return Err(format!("NumberTooHigh: a shift by {y} is not evaluated (limit {MAX_SHIFT})"));
                    }
                    if y < 0 {
                        return Err("ValueError: negative shift count".into());
                    }
                    if op == BinaryOp::RightShift {
                        Number::Int(if y >= 128 { if x < 0 { -1 } else { 0 } } else { x >> y })
                    } else if x == 0 {
                        Number::Int(0)
                    } else {
                        let shifted = if y >= 127 { None } else { x.checked_mul(1i128 << y) };
                        Number::Int(shifted.ok_or_else(too_large)?)
                    }
                }
                _ => {
                    let result = match op {
                        BinaryOp::BitAnd => x & y,
                        BinaryOp::BitOr => x | y,
                        _ => x ^ y,
                    };
                    // bool & bool stays a bool in Python.
                    match (left, right) {
                        (Number::Bool(_), Number::Bool(_)) => Number::Bool(result != 0),
                        _ => Number::Int(result),
                    }
                }
            }
        }
    })
}

/// Python's integer `divmod`.
fn floor_div_mod(x: i128, y: i128) -> Option<(i128, i128)> {
    let mut quotient = x.checked_div(y)?;
    let mut remainder = x.checked_rem(y)?;
    if remainder != 0 && ((remainder < 0) != (y < 0)) {
        quotient -= 1;
        remainder += y;
    }
    Some((quotient, remainder))
}

/// `CPython`'s float `divmod` (`float_divmod`).
fn float_div_mod(x: f64, y: f64) -> (f64, f64) {
    let mut remainder = x % y;
    let mut division = (x - remainder) / y;
    if remainder == 0.0 {
        remainder = 0f64.copysign(y);
    } else if (y < 0.0) != (remainder < 0.0) {
        remainder += y;
        division -= 1.0;
    }
    let quotient = if division == 0.0 {
        0f64.copysign(x / y)
    } else {
        let floor = division.floor();
        if division - floor > 0.5 { floor + 1.0 } else { floor }
    };
    (quotient, remainder)
}

/// `base ** exponent` (and `pow(base, exponent)`).
fn power(base: Number, exponent: Number) -> Result<Number, String> {
    if let Some((x, y)) = ints(base, exponent) {
        if y >= 0 {
            let y = u32::try_from(y).map_err(|_| too_large())?;
            return x.checked_pow(y).map(Number::Int).ok_or_else(too_large);
        }
        if x == 0 {
            return Err("ZeroDivisionError: 0.0 cannot be raised to a negative power".into());
        }
        return finite((x as f64).powf(y as f64), "the power");
    }
    let (x, y) = (float_of(base), float_of(exponent));
    if x == 0.0 && y < 0.0 {
        return Err("ZeroDivisionError: 0.0 cannot be raised to a negative power".into());
    }
    if x < 0.0 && y.fract() != 0.0 && y.is_finite() {
        return Err(format!("ValueError: {x} ** {y} is a complex number, not a real one"));
    }
    finite(x.powf(y), "the power")
}

fn order(left: Number, right: Number) -> Option<Ordering> {
    match (left, right) {
        (Number::Float(a), Number::Float(b)) => a.partial_cmp(&b),
        (Number::Float(a), other) => compare_int_float(int_of(other), a).map(Ordering::reverse),
        (other, Number::Float(b)) => compare_int_float(int_of(other), b),
        (a, b) => Some(int_of(a).cmp(&int_of(b))),
    }
}

/// Exact comparison of an integer with a float, as Python does it.
fn compare_int_float(int: i128, float: f64) -> Option<Ordering> {
    if float.is_nan() {
        return None;
    }
    if float.is_infinite() {
        return Some(if float > 0.0 { Ordering::Less } else { Ordering::Greater });
    }
    let floor = float.floor();
    if floor >= i128::MAX as f64 {
        return Some(Ordering::Less);
    }
    if floor < i128::MIN as f64 {
        return Some(Ordering::Greater);
    }
    Some(int.cmp(&(floor as i128)).then(if float > floor { Ordering::Less } else { Ordering::Equal }))
}

fn compare(op: CompareOp, left: &Val, right: &Val) -> Result<bool, String> {
    if matches!(op, CompareOp::In | CompareOp::NotIn) {
        let Val::List(items) = right else { return Err("TypeError: 'in' needs 'values' on its right".into()) };
        let needle = number(left)?;
        let found = items.iter().any(|item| order(needle, *item) == Some(Ordering::Equal));
        return Ok(found == (op == CompareOp::In));
    }
    let ordering = order(number(left)?, number(right)?);
    Ok(match op {
        CompareOp::Equal => ordering == Some(Ordering::Equal),
        CompareOp::NotEqual => ordering != Some(Ordering::Equal),
        CompareOp::Less => ordering == Some(Ordering::Less),
        CompareOp::LessEqual => matches!(ordering, Some(Ordering::Less | Ordering::Equal)),
        CompareOp::Greater => ordering == Some(Ordering::Greater),
        CompareOp::GreaterEqual => matches!(ordering, Some(Ordering::Greater | Ordering::Equal)),
        CompareOp::In | CompareOp::NotIn => unreachable!("handled above"),
    })
}

/// The function names an expression may call.
pub const FUNCTIONS: [&str; 17] = [
    "sum", "min", "max", "abs", "round", "pow", "sqrt", "ceil", "floor", "log", "log2", "log10", "sin", "cos", "tan",
    "int", "float",
];

fn call(function: &str, arguments: &[Val]) -> Result<Number, String> {
    let arity = |expected: std::ops::RangeInclusive<usize>| {
        if expected.contains(&arguments.len()) {
            Ok(())
        } else {
            Err(format!("TypeError: {function}() takes {expected:?} arguments, got {}", arguments.len()))
        }
    };
    let real = |index: usize| number(&arguments[index]).map(float_of);
    let domain = |ok: bool| if ok { Ok(()) } else { Err(format!("ValueError: math domain error in {function}()")) };
    match function {
        "sum" | "min" | "max" => {
            let items: Vec<Number> = match arguments {
                [Val::List(items)] => items.clone(),
                [Val::Number(_)] if function != "sum" => {
                    return Err(format!("TypeError: {function}() of one number; give several, or 'values'"));
                }
                _ => arguments.iter().map(number).collect::<Result<_, _>>()?,
            };
            if function == "sum" {
                return items.into_iter().try_fold(Number::Int(0), |total, item| binary(BinaryOp::Add, total, item));
            }
            let mut items = items.into_iter();
            let first = items.next().ok_or_else(|| format!("ValueError: {function}() of nothing"))?;
            let wanted = if function == "max" { Ordering::Greater } else { Ordering::Less };
            Ok(items.fold(first, |best, item| if order(item, best) == Some(wanted) { item } else { best }))
        }
        "abs" => {
            arity(1..=1)?;
            match number(&arguments[0])? {
                Number::Float(f) => Ok(Number::Float(f.abs())),
                other => int_of(other).checked_abs().map(Number::Int).ok_or_else(too_large),
            }
        }
        "round" => {
            arity(1..=2)?;
            let value = number(&arguments[0])?;
            let digits = match arguments.get(1) {
                None => None,
                Some(digits) => match number(digits)? {
                    Number::Float(_) => return Err("TypeError: round() digits must be an integer".into()),
                    other => Some(int_of(other)),
                },
            };
            round(value, digits)
        }
        "pow" => {
            arity(2..=2)?;
            let (base, exponent) = (number(&arguments[0])?, number(&arguments[1])?);
            if float_of(exponent).abs() > MAX_POW_EXPONENT {
                return Err(format!(
                    "ValueError: exponent {} exceeds the maximum ({MAX_POW_EXPONENT})",
                    float_of(exponent)
                ));
            }
            power(base, exponent)
        }
        "sqrt" => {
            arity(1..=1)?;
            let x = real(0)?;
            domain(x >= 0.0 || x.is_nan())?;
            Ok(Number::Float(x.sqrt()))
        }
        "ceil" | "floor" => {
            arity(1..=1)?;
            match number(&arguments[0])? {
                Number::Float(f) if f.is_nan() => Err("ValueError: cannot convert float NaN to integer".into()),
                Number::Float(f) if f.is_infinite() => {
                    Err("OverflowError: cannot convert float infinity to integer".into())
                }
                Number::Float(f) => Ok(Number::Int(if function == "ceil" { f.ceil() } else { f.floor() } as i128)),
                other => Ok(Number::Int(int_of(other))),
            }
        }
        "log" | "log2" | "log10" => {
            arity(if function == "log" { 1..=2 } else { 1..=1 })?;
            let x = real(0)?;
            domain(x > 0.0)?;
            Ok(Number::Float(match (function, arguments.len()) {
                ("log2", _) => x.log2(),
                ("log10", _) => x.log10(),
                (_, 1) => x.ln(),
                _ => {
                    let base = real(1)?;
                    domain(base > 0.0)?;
                    if base == 1.0 {
                        return Err("ZeroDivisionError: log() with base 1".into());
                    }
                    x.ln() / base.ln()
                }
            }))
        }
        "sin" | "cos" | "tan" => {
            arity(1..=1)?;
            let x = real(0)?;
            domain(!x.is_infinite())?;
            Ok(Number::Float(match function {
                "sin" => x.sin(),
                "cos" => x.cos(),
                _ => x.tan(),
            }))
        }
        "int" | "float" => {
            arity(0..=1)?;
            let value = if arguments.is_empty() { Number::Int(0) } else { number(&arguments[0])? };
            if function == "float" {
                return Ok(Number::Float(float_of(value)));
            }
            match value {
                Number::Float(f) if !f.is_finite() => Err(format!("ValueError: cannot convert float {f} to integer")),
                Number::Float(f) if f.abs() >= 2f64.powi(127) => Err(too_large()),
                other => Ok(Number::Int(int_of(other))),
            }
        }
        other => Err(format!("FunctionNotDefined: no function '{other}'; the functions are {}", FUNCTIONS.join(", "))),
    }
}

/// Python's `round(value)` (an int, halves to even) and `round(value, digits)`.
fn round(value: Number, digits: Option<i128>) -> Result<Number, String> {
    match (value, digits) {
        (Number::Float(f), None) => {
            if !f.is_finite() {
                return Err(format!("ValueError: cannot round {f} to an integer"));
            }
            Ok(Number::Int(f.round_ties_even() as i128))
        }
        (other, None) => Ok(Number::Int(int_of(other))),
        (Number::Float(f), Some(digits)) => Ok(Number::Float(round_float(f, digits))),
        (other, Some(digits)) if digits >= 0 => Ok(Number::Int(int_of(other))),
        (other, Some(digits)) => {
            let value = int_of(other);
            let Some(unit) = u32::try_from(-digits).ok().and_then(|power| 10i128.checked_pow(power)) else {
                return Ok(Number::Int(0));
            };
            let (quotient, remainder) = floor_div_mod(value, unit).ok_or_else(too_large)?;
            let up = match (2 * remainder).cmp(&unit) {
                Ordering::Greater => true,
                Ordering::Equal => quotient % 2 != 0,
                Ordering::Less => false,
            };
            Ok(Number::Int((quotient + i128::from(up)).checked_mul(unit).ok_or_else(too_large)?))
        }
    }
}

/// `round(float, digits)`: the exact binary value rounded to `digits` decimals, halves to even.
fn round_float(value: f64, digits: i128) -> f64 {
    if !value.is_finite() || digits > 323 {
        return value;
    }
    if digits < -308 {
        return 0.0 * value;
    }
    if digits >= 0 {
        // Rust formats the exact binary value, rounding halves to even, as Python's dtoa does.
        return format!("{value:.*}", digits as usize).parse().unwrap_or(value);
    }
    let magnitude = value.abs();
    if magnitude >= 2f64.powi(127) {
        return value;
    }
    let unit = 10u128.pow((-digits) as u32);
    let whole = magnitude.trunc() as u128;
    let fraction = magnitude - magnitude.trunc();
    let (quotient, remainder) = (whole / unit, whole % unit);
    let up = match (2 * remainder).cmp(&unit) {
        Ordering::Greater => true,
        Ordering::Equal => fraction > 0.0 || quotient % 2 == 1,
        Ordering::Less => false,
    };
    ((quotient + u128::from(up)) * unit) as f64 * value.signum()
}
