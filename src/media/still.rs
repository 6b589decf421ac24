//! Still images through the `image` crate: sniffing by content, header facts, and decoding
//! to display-oriented RGBA8.

use std::fs::File;
use std::io::{BufReader, Read};
use std::path::Path;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader};

use super::{Frame, MediaError};

/// Largest accepted width or height in pixels. Bigger images are refused with
/// [`MediaError::Unsupported`] rather than downscaled (decoding them would need gigabytes).
pub const MAX_IMAGE_SIDE: u32 = 16384;

/// Largest accepted pixel count (256 MPix).
pub const MAX_IMAGE_PIXELS: u64 = 256 << 20;

/// Image formats this build decodes.
const SUPPORTED: [ImageFormat; 7] = [
    ImageFormat::Png,
    ImageFormat::Jpeg,
    ImageFormat::WebP,
    ImageFormat::Tiff,
    ImageFormat::Bmp,
    ImageFormat::Gif,
    ImageFormat::Pnm,
];

/// Facts from an image header.
#[derive(Debug, Clone, Copy)]
pub(crate) struct ImageHeader {
    /// Displayed width (after EXIF orientation).
    pub width: u32,
    /// Displayed height.
    pub height: u32,
    /// The format.
    pub format: ImageFormat,
    /// Clockwise rotation applied for display.
    pub rotation_degrees: u32,
}

/// Short lower-case name of a format (`png`, `jpeg`…).
pub(crate) fn format_name(format: ImageFormat) -> String {
    match format {
        ImageFormat::Png => "png".into(),
        ImageFormat::Jpeg => "jpeg".into(),
        ImageFormat::WebP => "webp".into(),
        ImageFormat::Tiff => "tiff".into(),
        ImageFormat::Bmp => "bmp".into(),
        ImageFormat::Gif => "gif".into(),
        ImageFormat::Pnm => "pnm".into(),
        other => format!("{other:?}").to_lowercase(),
    }
}

/// The image format of `bytes` (a file's first bytes) when it is one this build decodes.
pub(crate) fn sniff_bytes(bytes: &[u8]) -> Option<ImageFormat> {
    image::guess_format(bytes)
        .ok()
        .filter(|f| SUPPORTED.contains(f))
}

/// What to do with a HEIF image, the end of both sentences that refuse one (a file, a folder).
pub(crate) const HEIF_CONVERSION: &str =
    "JPEG or PNG first, e.g. with heif-convert from libheif-examples";

/// Reads a file's first bytes and sniffs its image format. `Ok(None)`: not a supported image;
/// a HEIF image ([`is_heif`]) is [`MediaError::Unsupported`].
pub(crate) fn sniff_file(path: &Path) -> Result<Option<ImageFormat>, MediaError> {
    let mut head = Vec::with_capacity(64);
    File::open(path)
        .and_then(|f| f.take(64).read_to_end(&mut head))
        .map_err(|source| MediaError::Io {
            path: path.to_owned(),
            source,
        })?;
    if is_heif(&head) {
        return Err(MediaError::Unsupported {
            path: path.to_owned(),
            reason: format!(
                "it is a HEIC/HEIF image, which this build cannot decode; convert it to \
                 {HEIF_CONVERSION}"
            ),
        });
    }
    Ok(sniff_bytes(&head))
}

/// Whether a file's first bytes are an ISO-BMFF `ftyp` box of a HEIF image (HEIC, as phones
/// write): brands `heic`, `heix`, `heim`, `heis`, `hevc`, `hevx`, `mif1` or `msf1`, and none of
/// AVIF's (`avif`, `avis`; FFmpeg decodes AVIF). Neither the `image` crate nor FFmpeg 5.1 decodes
/// HEIF, so such a file gets a sentence of its own instead of "damaged".
pub(crate) fn is_heif(head: &[u8]) -> bool {
    if head.len() < 16 || &head[4..8] != b"ftyp" {
        return false;
    }
    let size = u32::from_be_bytes([head[0], head[1], head[2], head[3]]) as usize;
    let end = size.clamp(16, head.len());
    // The major brand, then the compatible brands after the minor version.
    let brands: Vec<&[u8]> = std::iter::once(&head[8..12])
        .chain(head[16..end].chunks_exact(4))
        .collect();
    let any = |set: &[&[u8; 4]]| brands.iter().any(|b| set.iter().any(|s| b == s));
    any(&[
        b"heic", b"heix", b"heim", b"heis", b"hevc", b"hevx", b"mif1", b"msf1",
    ]) && !any(&[b"avif", b"avis"])
}

