//! The files behind ComfyUI's `GET /view` and `POST /upload/image` / `POST /upload/mask`, kept inside
//! their folders.
//!
//! A client names a file by folder kind (`type=output|input|temp`), a subfolder and a file name, all
//! strings it chose. Every one of them is checked before it touches the disk: `..` components, absolute
//! paths, Windows drive letters, backslashes, NUL and control characters are refused outright, and a
//! file to serve is resolved through its symbolic links and must still lie inside the canonical folder,
//! so that neither `../../etc/passwd` nor a link in the output folder pointing at `/home` reaches
//! anything outside. The functions here know nothing of HTTP; the routes turn a [`FileError`] into a
//! status with [`FileError::status`].

use axum::http::StatusCode;
use std::fmt::{self, Write as _};
use std::fs;
use std::io::{self, Read, Write};
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};

/// Which of the three folders a request names (ComfyUI's `type` parameter).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FileKind {
    /// Finished outputs (`SaveImage`, `SaveVideo`, ...); what `/view` shows by default.
    Output,
    /// Files for loader nodes (`LoadImage`); where uploads go by default.
    Input,
    /// Previews, removed when the server starts.
    Temp,
}

impl FileKind {
    /// The kind named by a `type` value: `output`, `input` or `temp`; `default` when absent or empty
    /// (ComfyUI's front end sends `type=` with no value for some widgets). Anything else is refused
    /// rather than guessed, so that a typo never serves or overwrites a file in the wrong folder.
    pub fn parse(value: Option<&str>, default: FileKind) -> Result<FileKind, FileError> {
        match value.map(str::trim) {
            None | Some("") => Ok(default),
            Some("output") => Ok(FileKind::Output),
            Some("input") => Ok(FileKind::Input),
            Some("temp") => Ok(FileKind::Temp),
            Some(other) => Err(FileError::UnknownKind { value: other.to_owned() }),
        }
    }

    /// The kind `/view` reads: `output` unless the request says otherwise.
    pub fn for_view(value: Option<&str>) -> Result<FileKind, FileError> {
        FileKind::parse(value, FileKind::Output)
    }

    /// The kind an upload goes to: `input` unless the form says otherwise.
    pub fn for_upload(value: Option<&str>) -> Result<FileKind, FileError> {
        FileKind::parse(value, FileKind::Input)
    }

    /// The `type` value ComfyUI uses for this kind (also what upload responses report).
    pub fn as_str(self) -> &'static str {
        match self {
            FileKind::Output => "output",
            FileKind::Input => "input",
            FileKind::Temp => "temp",
        }
    }
}

impl fmt::Display for FileKind {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(self.as_str())
    }
}

/// The three folders files are served from and uploaded to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Folders {
    /// Where outputs are saved (ComfyUI's `--output-directory`).
    pub output: PathBuf,
    /// Where uploads and loader inputs live (ComfyUI's `--input-directory`).
    pub input: PathBuf,
    /// Where previews are written (ComfyUI's `--temp-directory`).
    pub temp: PathBuf,
}

impl Folders {
    /// The folder for `kind`.
    pub fn folder(&self, kind: FileKind) -> &Path {
        match kind {
            FileKind::Output => &self.output,
            FileKind::Input => &self.input,
            FileKind::Temp => &self.temp,
        }
    }
}

/// Which client-supplied string a [`FileError`] is about.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum NamePart {
    /// The `filename` of `/view`.
    Filename,
    /// The `subfolder` of `/view` or of an upload.
    Subfolder,
    /// The name of an uploaded file, as the browser sent it.
    UploadName,
}

impl fmt::Display for NamePart {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            NamePart::Filename => "filename",
            NamePart::Subfolder => "subfolder",
            NamePart::UploadName => "uploaded file name",
        })
    }
}

/// Why a name was taken to leave its folder.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Escape {
    /// It has a `..` component.
    ParentComponent,
    /// It starts at the root (`/etc/passwd`, `//server/share`).
    Absolute,
    /// It starts with a Windows drive letter (`C:`).
    DriveLetter,
    /// It exists, but after following symbolic links it lies outside the folder.
    ResolvesOutside,
}

