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

/// The image fitted within `long_side` as a JPEG, or `None` when it fits already in a format
/// every provider reads (JPEG, PNG, WebP). Decodes the whole image: the caller runs it off
/// the async threads.
pub(crate) fn fitted(bytes: &[u8], long_side: u32) -> Result<Option<Vec<u8>>, MediaError> {
    let reader = reader(bytes)?;
    let Some(format) = reader.format() else {
        return Ok(None);
    };
    let image = reader
        .decode()
        .map_err(|e| MediaError::Unreadable(e.to_string()))?;
    let fits = image.width().max(image.height()) <= long_side;
    let readable = matches!(
        format,
        ImageFormat::Jpeg | ImageFormat::Png | ImageFormat::WebP
    );
    if fits && readable {
        return Ok(None);
    }
    let image = if fits {
        image
    } else {
        image.resize(long_side, long_side, image::imageops::FilterType::Triangle)
    };
    let mut out = Vec::new();
    image::codecs::jpeg::JpegEncoder::new_with_quality(&mut out, JPEG_QUALITY)
        .encode_image(&image.to_rgb8())
        .map_err(|e| MediaError::Unreadable(e.to_string()))?;
    Ok(Some(out))
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
        let fitted = fitted(&large, LLM_LONG_SIDE)
            .unwrap()
            .expect("made smaller");
        assert_eq!(dimensions(&fitted).unwrap(), Some((1568, 784)));
        assert_eq!(&fitted[..3], &[0xFF, 0xD8, 0xFF], "a JPEG");
        assert_eq!(super::fitted(&png(800, 600), LLM_LONG_SIDE).unwrap(), None);
    }

    #[test]
    fn an_image_that_does_not_decode_is_unreadable() {
        let mut broken = png(64, 64);
        broken.truncate(60);
        assert!(matches!(
            fitted(&broken, LLM_LONG_SIDE),
            Err(MediaError::Unreadable(_))
        ));
    }
}
