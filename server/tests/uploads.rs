//! Uploads and image views as ComfyUI's front end uses them: the same bytes under a taken name reuse the
//! file, other bytes get the next number, `overwrite` replaces; `/upload/mask` stores the original image with
//! the mask's alpha; `/view` re-encodes images for `preview=` and picks channels with `channel=`.

use crate::support::{TestServer, upload};
use image::{GenericImageView, Rgba, RgbaImage};
use std::io::Cursor;

fn png(image: &RgbaImage) -> Vec<u8> {
    let mut bytes = Vec::new();
    image.write_to(&mut Cursor::new(&mut bytes), image::ImageFormat::Png).unwrap();
    bytes
}

#[test]
fn uploads_reuse_equal_files_number_others_and_overwrite_when_asked() {
    let server = TestServer::start();
    let client = server.client();
    let first = upload(&client, "/upload/image", "photo.png", b"one", &[]).json();
    assert_eq!((first["name"].as_str(), first["type"].as_str()), (Some("photo.png"), Some("input")));
    let same = upload(&client, "/upload/image", "photo.png", b"one", &[]).json();
    assert_eq!(same["name"], "photo.png", "the same bytes reuse the file");
    let other = upload(&client, "/upload/image", "photo.png", b"two", &[]).json();
    assert_eq!(other["name"], "photo (1).png", "other bytes take the next free name");
    let replaced = upload(&client, "/upload/image", "photo.png", b"three", &[("overwrite", "true")]).json();
    assert_eq!(replaced["name"], "photo.png");
    assert_eq!(std::fs::read(server.input_dir().join("photo.png")).unwrap(), b"three");
    assert_eq!(std::fs::read(server.input_dir().join("photo (1).png")).unwrap(), b"two");
}

#[test]
fn a_mask_upload_stores_the_original_with_the_masks_alpha() {
    let server = TestServer::start();
    let client = server.client();
    let original = RgbaImage::from_fn(4, 2, |x, y| Rgba([x as u8 * 60, y as u8 * 100, 7, 255]));
    upload(&client, "/upload/image", "picture.png", &png(&original), &[]);
    // The mask's alpha: a gradient, at half the size (it is scaled to the original's).
    let mask = RgbaImage::from_fn(2, 1, |x, _| Rgba([0, 0, 0, if x == 0 { 0 } else { 255 }]));
    let reference = r#"{"filename": "picture.png", "subfolder": "", "type": "input"}"#;
    let reply = upload(&client, "/upload/mask", "clipspace-mask.png", &png(&mask), &[("original_ref", reference)]);
    assert_eq!(reply.status, 200, "{}", reply.text());
    let stored = reply.json()["name"].as_str().unwrap().to_string();
    let merged = image::open(server.input_dir().join(&stored)).unwrap().to_rgba8();
    assert_eq!(merged.dimensions(), (4, 2));
    for (x, y, pixel) in merged.enumerate_pixels() {
        let expected = original.get_pixel(x, y);
        assert_eq!(&pixel.0[..3], &expected.0[..3], "the colour is the original's at ({x}, {y})");
    }
    assert_eq!(merged.get_pixel(0, 0)[3], 0, "transparent where the mask is");
    assert_eq!(merged.get_pixel(3, 1)[3], 255, "opaque where the mask is");
    // An original that is not there is refused.
    let missing = r#"{"filename": "nowhere.png", "subfolder": "", "type": "input"}"#;
    let reply = upload(&client, "/upload/mask", "mask.png", &png(&mask), &[("original_ref", missing)]);
    assert_eq!(reply.status, 404, "{}", reply.text());
}

#[test]
fn view_re_encodes_previews_and_picks_channels() {
    let server = TestServer::start();
    let client = server.client();
    let picture =
        RgbaImage::from_fn(8, 8, |x, y| Rgba([200, x as u8 * 30, y as u8 * 30, if x < 4 { 128 } else { 255 }]));
    std::fs::write(server.output_dir().join("picture.png"), png(&picture)).unwrap();

    let reply = client.get("/view?filename=picture.png&type=output&preview=jpeg;80");
    assert_eq!(reply.status, 200);
    assert_eq!(reply.header("content-type"), Some("image/jpeg"));
    let preview = image::load_from_memory(&reply.body).unwrap();
    assert_eq!(preview.dimensions(), (8, 8));

    let reply = client.get("/view?filename=picture.png&type=output&channel=a");
    assert_eq!(reply.header("content-type"), Some("image/png"));
    let alpha = image::load_from_memory(&reply.body).unwrap().to_luma8();
    assert_eq!((alpha.get_pixel(0, 0)[0], alpha.get_pixel(7, 0)[0]), (128, 255), "the alpha channel as grey");

    let reply = client.get("/view?filename=picture.png&type=output&channel=rgb");
    let rgb = image::load_from_memory(&reply.body).unwrap();
    assert!(!rgb.color().has_alpha());

    let reply = client.get("/view?filename=picture.png&type=output&channel=cmyk");
    assert_eq!(reply.status, 400, "{}", reply.text());
    // Without preview or channel the file comes as written.
    assert_eq!(client.get("/view?filename=picture.png&type=output").body, png(&picture));
}
