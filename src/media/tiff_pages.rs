//! TIFF through the `tiff` crate, for what the `image` crate does not do: the pages of a
//! multi-page TIFF (ImageJ/Fiji and OME-TIFF microscopy stacks, scanned series) shown as the
//! frames of a video, and grey images of wide samples (32-bit float, signed 16-bit, 32-bit
//! integers), which `image` refuses. Colour pages convert through `image::DynamicImage`, so a
//! page looks as the same picture does as a one-page file.

use std::fs::File;
use std::io::BufReader;
use std::path::Path;

use image::metadata::Orientation;
use image::{DynamicImage, ImageBuffer};
use tiff::ColorType;
use tiff::decoder::{Decoder, DecodingResult, Limits};
use tiff::tags::{SampleFormat, Tag};

use super::still::{self, ImageHeader};
use super::{Frame, MAX_FRAMES_FPS, MAX_IMAGE_PIXELS, MediaError};

/// Most directories read from one file's chain (a stack of a million pages).
const MAX_PAGES: usize = 1 << 20;

/// `NewSubfileType` bits (TIFF 6.0, section 8) of a page that is not a frame: a
/// reduced-resolution copy (a thumbnail or pyramid level, bit 0) or a transparency mask (bit 2).
const NOT_A_FRAME: u32 = 0b101;

type Reader = Decoder<BufReader<File>>;

/// How a page's samples become RGBA8.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Pixels {
    /// 8 or 16-bit unsigned grey, grey+alpha, RGB or RGBA, or 32-bit float RGB(A): converted
    /// as `image` converts them.
    Image,
    /// One grey sample of more than 8 bits (16 or 32-bit, integer or float, signed or not),
    /// shown over a display range as ImageJ shows it ([`display_range`], [`grey_to_u8`]).
    Grey,
}

/// What every frame of a stack shares.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct PageFacts {
    /// Stored width and height.
    size: (u32, u32),
    color: ColorType,
    format: SampleFormat,
}

impl PageFacts {
    fn read(decoder: &mut Reader) -> tiff::TiffResult<Self> {
        let format = decoder
            .find_tag_unsigned_vec::<u16>(Tag::SampleFormat)?
            .and_then(|v| v.first().copied())
            .map_or(SampleFormat::Uint, SampleFormat::from_u16_exhaustive);
        Ok(Self {
            size: decoder.dimensions()?,
            color: decoder.colortype()?,
            format,
        })
    }

    /// How the pixels convert, or `None` for pages only the `image` crate shows (bilevel,
    /// palette, CMYK, YCbCr, extra channels…).
    fn pixels(&self) -> Option<Pixels> {
        use ColorType as C;
        use SampleFormat as F;
        match (self.color, self.format) {
            (C::Gray(8) | C::GrayA(8 | 16) | C::RGB(8 | 16) | C::RGBA(8 | 16), F::Uint)
            | (C::RGB(32) | C::RGBA(32), F::IEEEFP) => Some(Pixels::Image),
            (C::Gray(32 | 64), F::IEEEFP | F::Uint | F::Int) | (C::Gray(16), F::Uint | F::Int) => {
                Some(Pixels::Grey)
            }
            _ => None,
        }
    }
}

fn tiff_error(path: &Path, err: tiff::TiffError) -> MediaError {
    match err {
        tiff::TiffError::IoError(source) if source.kind() != std::io::ErrorKind::UnexpectedEof => {
            MediaError::Io {
                path: path.to_owned(),
                source,
            }
        }
        tiff::TiffError::UnsupportedError(e) => MediaError::Unsupported {
            path: path.to_owned(),
            reason: e.to_string(),
        },
        tiff::TiffError::LimitsExceeded => MediaError::Unsupported {
            path: path.to_owned(),
            reason: "a page is too large to decode".into(),
        },
        other => MediaError::Corrupt {
            path: path.to_owned(),
            reason: other.to_string(),
        },
    }
}

