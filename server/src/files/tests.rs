use super::*;

/// Three empty folders in a temporary directory (kept alive by the returned guard).
fn folders() -> (tempfile::TempDir, Folders) {
    let root = tempfile::tempdir().unwrap();
    let folders = Folders {
        output: root.path().join("output"),
        input: root.path().join("input"),
        temp: root.path().join("temp"),
    };
    for kind in [FileKind::Output, FileKind::Input, FileKind::Temp] {
        fs::create_dir_all(folders.folder(kind)).unwrap();
    }
    (root, folders)
}

/// The traversal and platform forms every client-supplied path is checked for.
const ESCAPING_NAMES: &[&str] = &[
    "../secret.txt",
    "a/../../etc/passwd",
    "a/..",
    "..",
    "/etc/passwd",
    "//server/share/x.png",
    "C:",
    "C:/Windows/win.ini",
    "c:evil.png",
    "..\\secret.txt",
    "a\\b.png",
    "x.png\0.txt",
    "x\n.png",
];

#[test]
fn kinds_parse_with_their_defaults() {
    assert_eq!(FileKind::for_view(None).unwrap(), FileKind::Output);
    assert_eq!(FileKind::for_view(Some("")).unwrap(), FileKind::Output);
    assert_eq!(FileKind::for_upload(None).unwrap(), FileKind::Input);
    assert_eq!(FileKind::for_upload(Some("temp")).unwrap(), FileKind::Temp);
    assert_eq!(FileKind::for_view(Some("input")).unwrap(), FileKind::Input);
    let error = FileKind::for_view(Some("models")).unwrap_err();
    assert!(matches!(error, FileError::UnknownKind { .. }));
    assert_eq!(error.status(), StatusCode::BAD_REQUEST);
    assert!(error.to_string().contains("'models'"), "{error}");
}

#[test]
fn an_existing_file_resolves_inside_its_folder() {
    let (_root, folders) = folders();
    fs::create_dir_all(folders.output.join("videos")).unwrap();
    fs::write(folders.output.join("videos/clip.mp4"), b"mp4").unwrap();
    let path = resolve_existing(&folders, FileKind::Output, "videos", "clip.mp4").unwrap();
    assert_eq!(path, fs::canonicalize(folders.output.join("videos/clip.mp4")).unwrap());
    // A subpath in the filename and `.`/empty components are fine.
    assert_eq!(resolve_existing(&folders, FileKind::Output, "", "videos/clip.mp4").unwrap(), path);
    assert_eq!(resolve_existing(&folders, FileKind::Output, "./videos/", "clip.mp4").unwrap(), path);
}

#[test]
fn missing_files_and_folders_are_not_found() {
    let (_root, folders) = folders();
    fs::create_dir_all(folders.output.join("sub")).unwrap();
    fs::write(folders.output.join("file.png"), b"png").unwrap();
    for (subfolder, filename) in [("", "missing.png"), ("", "sub"), ("file.png", "x.png"), ("nowhere", "x.png")] {
        let error = resolve_existing(&folders, FileKind::Output, subfolder, filename).unwrap_err();
        assert!(matches!(error, FileError::NotFound { .. }), "{subfolder}/{filename}: {error}");
        assert_eq!(error.status(), StatusCode::NOT_FOUND);
    }
    // No temp folder at all: still a missing file.
    fs::remove_dir(&folders.temp).unwrap();
    assert!(matches!(resolve_existing(&folders, FileKind::Temp, "", "x.png"), Err(FileError::NotFound { .. })));
}

#[test]
fn every_escape_is_refused_on_view_filenames_and_subfolders() {
    let (root, folders) = folders();
    // Targets that exist, so a refusal cannot be a mere "not found".
    fs::write(root.path().join("secret.txt"), b"secret").unwrap();
    for name in ESCAPING_NAMES {
        for (subfolder, filename) in [("", *name), (*name, "x.png")] {
            let error = resolve_existing(&folders, FileKind::Output, subfolder, filename).unwrap_err();
            assert!(
                matches!(error, FileError::Escapes { .. } | FileError::BadCharacter { .. }),
                "{subfolder:?} {filename:?}: {error}"
            );
            assert!(error.status() == StatusCode::FORBIDDEN || error.status() == StatusCode::BAD_REQUEST);
        }
    }
    for filename in ["", ".", "./"] {
        let error = resolve_existing(&folders, FileKind::Output, "", filename).unwrap_err();
        assert!(matches!(error, FileError::Empty { part: NamePart::Filename }), "{filename:?}: {error}");
    }
}

