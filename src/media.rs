//! Images sent as attachments, made safe to pass on: decoded and encoded
//! anew (`image`), so nothing of the original file survives but its pixels —
//! no EXIF (a photo's GPS position), no comments, no trailing data. The
//! EXIF orientation is applied first, so the picture still stands upright.
//! Besides the clean original, a 1200 px preview and a 300 px thumbnail
//! (each fitting in a square of that side, never enlarged). CPU-bound: call
//! from a blocking task.

use std::io::Cursor;

use image::{DynamicImage, ImageDecoder, ImageFormat, ImageReader, Limits, imageops::FilterType};

/// Sides of the square the preview and the thumbnail fit in.
pub const PREVIEW_SIDE: u32 = 1200;
pub const THUMBNAIL_SIDE: u32 = 300;
/// Largest picture decoded (pixels per side, and memory for decoding).
const MAX_SIDE: u32 = 12_000;
const MAX_DECODE_BYTES: u64 = 256 * 1024 * 1024;

/// The clean copies of an image, each encoded in the original's format.
pub struct CleanImage {
    pub original: Vec<u8>,
    pub preview: Vec<u8>,
    pub thumbnail: Vec<u8>,
}

/// Why an image could not be cleaned.
#[derive(Debug, thiserror::Error)]
pub enum MediaError {
    #[error("not a {0} image this server can read")]
    Unreadable(&'static str),
    #[error("encoding failed: {0}")]
    Encoding(#[from] image::ImageError),
}

/// Decodes `bytes` as `content_type` and encodes the clean copies.
pub fn clean_image(bytes: &[u8], content_type: &'static str) -> Result<CleanImage, MediaError> {
    let format = match content_type {
        "image/jpeg" => ImageFormat::Jpeg,
        "image/png" => ImageFormat::Png,
        "image/webp" => ImageFormat::WebP,
        "image/gif" => ImageFormat::Gif,
        _ => return Err(MediaError::Unreadable(content_type)),
    };
    let mut reader = ImageReader::with_format(Cursor::new(bytes), format);
    let mut limits = Limits::default();
    limits.max_image_width = Some(MAX_SIDE);
    limits.max_image_height = Some(MAX_SIDE);
    limits.max_alloc = Some(MAX_DECODE_BYTES);
    reader.limits(limits);
    let mut decoder = reader
        .into_decoder()
        .map_err(|_| MediaError::Unreadable(content_type))?;
    let orientation = decoder
        .orientation()
        .map_err(|_| MediaError::Unreadable(content_type))?;
    let mut picture =
        DynamicImage::from_decoder(decoder).map_err(|_| MediaError::Unreadable(content_type))?;
    picture.apply_orientation(orientation);
    let fit = |side: u32| {
        if picture.width() <= side && picture.height() <= side {
            picture.clone()
        } else {
            picture.resize(side, side, FilterType::Triangle)
        }
    };
    Ok(CleanImage {
        original: encode(&picture, format)?,
        preview: encode(&fit(PREVIEW_SIDE), format)?,
        thumbnail: encode(&fit(THUMBNAIL_SIDE), format)?,
    })
}

fn encode(picture: &DynamicImage, format: ImageFormat) -> Result<Vec<u8>, MediaError> {
    let mut out = Cursor::new(Vec::new());
    match format {
        // JPEG has no alpha channel; the others keep what they had.
        ImageFormat::Jpeg => {
            DynamicImage::ImageRgb8(picture.to_rgb8()).write_to(&mut out, format)?
        }
        // The WebP encoder is lossless and takes 8-bit RGB(A) only.
        ImageFormat::WebP => {
            DynamicImage::ImageRgba8(picture.to_rgba8()).write_to(&mut out, format)?
        }
        _ => picture.write_to(&mut out, format)?,
    }
    Ok(out.into_inner())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn png(width: u32, height: u32) -> Vec<u8> {
        let picture = DynamicImage::new_rgb8(width, height);
        let mut out = Cursor::new(Vec::new());
        picture.write_to(&mut out, ImageFormat::Png).unwrap();
        out.into_inner()
    }

    #[test]
    fn previews_fit_their_squares_and_small_pictures_stay_small() {
        let clean = clean_image(&png(2400, 600), "image/png").unwrap();
        let size = |bytes: &[u8]| {
            let p = image::load_from_memory(bytes).unwrap();
            (p.width(), p.height())
        };
        assert_eq!(size(&clean.original), (2400, 600));
        assert_eq!(size(&clean.preview), (1200, 300));
        assert_eq!(size(&clean.thumbnail), (300, 75));
        let small = clean_image(&png(40, 20), "image/png").unwrap();
        assert_eq!(size(&small.thumbnail), (40, 20));
    }

    #[test]
    fn what_is_not_an_image_of_its_type_is_refused() {
        assert!(clean_image(b"MZ\x90\0 not a png", "image/png").is_err());
        assert!(clean_image(&png(4, 4), "image/jpeg").is_err());
    }
}