fn reader(path: &Path) -> Result<Reader, MediaError> {
    let file = File::open(path).map_err(|source| MediaError::Io {
        path: path.to_owned(),
        source,
    })?;
    let mut limits = Limits::default();
    // As `still`: 16-bit RGBA at the largest accepted size, plus working memory.
    limits.decoding_buffer_size =
        usize::try_from(MAX_IMAGE_PIXELS * 8 + (256 << 20)).unwrap_or(usize::MAX);
    // OME-XML descriptions of long stacks run to megabytes.
    limits.ifd_value_size = 64 << 20;
    Decoder::new(BufReader::new(file))
        .map(|d| d.with_limits(limits))
        .map_err(|e| tiff_error(path, e))
}

/// The current page's `Orientation` tag, read as `image` reads it for a one-page TIFF.
fn orientation(decoder: &mut Reader) -> Orientation {
    decoder
        .find_tag(Tag::Orientation)
        .ok()
        .flatten()
        .and_then(|v| Orientation::from_exif(v.into_u16().ok()?.min(255) as u8))
        .unwrap_or(Orientation::NoTransforms)
}

/// A TIFF file's pages opened as the frames of a video.
pub(crate) struct TiffPages {
    decoder: Reader,
    /// Directory index of each frame's page.
    pages: Vec<usize>,
    facts: PageFacts,
    pixels: Pixels,
    orientation: Orientation,
    fps: f64,
    codec: String,
    /// Grey pages: one display range for every frame, so brightness does not flicker.
    range: Option<Range>,
}

impl TiffPages {
    /// Reads every directory of the TIFF file at `path` and answers its frames when it is a
    /// stack: two or more full-resolution pages (thumbnails, pyramid levels and masks left
    /// out) of one size and sample layout that [`PageFacts::pixels`] converts. Anything else
    /// (one page, a document of pages of several sizes, a damaged first page) is `Ok(None)`:
    /// the file opens as a picture of its first page, as before. A chain of directories that
    /// breaks after some pages keeps the pages before the break.
    ///
    /// An ImageJ hyperstack or OME-TIFF of several channels shows its first channel ([`Layout`]);
    /// ImageJ's `fps` or `finterval`, or OME's `TimeIncrement`, gives the frame rate, else the
    /// rate is unknown (0).
    pub(crate) fn open(path: &Path) -> Result<Option<Self>, MediaError> {
        let Ok(mut decoder) = reader(path) else {
            return Ok(None);
        };
        let description = decoder
            .get_tag_ascii_string(Tag::ImageDescription)
            .unwrap_or_default();
        let orientation = orientation(&mut decoder);
        let mut full: Vec<(usize, PageFacts)> = Vec::new();
        for index in 0..MAX_PAGES {
            let Ok(facts) = PageFacts::read(&mut decoder) else {
                return Ok(None);
            };
            let subfile = decoder
                .find_tag_unsigned::<u32>(Tag::NewSubfileType)
                .ok()
                .flatten()
                .unwrap_or(0);
            if subfile & NOT_A_FRAME == 0 {
                full.push((index, facts));
            }
            if !decoder.more_images() {
                break;
            }
            if let Err(e) = decoder.next_image() {
                log::warn!(
                    "{}: page {} cannot be read ({e}); the pages before it are shown",
                    path.display(),
                    index + 2
                );
                break;
            }
        }
        let Some(&(_, facts)) = full.first() else {
            return Ok(None);
        };
        if full.len() < 2 || full.iter().any(|(_, f)| *f != facts) {
            return Ok(None);
        }
        let Some(pixels) = facts.pixels() else {
            log::warn!(
                "{}: its {} pages are {:?} samples, which open as a picture of the first page \
                 only",
                path.display(),
                full.len(),
                facts.color
            );
            return Ok(None);
        };
        still::check_size(path, facts.size.0, facts.size.1)?;
        let layout = Layout::of(&description, full.len());
        let channels = layout.channels;
        let pages: Vec<usize> = full
            .iter()
            .enumerate()
            .filter(|(n, _)| layout.is_frame(*n))
            .map(|(_, (i, _))| *i)
            .collect();
        if pages.len() < 2 {
            return Ok(None);
        }
        // ImageJ's saved display range, else the first frame's, as ImageJ opens a stack.
        let range = match (pixels, layout.display) {
            (Pixels::Grey, None) => {
                let err = |e| tiff_error(path, e);
                decoder.seek_to_image(pages[0]).map_err(err)?;
                Some(display_range(&grey_values(&mut decoder, path, &facts)?))
            }
            (_, display) => display,
        };
        let codec = if channels > 1 {
            format!("tiff (channel 1 of {channels})")
        } else {
            "tiff".into()
        };
        Ok(Some(Self {
            decoder,
            pages,
            facts,
            pixels,
            orientation,
            fps: layout.fps,
            codec,
            range,
        }))
    }

