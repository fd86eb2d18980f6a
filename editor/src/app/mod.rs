//! The editor window: a menu bar (open, save, recent files, undo, redo, check), the canvas, and a
//! status line. Everything it changes goes through [`crate::model::Editor`].

mod canvas;
pub mod dialogs;
mod node_view;
mod palette;
mod style;

use crate::model::catalog::NODE_WIDTH;
use crate::model::faults::{self, Faults};
use crate::model::media::OutputLoader;
use crate::model::recent::RecentFiles;
use crate::model::remote;
use crate::model::remote::ServerStatus;
use crate::model::run::{QueueError, Runner};
use crate::model::sound::Transport;
use crate::model::sound_output::{DeviceState, SoundOutput, SoundPlayer, silent_message};
use crate::model::{Editor, NodeMode, Pin};
use canvas::{Canvas, RunShown};
use eframe::egui;
use node_view::OutputAction;
use palette::{Palette, PaletteAction};
use std::collections::HashMap;
use std::fmt::Write as _;
use std::path::{Path, PathBuf};

/// The editor's window state around the model.
pub struct EditorApp {
    pub editor: Editor,
    canvas: Canvas,
    palette: Option<Palette>,
    /// The last message for the user (a saved file, an error and its reason).
    pub status: String,
    /// The path typed in the menu bar for Open and Save.
    pub path_text: String,
    recent: RecentFiles,
    /// What the last check (or refused queue) found wrong, by node and input.
    faults: Faults,
    runner: Runner,
    /// The latest preview as a texture, and the node that sent it.
    preview: Option<(String, egui::TextureHandle)>,
    loader: OutputLoader,
    /// The output file last asked of the loader, by node.
    requested: HashMap<String, PathBuf>,
    /// Each output node's file as frames and sound, playing in a loop under the node.
    outputs: HashMap<String, Playback>,
    /// Where the outputs' sound goes.
    sound_output: SoundOutput,
    /// Whether the list of keyboard shortcuts is open.
    pub shortcuts_shown: bool,
    /// The folder the template list reads, as typed.
    pub templates_folder: String,
    /// The templates listed, while the list is open.
    pub templates: Option<Vec<crate::model::templates::Template>>,
    /// Thumbnails read so far (`None`: not an image this build reads).
    thumbnails: HashMap<PathBuf, Option<egui::TextureHandle>>,
    /// The native open or save dialog, while one is open.
    dialogs: dialogs::FileDialogs,
    /// Whether the runner calls for a repaint when something arrives (set on the first frame, when the
    /// window's context is known).
    wake_set: bool,
}

/// An output file's frames on the GPU and its sound, and where their playback is.
pub struct Playback {
    pub file: PathBuf,
    /// None for a sound alone.
    pub frames: Vec<egui::TextureHandle>,
    pub fps: f64,
    /// The clock the frames and the sound share: play, pause, restart, seek, mute.
    pub transport: Transport,
    /// How long its sound plays, when it has one.
    pub sound_seconds: Option<f64>,
    /// The sound on the audio device (none for an image or a silent video).
    pub sound: Option<SoundPlayer>,
}

impl EditorApp {
    /// The window over `editor`, remembering files in `recent`, running graphs in this process.
    pub fn new(editor: Editor, recent: RecentFiles) -> Self {
        let runner = Runner::new(&editor);
        Self::with_runner(editor, recent, runner)
    }

    /// The window over `editor`, running graphs with `runner` (on a server: [`Runner::remote`]).
    pub fn with_runner(editor: Editor, recent: RecentFiles, runner: Runner) -> Self {
        let path_text = editor.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
        let mut canvas = Canvas::default();
        canvas.fit(&editor);
        EditorApp {
            editor,
            canvas,
            palette: None,
            status: String::new(),
            path_text,
            recent,
            faults: Faults::new(),
            runner,
            preview: None,
            loader: OutputLoader::default(),
            requested: HashMap::new(),
            outputs: HashMap::new(),
            sound_output: SoundOutput::default(),
            shortcuts_shown: false,
            templates_folder: "templates".into(),
            templates: None,
            thumbnails: HashMap::new(),
            dialogs: dialogs::FileDialogs::default(),
            wake_set: false,
        }
    }

