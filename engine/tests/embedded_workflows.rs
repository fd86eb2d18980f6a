//! Workflows carried inside outputs: PNG text chunks and MP4 metadata, built byte by byte here.

use kinograph_engine::WorkflowFile;
use kinograph_engine::workflow::embedded::{EmbeddedWorkflow, extract};

const UI: &str =
    r#"{"nodes": [{"id": 1, "type": "Demo", "title": "Mine", "widgets_values": []}], "links": [], "version": 0.4}"#;
const API: &str = r#"{"1": {"class_type": "Demo", "inputs": {}}}"#;

fn crc_placeholder() -> [u8; 4] {
    // The readers do not check CRCs (ComfyUI's writers always produce valid ones).
    [0; 4]
}

fn png_chunk(kind: [u8; 4], data: &[u8]) -> Vec<u8> {
    let mut chunk = (data.len() as u32).to_be_bytes().to_vec();
    chunk.extend_from_slice(&kind);
    chunk.extend_from_slice(data);
    chunk.extend_from_slice(&crc_placeholder());
    chunk
}

fn png(texts: &[(&[u8; 4], &str, &str)]) -> Vec<u8> {
    let mut bytes = vec![0x89, b'P', b'N', b'G', b'\r', b'\n', 0x1a, b'\n'];
    let header = [0, 0, 0, 1, 0, 0, 0, 1, 8, 2, 0, 0, 0];
    bytes.extend(png_chunk(*b"IHDR", &header));
    for (kind, key, text) in texts {
        let mut data = key.as_bytes().to_vec();
        data.push(0);
        if *kind == b"iTXt" {
            data.extend_from_slice(&[0, 0]); // uncompressed
            data.extend_from_slice(b"\0\0"); // no language, no translated keyword
        }
        data.extend_from_slice(text.as_bytes());
        bytes.extend(png_chunk(**kind, &data));
    }
    bytes.extend(png_chunk(*b"IDAT", &[0x78, 0x9c, 0x63, 0, 0, 0, 1, 0, 1]));
    bytes.extend(png_chunk(*b"IEND", &[]));
    bytes
}

fn mp4_box(kind: [u8; 4], body: &[u8]) -> Vec<u8> {
    let mut bytes = ((body.len() + 8) as u32).to_be_bytes().to_vec();
    bytes.extend_from_slice(&kind);
    bytes.extend_from_slice(body);
    bytes
}

/// An MP4 as ffmpeg writes it with `movflags=use_metadata_tags`: `moov/udta/meta` (a full box) with an
/// `mdta` handler, `keys` and `ilst`.
fn mp4(entries: &[(&str, &str)]) -> Vec<u8> {
    let mut hdlr = vec![0; 8]; // version, flags, pre_defined
    hdlr.extend_from_slice(b"mdta");
    hdlr.extend_from_slice(&[0; 12]);
    hdlr.push(0);
    let mut keys = vec![0, 0, 0, 0];
    keys.extend_from_slice(&(entries.len() as u32).to_be_bytes());
    let mut items = Vec::new();
    for (index, (key, value)) in entries.iter().enumerate() {
        keys.extend_from_slice(&((key.len() + 8) as u32).to_be_bytes());
        keys.extend_from_slice(b"mdta");
        keys.extend_from_slice(key.as_bytes());
        let mut data = vec![0, 0, 0, 1, 0, 0, 0, 0]; // UTF-8, default locale
        data.extend_from_slice(value.as_bytes());
        items.extend(mp4_box((index as u32 + 1).to_be_bytes(), &mp4_box(*b"data", &data)));
    }
    let mut meta = vec![0, 0, 0, 0];
    meta.extend(mp4_box(*b"hdlr", &hdlr));
    meta.extend(mp4_box(*b"keys", &keys));
    meta.extend(mp4_box(*b"ilst", &items));
    let udta = mp4_box(*b"udta", &mp4_box(*b"meta", &meta));
    let mvhd = mp4_box(*b"mvhd", &[0; 100]);
    let moov = mp4_box(*b"moov", &[mvhd, udta].concat());
    let mut ftyp = b"isom".to_vec();
    ftyp.extend_from_slice(&[0, 0, 2, 0]);
    ftyp.extend_from_slice(b"isomiso2avc1mp41");
    [mp4_box(*b"ftyp", &ftyp), mp4_box(*b"free", &[]), mp4_box(*b"mdat", &[1, 2, 3]), moov].concat()
}