impl fmt::Display for Escape {
    fn fmt(&self, formatter: &mut fmt::Formatter<'_>) -> fmt::Result {
        formatter.write_str(match self {
            Escape::ParentComponent => "it has a '..' component",
            Escape::Absolute => "it is an absolute path",
            Escape::DriveLetter => "it names a Windows drive",
            Escape::ResolvesOutside => "a symbolic link on its way points outside",
        })
    }
}

/// What was wrong with a request for a file, naming the string at fault. Names are shown with
/// `escape_debug`, so that a NUL or a newline in a hostile name cannot forge log lines.
#[derive(Debug, thiserror::Error)]
pub enum FileError {
    /// The `type` value is none of `output`, `input`, `temp`.
    #[error("unknown file type '{}': expected output, input or temp", .value.escape_debug())]
    UnknownKind { value: String },
    /// The filename is empty (or only `.` components).
    #[error("the {part} is empty")]
    Empty { part: NamePart },
    /// The name would leave its folder.
    #[error("the {part} '{}' leaves the {kind} folder: {why}", .name.escape_debug())]
    Escapes { part: NamePart, name: String, kind: FileKind, why: Escape },
    /// The name holds a character no file name here may hold.
    #[error("the {part} '{}' contains {character}, which file names here may not contain", .name.escape_debug())]
    BadCharacter { part: NamePart, name: String, character: &'static str },
    /// An uploaded name with nothing left once path separators, control characters and leading dots
    /// were removed.
    #[error("the uploaded file name '{}' has nothing left once made safe", .name.escape_debug())]
    NothingLeft { name: String },
    /// No such file (or it is a folder).
    #[error("no file '{}' in the {kind} folder", .name.escape_debug())]
    NotFound { kind: FileKind, name: String },
    /// A subfolder to upload into exists as a file.
    #[error("the subfolder '{}' of the {kind} folder is not a folder", .name.escape_debug())]
    NotAFolder { kind: FileKind, name: String },
    /// Every `name (n).ext` up to the limit is taken by a different file.
    #[error("no free name for '{}' in the {kind} folder after {MAX_DUPLICATES} tries", .name.escape_debug())]
    NoFreeName { kind: FileKind, name: String },
    /// The disk said no.
    #[error("could not {action} {}: {source}", .path.display())]
    Io {
        action: &'static str,
        path: PathBuf,
        #[source]
        source: io::Error,
    },
}

impl FileError {
    /// The HTTP status a route answers with: 400 for a malformed request, 403 for a name that leaves its
    /// folder, 404 for a missing file, 500 when the disk failed.
    pub fn status(&self) -> StatusCode {
        match self {
            FileError::UnknownKind { .. }
            | FileError::Empty { .. }
            | FileError::BadCharacter { .. }
            | FileError::NothingLeft { .. }
            | FileError::NotAFolder { .. } => StatusCode::BAD_REQUEST,
            FileError::Escapes { .. } => StatusCode::FORBIDDEN,
            FileError::NotFound { .. } => StatusCode::NOT_FOUND,
            FileError::NoFreeName { .. } | FileError::Io { .. } => StatusCode::INTERNAL_SERVER_ERROR,
        }
    }
}

/// How many `name (n).ext` variants an upload tries before giving up (ComfyUI loops without a bound).
pub const MAX_DUPLICATES: u32 = 10_000;

/// Splits a client-supplied relative path into its components, refusing every form that could leave
/// the folder or that means something else on another platform. `.` and empty components (`a//b`,
/// a trailing `/`) are dropped, as the OS would.
fn checked_components(part: NamePart, kind: FileKind, name: &str) -> Result<Vec<&str>, FileError> {
    let escapes = |why| FileError::Escapes { part, name: name.to_owned(), kind, why };
    let bad = |character| FileError::BadCharacter { part, name: name.to_owned(), character };
    if name.contains('\0') {
        return Err(bad("a NUL byte"));
    }
    // A backslash is a separator on Windows and an ordinary character on Unix: refusing it keeps the
    // meaning of a name the same on both, and no name ComfyUI writes has one.
    if name.contains('\\') {
        return Err(bad("a backslash"));
    }
    if name.chars().any(char::is_control) {
        return Err(bad("a control character"));
    }
    if name.starts_with('/') {
        return Err(escapes(Escape::Absolute));
    }
    let mut components = Vec::new();
    for component in name.split('/') {
        match component {
            "" | "." => {}
            ".." => return Err(escapes(Escape::ParentComponent)),
            component if has_drive_letter(component) => return Err(escapes(Escape::DriveLetter)),
            component => components.push(component),
        }
    }
    Ok(components)
}

/// `C:`, `c:foo`: a drive on Windows (relative to that drive's current folder without a separator).
fn has_drive_letter(component: &str) -> bool {
    let bytes = component.as_bytes();
    bytes.len() >= 2 && bytes[0].is_ascii_alphabetic() && bytes[1] == b':'
}

fn io_error(action: &'static str, path: &Path, source: io::Error) -> FileError {
    FileError::Io { action, path: path.to_owned(), source }
}

/// The file `/view` serves for `subfolder` and `filename` in the folder of `kind`, with its symbolic
/// links resolved. The result lies inside the folder's canonical path: a symbolic link inside the folder
/// may point elsewhere inside it, but one pointing out is refused ([`Escape::ResolvesOutside`]). A
/// missing file, a folder, and a path through a file are all [`FileError::NotFound`].
///
/// The check and the later open are two steps; someone who can already replace files inside the folder
/// between them could swap in a link, which is why the folders must not be writable by others.
pub fn resolve_existing(
    folders: &Folders,
    kind: FileKind,
    subfolder: &str,
    filename: &str,
) -> Result<PathBuf, FileError> {
    let sub_components = checked_components(NamePart::Subfolder, kind, subfolder)?;
    let file_components = checked_components(NamePart::Filename, kind, filename)?;
    if file_components.is_empty() {
        return Err(FileError::Empty { part: NamePart::Filename });
    }
    let not_found = || FileError::NotFound { kind, name: display_name(subfolder, filename) };
    // Every candidate is compared with the folder's resolved path, so a folder that is itself a link works.
    let root = match fs::canonicalize(folders.folder(kind)) {
        Ok(root) => root,
        // No folder yet (nothing saved): the file is missing, not the server broken.
        Err(error) if error.kind() == io::ErrorKind::NotFound => return Err(not_found()),
        Err(error) => return Err(io_error("open the folder", folders.folder(kind), error)),
    };
    let candidate: PathBuf =
        sub_components.iter().chain(&file_components).fold(root.clone(), |path, component| path.join(component));
    let resolved = match fs::canonicalize(&candidate) {
        Ok(resolved) => resolved,
        Err(error) if matches!(error.kind(), io::ErrorKind::NotFound | io::ErrorKind::NotADirectory) => {
            return Err(not_found());
        }
        Err(error) => return Err(io_error("resolve", &candidate, error)),
    };
    // `Path::starts_with` compares whole components, so `/out-other` is not inside `/out`.
    if !resolved.starts_with(&root) {
        return Err(FileError::Escapes {
            part: NamePart::Filename,
            name: display_name(subfolder, filename),
            kind,
            why: Escape::ResolvesOutside,
        });
    }
    match fs::metadata(&resolved) {
        Ok(metadata) if metadata.is_file() => Ok(resolved),
        Ok(_) => Err(not_found()),
        Err(error) if error.kind() == io::ErrorKind::NotFound => Err(not_found()),
        Err(error) => Err(io_error("read the metadata of", &resolved, error)),
    }
}

/// `subfolder/filename` as the client wrote them, for messages.
fn display_name(subfolder: &str, filename: &str) -> String {
    if subfolder.is_empty() { filename.to_owned() } else { format!("{subfolder}/{filename}") }
}

/// The name an uploaded file is stored under: the last component of what the browser sent (after
/// either separator, so `C:\evil\x.png` is `x.png`), without control characters, NUL or leading dots (a
/// dot file would be hidden, and `..` must never survive). The extension is kept, since loaders pick
/// their decoder by it.
pub fn sanitize_upload_name(original: &str) -> Result<String, FileError> {
    let last = original.rsplit(['/', '\\']).next().unwrap_or_default();
    let cleaned: String = last.chars().filter(|character| !character.is_control()).collect();
    let cleaned = cleaned.trim();
    // `C:x.png` (a drive without a separator) would still name a drive on Windows.
    let cleaned = if has_drive_letter(cleaned) { cleaned.get(2..).unwrap_or_default() } else { cleaned };
    let cleaned = cleaned.trim_start_matches('.').trim_start();
    if cleaned.is_empty() {
        return Err(FileError::NothingLeft { name: original.to_owned() });
    }
    Ok(cleaned.to_owned())
}

/// Where an upload goes, as [`upload_target`] decided it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct UploadTarget {
    /// The folder it is written to, inside the kind's folder, with symbolic links resolved.
    pub directory: PathBuf,
    /// The final file name (the sanitised name, or `name (n).ext` when that was taken).
    pub name: String,
    /// The subfolder as the response reports it: its components joined with `/`.
    pub subfolder: String,
    /// The folder kind.
    pub kind: FileKind,
    /// False when a file with the same name and the same bytes is already there (nothing to write).
    pub needs_write: bool,
}

