//! Hostile file names: `/view` never serves anything outside its folders, whatever form the traversal
//! takes and even through a symbolic link inside the output folder; uploads with hostile names land,
//! renamed, inside the input folder; HTML, SVG and scripts are served only as downloads. After every
//! refusal the server still serves.

use crate::support::{TestServer, encode, upload};
use std::fs;

/// What the file outside every served folder holds; no answer may contain it.
const SECRET: &str = "TOP SECRET: never served";

/// A server with `inside.txt` in its output folder and `secret.txt` beside (outside) its folders.
fn server_with_a_secret() -> TestServer {
    let server = TestServer::start();
    fs::write(server.output_dir().join("inside.txt"), "inside").unwrap();
    fs::write(server.workspace.root().join("secret.txt"), SECRET).unwrap();
    server
}

#[test]
fn view_refuses_traversal_in_every_form() {
    let server = server_with_a_secret();
    let client = server.client();
    let secret = server.workspace.root().join("secret.txt");
    let absolute = secret.to_str().unwrap().to_string();
    let queries = [
        "filename=..".to_string(),
        "filename=../secret.txt".into(),
        "filename=..%2Fsecret.txt".into(),
        "filename=a/../../secret.txt".into(),
        "filename=inside.txt/../../secret.txt".into(),
        "filename=/etc/passwd".into(),
        "filename=%2Fetc%2Fpasswd".into(),
        format!("filename={}", encode(&absolute)),
        format!("filename={}", encode("C:\\x")),
        "filename=C:/x".into(),
        format!("filename={}", encode("..\\secret.txt")),
        format!("filename={}", encode("output\\..\\..\\secret.txt")),
        "filename=inside.txt%00.png".into(),
        "filename=..%00/secret.txt".into(),
        "filename=secret.txt&subfolder=..".into(),
        "filename=secret.txt&subfolder=..%2F".into(),
        "filename=passwd&subfolder=%2Fetc".into(),
        format!("filename=secret.txt&subfolder={}", encode("output\\..\\..")),
        "filename=secret.txt&subfolder=C:".into(),
        "filename=..%2Fsecret.txt&type=input".into(),
        "filename=..%2Fsecret.txt&type=temp".into(),
        "filename=secret.txt&type=..".into(),
        format!("filename={}", encode("../secret.txt [output]")),
        "filename=%252e%252e%252fsecret.txt".into(),
    ];
    for query in &queries {
        let reply = client.get(&format!("/view?{query}"));
        assert!(matches!(reply.status, 400 | 403 | 404), "/view?{query} answered {}: {}", reply.status, reply.text());
        let text = reply.text();
        assert!(!text.contains(SECRET) && !text.contains("root:"), "/view?{query} leaked a file: {text}");
        client.assert_still_serving();
    }
    let reply = client.get("/view?filename=inside.txt&type=output");
    assert_eq!((reply.status, reply.text().as_str()), (200, "inside"));
}

#[cfg(unix)]
#[test]
fn view_refuses_a_symbolic_link_that_points_outside() {
    use std::os::unix::fs::symlink;
    let server = server_with_a_secret();
    let client = server.client();
    let output = server.output_dir();
    symlink(server.workspace.root().join("secret.txt"), output.join("link.txt")).unwrap();
    symlink(server.workspace.root(), output.join("linked_folder")).unwrap();
    symlink("/etc/passwd", output.join("passwd.txt")).unwrap();
    symlink(output.join("inside.txt"), output.join("alias.txt")).unwrap();
    for query in [
        "filename=link.txt",
        "filename=passwd.txt",
        "filename=secret.txt&subfolder=linked_folder",
        "filename=linked_folder%2Fsecret.txt",
    ] {
        let reply = client.get(&format!("/view?{query}"));
        assert!(matches!(reply.status, 400 | 403 | 404), "/view?{query} answered {}: {}", reply.status, reply.text());
        let text = reply.text();
        assert!(!text.contains(SECRET) && !text.contains("root:"), "/view?{query} leaked a file: {text}");
        client.assert_still_serving();
    }
    let reply = client.get("/view?filename=alias.txt");
    assert_eq!((reply.status, reply.text().as_str()), (200, "inside"), "a link that stays inside is served");
}