    /// The runner: where the graph runs, and what the current run shows.
    pub fn runner(&self) -> &Runner {
        &self.runner
    }

    /// Sends the sound of outputs shown from now on to `output` (tests: nowhere, with a reason).
    pub fn set_sound_output(&mut self, output: SoundOutput) {
        self.sound_output = output;
    }

    /// The part of the canvas in view, in canvas units.
    pub fn view(&self) -> egui::Rect {
        self.canvas.view
    }

    /// Shows `view` (canvas units) in the canvas from the next frame on.
    pub fn set_view(&mut self, view: egui::Rect) {
        self.canvas.view = view;
    }

    /// What the last check or refused queue found wrong, by node and input.
    pub fn faults(&self) -> &Faults {
        &self.faults
    }

    /// Where canvas point `point` was on screen in the last frame drawn (`None` before the first).
    pub fn canvas_to_screen(&self, ctx: &egui::Context, point: egui::Pos2) -> Option<egui::Pos2> {
        let transform = ctx.layer_transform_to_global(self.canvas.layer?)?;
        Some(transform * point)
    }

    /// Where `pin`'s socket was on screen in the last frame drawn.
    pub fn pin_on_screen(&self, ctx: &egui::Context, pin: Pin) -> Option<egui::Pos2> {
        let node = self.editor.graph().node(pin.node)?;
        self.canvas_to_screen(ctx, canvas::socket_center(node, pin.output, pin.slot))
    }

    /// Opens a workflow (UI or API JSON, or a PNG or MP4 that carries one), reporting the outcome on the
    /// status line.
    pub fn open(&mut self, path: &Path) {
        match self.editor.open_any(path) {
            Ok(()) => {
                self.status = format!("Opened {}", path.display());
                if self.editor.path.is_none() {
                    self.status.push_str(" (untitled: Save asks for a .json path)");
                }
                self.path_text = self.editor.path.as_ref().map(|p| p.display().to_string()).unwrap_or_default();
                self.faults.clear();
                self.canvas.fit(&self.editor);
                // The last run's node states and preview belong to the graph that was open.
                if !self.runner.view.running {
                    self.runner.view = crate::model::run::RunView::default();
                    self.preview = None;
                    self.outputs.clear();
                    self.requested.clear();
                }
                if let Err(error) = self.recent.add(path) {
                    let _ = write!(self.status, " (recent files not saved: {error})");
                }
            }
            Err(error) => self.status = format!("Could not open: {error}"),
        }
    }

    fn save(&mut self) {
        let path = PathBuf::from(self.path_text.trim());
        if path.as_os_str().is_empty() {
            self.status = "Type a file path to save to.".into();
            return;
        }
        match self.editor.save(&path) {
            Ok(()) => {
                self.status = format!("Saved {}", path.display());
                let _ = self.recent.add(&path);
            }
            Err(error) => self.status = format!("Could not save: {error}"),
        }
    }

    /// Checks the graph as the engine would before a run, outlining the nodes at fault.
    fn check(&mut self) {
        self.faults.clear();
        let conversion = match self.editor.to_prompt() {
            Ok(conversion) => conversion,
            Err(error) => {
                self.status = format!("Cannot convert: {error}");
                return;
            }
        };
        let catalog = &self.editor.catalog;
        let remote = self.runner.server().is_some();
        let checked = kinograph_engine::validate(&conversion.prompt, catalog.registry(), catalog.environment())
            .map(|_| ())
            .or_else(|report| {
                if remote {
                    // The model files are the server's: only what is wrong beyond its lists counts.
                    remote::beyond_server_lists(report, catalog).map_or(Ok(()), Err)
                } else {
                    Err(report)
                }
            });
        match checked {
            Ok(()) => self.status = "The graph is ready to run.".into(),
            Err(report) => {
                self.faults = faults::from_report(&report);
                let first = report.node_errors.iter().find_map(|(id, errors)| {
                    errors.errors.first().map(|error| format!("node {id} ({}): {}", errors.class_type, error.message))
                });
                self.status = format!(
                    "{} problem(s){}",
                    report.error_count(),
                    first.map_or_else(|| format!(": {}", report.error.message), |f| format!("; {f}"))
                );
            }
        }
    }