impl UploadTarget {
    /// The final path of the file.
    pub fn path(&self) -> PathBuf {
        self.directory.join(&self.name)
    }

    /// ComfyUI's upload response: `{"name", "subfolder", "type"}`.
    pub fn response_json(&self) -> serde_json::Value {
        serde_json::json!({ "name": self.name, "subfolder": self.subfolder, "type": self.kind.as_str() })
    }
}

/// Decides where an upload goes, as ComfyUI does: the sanitised name in `subfolder` (created when
/// missing, one component at a time so that a link on the way cannot make it create folders outside).
/// When a file of that name exists and `overwrite` is false, an identical file is reused (no write) and
/// a different one makes it try `name (1).ext`, `name (2).ext`, ... in turn, each compared the same
/// way. An existing symbolic link or folder under a candidate name counts as taken and is never read.
pub fn upload_target(
    folders: &Folders,
    kind: FileKind,
    subfolder: &str,
    original_name: &str,
    overwrite: bool,
    contents: &[u8],
) -> Result<UploadTarget, FileError> {
    let name = sanitize_upload_name(original_name)?;
    let components = checked_components(NamePart::Subfolder, kind, subfolder)?;
    let base = folders.folder(kind);
    // The kind's folder is the user's configuration, so creating it is safe; ComfyUI makes it at start.
    fs::create_dir_all(base).map_err(|error| io_error("create the folder", base, error))?;
    let root = fs::canonicalize(base).map_err(|error| io_error("resolve the folder", base, error))?;
    let directory = enter_subfolder(&root, kind, subfolder, &components)?;
    let subfolder = components.join("/");

    let path = Path::new(&name);
    let stem = path.file_stem().and_then(|stem| stem.to_str()).unwrap_or(&name).to_owned();
    let extension = path.extension().and_then(|extension| extension.to_str()).map(|extension| format!(".{extension}"));
    for attempt in 0..=MAX_DUPLICATES {
        let candidate = if attempt == 0 {
            name.clone()
        } else {
            format!("{stem} ({attempt}){}", extension.as_deref().unwrap_or(""))
        };
        let candidate_path = directory.join(&candidate);
        let target = |needs_write| UploadTarget {
            directory: directory.clone(),
            name: candidate.clone(),
            subfolder: subfolder.clone(),
            kind,
            needs_write,
        };
        let metadata = match fs::symlink_metadata(&candidate_path) {
            Ok(metadata) => metadata,
            Err(error) if error.kind() == io::ErrorKind::NotFound => return Ok(target(true)),
            Err(error) => return Err(io_error("inspect", &candidate_path, error)),
        };
        // Overwriting replaces a file or a link (the rename swaps the link itself, never its target).
        if overwrite && attempt == 0 && !metadata.is_dir() {
            return Ok(target(true));
        }
        if metadata.is_file() && metadata.len() == contents.len() as u64 {
            let same = same_contents(&candidate_path, contents)
                .map_err(|error| io_error("compare the upload with", &candidate_path, error))?;
            if same {
                return Ok(target(false));
            }
        }
    }
    Err(FileError::NoFreeName { kind, name })
}

