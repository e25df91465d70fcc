//! Images made to measure: the size the LLM reads well (a 12 MP photo would cost thousands
//! of tokens for nothing) and the console's thumbnails, decoded within limits so a crafted
//! file cannot take the memory.

use std::io::Cursor;

use image::{ImageFormat, ImageReader, Limits};

use crate::MediaError;

/// The long side of an image sent to the LLM: the largest providers use without scaling it
/// down themselves.
pub const LLM_LONG_SIDE: u32 = 1568;
/// The long side of the console's thumbnails.
pub const THUMB_LONG_SIDE: u32 = 320;
/// No image wider or taller than this is decoded (a 12 MP photo is 4000×3000).
const MAX_SIDE: u32 = 12_000;
/// The most memory one decode may take.
const MAX_ALLOC: u64 = 256 * 1024 * 1024;
const JPEG_QUALITY: u8 = 85;

fn reader(bytes: &[u8]) -> Result<ImageReader<Cursor<&[u8]>>, MediaError> {
    let mut reader = ImageReader::new(Cursor::new(bytes))
        .with_guessed_format()
        .map_err(|e| MediaError::Unreadable(e.to_string()))?;
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_ALLOC);
    reader.limits(limits);
    Ok(reader)
}

/// The width and height the image's header gives, without decoding it; `None` for a format
/// this build does not decode (HEIF, AVIF: kept and shown, never resized).
#[cfg(test)]
pub(crate) fn dimensions(bytes: &[u8]) -> Result<Option<(u32, u32)>, MediaError> {
    let reader = reader(bytes)?;
    if reader.format().is_none() {
        return Ok(None);
    }
    reader
        .into_dimensions()
        .map(Some)
        .map_err(|e| MediaError::Unreadable(e.to_string()))
}

/// What one decode of an image gives: its size, and the copies made of it.
#[derive(Debug, Default)]
pub(crate) struct Prepared {
    /// `None` for a format this build does not decode (HEIF, AVIF: kept, never resized).
    pub(crate) size: Option<(u32, u32)>,
    /// Fitted for the LLM, `None` when the original fits already in a format every provider
    /// reads (JPEG, PNG, WebP).
    pub(crate) llm: Option<Vec<u8>>,
    /// The console's thumbnail, `None` when the original is small already (and readable).
    pub(crate) thumb: Option<Vec<u8>>,
}

/// Decodes the image once and makes its copies: the LLM's within `llm_side`, and the
/// thumbnail within `thumb_side` from that smaller image. Takes the whole image in memory
/// (within [`MAX_ALLOC`]): the caller runs it off the async threads, a few at a time.
pub(crate) fn prepare(
    bytes: &[u8],
    llm_side: u32,
    thumb_side: u32,
) -> Result<Prepared, MediaError> {
    let reader = reader(bytes)?;
    let Some(format) = reader.format() else {
        return Ok(Prepared::default());
    };
    let image = reader
        .decode()
        .map_err(|e| MediaError::Unreadable(e.to_string()))?;
    let size = (image.width(), image.height());
    let readable = matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP
    );
    let long = size.0.max(size.1);
    let fitted = if long > llm_side {
        Some(image.resize(llm_side, llm_side, image::imageops::FilterType::Triangle))
    } else {
        None
    };
    let llm = match (&fitted, readable) {
        (Some(fitted), _) => Some(jpeg(fitted)?),
        (None, true) => None,
        (None, false) => Some(jpeg(&image)?),
    };
    let smaller = fitted.as_ref().unwrap_or(&image);
    let thumb = if long > thumb_side {
        Some(jpeg(&smaller.thumbnail(thumb_side, thumb_side))?)
    } else if readable {
        None
    } else {
        Some(jpeg(smaller)?)
    };
    Ok(Prepared {
        size: Some(size),
        llm,
        thumb,
    })
}

fn jpeg(image: &image::DynamicImage) -> Result<Vec<u8>, MediaError> {
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode_image(&image.to_rgb8())
        .map_err(|e| MediaError::Unreadable(e.to_string()))?;
    Ok(out)
}

#[cfg(test)]
pub(crate) mod tests {
    use super::*;

    /// A PNG of `width`×`height`, a gradient (so it does not compress to nothing).
    pub(crate) fn png(width: u32, height: u32) -> Vec<u8> {
        let image = image::RgbImage::from_fn(width, height, |x, y| {
            image::Rgb([(x % 256) as u8, (y % 256) as u8, ((x + y) % 256) as u8])
        });
        let mut out = Vec::new();
        image
            .write_to(&mut Cursor::new(&mut out), ImageFormat::Png)
            .unwrap();
        out
    }

    #[test]
    fn a_large_photo_is_fitted_and_a_small_one_kept_as_it_is() {
        let large = png(2400, 1200);
        assert_eq!(dimensions(&large).unwrap(), Some((2400, 1200)));
        let made = prepare(&large, LLM_LONG_SIDE, THUMB_LONG_SIDE).unwrap();
        assert_eq!(made.size, Some((2400, 1200)));
        let fitted = made.llm.expect("made smaller");
        assert_eq!(dimensions(&fitted).unwrap(), Some((1568, 784)));
        assert_eq!(&fitted[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
        let thumb = made.thumb.expect("a thumbnail");
        assert_eq!(dimensions(&thumb).unwrap(), Some((320, 160)));
        let small = prepare(&png(800, 600), LLM_LONG_SIDE, THUMB_LONG_SIDE).unwrap();
        assert!(small.llm.is_none(), "fits already");
        assert!(small.thumb.is_some());
        let tiny = prepare(&png(200, 100), LLM_LONG_SIDE, THUMB_LONG_SIDE).unwrap();
        assert!(tiny.llm.is_none() && tiny.thumb.is_none());
    }

    #[test]
    fn an_image_that_does_not_decode_is_unreadable() {
        let mut broken = png(64, 64);
        broken.truncate(60);
        assert!(matches!(
            prepare(&broken, LLM_LONG_SIDE, THUMB_LONG_SIDE),
            Err(MediaError::Unreadable(_))
        ));
    }
}
