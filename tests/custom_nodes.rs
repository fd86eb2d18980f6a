//! A `kinograph` binary with a node of its own (`kinograph::main_with_registry`, as a custom node crate
//! builds one): the node runs through the same command line, and a panic in its code fails that node
//! with exit code 2 and an error naming it, whether the panic is in `execute` or in `fingerprint` (which
//! runs while the run is planned).
//!
//! The binary under test is this test executable: each test starts it again with `KINOGRAPH_TEST_CLI`
//! holding the command line, and in that child the same test hands the command line to
//! `run_with_registry` and exits with its code instead of testing.

use kinograph_engine::{
    Environment, ExecutionContext, InputSpec, Node, NodeError, NodeInputs, NodeOutput, NodeSchema, Registry,
};
use std::path::Path;
use std::process::{Command, Output};

const CHILD: &str = "KINOGRAPH_TEST_CLI";

/// `PanickyNode`: panics in the method its `panic_in` input names ("execute", "fingerprint" or
/// "nowhere"); otherwise reports `ran` in its UI output.
struct PanickyNode;

impl Node for PanickyNode {
    fn schema(&self, _: &Environment) -> NodeSchema {
        NodeSchema::new("PanickyNode")
            .input(InputSpec::combo("panic_in", ["nowhere", "execute", "fingerprint"]))
            .output_node()
            .category("testing")
    }
    fn fingerprint(&self, constants: &NodeInputs, _: &Environment) -> Option<Vec<u8>> {
        let panic_in = constants.string("panic_in").ok()?;
        assert!(panic_in != "fingerprint", "the custom fingerprint broke");
        None
    }
    fn execute(&self, inputs: &NodeInputs, _: &ExecutionContext) -> Result<NodeOutput, NodeError> {
        let panic_in = inputs.string("panic_in")?;
        assert!(panic_in != "execute", "the custom execute broke");
        Ok(NodeOutput::new(Vec::new()).with_ui(serde_json::json!({"text": ["ran"]})))
    }
}

fn custom_registry() -> Registry {
    let mut registry = kinograph_nodes::registry();
    registry.register(PanickyNode).expect("PanickyNode is not a built-in class");
    registry
}

/// In the child: runs the command line of `KINOGRAPH_TEST_CLI` and exits. In the test: runs the child,
/// that is this same test (`test_name`, its full path) with `arguments` as the command line.
fn custom_kinograph(test_name: &str, arguments: &[&str]) -> Output {
    if let Some(command_line) = std::env::var_os(CHILD) {
        let arguments: Vec<String> = serde_json::from_str(&command_line.to_string_lossy()).expect("a JSON list");
        std::process::exit(i32::from(kinograph::run_with_registry(arguments, custom_registry)));
    }
    let mut command_line = vec!["custom-kinograph"];
    command_line.extend_from_slice(arguments);
    Command::new(std::env::current_exe().expect("the test executable"))
        .args(["--exact", test_name, "--nocapture", "--test-threads", "1"])
        .env(CHILD, serde_json::to_string(&command_line).unwrap())
        .output()
        .expect("the test executable runs")
}

fn write_workflow(folder: &Path, panic_in: &str) -> std::path::PathBuf {
    let path = folder.join("workflow.json");
    let workflow = serde_json::json!({"1": {"class_type": "PanickyNode", "inputs": {"panic_in": panic_in}}});
    std::fs::write(&path, workflow.to_string()).unwrap();
    path
}

/// Runs the one-node workflow in the child; returns its exit code, stdout and stderr.
fn run_custom(test_name: &str, panic_in: &str) -> (Option<i32>, String, String) {
    let folder = tempfile::tempdir().unwrap();
    let workflow = write_workflow(folder.path(), panic_in);
    let output_dir = folder.path().join("output");
    let result =
        custom_kinograph(test_name, &["run", workflow.to_str().unwrap(), "--output-dir", output_dir.to_str().unwrap()]);
    let text = |bytes: &[u8]| String::from_utf8_lossy(bytes).into_owned();
    (result.status.code(), text(&result.stdout), text(&result.stderr))
}

#[test]
fn a_custom_node_runs_through_the_command_line() {
    let (code, stdout, stderr) = run_custom("custom_nodes::a_custom_node_runs_through_the_command_line", "nowhere");
    assert_eq!(code, Some(0), "{stderr}");
    assert!(format!("{stdout}{stderr}").contains("#1 PanickyNode: ran"), "the node reports it ran: {stdout}{stderr}");
}

#[test]
fn a_panic_in_a_custom_nodes_execute_exits_2_naming_the_node() {
    let (code, _, stderr) =
        run_custom("custom_nodes::a_panic_in_a_custom_nodes_execute_exits_2_naming_the_node", "execute");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("node #1 PanickyNode failed: the node panicked"), "{stderr}");
    assert!(stderr.contains("the custom execute broke"), "{stderr}");
}

#[test]
fn a_panic_in_a_custom_nodes_fingerprint_exits_2_naming_the_node() {
    let (code, _, stderr) =
        run_custom("custom_nodes::a_panic_in_a_custom_nodes_fingerprint_exits_2_naming_the_node", "fingerprint");
    assert_eq!(code, Some(2), "{stderr}");
    assert!(stderr.contains("node #1 PanickyNode failed: the node panicked"), "{stderr}");
    assert!(stderr.contains("the custom fingerprint broke"), "{stderr}");
}