/// Where an output file copied from another machine goes: `filename` (one plain name) in `subfolder` of the
/// kind's folder, the subfolder created as uploads create it and checked the same way, so that names sent
/// by a worker can no more leave the folder than a client's can.
pub fn output_target(folders: &Folders, kind: FileKind, subfolder: &str, filename: &str) -> Result<PathBuf, FileError> {
    let name_components = checked_components(NamePart::Filename, kind, filename)?;
    let [name] = name_components.as_slice() else {
        return Err(if name_components.is_empty() {
            FileError::Empty { part: NamePart::Filename }
        } else {
            FileError::BadCharacter { part: NamePart::Filename, name: filename.to_owned(), character: "a '/'" }
        });
    };
    let components = checked_components(NamePart::Subfolder, kind, subfolder)?;
    let base = folders.folder(kind);
    fs::create_dir_all(base).map_err(|error| io_error("create the folder", base, error))?;
    let root = fs::canonicalize(base).map_err(|error| io_error("resolve the folder", base, error))?;
    Ok(enter_subfolder(&root, kind, subfolder, &components)?.join(name))
}

/// Walks into `components` below `root`, creating what is missing, and checks that every step resolves
/// inside `root`. `create_dir` never follows a link (an existing name, link or not, is `AlreadyExists`),
/// and each step is resolved before the next is created under it.
fn enter_subfolder(root: &Path, kind: FileKind, subfolder: &str, components: &[&str]) -> Result<PathBuf, FileError> {
    let mut current = root.to_path_buf();
    for component in components {
        let next = current.join(component);
        match fs::create_dir(&next) {
            Ok(()) => {}
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(io_error("create the folder", &next, error)),
        }
        let resolved = match fs::canonicalize(&next) {
            Ok(resolved) => resolved,
            // A dangling link: wherever it points, it is not a folder inside this one.
            Err(error) if error.kind() == io::ErrorKind::NotFound => {
                return Err(FileError::NotAFolder { kind, name: subfolder.to_owned() });
            }
            Err(error) => return Err(io_error("resolve", &next, error)),
        };
        if !resolved.starts_with(root) {
            return Err(FileError::Escapes {
                part: NamePart::Subfolder,
                name: subfolder.to_owned(),
                kind,
                why: Escape::ResolvesOutside,
            });
        }
        if !resolved.is_dir() {
            return Err(FileError::NotAFolder { kind, name: subfolder.to_owned() });
        }
        current = resolved;
    }
    Ok(current)
}