#[test]
fn uploads_with_hostile_names_land_renamed_inside_the_input_folder() {
    let server = TestServer::start();
    let client = server.client();
    let contents = format!("upload from process {}", std::process::id());
    let outside = [server.workspace.root().to_path_buf(), server.workspace.root().parent().unwrap().to_path_buf()];
    for name in ["../../evil.png", "C:\\evil.png", "..\\evil.png", "..\\..\\evil.png", "/etc/evil.png", "C:evil.png"] {
        let reply = upload(&client, "/upload/image", name, contents.as_bytes(), &[]);
        assert_eq!(reply.status, 200, "{name}: {}", reply.text());
        let answer = reply.json();
        let stored = answer["name"].as_str().unwrap();
        assert!(
            !stored.contains(['/', '\\']) && !stored.starts_with('.') && !stored.contains(':'),
            "{name} → {stored}"
        );
        assert_eq!(answer["subfolder"], "");
        assert_eq!(answer["type"], "input");
        assert_eq!(fs::read_to_string(server.input_dir().join(stored)).unwrap(), contents, "{name}");
        for folder in &outside {
            let escaped = fs::read_to_string(folder.join("evil.png")).unwrap_or_default();
            assert_ne!(escaped, contents, "{name} was written to {}", folder.display());
        }
        client.assert_still_serving();
    }
    for subfolder in ["..", "../x", "/tmp", "a/../../x", "C:\\x", "x\\..\\.."] {
        let reply = upload(&client, "/upload/image", "fine.png", b"fine", &[("subfolder", subfolder)]);
        assert!(matches!(reply.status, 400 | 403), "subfolder {subfolder}: {} {}", reply.status, reply.text());
        client.assert_still_serving();
    }
    let reply = upload(&client, "/upload/image", "..", b"dots", &[]);
    assert_eq!(reply.status, 400, "a name with nothing left: {}", reply.text());
    let reply = upload(&client, "/upload/image", "fine.png", b"fine", &[("type", "../output")]);
    assert_eq!(reply.status, 400);
    let reply = upload(&client, "/upload/image", "fine.png", b"fine", &[("subfolder", "nested/deeper")]);
    assert_eq!(reply.json()["subfolder"], "nested/deeper");
    assert!(server.input_dir().join("nested/deeper/fine.png").exists());
}

#[test]
fn html_svg_and_scripts_are_served_only_as_downloads() {
    let server = TestServer::start();
    let client = server.client();
    let payload = "<script>fetch('/prompt', {method: 'POST'})</script>";
    for name in ["page.html", "page.HTM", "image.svg", "script.js", "module.mjs", "data.xml", "unknown.bin"] {
        fs::write(server.output_dir().join(name), payload).unwrap();
        let reply = client.get(&format!("/view?filename={name}&type=output"));
        assert_eq!(reply.status, 200, "{name}");
        assert_eq!(reply.header("content-type"), Some("application/octet-stream"), "{name}");
        let disposition = reply.header("content-disposition").unwrap_or_default();
        assert!(disposition.starts_with("attachment"), "{name}: {disposition}");
        assert!(disposition.contains(name), "{name}: {disposition}");
        assert_eq!(reply.header("x-content-type-options"), Some("nosniff"), "{name}");
        assert_eq!(reply.text(), payload);
    }
    fs::write(server.output_dir().join("clip.mp4"), b"not really a video").unwrap();
    let reply = client.get("/view?filename=clip.mp4");
    assert_eq!(reply.header("content-type"), Some("video/mp4"));
    assert_eq!(reply.header("content-disposition"), None, "media is shown inline");
    assert_eq!(reply.header("x-content-type-options"), Some("nosniff"));
}
