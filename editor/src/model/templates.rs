//! The workflow templates in a folder, as ComfyUI's template browser lists them: each `.json` workflow with
//! its title (from the folder's `index.json` where ComfyUI's template package has one, else the file's
//! name) and its thumbnail where one lies beside it (`name-1.webp`, as the package ships them, or
//! `name.webp`, `.png`, `.jpg`).

use serde_json::Value as Json;
use std::collections::HashMap;
use std::path::{Path, PathBuf};

/// One template in the list.
#[derive(Debug, Clone, PartialEq)]
pub struct Template {
    pub path: PathBuf,
    /// What the list shows.
    pub title: String,
    pub thumbnail: Option<PathBuf>,
}

/// The templates in `folder`, by title; an unreadable folder lists none.
pub fn list(folder: &Path) -> Vec<Template> {
    let titles = index_titles(folder);
    let Ok(entries) = std::fs::read_dir(folder) else { return Vec::new() };
    let mut templates: Vec<Template> = entries
        .filter_map(Result::ok)
        .map(|entry| entry.path())
        .filter(|path| {
            path.extension().is_some_and(|e| e == "json") && path.file_name().is_some_and(|n| n != "index.json")
        })
        .filter_map(|path| {
            let stem = path.file_stem()?.to_str()?.to_string();
            let title = titles.get(&stem).cloned().unwrap_or_else(|| stem.replace(['_', '-'], " "));
            let thumbnail =
                [format!("{stem}-1.webp"), format!("{stem}.webp"), format!("{stem}.png"), format!("{stem}.jpg")]
                    .into_iter()
                    .map(|name| folder.join(name))
                    .find(|candidate| candidate.is_file());
            Some(Template { path, title, thumbnail })
        })
        .collect();
    templates.sort_by(|a, b| a.title.to_lowercase().cmp(&b.title.to_lowercase()).then_with(|| a.path.cmp(&b.path)));
    templates
}

/// Titles by file name from ComfyUI's `index.json` (a list of categories, each with `templates` of
/// `{name, title}`), when the folder has one.
fn index_titles(folder: &Path) -> HashMap<String, String> {
    let Ok(text) = std::fs::read_to_string(folder.join("index.json")) else { return HashMap::new() };
    let Ok(Json::Array(categories)) = serde_json::from_str::<Json>(&text) else { return HashMap::new() };
    categories
        .iter()
        .filter_map(|category| category.get("templates")?.as_array())
        .flatten()
        .filter_map(|template| {
            Some((template.get("name")?.as_str()?.to_string(), template.get("title")?.as_str()?.to_string()))
        })
        .collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn templates_are_listed_with_titles_and_thumbnails() {
        let folder = tempfile::tempdir().unwrap();
        let write = |name: &str, text: &str| std::fs::write(folder.path().join(name), text).unwrap();
        write("video_ltx2_t2v.json", "{}");
        write("video_ltx2_t2v-1.webp", "webp");
        write("my_flow.json", "{}");
        write("notes.txt", "not a template");
        write(
            "index.json",
            r#"[{"title": "Video", "templates": [{"name": "video_ltx2_t2v", "title": "LTX-2 Text to Video"}]}]"#,
        );
        let listed = list(folder.path());
        let titles: Vec<&str> = listed.iter().map(|t| t.title.as_str()).collect();
        assert_eq!(titles, ["LTX-2 Text to Video", "my flow"]);
        assert_eq!(listed[0].thumbnail, Some(folder.path().join("video_ltx2_t2v-1.webp")));
        assert_eq!(listed[1].thumbnail, None);
        assert!(list(&folder.path().join("missing")).is_empty());
    }
}