    /// Starts a run of the graph on the engine's thread.
    fn queue(&mut self, ctx: &egui::Context) {
        let ctx = ctx.clone();
        match self.runner.queue(&mut self.editor, std::sync::Arc::new(move || ctx.request_repaint())) {
            Ok(0) => {
                self.faults.clear();
                self.status = "Running...".into();
            }
            Ok(ahead) => {
                self.faults.clear();
                self.status = format!("Queued behind {ahead} run(s).");
            }
            Err(error) => {
                if let QueueError::Invalid(report) = &error {
                    self.faults = faults::from_report(report);
                }
                self.status = format!("Not queued: {error}");
            }
        }
    }

    /// Takes in what the run reported since the last frame.
    fn follow_run(&mut self, ctx: &egui::Context) {
        if !self.wake_set {
            let waker = ctx.clone();
            self.runner.set_wake(std::sync::Arc::new(move || waker.request_repaint()));
            self.wake_set = true;
        }
        if self.runner.apply_server_lists(&mut self.editor) && self.status.is_empty() {
            self.status = "The model lists are the server's.".into();
        }
        let finished = self.runner.finished;
        if !self.runner.poll() {
            return;
        }
        if let Some((node, preview)) = &self.runner.view.preview {
            let image = egui::ColorImage::from_rgb([preview.width as usize, preview.height as usize], &preview.rgb);
            match &mut self.preview {
                Some((shown, texture)) if shown == node => texture.set(image, egui::TextureOptions::LINEAR),
                _ => {
                    self.preview =
                        Some((node.clone(), ctx.load_texture("preview", image, egui::TextureOptions::LINEAR)));
                }
            }
        }
        if self.runner.finished != finished {
            self.status = self.runner.view.outcome.clone().unwrap_or_default();
            let pending = self.runner.pending();
            if pending > 0 {
                let _ = write!(self.status, " {pending} more queued.");
            }
        }
    }

