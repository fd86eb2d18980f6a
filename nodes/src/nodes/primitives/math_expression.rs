//! `ComfyMathExpression` ("Math Expression"): a Python-style expression over up to 26 numeric inputs
//! `values.a` … `values.z`, evaluated as ComfyUI's `simpleeval` does ([`super::expression`],
//! [`super::expression_eval`]), with the result as FLOAT, INT and BOOL.
//!
//! ComfyUI grows the inputs in the editor (an autogrow template named `values`); its workflows and prompts name
//! them `values.a`, `values.b`, …, which is what this schema declares, all optional. In the expression, each
//! connected input is its letter, and `values` is the list of the connected ones in order.

use super::expression::{Number, parse};
use super::expression_eval::{Names, Val, evaluate, float_of, truthy};
use kinograph_engine::prelude::*;

/// The letters of the inputs.
const LETTERS: &str = "abcdefghijklmnopqrstuvwxyz";

/// Evaluates a math expression over its inputs.
pub struct ComfyMathExpression;

impl Node for ComfyMathExpression {
    fn schema(&self, _: &Environment) -> NodeSchema {
        let mut schema = NodeSchema::new("ComfyMathExpression")
            .display_name("Math Expression")
            .category("utilities")
            .input(InputSpec::multiline("expression", "a").tooltip(
                "A Python-style expression over the inputs a, b, c, ... and the list 'values', e.g. 'a / 2', \
                 'round(a * b)', 'max(values)'.",
            ));
        for letter in LETTERS.chars() {
            schema = schema.input(InputSpec::socket(&format!("values.{letter}"), "FLOAT,INT,BOOLEAN").optional());
        }
        schema.output("FLOAT", "FLOAT").output("INT", "INT").output("BOOLEAN", "BOOL")
    }

    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let expression = inputs.string("expression")?;
        let fail = |message: String| NodeError::input("expression", format!("'{}': {message}", expression.trim()));
        if expression.trim().is_empty() {
            return Err(NodeError::input("expression", "is empty; write an expression such as 'a + b'"));
        }
        let mut values = Vec::new();
        for letter in LETTERS.chars() {
            let name = format!("values.{letter}");
            let number = match inputs.get(&name) {
                None => continue,
                Some(Value::Int(int)) => Number::Int(*int),
                Some(Value::Float(float)) => Number::Float(*float),
                Some(Value::Bool(boolean)) => Number::Bool(*boolean),
                Some(other) => {
                    return Err(NodeError::input(
                        &name,
                        format!("expected a FLOAT, INT or BOOLEAN, got {}", other.type_name()),
                    ));
                }
            };
            values.push((letter, number));
        }
        let tree = parse(expression.trim()).map_err(|error| fail(error.to_string()))?;
        let result = evaluate(&tree, &Inputs { values: &values }).map_err(fail)?;
        let Val::Number(number) = result else {
            return Err(fail("must evaluate to a number, not the list 'values'".into()));
        };
        let float = float_of(number);
        if !float.is_finite() {
            return Err(fail(format!("produced a non-finite result: {float}")));
        }
        let int = match number {
            Number::Float(value) if value.abs() >= 2f64.powi(127) => {
                return Err(fail(format!("{value} is too large for the INT output")));
            }
            Number::Float(value) => value.trunc() as i128,
            Number::Int(value) => value,
            Number::Bool(value) => i128::from(value),
        };
        let boolean = truthy(&Val::Number(number));
        Ok(NodeOutput::new(vec![Value::Float(float), Value::Int(int), Value::Bool(boolean)]))
    }
}

/// The connected inputs by letter, and `values`.
struct Inputs<'a> {
    values: &'a [(char, Number)],
}

impl Names for Inputs<'_> {
    fn lookup(&self, name: &str) -> Result<Val, String> {
        if name == "values" {
            return Ok(Val::List(self.values.iter().map(|(_, number)| *number).collect()));
        }
        if let Some((_, number)) = self.values.iter().find(|(letter, _)| name.len() == 1 && name.starts_with(*letter)) {
            return Ok(Val::Number(*number));
        }
        let connected: Vec<String> = self.values.iter().map(|(letter, _)| letter.to_string()).collect();
        let hint = if name.len() == 1 && LETTERS.contains(name) {
            format!("; connect input 'values.{name}'")
        } else {
            String::new()
        };
        Err(format!(
            "NameNotDefined: '{name}' is not defined (connected: {}){hint}",
            if connected.is_empty() { "none".to_string() } else { connected.join(", ") }
        ))
    }
}
