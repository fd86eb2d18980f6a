//! `kinograph`: run, validate and inspect node-graph workflows for video diffusion models.

fn main() -> std::process::ExitCode {
    kinograph::main()
}