#[test]
fn errors_name_the_string_and_the_folder() {
    let (_root, folders) = folders();
    let error = resolve_existing(&folders, FileKind::Output, "", "a/../../etc/passwd").unwrap_err();
    assert_eq!(
        error.to_string(),
        "the filename 'a/../../etc/passwd' leaves the output folder: it has a '..' component"
    );
    let error = resolve_existing(&folders, FileKind::Input, "x\ny", "a.png").unwrap_err();
    assert_eq!(
        error.to_string(),
        "the subfolder 'x\\ny' contains a control character, which file names here may not contain"
    );
}

#[cfg(unix)]
#[test]
fn a_link_pointing_out_of_the_folder_is_refused() {
    let (root, folders) = folders();
    fs::write(root.path().join("secret.txt"), b"secret").unwrap();
    std::os::unix::fs::symlink(root.path().join("secret.txt"), folders.output.join("innocent.png")).unwrap();
    std::os::unix::fs::symlink(root.path(), folders.output.join("outside")).unwrap();
    for (subfolder, filename) in [("", "innocent.png"), ("outside", "secret.txt"), ("", "outside/secret.txt")] {
        let error = resolve_existing(&folders, FileKind::Output, subfolder, filename).unwrap_err();
        assert!(matches!(error, FileError::Escapes { why: Escape::ResolvesOutside, .. }), "{error}");
        assert_eq!(error.status(), StatusCode::FORBIDDEN);
    }
    // A sibling folder whose name starts with the folder's is still outside.
    fs::create_dir(root.path().join("output-other")).unwrap();
    fs::write(root.path().join("output-other/x.png"), b"png").unwrap();
    std::os::unix::fs::symlink(root.path().join("output-other"), folders.output.join("other")).unwrap();
    assert!(matches!(
        resolve_existing(&folders, FileKind::Output, "other", "x.png"),
        Err(FileError::Escapes { why: Escape::ResolvesOutside, .. })
    ));
}

#[cfg(unix)]
#[test]
fn a_link_inside_the_folder_pointing_inside_is_allowed() {
    let (_root, folders) = folders();
    fs::create_dir(folders.output.join("real")).unwrap();
    fs::write(folders.output.join("real/frame.png"), b"png").unwrap();
    std::os::unix::fs::symlink(folders.output.join("real"), folders.output.join("alias")).unwrap();
    std::os::unix::fs::symlink("real/frame.png", folders.output.join("latest.png")).unwrap();
    let expected = fs::canonicalize(folders.output.join("real/frame.png")).unwrap();
    assert_eq!(resolve_existing(&folders, FileKind::Output, "alias", "frame.png").unwrap(), expected);
    assert_eq!(resolve_existing(&folders, FileKind::Output, "", "latest.png").unwrap(), expected);
}

#[cfg(unix)]
#[test]
fn a_folder_reached_through_a_link_still_checks_against_its_real_path() {
    let root = tempfile::tempdir().unwrap();
    fs::create_dir(root.path().join("real-output")).unwrap();
    fs::write(root.path().join("real-output/x.png"), b"png").unwrap();
    std::os::unix::fs::symlink(root.path().join("real-output"), root.path().join("output")).unwrap();
    let folders = Folders {
        output: root.path().join("output"),
        input: root.path().join("input"),
        temp: root.path().join("temp"),
    };
    assert!(resolve_existing(&folders, FileKind::Output, "", "x.png").is_ok());
}

#[test]
fn upload_names_are_sanitised() {
    for (original, expected) in [
        ("photo.png", "photo.png"),
        ("../../x.png", "x.png"),
        ("C:\\evil\\x.png", "x.png"),
        ("C:x.png", "x.png"),
        ("/etc/passwd", "passwd"),
        (".hidden.png", "hidden.png"),
        ("...png", "png"),
        ("na\0me.png", "name.png"),
        ("line\nbreak\r.png", "linebreak.png"),
        ("  spaced name.png  ", "spaced name.png"),
        ("archive.tar.gz", "archive.tar.gz"),
    ] {
        assert_eq!(sanitize_upload_name(original).unwrap(), expected, "{original:?}");
    }
    for original in ["", "..", "a/", "a\\", "\0", ".", "\n\n", "C:"] {
        let error = sanitize_upload_name(original).unwrap_err();
        assert!(matches!(error, FileError::NothingLeft { .. }), "{original:?}: {error}");
    }
}

