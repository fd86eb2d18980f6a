//! End-to-end tests of `kinograph models` and of the model folder options. Downloads go to a small
//! server on the loopback interface that answers as the Hugging Face hub does; nothing leaves the machine.

use std::io::{BufRead, BufReader, Read, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::process::{Command, Output};
use std::time::Duration;

fn kinograph(folder: &Path) -> Command {
    let mut command = Command::new(env!("CARGO_BIN_EXE_kinograph"));
    command.current_dir(folder);
    // Never the real hub, and never a token from the machine running the tests.
    command.env("HF_ENDPOINT", "http://127.0.0.1:9").env_remove("HF_TOKEN").env("HF_HOME", folder.join("hf-home"));
    command
}

fn text(bytes: &[u8]) -> String {
    String::from_utf8_lossy(bytes).into_owned()
}

fn touch(path: &Path) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    std::fs::write(path, b"weights").unwrap();
}

/// Every file and folder under `root`, relative, sorted.
fn tree(root: &Path) -> Vec<String> {
    let mut names = Vec::new();
    let mut pending = vec![root.to_path_buf()];
    while let Some(folder) = pending.pop() {
        for entry in std::fs::read_dir(&folder).into_iter().flatten().flatten() {
            let path = entry.path();
            names.push(path.strip_prefix(root).unwrap().display().to_string());
            if path.is_dir() {
                pending.push(path);
            }
        }
    }
    names.sort();
    names
}

/// A port on the loopback interface that nothing listens on.
fn closed_port() -> u16 {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    listener.local_addr().unwrap().port()
}

/// How the fake hub answers the download itself.
#[derive(Clone, Copy)]
enum Body {
    Whole,
    /// Announces the whole length, sends the first bytes, then closes the connection.
    CutShort,
    /// Sends the first bytes, then waits ten seconds before closing the connection.
    Stall,
}

/// Serves `files` (path in the repository → contents) of `repo` at revision `main`, the way the hub
/// answers hf-hub: a one-byte ranged GET for metadata, then the file. Answers at most `requests`
/// requests, one per connection, then stops.
fn fake_hub(repo: &'static str, files: Vec<(&'static str, Vec<u8>)>, body: Body, requests: usize) -> String {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let address = format!("http://{}", listener.local_addr().unwrap());
    std::thread::spawn(move || {
        for stream in listener.incoming().take(requests) {
            let Ok(stream) = stream else { continue };
            answer(stream, repo, &files, body);
        }
    });
    address
}

fn answer(mut stream: TcpStream, repo: &str, files: &[(&str, Vec<u8>)], body: Body) {
    stream.set_read_timeout(Some(Duration::from_secs(10))).unwrap();
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut request_line = String::new();
    if reader.read_line(&mut request_line).is_err() {
        return;
    }
    let mut range = None;
    loop {
        let mut line = String::new();
        if reader.read_line(&mut line).unwrap_or(0) == 0 || line == "\r\n" {
            break;
        }
        if let Some(value) = line.to_ascii_lowercase().strip_prefix("range: bytes=") {
            range = Some(value.trim().to_string());
        }
    }
    let path = request_line.split_whitespace().nth(1).unwrap_or_default().to_string();
    let prefix = format!("/{repo}/resolve/main/");
    let found = path.strip_prefix(&prefix).and_then(|file| files.iter().find(|(name, _)| *name == file));
    let Some((_, contents)) = found else {
        let _ = stream.write_all(b"HTTP/1.1 404 Not Found\r\nContent-Length: 0\r\nConnection: close\r\n\r\n");
        return;
    };
    let total = contents.len();
    let (start, end) = match range.as_deref() {
        Some("0-0") => (0, 0),
        Some(open) => (open.trim_end_matches('-').parse::<usize>().unwrap_or(0), total - 1),
        None => (0, total - 1),
    };
    let head = format!(
        "HTTP/1.1 206 Partial Content\r\nContent-Length: {}\r\nContent-Range: bytes {start}-{end}/{total}\r\n\
         ETag: \"0123456789abcdef\"\r\nX-Repo-Commit: 1111111111111111111111111111111111111111\r\n\
         Connection: close\r\n\r\n",
        end + 1 - start
    );
    let _ = stream.write_all(head.as_bytes());
    let slice = &contents[start..=end];
    let sent = match (body, end > start) {
        (Body::CutShort | Body::Stall, true) => &slice[..slice.len() / 2],
        _ => slice,
    };
    let _ = stream.write_all(sent);
    let _ = stream.flush();
    if matches!(body, Body::Stall) && end > start {
        std::thread::sleep(Duration::from_secs(10));
    }
    // Let the client read everything before the connection closes.
    let _ = stream.shutdown(std::net::Shutdown::Write);
    let _ = reader.read_to_end(&mut Vec::new());
}

fn pull(folder: &Path, endpoint: &str, args: &[&str]) -> Output {
    kinograph(folder).env("HF_ENDPOINT", endpoint).args(["models", "pull"]).args(args).output().unwrap()
}