    fn menu_bar(&mut self, ui: &mut egui::Ui) {
        ui.horizontal(|ui| {
            let label = ui.label("File");
            ui.add(egui::TextEdit::singleline(&mut self.path_text).hint_text("workflow.json").desired_width(280.0))
                .labelled_by(label.id);
            if ui.button("Open").clicked() {
                self.open(&PathBuf::from(self.path_text.trim()));
            }
            if ui.button("Save").clicked() {
                self.save();
            }
            let (folder, name) = self.dialog_start();
            if ui
                .add_enabled(!self.dialogs.is_open(), egui::Button::new("Open…"))
                .on_hover_text("Choose a file")
                .clicked()
            {
                let waker = ui.ctx().clone();
                self.dialogs.ask(dialogs::DialogKind::Open, folder.clone(), None, move || waker.request_repaint());
            }
            if ui
                .add_enabled(!self.dialogs.is_open(), egui::Button::new("Save as…"))
                .on_hover_text("Choose where to save")
                .clicked()
            {
                let waker = ui.ctx().clone();
                self.dialogs.ask(dialogs::DialogKind::Save, folder, name, move || waker.request_repaint());
            }
            ui.menu_button("Recent", |ui| {
                if self.recent.paths.is_empty() {
                    ui.label("No recent files");
                }
                for path in self.recent.paths.clone() {
                    if ui.button(path.display().to_string()).clicked() {
                        self.open(&path);
                        ui.close();
                    }
                }
            });
            ui.separator();
            if ui.add_enabled(self.editor.can_undo(), egui::Button::new("Undo")).clicked() {
                self.editor.undo();
            }
            if ui.add_enabled(self.editor.can_redo(), egui::Button::new("Redo")).clicked() {
                self.editor.redo();
            }
            if ui.button("Add node").clicked() {
                let center = self.canvas.view.center();
                self.palette = Some(Palette::new([center.x, center.y], ui.ctx().content_rect().center()));
            }
            if ui.button("Check").clicked() {
                self.check();
            }
            ui.separator();
            if ui.button("Queue").clicked() {
                self.queue(ui.ctx());
            }
            let pending = self.runner.pending();
            if pending > 0 {
                ui.label(format!("{pending} queued"));
            }
            if ui.add_enabled(self.runner.view.running, egui::Button::new("Stop")).clicked() {
                self.runner.stop();
            }
            if ui.add_enabled(pending > 0, egui::Button::new("Clear queue")).clicked() {
                let dropped = self.runner.clear_queue();
                self.status = format!("Dropped {dropped} queued run(s).");
            }
            ui.separator();
            if ui.button("Templates").on_hover_text("Open a workflow from a folder of templates").clicked() {
                self.templates = match self.templates {
                    Some(_) => None,
                    None => Some(crate::model::templates::list(Path::new(self.templates_folder.trim()))),
                };
            }
            if ui.button("Shortcuts").on_hover_text("The keyboard shortcuts (F1)").clicked() {
                self.shortcuts_shown = !self.shortcuts_shown;
            }
            if let Some(server) = self.runner.server() {
                ui.separator();
                self.server_status(ui, &server);
            }
        });
    }

    /// Where the graph shown is: the workflow, then each subgraph entered; a click on one goes back to it.
    fn breadcrumb_bar(&mut self, ui: &mut egui::Ui) {
        let names = self.editor.breadcrumb();
        let mut leave_to = None;
        ui.horizontal(|ui| {
            if ui.button("Workflow").on_hover_text("Back to the workflow's own graph").clicked() {
                leave_to = Some(0);
            }
            for (depth, name) in names.iter().enumerate() {
                ui.label("›");
                let last = depth + 1 == names.len();
                if ui.add_enabled(!last, egui::Button::new(name.as_str())).clicked() {
                    leave_to = Some(depth + 1);
                }
            }
        });
        if let Some(depth) = leave_to {
            self.editor.leave_to(depth);
            self.canvas.fit(&self.editor);
            self.status = match self.editor.breadcrumb().last() {
                Some(name) => format!("Inside {name}"),
                None => "Back in the workflow".to_string(),
            };
        }
    }

    /// The server the graph runs on, whether it is reachable, and a button that reloads its lists.
    fn server_status(&mut self, ui: &mut egui::Ui, server: &ServerStatus) {
        ui.label(format!("Server: {}", server.url));
        if let Some(problem) = &server.problem {
            ui.colored_label(ui.visuals().error_fg_color, problem);
        }
        if let Some(notice) = &server.notice {
            ui.label(notice).on_hover_text("The last request in the background that went wrong");
        }
        if ui.button("Reload lists").on_hover_text("Read the server's model and file lists again").clicked() {
            self.runner.refresh_server_lists();
            self.status = "Asked the server for its lists.".into();
        }
    }

