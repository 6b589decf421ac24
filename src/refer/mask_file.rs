//! Masks read from image files (`ask --mask`), in every pixel format the `image` crate decodes
//! (gray, gray+alpha, RGB, RGBA; 8 bit, 16 bit and float), by one rule:
//!
//! **a pixel is in the mask when one of its colour channels is non-zero and, when the image has
//! an alpha channel, it is at least half opaque** (alpha ≥ 128 of 255, ≥ 32768 of 65535, ≥ 0.5
//! for float). So a 16-bit 0/1 mask, a black-and-white PNG and a cut-out with a transparent
//! background (whatever colour the transparent pixels hold) all read as drawn; NaN is zero.

use super::ReferError;
use crate::mask::Mask;
use image::{DynamicImage, ImageReader};
use std::path::Path;

/// Applies the module's rule to `data`, `channels` values per pixel, the last one alpha when
/// `alpha`.
fn bits<T: Copy>(
    data: &[T],
    channels: usize,
    alpha: bool,
    set: impl Fn(T) -> bool,
    opaque: impl Fn(T) -> bool,
) -> Vec<u8> {
    data.chunks_exact(channels)
        .map(|px| {
            let (color, a) = if alpha {
                (&px[..channels - 1], px.last().copied())
            } else {
                (px, None)
            };
            u8::from(color.iter().any(|&c| set(c)) && a.is_none_or(&opaque))
        })
        .collect()
}

/// The mask of a decoded image by the module's rule (same size as the image).
pub fn mask_from_image(img: &DynamicImage) -> Mask {
    let (w, h) = (img.width(), img.height());
    let nz8 = |v: u8| v > 0;
    let op8 = |v: u8| v >= 128;
    let nz16 = |v: u16| v > 0;
    let op16 = |v: u16| v >= 32768;
    let nzf = |v: f32| v != 0.0 && !v.is_nan();
    let opf = |v: f32| v >= 0.5;
    let data = match img {
        DynamicImage::ImageLuma8(b) => bits(b.as_raw(), 1, false, nz8, op8),
        DynamicImage::ImageLumaA8(b) => bits(b.as_raw(), 2, true, nz8, op8),
        DynamicImage::ImageRgb8(b) => bits(b.as_raw(), 3, false, nz8, op8),
        DynamicImage::ImageRgba8(b) => bits(b.as_raw(), 4, true, nz8, op8),
        DynamicImage::ImageLuma16(b) => bits(b.as_raw(), 1, false, nz16, op16),
        DynamicImage::ImageLumaA16(b) => bits(b.as_raw(), 2, true, nz16, op16),
        DynamicImage::ImageRgb16(b) => bits(b.as_raw(), 3, false, nz16, op16),
        DynamicImage::ImageRgba16(b) => bits(b.as_raw(), 4, true, nz16, op16),
        DynamicImage::ImageRgb32F(b) => bits(b.as_raw(), 3, false, nzf, opf),
        DynamicImage::ImageRgba32F(b) => bits(b.as_raw(), 4, true, nzf, opf),
        // Formats added to `image` later: through float RGBA, which keeps every value non-zero
        // that was non-zero.
        other => bits(other.to_rgba32f().as_raw(), 4, true, nzf, opf),
    };
    Mask::from_raw(w, h, data).unwrap_or_else(|_| Mask::new(w, h))
}