#[test]
fn models_list_shows_files_per_folder_kind() {
    let root = tempfile::tempdir().unwrap();
    touch(&root.path().join("models/checkpoints/ltxv-2b.safetensors"));
    touch(&root.path().join("models/clip/t5xxl.safetensors"));
    touch(&root.path().join("models/checkpoints/notes.txt"));
    let output = kinograph(root.path()).args(["models", "list"]).output().unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let stdout = text(&output.stdout);
    assert!(stdout.contains("checkpoints (1 file; searched: models/checkpoints)\n  ltxv-2b.safetensors\n"), "{stdout}");
    assert!(
        stdout.contains("text_encoders (1 file; searched: models/text_encoders, models/clip)\n  t5xxl.safetensors\n"),
        "{stdout}"
    );
    assert!(stdout.contains("no files in: configs, loras, vae,"), "{stdout}");
    assert!(!stdout.contains("notes.txt"), "{stdout}");

    let one = kinograph(root.path()).args(["models", "list", "vae", "--json"]).output().unwrap();
    assert!(one.status.success(), "{}", text(&one.stderr));
    let listing: serde_json::Value = serde_json::from_slice(&one.stdout).unwrap();
    assert_eq!(listing, serde_json::json!({"vae": {"paths": ["models/vae"], "files": []}}));

    assert!(output.stderr.is_empty(), "{}", text(&output.stderr));
    let elsewhere = kinograph(root.path()).args(["models", "list", "--models-dir", "absent"]).output().unwrap();
    assert!(elsewhere.status.success());
    assert!(
        text(&elsewhere.stderr).contains("note: the models folder absent does not exist"),
        "{}",
        text(&elsewhere.stderr)
    );

    let unknown = kinograph(root.path()).args(["models", "list", "vea"]).output().unwrap();
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("unknown folder kind 'vea'; the folder kinds are: checkpoints"));
}

#[test]
fn models_dir_and_extra_model_paths_are_honoured() {
    let root = tempfile::tempdir().unwrap();
    touch(&root.path().join("elsewhere/ckpts/one.safetensors"));
    touch(&root.path().join("shared/loras/style.safetensors"));
    std::fs::write(root.path().join("extra.yaml"), "shared:\n  base_path: shared\n  loras: loras\n").unwrap();
    let output = kinograph(root.path())
        .args(["models", "list", "--json", "--models-dir", "elsewhere", "--extra-model-paths", "extra.yaml"])
        .output()
        .unwrap();
    assert!(output.status.success(), "{}", text(&output.stderr));
    let listing: serde_json::Value = serde_json::from_slice(&output.stdout).unwrap();
    assert_eq!(listing["checkpoints"]["paths"], serde_json::json!(["elsewhere/checkpoints"]));
    assert_eq!(listing["loras"]["files"], serde_json::json!(["style.safetensors"]));

    std::fs::write(root.path().join("bad.yaml"), "shared:\n  loras: 3\n").unwrap();
    let output = kinograph(root.path()).args(["models", "list", "--extra-model-paths", "bad.yaml"]).output().unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("bad.yaml: section 'shared', key 'loras'"), "{}", text(&output.stderr));

    // The same options on the workflow commands.
    let workflow = Path::new(env!("CARGO_MANIFEST_DIR")).join("workflows/hello_kinograph.json");
    let output = kinograph(root.path())
        .arg("validate")
        .arg(&workflow)
        .args(["--models-dir", "elsewhere", "--extra-model-paths", "bad.yaml"])
        .output()
        .unwrap();
    assert_eq!(output.status.code(), Some(1));
    assert!(text(&output.stderr).contains("bad.yaml"), "{}", text(&output.stderr));
    for command in [["validate"].as_slice(), ["nodes"].as_slice()] {
        let mut run = kinograph(root.path());
        run.args(command);
        if command == ["validate"] {
            run.arg(&workflow);
        }
        let output = run.args(["--models-dir", "elsewhere", "--extra-model-paths", "extra.yaml"]).output().unwrap();
        assert!(output.status.success(), "{command:?}: {}", text(&output.stderr));
    }
}

#[test]
fn pull_offline_fails_clearly_and_leaves_nothing() {
    let root = tempfile::tempdir().unwrap();
    let endpoint = format!("http://127.0.0.1:{}", closed_port());
    let output = pull(root.path(), &endpoint, &["acme/tiny-ltx", "split_files/vae/ltxv_vae.safetensors"]);
    assert_eq!(output.status.code(), Some(1));
    let stderr = text(&output.stderr);
    assert!(
        stderr.contains(&format!(
            "error: cannot download split_files/vae/ltxv_vae.safetensors from acme/tiny-ltx (revision main): \
             cannot reach {endpoint}"
        )),
        "{stderr}"
    );
    assert!(stderr.contains("offline?"), "{stderr}");
    assert!(output.stdout.is_empty());
    assert!(!root.path().join("models").exists(), "left behind: {:?}", tree(root.path()));
}