    /// Number of frames.
    pub(crate) fn len(&self) -> u64 {
        self.pages.len() as u64
    }

    /// Frames per second (0: unknown).
    pub(crate) fn fps(&self) -> f64 {
        self.fps
    }

    /// Codec text: `tiff`, or which channel is shown.
    pub(crate) fn codec(&self) -> &str {
        &self.codec
    }

    /// Displayed size.
    pub(crate) fn size(&self) -> (u32, u32) {
        let (w, h) = self.facts.size;
        if still::swaps_axes(self.orientation) {
            (h, w)
        } else {
            (w, h)
        }
    }

    /// Clockwise display rotation in degrees.
    pub(crate) fn rotation_degrees(&self) -> u32 {
        still::rotation_of(self.orientation)
    }

    /// Frame `index` decoded, or `None` past the end. A page that no longer matches the first
    /// (the file rewritten in place) is [`MediaError::Corrupt`].
    pub(crate) fn frame(&mut self, path: &Path, index: u64) -> Option<Result<Frame, MediaError>> {
        let ifd = *usize::try_from(index)
            .ok()
            .and_then(|i| self.pages.get(i))?;
        Some(self.decode(path, ifd))
    }

    fn decode(&mut self, path: &Path, ifd: usize) -> Result<Frame, MediaError> {
        let err = |e| tiff_error(path, e);
        self.decoder.seek_to_image(ifd).map_err(err)?;
        let facts = PageFacts::read(&mut self.decoder).map_err(err)?;
        if facts != self.facts {
            return Err(MediaError::Corrupt {
                path: path.to_owned(),
                reason: format!(
                    "page {} is now {}x{} {:?}, not {}x{} {:?} like the first",
                    ifd + 1,
                    facts.size.0,
                    facts.size.1,
                    facts.color,
                    self.facts.size.0,
                    self.facts.size.1,
                    self.facts.color
                ),
            });
        }
        let img = read_page(&mut self.decoder, path, &facts, self.pixels, self.range)?;
        Ok(still::oriented(img, image::ImageFormat::Tiff, self.orientation).0)
    }
}

/// Decodes the first page of a grey TIFF of more than 8 bits ([`Pixels::Grey`]: ImageJ's
/// saved display range, else the page's own); `None` for any other file, which the `image`
/// crate decodes (or refuses in its own words).
pub(crate) fn decode_first(path: &Path) -> Option<Result<(Frame, ImageHeader), MediaError>> {
    let mut decoder = reader(path).ok()?;
    let facts = PageFacts::read(&mut decoder).ok()?;
    if facts.pixels()? != Pixels::Grey {
        return None;
    }
    let description = decoder
        .get_tag_ascii_string(Tag::ImageDescription)
        .unwrap_or_default();
    let range = Layout::of(&description, 1).display;
    let orientation = orientation(&mut decoder);
    Some((|| {
        still::check_size(path, facts.size.0, facts.size.1)?;
        let img = read_page(&mut decoder, path, &facts, Pixels::Grey, range)?;
        Ok(still::oriented(img, image::ImageFormat::Tiff, orientation))
    })())
}

/// Raw grey samples of a page: width, height and the values row by row.
pub type GreySamples = (u32, u32, Vec<f64>);

/// The first page of a grey TIFF of more than 8 bits ([`Pixels::Grey`]: 16/32-bit integer or
/// float samples, which the `image` crate refuses) as its raw sample values, row by row, with
/// its stored width and height (no display range, no orientation); `None` for any other file.
pub fn grey_first_page(path: &Path) -> Option<Result<GreySamples, MediaError>> {
    let mut decoder = reader(path).ok()?;
    let facts = PageFacts::read(&mut decoder).ok()?;
    if facts.pixels()? != Pixels::Grey {
        return None;
    }
    Some((|| {
        still::check_size(path, facts.size.0, facts.size.1)?;
        let mut values = grey_values(&mut decoder, path, &facts)?;
        values.truncate(facts.size.0 as usize * facts.size.1 as usize);
        Ok((facts.size.0, facts.size.1, values))
    })())
}