/// Whether the file at `path` holds exactly `contents`, read in pieces so a large file is never held
/// in memory twice.
fn same_contents(path: &Path, contents: &[u8]) -> io::Result<bool> {
    let mut file = fs::File::open(path)?;
    let mut buffer = [0_u8; 16 * 1024];
    let mut offset = 0;
    loop {
        let read = file.read(&mut buffer)?;
        if read == 0 {
            return Ok(offset == contents.len());
        }
        let Some(expected) = contents.get(offset..offset + read) else { return Ok(false) };
        if expected != &buffer[..read] {
            return Ok(false);
        }
        offset += read;
    }
}

/// Distinguishes the temporary files of concurrent uploads within this process.
static TEMPORARY_COUNTER: AtomicU64 = AtomicU64::new(0);

/// Writes an upload to `target`: into a new temporary file in the same folder, flushed to disk, then
/// renamed over the final name, so that a reader never sees a half-written file under that name and a
/// failed write leaves nothing behind. Does nothing when `target.needs_write` is false.
///
/// Two uploads racing for the same free name both win the check in [`upload_target`]; the later rename
/// replaces the earlier file. The route runs the two steps without yielding between them to keep that
/// window small.
pub fn write_upload(target: &UploadTarget, contents: &[u8]) -> Result<(), FileError> {
    if !target.needs_write {
        return Ok(());
    }
    let final_path = target.path();
    let (temporary_path, mut file) = loop {
        let counter = TEMPORARY_COUNTER.fetch_add(1, Ordering::Relaxed);
        // Short and fixed in shape, so that a name near the length limit still has a temporary twin.
        let temporary_path = target.directory.join(format!(".upload-{}-{counter}.partial", std::process::id()));
        // `create_new` refuses an existing name, so a link planted under the temporary name is never followed.
        match fs::OpenOptions::new().write(true).create_new(true).open(&temporary_path) {
            Ok(file) => break (temporary_path, file),
            Err(error) if error.kind() == io::ErrorKind::AlreadyExists => {}
            Err(error) => return Err(io_error("create", &temporary_path, error)),
        }
    };
    let written = file.write_all(contents).and_then(|()| file.sync_all());
    drop(file);
    let result = written.map_err(|error| io_error("write", &temporary_path, error)).and_then(|()| {
        fs::rename(&temporary_path, &final_path).map_err(|error| io_error("rename into", &final_path, error))
    });
    if result.is_err() {
        // Best effort: the error already reported is the one that matters.
        let _ = fs::remove_file(&temporary_path);
    }
    result
}