#[test]
fn pull_puts_the_file_in_the_guessed_folder_and_prints_its_path() {
    let root = tempfile::tempdir().unwrap();
    let weights: Vec<u8> = (0..=255u8).cycle().take(70_000).collect();
    let endpoint =
        fake_hub("acme/tiny-ltx", vec![("text_encoder/t5-tiny.safetensors", weights.clone())], Body::Whole, 8);
    let output = pull(root.path(), &endpoint, &["acme/tiny-ltx", "text_encoder/t5-tiny.safetensors"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    let destination = PathBuf::from("models/text_encoders/t5-tiny.safetensors");
    assert_eq!(text(&output.stdout).trim(), destination.display().to_string());
    assert_eq!(std::fs::read(root.path().join(&destination)).unwrap(), weights);
    assert_eq!(tree(&root.path().join("models")), vec!["text_encoders", "text_encoders/t5-tiny.safetensors"]);

    // Never overwritten, nor duplicated under another folder of the same kind.
    let again =
        pull(root.path(), &endpoint, &["acme/tiny-ltx", "text_encoder/t5-tiny.safetensors", "--folder", "clip"]);
    assert_eq!(again.status.code(), Some(1));
    assert!(text(&again.stderr).contains("already in folder kind 'text_encoders'"), "{}", text(&again.stderr));
    assert_eq!(std::fs::read(root.path().join(&destination)).unwrap(), weights);
}

#[test]
fn pull_honours_folder_and_models_dir() {
    let root = tempfile::tempdir().unwrap();
    let endpoint = fake_hub("acme/tiny-ltx", vec![("weights.bin", b"0123456789".to_vec())], Body::Whole, 8);
    let output =
        pull(root.path(), &endpoint, &["acme/tiny-ltx", "weights.bin", "--folder", "unet", "--models-dir", "store"]);
    assert!(output.status.success(), "{}", text(&output.stderr));
    assert_eq!(text(&output.stdout).trim(), "store/diffusion_models/weights.bin");
    assert_eq!(std::fs::read(root.path().join("store/diffusion_models/weights.bin")).unwrap(), b"0123456789");

    let unknown = pull(root.path(), &endpoint, &["acme/tiny-ltx", "weights.bin", "--folder", "vea"]);
    assert_eq!(unknown.status.code(), Some(1));
    assert!(text(&unknown.stderr).contains("unknown folder kind 'vea'"), "{}", text(&unknown.stderr));
}

#[test]
fn pull_http_failures_leave_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let endpoint = fake_hub("acme/tiny-ltx", vec![("ltxv.safetensors", vec![7u8; 50_000])], Body::CutShort, 8);
    let missing = pull(root.path(), &endpoint, &["acme/tiny-ltx", "absent.safetensors"]);
    assert_eq!(missing.status.code(), Some(1));
    assert!(text(&missing.stderr).contains("answered 404 (not found)"), "{}", text(&missing.stderr));
    assert!(!root.path().join("models").exists(), "left behind: {:?}", tree(root.path()));

    let cut = pull(root.path(), &endpoint, &["acme/tiny-ltx", "ltxv.safetensors"]);
    assert_eq!(cut.status.code(), Some(1), "{}", text(&cut.stderr));
    assert!(text(&cut.stderr).contains("error: cannot download ltxv.safetensors"), "{}", text(&cut.stderr));
    assert!(!root.path().join("models").exists(), "left behind: {:?}", tree(root.path()));
}

#[cfg(unix)]
#[test]
fn pull_interrupted_with_ctrl_c_leaves_nothing_behind() {
    let root = tempfile::tempdir().unwrap();
    let endpoint = fake_hub("acme/tiny-ltx", vec![("ltxv.safetensors", vec![7u8; 200_000])], Body::Stall, 4);
    let child = kinograph(root.path())
        .env("HF_ENDPOINT", &endpoint)
        .args(["models", "pull", "acme/tiny-ltx", "ltxv.safetensors"])
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .unwrap();
    // Wait until part of the file is on disk, in the staging folder.
    let started = std::time::Instant::now();
    while !tree(root.path())
        .iter()
        .any(|name| name.contains(".kinograph-download-") && Path::new(name).extension().is_some_and(|e| e == "part"))
    {
        assert!(started.elapsed() < Duration::from_secs(10), "the download never started: {:?}", tree(root.path()));
        std::thread::sleep(Duration::from_millis(20));
    }
    assert!(Command::new("kill").args(["-INT", &child.id().to_string()]).status().unwrap().success());
    let pressed = std::time::Instant::now();
    let output = child.wait_with_output().unwrap();
    assert!(pressed.elapsed() < Duration::from_secs(3), "stopped after {:?}", pressed.elapsed());
    assert_eq!(output.status.code(), Some(130), "{}", text(&output.stderr));
    assert!(text(&output.stderr).contains("interrupted: nothing was kept"), "{}", text(&output.stderr));
    assert!(!root.path().join("models").exists(), "left behind: {:?}", tree(root.path()));
}