fn short_page(path: &Path) -> MediaError {
    MediaError::Corrupt {
        path: path.to_owned(),
        reason: "a page holds fewer samples than its size needs".into(),
    }
}

/// Decodes the current page: its samples (chunky, or every plane of a planar page) and the
/// layout they came in.
fn read_samples(
    decoder: &mut Reader,
    path: &Path,
) -> Result<(DecodingResult, tiff::decoder::BufferLayoutPreference), MediaError> {
    let mut result = DecodingResult::U8(Vec::new());
    let layout = decoder
        .read_image_to_buffer(&mut result)
        .map_err(|e| tiff_error(path, e))?;
    if result.as_buffer(0).byte_len() < layout.complete_len {
        return Err(short_page(path));
    }
    Ok((result, layout))
}

/// The current page's grey samples ([`Pixels::Grey`]) as numbers, one per pixel.
fn grey_values(
    decoder: &mut Reader,
    path: &Path,
    facts: &PageFacts,
) -> Result<Vec<f64>, MediaError> {
    let (result, _) = read_samples(decoder, path)?;
    use DecodingResult as R;
    let values: Vec<f64> = match result {
        R::U16(v) => v.into_iter().map(f64::from).collect(),
        R::I16(v) => v.into_iter().map(f64::from).collect(),
        R::U32(v) => v.into_iter().map(f64::from).collect(),
        R::I32(v) => v.into_iter().map(f64::from).collect(),
        R::U64(v) => v.into_iter().map(|x| x as f64).collect(),
        R::I64(v) => v.into_iter().map(|x| x as f64).collect(),
        R::F32(v) => v.into_iter().map(f64::from).collect(),
        R::F64(v) => v,
        _ => return Err(short_page(path)),
    };
    let pixel_count = facts.size.0 as usize * facts.size.1 as usize;
    if values.len() < pixel_count {
        return Err(short_page(path));
    }
    Ok(values)
}

/// Reads the current page's pixels (chunky or planar) into an image of its own sample type;
/// grey pages of more than 8 bits are shown over `range` (`None`: the page's own).
fn read_page(
    decoder: &mut Reader,
    path: &Path,
    facts: &PageFacts,
    pixels: Pixels,
    range: Option<Range>,
) -> Result<DynamicImage, MediaError> {
    let (w, h) = facts.size;
    let short = || short_page(path);
    if pixels == Pixels::Grey {
        let values = grey_values(decoder, path, facts)?;
        let range = range.unwrap_or_else(|| display_range(&values));
        return ImageBuffer::from_raw(w, h, grey_to_u8(&values, range))
            .map(DynamicImage::ImageLuma8)
            .ok_or_else(short);
    }
    let (result, layout) = read_samples(decoder, path)?;
    let channels = match facts.color {
        ColorType::Gray(_) => 1,
        ColorType::GrayA(_) => 2,
        ColorType::RGB(_) => 3,
        _ => 4,
    };
    let pixel_count = w as usize * h as usize;
    let planar = layout.planes > 1;
    use DecodingResult as R;
    use DynamicImage as D;
    let img = match (pixels, result) {
        (Pixels::Image, R::U8(v)) => {
            chunky(v, planar, channels, pixel_count).and_then(|v| match channels {
                1 => ImageBuffer::from_raw(w, h, v).map(D::ImageLuma8),
                2 => ImageBuffer::from_raw(w, h, v).map(D::ImageLumaA8),
                3 => ImageBuffer::from_raw(w, h, v).map(D::ImageRgb8),
                _ => ImageBuffer::from_raw(w, h, v).map(D::ImageRgba8),
            })
        }
        (Pixels::Image, R::U16(v)) => {
            chunky(v, planar, channels, pixel_count).and_then(|v| match channels {
                1 => ImageBuffer::from_raw(w, h, v).map(D::ImageLuma16),
                2 => ImageBuffer::from_raw(w, h, v).map(D::ImageLumaA16),
                3 => ImageBuffer::from_raw(w, h, v).map(D::ImageRgb16),
                _ => ImageBuffer::from_raw(w, h, v).map(D::ImageRgba16),
            })
        }
        (Pixels::Image, R::F32(v)) => {
            chunky(v, planar, channels, pixel_count).and_then(|v| match channels {
                3 => ImageBuffer::from_raw(w, h, v).map(D::ImageRgb32F),
                _ => ImageBuffer::from_raw(w, h, v).map(D::ImageRgba32F),
            })
        }
        _ => None,
    };
    img.ok_or_else(short)
}