/// Reads the mask image at `path` (any format the app decodes). Fails with a sentence when the
/// path is not a regular file (a FIFO would block), is not a decodable image, is larger than
/// the decoder's memory limit, or has no pixel in the mask.
pub fn read_mask_file(path: &Path) -> Result<Mask, ReferError> {
    let err = |reason: String| ReferError::MaskFile {
        path: path.to_path_buf(),
        reason,
    };
    match std::fs::metadata(path) {
        Ok(m) if m.is_file() => {}
        Ok(_) => return Err(err("it is not a file".into())),
        Err(e) => return Err(err(format!("cannot read it: {e}"))),
    }
    let reader = ImageReader::open(path)
        .and_then(ImageReader::with_guessed_format)
        .map_err(|e| err(format!("cannot read it: {e}")))?;
    if reader.format().is_none() {
        return Err(err(
            "it is not a readable image (PNG, JPEG, WebP, TIFF, BMP or GIF)".into(),
        ));
    }
    let is_tiff = reader.format() == Some(image::ImageFormat::Tiff);
    // `decode` applies the reader's default limits (at most 512 MiB allocated).
    let mask = match reader.decode() {
        Ok(img) => mask_from_image(&img),
        // Grey TIFFs of 16/32-bit integer or float samples (a numpy array saved by PIL or
        // tifffile), which `image` refuses: their raw values by the same rule.
        Err(e) => match is_tiff
            .then(|| crate::media::grey_first_page(path))
            .flatten()
        {
            Some(Ok((w, h, values))) => {
                let bits = values.iter().map(|v| u8::from(*v != 0.0 && !v.is_nan()));
                Mask::from_raw(w, h, bits.collect())
                    .map_err(|e| err(format!("it is not a readable image: {e}")))?
            }
            Some(Err(e)) => return Err(err(format!("it is not a readable image: {e}"))),
            None => return Err(err(format!("it is not a readable image: {e}"))),
        },
    };
    if mask.is_empty() {
        return Err(err(
            "no pixel is in the mask (a pixel counts when it is non-zero and, where the image has alpha, at least half opaque)"
                .into(),
        ));
    }
    Ok(mask)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;
    use image::{ImageBuffer, Luma, LumaA, Rgb, Rgba};

    /// The old rule (`to_luma8() > 0`) for comparison in the tests below.
    fn luma_rule(img: &DynamicImage) -> Vec<u8> {
        img.to_luma8()
            .pixels()
            .map(|p| u8::from(p[0] > 0))
            .collect()
    }

    #[test]
    fn grey_float_and_signed_tiffs_are_read_by_their_raw_values() {
        use tiff::encoder::{TiffEncoder, colortype};
        let dir = tempfile::tempdir().unwrap();
        let float = dir.path().join("f.tif");
        let mut enc = TiffEncoder::new(std::fs::File::create(&float).unwrap()).unwrap();
        let values = [0.0f32, 0.25, 0.0, f32::NAN, -1.0, 0.0];
        enc.write_image::<colortype::Gray32Float>(3, 2, &values)
            .unwrap();
        assert_eq!(read_mask_file(&float).unwrap().data(), &[0, 1, 0, 0, 1, 0]);
        let signed = dir.path().join("s.tif");
        let mut enc = TiffEncoder::new(std::fs::File::create(&signed).unwrap()).unwrap();
        enc.write_image::<colortype::GrayI16>(2, 2, &[0i16, -3, 7, 0])
            .unwrap();
        assert_eq!(read_mask_file(&signed).unwrap().data(), &[0, 1, 1, 0]);
        let empty = dir.path().join("z.tif");
        let mut enc = TiffEncoder::new(std::fs::File::create(&empty).unwrap()).unwrap();
        enc.write_image::<colortype::Gray32Float>(2, 1, &[0.0f32, 0.0])
            .unwrap();
        let err = read_mask_file(&empty).unwrap_err().to_string();
        assert!(err.contains("no pixel is in the mask"), "{err}");
    }

    #[test]
    fn transparent_white_background_is_outside_the_mask() {
        // 4x1: transparent white, opaque white, half-transparent red (alpha 127), opaque red.
        let img = ImageBuffer::from_fn(4, 1, |x, _| match x {
            0 => Rgba([255u8, 255, 255, 0]),
            1 => Rgba([255, 255, 255, 255]),
            2 => Rgba([255, 0, 0, 127]),
            _ => Rgba([255, 0, 0, 128]),
        });
        let img = DynamicImage::ImageRgba8(img);
        assert_eq!(mask_from_image(&img).data(), &[0, 1, 0, 1]);
        assert_eq!(
            luma_rule(&img),
            vec![1, 1, 1, 1],
            "the old rule kept them all"
        );
    }

    #[test]
    fn sixteen_bit_zero_one_mask_is_read() {
        let img = ImageBuffer::from_fn(3, 2, |x, y| Luma([u16::from(x == y)]));
        let img = DynamicImage::ImageLuma16(img);
        assert_eq!(mask_from_image(&img).data(), &[1, 0, 0, 0, 1, 0]);
        assert!(
            luma_rule(&img).iter().all(|&v| v == 0),
            "the old rule lost it"
        );
        let ga = ImageBuffer::from_fn(2, 1, |x, _| LumaA([1u16, if x == 0 { 65535 } else { 0 }]));
        assert_eq!(
            mask_from_image(&DynamicImage::ImageLumaA16(ga)).data(),
            &[1, 0]
        );
    }

    #[test]
    fn any_non_zero_channel_counts() {
        // Pure dark blue has luma 0 in 8 bits, yet it was drawn.
        let img = ImageBuffer::from_fn(2, 1, |x, _| Rgb([0u8, 0, if x == 0 { 3 } else { 0 }]));
        let img = DynamicImage::ImageRgb8(img);
        assert_eq!(mask_from_image(&img).data(), &[1, 0]);
        assert_eq!(luma_rule(&img), vec![0, 0]);
        let img16 = ImageBuffer::from_fn(2, 1, |x, _| Rgba([0u16, u16::from(x == 1), 0, 65535]));
        assert_eq!(
            mask_from_image(&DynamicImage::ImageRgba16(img16)).data(),
            &[0, 1]
        );
    }

    #[test]
    fn float_images_follow_the_same_rule() {
        let img = ImageBuffer::from_fn(4, 1, |x, _| match x {
            0 => Rgba([0.25f32, 0.0, 0.0, 1.0]),
            1 => Rgba([0.25, 0.0, 0.0, 0.4]),
            2 => Rgba([f32::NAN, 0.0, 0.0, 1.0]),
            _ => Rgba([0.0, 0.0, 0.0, 1.0]),
        });
        assert_eq!(
            mask_from_image(&DynamicImage::ImageRgba32F(img)).data(),
            &[1, 0, 0, 0]
        );
        let rgb = ImageBuffer::from_fn(2, 1, |x, _| {
            Rgb([if x == 0 { 1e-3f32 } else { 0.0 }, 0.0, 0.0])
        });
        assert_eq!(
            mask_from_image(&DynamicImage::ImageRgb32F(rgb)).data(),
            &[1, 0]
        );
    }

    #[test]
    fn files_that_are_no_mask_are_refused_with_a_sentence() {
        let dir = tempfile::tempdir().unwrap();
        let text = dir.path().join("mask.png");
        std::fs::write(&text, "not an image").unwrap();
        let e = read_mask_file(&text).unwrap_err().to_string();
        assert!(e.contains("is not a readable image"), "{e}");
        let e = read_mask_file(dir.path()).unwrap_err().to_string();
        assert!(e.contains("not a file"), "{e}");
        let empty = dir.path().join("empty.png");
        DynamicImage::ImageRgba8(ImageBuffer::from_pixel(3, 3, Rgba([255, 255, 255, 0])))
            .save(&empty)
            .unwrap();
        let e = read_mask_file(&empty).unwrap_err().to_string();
        assert!(e.contains("no pixel is in the mask"), "{e}");
        let good = dir.path().join("good.png");
        DynamicImage::ImageLuma16(ImageBuffer::from_fn(3, 3, |x, _| Luma([u16::from(x == 1)])))
            .save(&good)
            .unwrap();
        assert_eq!(read_mask_file(&good).unwrap().area(), 3);
    }
}