#[test]
fn png_text_chunks_carry_both_forms() {
    let bytes = png(&[(b"tEXt", "prompt", API), (b"tEXt", "workflow", UI), (b"tEXt", "other", "x")]);
    let found = extract(&bytes).unwrap();
    assert_eq!(found, EmbeddedWorkflow { workflow: Some(UI.into()), prompt: Some(API.into()) });
    match WorkflowFile::from_embedded(&bytes, "out.png").unwrap() {
        WorkflowFile::Ui(workflow) => assert_eq!(workflow.root.nodes[0].title.as_deref(), Some("Mine")),
        WorkflowFile::Api(_) => panic!("the UI workflow is preferred"),
    }
}

#[test]
fn png_itxt_and_prompt_fallback() {
    let bytes = png(&[(b"iTXt", "prompt", API)]);
    assert!(matches!(WorkflowFile::from_embedded(&bytes, "out.png").unwrap(), WorkflowFile::Api(_)));
    let none = png(&[(b"tEXt", "parameters", "a cat")]);
    let error = WorkflowFile::from_embedded(&none, "plain.png").unwrap_err().to_string();
    assert!(error.contains("plain.png") && error.contains("no workflow"), "{error}");
}

#[test]
fn mp4_metadata_carries_both_forms() {
    let bytes = mp4(&[("prompt", API), ("workflow", UI)]);
    let found = extract(&bytes).unwrap();
    assert_eq!(found, EmbeddedWorkflow { workflow: Some(UI.into()), prompt: Some(API.into()) });
    assert!(matches!(WorkflowFile::from_embedded(&bytes, "out.mp4").unwrap(), WorkflowFile::Ui(_)));
    let only_prompt = mp4(&[("encoder", "kinograph"), ("prompt", API)]);
    assert!(matches!(WorkflowFile::from_embedded(&only_prompt, "out.mp4").unwrap(), WorkflowFile::Api(_)));
}

#[test]
fn files_on_disk_are_recognised_by_their_bytes() {
    let folder = tempfile::tempdir().unwrap();
    let video = folder.path().join("clip.mp4");
    std::fs::write(&video, mp4(&[("workflow", UI)])).unwrap();
    assert!(matches!(WorkflowFile::load(&video).unwrap(), WorkflowFile::Ui(_)));
    let image = folder.path().join("frame.png");
    std::fs::write(&image, png(&[(b"tEXt", "prompt", API)])).unwrap();
    assert!(matches!(WorkflowFile::load(&image).unwrap(), WorkflowFile::Api(_)));
    let json = folder.path().join("w.json");
    std::fs::write(&json, UI).unwrap();
    assert!(matches!(WorkflowFile::load(&json).unwrap(), WorkflowFile::Ui(_)));
}

#[test]
fn truncated_containers_are_errors_not_panics() {
    let whole = mp4(&[("workflow", UI)]);
    for cut in 0..whole.len() {
        let _ = extract(&whole[..cut]);
    }
    let whole = png(&[(b"tEXt", "workflow", UI)]);
    for cut in 0..whole.len() {
        let _ = extract(&whole[..cut]);
    }
    let mut lying = mp4(&[("workflow", UI)]);
    let moov = lying.windows(4).position(|w| w == b"moov").unwrap() - 4;
    lying[moov..moov + 4].copy_from_slice(&u32::MAX.to_be_bytes());
    assert!(extract(&lying).is_err());
}