/// Interleaved samples, from planes when the page is `planar`.
fn chunky<T: Copy>(v: Vec<T>, planar: bool, channels: usize, pixel_count: usize) -> Option<Vec<T>> {
    if planar {
        interleave(&v, channels, pixel_count)
    } else {
        Some(v)
    }
}

/// Planes (all of channel 0, then channel 1…) to interleaved pixels; `None` when short.
fn interleave<T: Copy>(planes: &[T], channels: usize, pixel_count: usize) -> Option<Vec<T>> {
    let planes = planes.get(..channels * pixel_count)?;
    Some(
        (0..pixel_count)
            .flat_map(|p| (0..channels).map(move |c| planes[c * pixel_count + p]))
            .collect(),
    )
}

/// A display range: the values shown black and white.
type Range = (f64, f64);

/// The display range of grey samples that carry none: 0–1 when every finite value lies in it
/// (a normalised image or a 0/1 mask, scaled by 255 as `image` scales float RGB), otherwise
/// the smallest to the largest finite value, as ImageJ shows a 16 or 32-bit image.
fn display_range(values: &[f64]) -> Range {
    let finite = values.iter().copied().filter(|v| v.is_finite());
    let (lo, hi) = finite.fold((f64::INFINITY, f64::NEG_INFINITY), |(lo, hi), v| {
        (lo.min(v), hi.max(v))
    });
    if lo >= 0.0 && hi <= 1.0 {
        (0.0, 1.0)
    } else {
        (lo, hi)
    }
}

/// Grey samples to 8 bits over `range`, values outside it clamped. NaN and infinities, and
/// every value of an empty range (one value everywhere), show black.
fn grey_to_u8(values: &[f64], (lo, hi): Range) -> Vec<u8> {
    let span = hi - lo;
    values
        .iter()
        .map(|&v| {
            if v.is_finite() && span > 0.0 {
                ((v - lo) / span * 255.0).round().clamp(0.0, 255.0) as u8
            } else {
                0
            }
        })
        .collect()
}

/// Seconds in one `unit` of time as ImageJ (`tunit`) and OME (`TimeIncrementUnit`) write it.
fn seconds_per(unit: &str) -> Option<f64> {
    match unit {
        "s" | "sec" | "second" | "seconds" => Some(1.0),
        "ms" | "msec" => Some(1e-3),
        "µs" | "us" => Some(1e-6),
        "min" => Some(60.0),
        "h" => Some(3600.0),
        _ => None,
    }
}

/// How a stack's pages map to frames, from its first page's `ImageDescription`: which pages
/// hold the first channel, and the frame rate.
#[derive(Debug, PartialEq)]
struct Layout {
    /// Channel planes per (z, t) position; 1 when every page is a frame.
    channels: usize,
    /// Pages between one channel and the next.
    channel_stride: usize,
    /// Pages that belong to the first image (OME files may hold several series).
    planes: usize,
    /// Frames per second, 0 when unknown.
    fps: f64,
    /// ImageJ's saved display range of grey images (`min`, `max`).
    display: Option<Range>,
}

