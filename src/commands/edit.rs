//! `kinograph edit [FILE]`: the node editor window, running graphs in-process or on a server
//! (`--server URL`).

use super::{BudgetArgs, FolderArgs};
use crate::EXIT_INVALID;
use clap::Args;
use kinograph_editor::model::remote::ServerAddress;
use std::path::PathBuf;

#[derive(Args, Debug)]
pub struct EditArgs {
    /// A UI workflow (ComfyUI's editor format) to open; without it the editor starts on an empty graph.
    pub file: Option<PathBuf>,
    /// Queue runs on this kinograph server (`kinograph serve`) instead of in this process, e.g.
    /// `http://gpu-box:8188`: its model lists fill the combos and its outputs are copied under
    /// `<output-dir>/remote/`. Plain HTTP only.
    #[arg(long, value_name = "URL")]
    pub server: Option<String>,
    /// The server's access token (its --auth-token), sent as `Authorization: Bearer`.
    #[arg(long, value_name = "TOKEN", requires = "server", conflicts_with = "server_token_file")]
    pub server_token: Option<String>,
    /// A file holding the server's access token (kept out of the process list and shell history).
    #[arg(long, value_name = "FILE", requires = "server")]
    pub server_token_file: Option<PathBuf>,
    /// Start inside this subgraph node of the workflow (its id), as a double-click on it would.
    #[arg(long, value_name = "NODE_ID", requires = "file")]
    pub subgraph: Option<i64>,
    #[command(flatten)]
    pub folders: FolderArgs,
    #[command(flatten)]
    pub budget: BudgetArgs,
}

impl EditArgs {
    /// The server to run on, if one was named; the error is ready to print.
    fn server(&self) -> Result<Option<ServerAddress>, String> {
        let Some(url) = &self.server else { return Ok(None) };
        let token = match &self.server_token_file {
            Some(path) => Some(
                std::fs::read_to_string(path)
                    .map_err(|error| format!("cannot read the server token file {}: {error}", path.display()))?,
            ),
            None => self.server_token.clone(),
        };
        ServerAddress::parse(url, token.as_deref()).map(Some)
    }
}

pub fn run(args: &EditArgs) -> u8 {
    args.budget.apply();
    let (environment, server) =
        match args.folders.environment().and_then(|environment| Ok((environment, args.server()?))) {
            Ok(found) => found,
            Err(message) => {
                eprintln!("error: {message}");
                return EXIT_INVALID;
            }
        };
    match kinograph_editor::run(args.file.as_deref(), environment, server, args.subgraph) {
        Ok(()) => 0,
        Err(error) => {
            eprintln!("error: {error}");
            EXIT_INVALID
        }
    }
}