#[test]
fn every_escape_is_refused_on_upload_subfolders() {
    let (root, folders) = folders();
    for name in ESCAPING_NAMES {
        let error = upload_target(&folders, FileKind::Input, name, "x.png", false, b"png").unwrap_err();
        assert!(matches!(error, FileError::Escapes { .. } | FileError::BadCharacter { .. }), "{name:?}: {error}");
    }
    // Nothing was created outside the input folder (or inside it).
    let mut entries: Vec<_> = fs::read_dir(root.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    entries.sort();
    assert_eq!(entries, ["input", "output", "temp"]);
    assert_eq!(fs::read_dir(&folders.input).unwrap().count(), 0);
}

#[test]
fn an_upload_with_a_hostile_name_lands_in_the_folder() {
    let (_root, folders) = folders();
    for original in ["../../x.png", "C:\\evil\\x.png", ".hidden.png"] {
        let target = upload_target(&folders, FileKind::Input, "", original, true, b"png").unwrap();
        write_upload(&target, b"png").unwrap();
        assert_eq!(target.directory, fs::canonicalize(&folders.input).unwrap());
        assert!(target.path().starts_with(&target.directory));
    }
    let mut names: Vec<_> = fs::read_dir(&folders.input).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    names.sort();
    assert_eq!(names, ["hidden.png", "x.png"]);
}

#[test]
fn uploads_create_their_subfolder_and_report_it() {
    let (_root, folders) = folders();
    let target = upload_target(&folders, FileKind::Input, "masks/today/", "m.png", false, b"png").unwrap();
    assert!(folders.input.join("masks/today").is_dir());
    assert_eq!(target.subfolder, "masks/today");
    assert!(target.needs_write);
    write_upload(&target, b"png").unwrap();
    assert_eq!(fs::read(folders.input.join("masks/today/m.png")).unwrap(), b"png");
    assert_eq!(
        target.response_json(),
        serde_json::json!({"name": "m.png", "subfolder": "masks/today", "type": "input"})
    );
    // A subfolder that is a file is refused.
    let error = upload_target(&folders, FileKind::Input, "masks/today/m.png", "n.png", false, b"png").unwrap_err();
    assert!(matches!(error, FileError::NotAFolder { .. }), "{error}");
}

#[cfg(unix)]
#[test]
fn uploads_never_follow_a_link_out_of_the_folder() {
    let (root, folders) = folders();
    std::os::unix::fs::symlink(root.path(), folders.input.join("escape")).unwrap();
    let error = upload_target(&folders, FileKind::Input, "escape/new", "x.png", false, b"png").unwrap_err();
    assert!(matches!(error, FileError::Escapes { why: Escape::ResolvesOutside, .. }), "{error}");
    assert!(!root.path().join("new").exists());
    // An existing link under the upload's name is never read to compare, only stepped over.
    fs::write(root.path().join("secret.png"), b"png").unwrap();
    std::os::unix::fs::symlink(root.path().join("secret.png"), folders.input.join("x.png")).unwrap();
    let target = upload_target(&folders, FileKind::Input, "", "x.png", false, b"png").unwrap();
    assert_eq!((target.name.as_str(), target.needs_write), ("x (1).png", true));
}

#[test]
fn duplicate_names_are_numbered_and_identical_uploads_reused() {
    let (_root, folders) = folders();
    let upload = |contents: &[u8], overwrite| {
        let target = upload_target(&folders, FileKind::Input, "", "photo.png", overwrite, contents).unwrap();
        write_upload(&target, contents).unwrap();
        (target.name, target.needs_write)
    };
    assert_eq!(upload(b"first", false), ("photo.png".to_owned(), true));
    // Same bytes: the existing file is reused, nothing written.
    assert_eq!(upload(b"first", false), ("photo.png".to_owned(), false));
    assert_eq!(upload(b"second", false), ("photo (1).png".to_owned(), true));
    assert_eq!(upload(b"third!", false), ("photo (2).png".to_owned(), true));
    // Matching a numbered duplicate reuses it too.
    assert_eq!(upload(b"second", false), ("photo (1).png".to_owned(), false));
    // Overwrite replaces the original name whatever it held.
    assert_eq!(upload(b"replaced", true), ("photo.png".to_owned(), true));
    assert_eq!(fs::read(folders.input.join("photo.png")).unwrap(), b"replaced");
    assert_eq!(fs::read(folders.input.join("photo (1).png")).unwrap(), b"second");
    assert_eq!(fs::read(folders.input.join("photo (2).png")).unwrap(), b"third!");
    // No temporary file is left behind.
    assert_eq!(fs::read_dir(&folders.input).unwrap().count(), 3);
}

#[test]
fn names_without_an_extension_are_numbered_too() {
    let (_root, folders) = folders();
    fs::write(folders.input.join("notes"), b"a").unwrap();
    let target = upload_target(&folders, FileKind::Input, "", "notes", false, b"b").unwrap();
    assert_eq!(target.name, "notes (1)");
}

#[test]
fn a_write_that_cannot_finish_leaves_no_file_behind() {
    let (_root, folders) = folders();
    let target = upload_target(&folders, FileKind::Input, "", "x.png", false, b"png").unwrap();
    // The final name is taken by a folder in between: the rename fails and the temporary file goes.
    fs::create_dir(folders.input.join("x.png")).unwrap();
    fs::write(folders.input.join("x.png/keep"), b"k").unwrap();
    assert!(matches!(write_upload(&target, b"png"), Err(FileError::Io { .. })));
    assert_eq!(fs::read_dir(&folders.input).unwrap().count(), 1);
}

#[test]
fn html_scripts_and_svg_are_downloads() {
    for (name, disposition) in [
        ("page.html", "attachment; filename=\"page.html\""),
        ("page.HTM", "attachment; filename=\"page.HTM\""),
        ("app.js", "attachment; filename=\"app.js\""),
        ("app.mjs", "attachment; filename=\"app.mjs\""),
        ("logo.svg", "attachment; filename=\"logo.svg\""),
        ("page.xhtml", "attachment; filename=\"page.xhtml\""),
        ("feed.xml", "attachment; filename=\"feed.xml\""),
        ("model.safetensors", "attachment; filename=\"model.safetensors\""),
        ("no_extension", "attachment; filename=\"no_extension\""),
        ("say \"hi\\\".html", "attachment; filename=\"say \\\"hi\\\\\\\".html\""),
    ] {
        let (content_type, actual) = content_headers(Path::new(name));
        assert_eq!(content_type, "application/octet-stream", "{name}");
        assert_eq!(actual.as_deref(), Some(disposition), "{name}");
    }
    let (_, disposition) = content_headers(Path::new("été\r\n.html"));
    assert_eq!(
        disposition.as_deref(),
        Some("attachment; filename=\"_t___.html\"; filename*=UTF-8''%C3%A9t%C3%A9%0D%0A.html")
    );
}

#[test]
fn media_is_shown_inline() {
    for (name, expected) in [
        ("a.png", "image/png"),
        ("a.JPG", "image/jpeg"),
        ("a.jpeg", "image/jpeg"),
        ("a.webp", "image/webp"),
        ("a.gif", "image/gif"),
        ("a.mp4", "video/mp4"),
        ("a.webm", "video/webm"),
        ("a.mov", "video/quicktime"),
        ("a.mkv", "video/x-matroska"),
        ("a.wav", "audio/wav"),
        ("a.flac", "audio/flac"),
        ("a.mp3", "audio/mpeg"),
        ("a.ogg", "audio/ogg"),
        ("a.json", "application/json"),
        ("a.txt", "text/plain; charset=utf-8"),
    ] {
        assert_eq!(content_headers(Path::new(name)), (expected, None), "{name}");
    }
}

#[test]
fn output_names_from_another_machine_stay_in_their_folder() {
    let (root, folders) = folders();
    let target = output_target(&folders, FileKind::Output, "gpu-1/clips", "a.mp4").unwrap();
    assert_eq!(target, fs::canonicalize(&folders.output).unwrap().join("gpu-1/clips/a.mp4"));
    assert!(target.parent().unwrap().is_dir(), "the subfolder is made");
    for name in ESCAPING_NAMES {
        let error = output_target(&folders, FileKind::Output, name, "x.png").unwrap_err();
        assert!(matches!(error, FileError::Escapes { .. } | FileError::BadCharacter { .. }), "{name:?}: {error}");
        let error = output_target(&folders, FileKind::Temp, "", name).unwrap_err();
        assert!(
            matches!(error, FileError::Escapes { .. } | FileError::BadCharacter { .. } | FileError::Empty { .. }),
            "{name:?}: {error}"
        );
    }
    for name in ["", ".", "a/b.png"] {
        assert!(output_target(&folders, FileKind::Output, "", name).is_err(), "{name:?}");
    }
    let mut entries: Vec<_> = fs::read_dir(root.path()).unwrap().map(|entry| entry.unwrap().file_name()).collect();
    entries.sort();
    assert_eq!(entries, ["input", "output", "temp"]);
}