    /// Keyboard shortcuts, unless a text field has the keyboard.
    fn shortcuts(&mut self, ctx: &egui::Context) {
        if ctx.egui_wants_keyboard_input() {
            return;
        }
        let command = |key| ctx.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND, key));
        let redo = ctx.input_mut(|i| i.consume_key(egui::Modifiers::COMMAND | egui::Modifiers::SHIFT, egui::Key::Z));
        if redo || command(egui::Key::Y) {
            self.editor.redo();
        } else if command(egui::Key::Z) {
            self.editor.undo();
        }
        if command(egui::Key::D) {
            self.editor.duplicate();
        }
        if command(egui::Key::B) {
            self.editor.toggle_mode(NodeMode::Bypassed);
        }
        if command(egui::Key::M) {
            self.editor.toggle_mode(NodeMode::Muted);
        }
        if command(egui::Key::S) {
            self.save();
        }
        if command(egui::Key::G) && !self.editor.selection.is_empty() {
            self.editor.group_selection("Group");
        }
        if command(egui::Key::Enter) {
            self.queue(ctx);
        }
        let (copy, paste, with_links, delete) = ctx.input(|i| {
            let copy = i.events.iter().any(|e| matches!(e, egui::Event::Copy));
            let paste = i.events.iter().any(|e| matches!(e, egui::Event::Paste(_)))
                || i.key_pressed(egui::Key::V) && i.modifiers.command;
            let delete = i.key_pressed(egui::Key::Delete) || i.key_pressed(egui::Key::Backspace);
            (copy || i.key_pressed(egui::Key::C) && i.modifiers.command, paste, i.modifiers.shift, delete)
        });
        if copy {
            let count = self.editor.copy();
            self.status = format!("Copied {count} node(s)");
        }
        if paste && with_links {
            self.editor.paste_with_links();
        } else if paste {
            self.editor.paste();
        }
        if ctx.input_mut(|i| i.consume_key(egui::Modifiers::NONE, egui::Key::F1)) {
            self.shortcuts_shown = !self.shortcuts_shown;
        }
        if delete {
            self.editor.delete_selection();
        }
    }

    /// Asks for the frames and sound of output files nodes reported, takes in those read since the
    /// last frame, and keeps each sound where its frames are.
    fn follow_outputs(&mut self, ctx: &egui::Context) {
        for (node, files) in &self.runner.view.outputs {
            let Some(file) = files.first() else { continue };
            if self.requested.get(node) != Some(file) {
                self.requested.insert(node.clone(), file.clone());
                let waker = ctx.clone();
                self.loader.request(node, file, NODE_WIDTH as usize, move || waker.request_repaint());
            }
        }
        let now = ctx.input(|i| i.time);
        for (node, file, loaded) in self.loader.poll() {
            if self.requested.get(&node) != Some(&file) {
                continue; // a newer file for this node is on its way
            }
            match loaded {
                Ok(media) => {
                    let (frames, fps) = match &media.thumbnails {
                        Some(thumbnails) => {
                            let size = [thumbnails.width, thumbnails.height];
                            let frames = thumbnails
                                .frames
                                .iter()
                                .enumerate()
                                .map(|(index, rgb)| {
                                    let image = egui::ColorImage::from_rgb(size, rgb);
                                    let name = format!("output-{node}-{index}");
                                    ctx.load_texture(name, image, egui::TextureOptions::LINEAR)
                                })
                                .collect::<Vec<_>>();
                            (frames, thumbnails.fps)
                        }
                        None => (Vec::new(), 0.0),
                    };
                    let sound_seconds = media.sound.as_ref().map(|sound| sound.seconds());
                    let transport = Transport::new(frames.len(), fps, sound_seconds, now);
                    let sound = media.sound.map(|sound| {
                        let waker = ctx.clone();
                        SoundPlayer::start(&self.sound_output, sound, transport.length(), move || {
                            waker.request_repaint();
                        })
                    });
                    if let Some(error) = media.sound_error {
                        self.status = format!("Cannot play the output's sound: {error}");
                    }
                    self.outputs.insert(node, Playback { file, frames, fps, transport, sound_seconds, sound });
                }
                Err(message) => self.status = format!("Cannot show the output: {message}"),
            }
        }
        let mut next_change: Option<f64> = None;
        for playback in self.outputs.values_mut() {
            if let Some(player) = &mut playback.sound {
                if let Some(DeviceState::Silent(reason)) = player.poll() {
                    let name = playback.file.file_name().map_or_else(String::new, |n| n.to_string_lossy().into_owned());
                    self.status = silent_message(&name, reason);
                }
                player.follow(&playback.transport, now);
            }
            if let Some(after) = playback.transport.next_change(now) {
                next_change = Some(next_change.map_or(after, |soonest: f64| soonest.min(after)));
            }
        }
        if let Some(after) = next_change {
            ctx.request_repaint_after(std::time::Duration::from_secs_f64(after));
        }
    }

    /// Applies a control under node `node`'s output at clock time `now`, to its frames and sound alike.
    fn output_action(&mut self, node: &str, action: OutputAction, now: f64) {
        let Some(playback) = self.outputs.get_mut(node) else { return };
        let transport = &mut playback.transport;
        match action {
            OutputAction::TogglePlay => transport.toggle_play(now),
            OutputAction::Restart => transport.restart(now),
            OutputAction::ToggleMute => transport.toggle_mute(),
            OutputAction::SeekFrame(frame) => transport.seek_frame(frame, now),
            OutputAction::SeekSeconds(seconds) => transport.seek_seconds(seconds, now),
        }
        if let Some(player) = &mut playback.sound {
            player.follow(&playback.transport, now);
        }
    }

    /// The playback under node `node` (as the prompt names it): its frames, sound and transport.
    pub fn playback(&self, node: &str) -> Option<&Playback> {
        self.outputs.get(node)
    }

    /// The output shown in node `node` (as the prompt names it): its file, and how many frames.
    pub fn shown_output(&self, node: &str) -> Option<(&Path, usize)> {
        self.outputs.get(node).map(|playback| (playback.file.as_path(), playback.frames.len()))
    }

    /// Opens a file dropped on the window: a workflow `.json`, or a `.png` or `.mp4` output carrying
    /// one. Anything else is refused on the status line.
    pub fn open_dropped(&mut self, path: &Path) {
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
        if matches!(extension.as_str(), "json" | "png" | "mp4") {
            self.open(path);
        } else {
            self.status = format!(
                "Cannot open {}: drop a workflow .json, or a .png or .mp4 output that carries one.",
                path.display()
            );
        }
    }

    /// Uses `dialogs` for Open… and Save as… (tests: dialogs that reach no file chooser).
    pub fn set_file_dialogs(&mut self, dialogs: dialogs::FileDialogs) {
        self.dialogs = dialogs;
    }

    /// Where a dialog starts: the open file's folder and name.
    fn dialog_start(&self) -> (Option<PathBuf>, Option<String>) {
        let path = self.editor.path.as_ref();
        let folder = path.and_then(|p| p.parent()).map(Path::to_path_buf);
        let name = path.and_then(|p| p.file_name()).map(|n| n.to_string_lossy().into_owned());
        (folder, name.or_else(|| Some("workflow.json".into())))
    }

    /// Opens or saves what a dialog that closed chose.
    fn follow_dialog(&mut self) {
        let Some((kind, chosen)) = self.dialogs.poll() else { return };
        let Some(path) = chosen else {
            self.status = "No file chosen (or no file chooser on this desktop): type a path in the File field".into();
            return;
        };
        self.path_text = path.display().to_string();
        match kind {
            dialogs::DialogKind::Open => self.open(&path),
            dialogs::DialogKind::Save => self.save(),
        }
    }

    /// The template list: a folder's workflows with their titles and thumbnails; a click opens one.
    fn template_list(&mut self, ctx: &egui::Context) {
        let Some(templates) = self.templates.clone() else { return };
        let mut open = true;
        let mut chosen = None;
        egui::Window::new("Templates").open(&mut open).default_width(560.0).show(ctx, |ui| {
            ui.horizontal(|ui| {
                let label = ui.label("Folder");
                ui.text_edit_singleline(&mut self.templates_folder).labelled_by(label.id);
                if ui.button("List").clicked() {
                    self.templates = Some(crate::model::templates::list(Path::new(self.templates_folder.trim())));
                }
            });
            if templates.is_empty() {
                ui.label(format!("No workflow templates (.json) in {}", self.templates_folder.trim()));
            }
            egui::ScrollArea::vertical().max_height(480.0).show(ui, |ui| {
                for template in &templates {
                    ui.horizontal(|ui| {
                        if let Some(thumbnail) = template.thumbnail.as_ref().and_then(|path| self.thumbnail(ctx, path))
                        {
                            ui.add(egui::Image::new(&thumbnail).fit_to_exact_size(egui::vec2(96.0, 64.0)));
                        } else {
                            ui.add_space(96.0);
                        }
                        if ui.button(&template.title).on_hover_text(template.path.display().to_string()).clicked() {
                            chosen = Some(template.path.clone());
                        }
                    });
                }
            });
        });
        if let Some(path) = chosen {
            self.open(&path);
            open = false;
        }
        if !open {
            self.templates = None;
        }
    }

    /// The thumbnail at `path` as a texture, read the first time it is asked for.
    fn thumbnail(&mut self, ctx: &egui::Context, path: &Path) -> Option<egui::TextureHandle> {
        self.thumbnails
            .entry(path.to_path_buf())
            .or_insert_with(|| {
                let picture = image::open(path).ok()?.thumbnail(192, 128).to_rgba8();
                let size = [picture.width() as usize, picture.height() as usize];
                let pixels = egui::ColorImage::from_rgba_unmultiplied(size, picture.as_raw());
                Some(ctx.load_texture(path.display().to_string(), pixels, egui::TextureOptions::LINEAR))
            })
            .clone()
    }

    /// A picture or sound dropped on a `LoadImage` or `LoadAudio` node goes into the input folder and the
    /// node loads it; whether the drop was that.
    fn drop_on_loader(&mut self, ctx: &egui::Context, path: &Path) -> bool {
        let extension = path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).unwrap_or_default();
        let kind = match extension.as_str() {
            "png" | "jpg" | "jpeg" | "webp" | "bmp" | "gif" => "LoadImage",
            "wav" | "flac" | "mp3" | "ogg" | "opus" | "m4a" | "aac" => "LoadAudio",
            _ => return false,
        };
        let Some(pointer) = ctx.pointer_latest_pos() else { return false };
        let Some(transform) = self.canvas.layer.and_then(|layer| ctx.layer_transform_from_global(layer)) else {
            return false;
        };
        let at = transform * pointer;
        let Some(node) = self.editor.graph().node_at([at.x, at.y]) else { return false };
        if self.editor.graph().node(node).is_none_or(|n| n.class_type != kind) {
            return false;
        }
        self.status = match self.editor.put_input_file(node, path) {
            Ok(name) => format!("Node {node} loads {name} (put in the input folder)"),
            Err(error) => format!("Not loaded: {error}"),
        };
        true
    }

    /// Draws the whole window into `ui`.
    pub fn show(&mut self, ui: &mut egui::Ui) {
        let ctx = ui.ctx().clone();
        let dropped: Vec<PathBuf> = ctx.input(|i| i.raw.dropped_files.iter().map(|f| f.path().to_path_buf()).collect());
        if let Some(first) = dropped.first()
            && !self.drop_on_loader(&ctx, first)
        {
            self.open_dropped(first);
            if dropped.len() > 1 {
                let _ = write!(self.status, " ({} other dropped file(s) not opened: one at a time)", dropped.len() - 1);
            }
        }
        self.follow_run(&ctx);
        self.follow_outputs(&ctx);
        self.follow_dialog();
        egui::Panel::top("menu").show(ui, |ui| self.menu_bar(ui));
        if !self.editor.breadcrumb().is_empty() {
            egui::Panel::top("breadcrumb").show(ui, |ui| self.breadcrumb_bar(ui));
        }
        egui::Panel::bottom("status").show(ui, |ui| {
            ui.horizontal(|ui| {
                let name = self.editor.path.as_ref().map_or("untitled".into(), |p| p.display().to_string());
                ui.label(format!("{name}{}", if self.editor.modified { " (modified)" } else { "" }));
                ui.separator();
                ui.label(&self.status);
            });
        });
        egui::CentralPanel::default().show(ui, |ui| {
            let shown = self.canvas.show(
                ui,
                &mut self.editor,
                &mut self.palette,
                &self.faults,
                &RunShown { run: &self.runner.view, preview: self.preview.as_ref(), outputs: &self.outputs },
            );
            if let Some(message) = shown {
                self.status = message;
            }
        });
        let now = ctx.input(|i| i.time);
        for (node, action) in std::mem::take(&mut self.canvas.output_actions) {
            self.output_action(&node, action, now);
        }
        if let Some(palette) = &mut self.palette {
            match palette.show(&ctx, &self.editor.catalog) {
                PaletteAction::None => {}
                PaletteAction::Close => self.palette = None,
                PaletteAction::AddNote => {
                    let at = palette.at;
                    self.palette = None;
                    self.editor.add_note("", at);
                }
                PaletteAction::AddReroute => {
                    let at = palette.at;
                    self.palette = None;
                    self.editor.add_reroute(at);
                }
                PaletteAction::Add(class_type) => {
                    let at = palette.at;
                    let pin = palette.from.as_ref().map(|(pin, _, _)| *pin);
                    self.palette = None;
                    if let Some(pin) = pin {
                        if let Err(error) = self.editor.add_connected(&class_type, at, pin) {
                            self.status = format!("Not added: {error}");
                        }
                    } else if self.editor.add_node(&class_type, at).is_none() {
                        self.status = format!("No node class {class_type}");
                    }
                }
            }
        }
        self.shortcuts(&ctx);
        self.template_list(&ctx);
        if self.shortcuts_shown {
            let mut open = true;
            egui::Window::new("Keyboard shortcuts").open(&mut open).resizable(false).show(&ctx, |ui| {
                egui::Grid::new("shortcuts").striped(true).show(ui, |ui| {
                    for (keys, what) in SHORTCUTS {
                        ui.label(egui::RichText::new(*keys).monospace());
                        ui.label(*what);
                        ui.end_row();
                    }
                });
            });
            self.shortcuts_shown = open;
        }
    }
}