impl Layout {
    /// The layout of `pages` full-resolution pages described by `description`: an ImageJ
    /// header (`ImageJ=1.54f\nchannels=3\nfinterval=0.5\n…`, channel fastest), OME-XML
    /// (`<Pixels DimensionOrder="XYZCT" SizeZ=… SizeC=… SizeT=… TimeIncrement=…>`), or
    /// anything else (every page a frame, rate unknown).
    fn of(description: &str, pages: usize) -> Self {
        let plain = Self {
            channels: 1,
            channel_stride: 1,
            planes: pages,
            fps: 0.0,
            display: None,
        };
        let rate = |per_frame: Option<f64>| {
            per_frame
                .filter(|s| *s > 0.0 && 1.0 / s <= MAX_FRAMES_FPS)
                .map_or(0.0, |s| 1.0 / s)
        };
        if description.starts_with("ImageJ=") {
            let value = |key: &str| {
                description.lines().find_map(|line| {
                    let (k, v) = line.split_once('=')?;
                    (k.trim() == key).then(|| v.trim().to_owned())
                })
            };
            let number = |key: &str| value(key)?.parse::<f64>().ok().filter(|v| v.is_finite());
            let channels = number("channels").map_or(1, |c| c.clamp(1.0, 1e6) as usize);
            // `finterval` is in `tunit`, seconds when absent (ImageJ's Calibration default).
            let unit = value("tunit").map_or(Some(1.0), |u| seconds_per(&u));
            let interval = number("finterval").zip(unit).map(|(i, u)| i * u);
            let fps = number("fps").filter(|f| *f > 0.0 && *f <= MAX_FRAMES_FPS);
            let display = number("min").zip(number("max")).filter(|(lo, hi)| hi > lo);
            return Self {
                channels,
                fps: fps.unwrap_or_else(|| rate(interval)),
                display,
                ..plain
            };
        }
        let Some(pixels) = xml_attributes(description, "Pixels") else {
            return plain;
        };
        let attr = |name: &str| pixels.iter().find(|(k, _)| k == name).map(|(_, v)| v);
        let size = |name: &str| {
            attr(name)
                .and_then(|v| v.parse::<usize>().ok())
                .filter(|n| (1..=MAX_PAGES).contains(n))
                .unwrap_or(1)
        };
        let (z, c, t) = (size("SizeZ"), size("SizeC"), size("SizeT"));
        // SizeC counts the samples of an RGB page as channels: trust it only when the pages
        // hold that many planes.
        let channels = if pages >= z * c * t {
            c
        } else if pages.is_multiple_of(z * t) {
            pages / (z * t)
        } else {
            1
        };
        let order = attr("DimensionOrder").map_or("XYZCT", String::as_str);
        let channel_stride = order
            .chars()
            .skip(2)
            .take_while(|&d| d != 'C')
            .map(|d| if d == 'Z' { z } else { t })
            .product();
        let unit = attr("TimeIncrementUnit").map_or(Some(1.0), |u| seconds_per(u));
        let interval = attr("TimeIncrement")
            .and_then(|v| v.parse::<f64>().ok())
            .zip(unit)
            .map(|(i, u)| i * u);
        Self {
            channels,
            channel_stride,
            planes: (z * channels * t).min(pages),
            fps: rate(interval),
            display: None,
        }
    }

    /// Whether the page at `index` among the full-resolution pages is a frame.
    fn is_frame(&self, index: usize) -> bool {
        index < self.planes && (index / self.channel_stride).is_multiple_of(self.channels)
    }
}