/// Whether a GIF, PNG or WebP file is an animation (of more than one frame for GIF and PNG;
/// such files open as videos). Unreadable or damaged files answer `false`, so the still
/// decoder reports them.
pub(crate) fn is_animated(path: &Path, format: ImageFormat) -> bool {
    let Ok(file) = File::open(path) else {
        return false;
    };
    let reader = BufReader::new(file);
    match format {
        // Two frame headers make an animation; their pixels are skipped, not decoded (a frame
        // is as large as the canvas, which the header may declare at 65535x65535).
        ImageFormat::Gif => {
            let mut options = gif::DecodeOptions::new();
            options.skip_frame_decoding(true);
            options
                .read_info(reader)
                .is_ok_and(|mut d| (0..2).all(|_| d.next_frame_info().is_ok_and(|f| f.is_some())))
        }
        // APNG: the acTL chunk before the first image data gives the frame count.
        ImageFormat::Png => png::Decoder::new(reader).read_info().is_ok_and(|r| {
            r.info()
                .animation_control()
                .is_some_and(|a| a.num_frames > 1)
        }),
        ImageFormat::WebP => {
            image::codecs::webp::WebPDecoder::new(reader).is_ok_and(|d| d.has_animation())
        }
        _ => false,
    }
}

pub(crate) fn decode_error(path: &Path, err: image::ImageError) -> MediaError {
    use image::ImageError as E;
    match err {
        E::Limits(e) => MediaError::Unsupported {
            path: path.to_owned(),
            reason: format!("image too large to decode: {e}"),
        },
        E::Unsupported(e) => MediaError::Unsupported {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        E::IoError(e) if e.kind() != std::io::ErrorKind::UnexpectedEof => MediaError::Io {
            path: path.to_owned(),
            source: e,
        },
        other => MediaError::Corrupt {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    }
}

fn decoder(path: &Path) -> Result<(impl ImageDecoder, ImageFormat), MediaError> {
    let file = File::open(path).map_err(|source| MediaError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut reader = ImageReader::new(BufReader::new(file))
        .with_guessed_format()
        .map_err(|source| MediaError::Io {
            path: path.to_owned(),
            source,
        })?;
    let format = reader
        .format()
        .filter(|f| SUPPORTED.contains(f))
        .ok_or_else(|| MediaError::Unsupported {
            path: path.to_owned(),
            reason: "unknown image format".into(),
        })?;
    // Sizes are checked against `MAX_IMAGE_SIDE` after the header is read (for a clearer
    // message); the allocation cap still guards the header-only decoders.
    let mut limits = image::Limits::default();
    // 16-bit RGBA at the largest accepted size, plus the decoder's working memory.
    limits.max_alloc = Some(MAX_IMAGE_PIXELS * 8 + (256 << 20));
    reader.limits(limits);
    let decoder = reader.into_decoder().map_err(|e| decode_error(path, e))?;
    Ok((decoder, format))
}

pub(crate) fn check_size(path: &Path, width: u32, height: u32) -> Result<(), MediaError> {
    if width == 0 || height == 0 {
        return Err(MediaError::Corrupt {
            path: path.to_owned(),
            reason: format!("the image has no pixels ({width}x{height})"),
        });
    }
    if width > MAX_IMAGE_SIDE
        || height > MAX_IMAGE_SIDE
        || u64::from(width) * u64::from(height) > MAX_IMAGE_PIXELS
    {
        return Err(MediaError::Unsupported {
            path: path.to_owned(),
            reason: format!(
                "the picture is {width}x{height} pixels; at most {MAX_IMAGE_SIDE} pixels a side \
                 and {} MPix are supported",
                MAX_IMAGE_PIXELS >> 20
            ),
        });
    }
    Ok(())
}

pub(crate) fn rotation_of(orientation: image::metadata::Orientation) -> u32 {
    use image::metadata::Orientation as O;
    match orientation {
        O::NoTransforms | O::FlipHorizontal | O::FlipVertical => 0,
        O::Rotate90 | O::Rotate90FlipH => 90,
        O::Rotate180 => 180,
        O::Rotate270 | O::Rotate270FlipH => 270,
    }
}

pub(crate) fn swaps_axes(orientation: image::metadata::Orientation) -> bool {
    rotation_of(orientation) % 180 == 90
}

/// Reads the header (size, format, EXIF orientation) without decoding pixels.
pub(crate) fn read_header(path: &Path) -> Result<ImageHeader, MediaError> {
    let (mut decoder, format) = match decoder(path) {
        Err(e @ MediaError::Unsupported { .. }) => {
            // A TIFF of wide grey samples, which `image` refuses, is decoded whole.
            return match super::tiff_pages::decode_first(path) {
                Some(decoded) => decoded.map(|(_, header)| header),
                None => Err(e),
            };
        }
        other => other?,
    };
    let (w, h) = decoder.dimensions();
    check_size(path, w, h)?;
    // A broken EXIF block is not worth refusing the picture for.
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let (width, height) = if swaps_axes(orientation) {
        (h, w)
    } else {
        (w, h)
    };
    Ok(ImageHeader {
        width,
        height,
        format,
        rotation_degrees: rotation_of(orientation),
    })
}

/// Decodes an image to RGBA8 in display orientation. 16-bit, grey, alpha and CMYK sources are
/// converted (`image` turns CMYK into RGB); TIFF grey of more than 8 bits as `tiff_pages` shows it.
pub(crate) fn decode(path: &Path) -> Result<(Frame, ImageHeader), MediaError> {
    let (mut decoder, format) = match decoder(path) {
        Err(e @ MediaError::Unsupported { .. }) => {
            // A grey TIFF of samples `image` refuses (32-bit float, signed 16-bit…).
            return super::tiff_pages::decode_first(path).unwrap_or(Err(e));
        }
        other => other?,
    };
    if format == ImageFormat::Tiff
        && let Some(decoded) = super::tiff_pages::decode_first(path)
    {
        // Grey of more than 8 bits: shown over its display range, as ImageJ shows it.
        return decoded;
    }
    let (w, h) = decoder.dimensions();
    check_size(path, w, h)?;
    let orientation = decoder
        .orientation()
        .unwrap_or(image::metadata::Orientation::NoTransforms);
    let img = DynamicImage::from_decoder(decoder).map_err(|e| decode_error(path, e))?;
    Ok(oriented(img, format, orientation))
}

/// A decoded picture turned to its display orientation, as RGBA8, with its header.
pub(crate) fn oriented(
    mut img: DynamicImage,
    format: ImageFormat,
    orientation: image::metadata::Orientation,
) -> (Frame, ImageHeader) {
    img.apply_orientation(orientation);
    let rgba = img.into_rgba8();
    let (width, height) = rgba.dimensions();
    let header = ImageHeader {
        width,
        height,
        format,
        rotation_degrees: rotation_of(orientation),
    };
    let frame = Frame {
        width,
        height,
        rgba: rgba.into_raw(),
    };
    (frame, header)
}

#[cfg(test)]
#[allow(clippy::unwrap_used)]
mod tests {
    use super::*;

    #[test]
    fn sniffs_by_magic_bytes() {
        assert_eq!(
            sniff_bytes(b"\x89PNG\r\n\x1a\n\0\0\0\rIHDR"),
            Some(ImageFormat::Png)
        );
        assert_eq!(
            sniff_bytes(b"\xff\xd8\xff\xe0\0\x10JFIF\0"),
            Some(ImageFormat::Jpeg)
        );
        assert_eq!(
            sniff_bytes(b"RIFF\0\0\0\0WEBPVP8 "),
            Some(ImageFormat::WebP)
        );
        assert_eq!(sniff_bytes(b"II*\0\x08\0\0\0"), Some(ImageFormat::Tiff));
        assert_eq!(sniff_bytes(b"MM\0*\0\0\0\x08"), Some(ImageFormat::Tiff));
        assert_eq!(sniff_bytes(b"BM\0\0\0\0\0\0\0\0"), Some(ImageFormat::Bmp));
        assert_eq!(sniff_bytes(b"GIF89a\x01\0\x01\0"), Some(ImageFormat::Gif));
        // HEIC as phones write it; AVIF shares `mif1` but FFmpeg decodes it.
        assert!(is_heif(
            b"\0\0\0\x1cftypheic\0\0\0\0mif1heicmiaf\0\0\x01\x7dmeta"
        ));
        assert!(is_heif(b"\0\0\0\x18ftypmif1\0\0\0\0mif1heic"));
        assert!(!is_heif(b"\0\0\0\x20ftypavif\0\0\0\0avifmif1miafMA1A"));
        assert!(!is_heif(b"\0\0\0\x18ftypisom\0\0\x02\0isomiso2"));
        assert!(!is_heif(b"\0\0\0\x18ftyp"));
        // MP4, WebM and text are not images.
        assert_eq!(sniff_bytes(b"\0\0\0\x20ftypisom\0\0\x02\0"), None);
        assert_eq!(sniff_bytes(b"\x1a\x45\xdf\xa3\x9f\x42\x86\x81"), None);
        assert_eq!(sniff_bytes(b"hello, this is text"), None);
        assert_eq!(sniff_bytes(b""), None);
    }

    #[test]
    fn format_names_are_short() {
        assert_eq!(format_name(ImageFormat::Jpeg), "jpeg");
        assert_eq!(format_name(ImageFormat::Tiff), "tiff");
        assert_eq!(format_name(ImageFormat::Png), "png");
        assert_eq!(format_name(ImageFormat::WebP), "webp");
    }
}