/// The keyboard and mouse shortcuts, as the help panel lists them (ComfyUI's, where it has the same).
pub const SHORTCUTS: &[(&str, &str)] = &[
    ("Ctrl+Enter", "Queue the graph"),
    ("Ctrl+S", "Save"),
    ("Ctrl+Z", "Undo"),
    ("Ctrl+Y, Ctrl+Shift+Z", "Redo"),
    ("Ctrl+C", "Copy the selected nodes (with the links among them)"),
    ("Ctrl+V", "Paste"),
    ("Ctrl+Shift+V", "Paste, keeping the links into the copies from the nodes that fed the originals"),
    ("Ctrl+D", "Duplicate the selected nodes"),
    ("Delete, Backspace", "Delete the selected nodes"),
    ("Ctrl+G", "Put the selected nodes in a group"),
    ("Ctrl+M", "Mute the selected nodes (again: unmute)"),
    ("Ctrl+B", "Bypass the selected nodes (again: stop bypassing)"),
    ("Space + drag", "Pan the canvas"),
    ("Right or middle drag, scroll", "Pan the canvas"),
    ("Ctrl + scroll, pinch", "Zoom"),
    ("Double-click the canvas", "Add a node"),
    ("Double-click a subgraph node", "Edit inside it (the top bar leads back out)"),
    ("Shift+click, drag a box", "Select several nodes"),
    ("F1", "Show or hide this list"),
];

impl eframe::App for EditorApp {
    fn ui(&mut self, ui: &mut egui::Ui, _frame: &mut eframe::Frame) {
        self.show(ui);
    }
}
