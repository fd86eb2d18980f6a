//! RGB ↔ YUV 4:2:0 (I420) in BT.601 limited range, the conversion ffmpeg's swscale applies by default
//! when an `rgb24` frame becomes `yuv420p`: luma in 16..235, chroma in 16..240, chroma averaged over
//! each 2×2 block. Frames must have even width and height.

/// A planar I420 frame: `width × height` luma, then two `width/2 × height/2` chroma planes.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Yuv420 {
    pub width: usize,
    pub height: usize,
    pub y: Vec<u8>,
    pub u: Vec<u8>,
    pub v: Vec<u8>,
}

fn clamp_u8(value: f32) -> u8 {
    value.round().clamp(0.0, 255.0) as u8
}

/// Converts an RGB frame of even size to I420.
pub fn rgb_to_yuv420(rgb: &[u8], width: usize, height: usize) -> Yuv420 {
    debug_assert!(width.is_multiple_of(2) && height.is_multiple_of(2) && rgb.len() == width * height * 3);
    let mut y = Vec::with_capacity(width * height);
    for pixel in rgb.chunks_exact(3) {
        let (r, g, b) = (f32::from(pixel[0]), f32::from(pixel[1]), f32::from(pixel[2]));
        y.push(clamp_u8(16.0 + (65.481 * r + 128.553 * g + 24.966 * b) / 255.0));
    }
    let (chroma_width, chroma_height) = (width / 2, height / 2);
    let mut u = Vec::with_capacity(chroma_width * chroma_height);
    let mut v = Vec::with_capacity(chroma_width * chroma_height);
    for row in 0..chroma_height {
        for column in 0..chroma_width {
            let (mut r, mut g, mut b) = (0.0_f32, 0.0_f32, 0.0_f32);
            for (dy, dx) in [(0, 0), (0, 1), (1, 0), (1, 1)] {
                let at = ((2 * row + dy) * width + 2 * column + dx) * 3;
                r += f32::from(rgb[at]);
                g += f32::from(rgb[at + 1]);
                b += f32::from(rgb[at + 2]);
            }
            let (r, g, b) = (r / 4.0, g / 4.0, b / 4.0);
            u.push(clamp_u8(128.0 + (-37.797 * r - 74.203 * g + 112.0 * b) / 255.0));
            v.push(clamp_u8(128.0 + (112.0 * r - 93.786 * g - 18.214 * b) / 255.0));
        }
    }
    Yuv420 { width, height, y, u, v }
}

/// Converts I420 planes (with row strides) back to RGB, each chroma sample covering a 2×2 block.
pub fn yuv420_to_rgb(planes: [&[u8]; 3], strides: [usize; 3], width: usize, height: usize) -> Vec<u8> {
    let [y_plane, u_plane, v_plane] = planes;
    let mut rgb = Vec::with_capacity(width * height * 3);
    for row in 0..height {
        for column in 0..width {
            let luma = (f32::from(y_plane[row * strides[0] + column]) - 16.0) * (255.0 / 219.0);
            let cb = f32::from(u_plane[(row / 2) * strides[1] + column / 2]) - 128.0;
            let cr = f32::from(v_plane[(row / 2) * strides[2] + column / 2]) - 128.0;
            let scale = 255.0 / 224.0;
            rgb.push(clamp_u8(luma + 1.402 * scale * cr));
            rgb.push(clamp_u8(luma - (0.114 * 1.772 / 0.587) * scale * cb - (0.299 * 1.402 / 0.587) * scale * cr));
            rgb.push(clamp_u8(luma + 1.772 * scale * cb));
        }
    }
    rgb
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_levels_map_to_the_limited_range() {
        let black = rgb_to_yuv420(&[0; 12], 2, 2);
        assert_eq!((black.y[0], black.u[0], black.v[0]), (16, 128, 128));
        let white = rgb_to_yuv420(&[255; 12], 2, 2);
        assert_eq!((white.y[0], white.u[0], white.v[0]), (235, 128, 128));
    }

    #[test]
    fn a_round_trip_of_flat_colours_is_within_two_levels() {
        for colour in [[255_u8, 0, 0], [0, 255, 0], [0, 0, 255], [30, 140, 200], [250, 250, 10]] {
            let rgb: Vec<u8> = colour.iter().copied().cycle().take(4 * 4 * 3).collect();
            let yuv = rgb_to_yuv420(&rgb, 4, 4);
            let back = yuv420_to_rgb([&yuv.y, &yuv.u, &yuv.v], [4, 2, 2], 4, 4);
            for (a, b) in rgb.iter().zip(&back) {
                assert!(a.abs_diff(*b) <= 2, "{colour:?}: {a} became {b}");
            }
        }
    }
}