/// The `Content-Type` a served file gets, and a `Content-Disposition` when it must be downloaded rather
/// than shown. Images, videos, audio, JSON and plain text are shown inline (the front end puts them in
/// `<img>`, `<video>` and `<audio>`); HTML, JavaScript, SVG, XML and anything unknown are sent as
/// `application/octet-stream` with `attachment`, because an output folder holds files written by custom
/// nodes and workflows from strangers, and a page served inline from the server's origin could drive
/// its API. The route must also set `X-Content-Type-Options: nosniff`, or a browser may sniff an
/// inline file as HTML regardless of its type.
pub fn content_headers(path: &Path) -> (&'static str, Option<String>) {
    let extension = path.extension().and_then(|extension| extension.to_str()).unwrap_or_default().to_ascii_lowercase();
    let content_type = match extension.as_str() {
        "png" => "image/png",
        "jpg" | "jpeg" => "image/jpeg",
        "webp" => "image/webp",
        "gif" => "image/gif",
        "mp4" => "video/mp4",
        "webm" => "video/webm",
        "mov" => "video/quicktime",
        "mkv" => "video/x-matroska",
        "wav" => "audio/wav",
        "flac" => "audio/flac",
        "mp3" => "audio/mpeg",
        "ogg" => "audio/ogg",
        "json" => "application/json",
        "txt" => "text/plain; charset=utf-8",
        // Weights, HTML, scripts, SVG, XML and the unknown: bytes to save, never to render.
        _ => "application/octet-stream",
    };
    let disposition = (content_type == "application/octet-stream").then(|| attachment_disposition(path));
    (content_type, disposition)
}

/// `attachment; filename="..."` with the quotes and backslashes escaped and anything that is not
/// printable ASCII replaced (a header value cannot carry control characters, and browsers read other
/// bytes as Latin-1), plus RFC 5987's `filename*` with the exact UTF-8 name when it differs.
fn attachment_disposition(path: &Path) -> String {
    let name = path.file_name().map_or_else(|| "download".to_owned(), |name| name.to_string_lossy().into_owned());
    let mut ascii = String::with_capacity(name.len());
    for character in name.chars() {
        match character {
            '"' | '\\' => {
                ascii.push('\\');
                ascii.push(character);
            }
            ' '..='~' => ascii.push(character),
            _ => ascii.push('_'),
        }
    }
    let mut header = format!("attachment; filename=\"{ascii}\"");
    if !name.chars().all(|character| (' '..='~').contains(&character)) {
        header.push_str("; filename*=UTF-8''");
        for byte in name.bytes() {
            if byte.is_ascii_alphanumeric() || b"!#$&+-.^_`|~".contains(&byte) {
                header.push(byte as char);
            } else {
                let _ = write!(header, "%{byte:02X}");
            }
        }
    }
    header
}

#[cfg(test)]
mod tests;