/// The attributes of the first `<name …>` element of an XML text (any namespace prefix).
fn xml_attributes(xml: &str, name: &str) -> Option<Vec<(String, String)>> {
    let start = xml.match_indices('<').map(|(i, _)| i + 1).find(|&i| {
        let tag = &xml[i..];
        let local = tag.split_once(':').map_or(tag, |(prefix, rest)| {
            if prefix.chars().all(char::is_alphanumeric) {
                rest
            } else {
                tag
            }
        });
        local.starts_with(name) && local[name.len()..].starts_with(char::is_whitespace)
    })?;
    let element = &xml[start..start + xml[start..].find('>')?];
    let mut attributes = Vec::new();
    let mut rest = element.split_once(char::is_whitespace)?.1;
    while let Some((key, after)) = rest.split_once('=') {
        let after = after.trim_start();
        let quote = after.chars().next()?;
        let body = &after[quote.len_utf8()..];
        let end = body.find(quote)?;
        attributes.push((key.trim().to_owned(), body[..end].to_owned()));
        rest = &body[end + quote.len_utf8()..];
    }
    Some(attributes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grey_shows_unit_data_scaled_and_the_rest_stretched() {
        let show = |v: &[f64]| grey_to_u8(v, display_range(v));
        assert_eq!(show(&[0.0, 0.5, 1.0]), vec![0, 128, 255]);
        assert_eq!(show(&[100.0, 150.0, 200.0]), vec![0, 128, 255]);
        assert_eq!(show(&[-1.0, f64::NAN, 1.0]), vec![0, 0, 255]);
        assert_eq!(show(&[7.0, 7.0]), vec![0, 0]);
        assert_eq!(
            grey_to_u8(&[0.0, 50.0, 300.0], (100.0, 200.0)),
            vec![0, 0, 255]
        );
    }

    #[test]
    fn imagej_descriptions_give_channels_and_rate() {
        let ij = Layout::of(
            "ImageJ=1.54f\nimages=6\nchannels=3\nframes=2\nfinterval=0.5\n",
            6,
        );
        assert_eq!((ij.channels, ij.channel_stride, ij.fps), (3, 1, 2.0));
        assert_eq!(ij.display, None);
        let range = Layout::of("ImageJ=1.54f\nimages=2\nmin=100.0\nmax=4095.0\n", 2);
        assert_eq!(range.display, Some((100.0, 4095.0)));
        assert_eq!(
            (0..6).filter(|&i| ij.is_frame(i)).collect::<Vec<_>>(),
            [0, 3]
        );
        let ms = Layout::of("ImageJ=1.54f\nfinterval=40\ntunit=ms\n", 4);
        assert!((ms.fps - 25.0).abs() < 1e-9);
        assert_eq!(Layout::of("ImageJ=1.54f\nfps=7\nfinterval=1\n", 4).fps, 7.0);
        let odd = Layout::of("ImageJ=1.54f\nfinterval=2\ntunit=day\n", 4);
        assert_eq!((odd.channels, odd.fps), (1, 0.0));
        let plain = Layout::of("scanned by a copier", 3);
        assert!((0..3).all(|i| plain.is_frame(i)) && plain.fps == 0.0);
    }

    #[test]
    fn ome_descriptions_give_the_first_channel_in_their_dimension_order() {
        let ome = |order: &str, extra: &str| {
            format!(
                "<?xml version=\"1.0\"?><OME xmlns=\"http://www.openmicroscopy.org/Schemas/OME/2016-06\">\
                 <Image ID=\"Image:0\"><Pixels ID=\"Pixels:0\" DimensionOrder=\"{order}\" \
                 Type=\"uint8\" SizeX=\"5\" SizeY=\"4\" SizeZ=\"1\" SizeC=\"2\" SizeT=\"3\" {extra}>\
                 <Channel ID=\"Channel:0:0\"/></Pixels></Image></OME>"
            )
        };
        let frames = |l: &Layout, pages| (0..pages).filter(|&i| l.is_frame(i)).collect::<Vec<_>>();
        let czt = Layout::of(
            &ome("XYZCT", "TimeIncrement=\"0.2\" TimeIncrementUnit=\"s\""),
            6,
        );
        assert_eq!((frames(&czt, 6), czt.fps), (vec![0, 2, 4], 5.0));
        let tcz = Layout::of(
            &ome("XYTCZ", "TimeIncrement='100' TimeIncrementUnit='ms'"),
            6,
        );
        assert_eq!((frames(&tcz, 6), tcz.fps), (vec![0, 1, 2], 10.0));
        // A second series after the first image's planes is not part of the video.
        assert_eq!(frames(&Layout::of(&ome("XYZCT", ""), 9), 9), [0, 2, 4]);
        // RGB pages: SizeC counts samples, and every page is a frame.
        let rgb = Layout::of(&ome("XYZCT", "").replace("SizeC=\"2\"", "SizeC=\"3\""), 3);
        assert_eq!(frames(&rgb, 3), [0, 1, 2]);
        let prefixed =
            "<ome:OME><ome:Pixels SizeC=\"2\" SizeT=\"2\" DimensionOrder=\"XYCZT\"/></ome:OME>";
        assert_eq!(frames(&Layout::of(prefixed, 4), 4), [0, 2]);
    }

    #[test]
    fn planes_interleave() {
        assert_eq!(
            interleave(&[1, 2, 10, 20, 100, 200], 3, 2),
            Some(vec![1, 10, 100, 2, 20, 200])
        );
        assert_eq!(interleave(&[1, 2, 3], 2, 2), None);
    }
}
