//! V4L2 camera source (the `v4l` crate): USB UVC microscope cameras and the like, in YUYV,
//! GREY or MJPEG. The luma plane is what the pipeline needs, so colour is dropped at once.

use std::path::PathBuf;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use image::GrayImage;
use v4l::buffer::Type;
use v4l::io::mmap::Stream;
use v4l::io::traits::CaptureStream;
use v4l::video::Capture;
use v4l::{Device, FourCC};

use super::{Frame, FrameSource};
use crate::board::{CameraConfig, PixelFormat};

/// A frame that does not arrive within this long counts as a lost camera.
const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Camera {
    config: CameraConfig,
    /// The open device and its stream; `None` after a failure until `reopen` succeeds.
    open: Option<(Device, Stream<'static>)>,
    frames: u64,
}

impl Camera {
    pub fn open(config: &CameraConfig) -> Result<Camera> {
        let mut camera = Camera { config: config.clone(), open: None, frames: 0 };
        camera.reopen()?;
        Ok(camera)
    }

    fn path(&self) -> PathBuf {
        self.config.device.clone()
    }
}

fn fourcc(format: PixelFormat) -> FourCC {
    FourCC::new(match format {
        PixelFormat::YUYV => b"YUYV",
        PixelFormat::GREY => b"GREY",
        PixelFormat::MJPG => b"MJPG",
    })
}

impl FrameSource for Camera {
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        let path = self.path();
        let Some((_, stream)) = self.open.as_mut() else {
            bail!("{}: camera is not open", path.display());
        };
        let (data, meta) = match stream.next() {
            Ok(frame) => frame,
            Err(e) => {
                self.open = None;
                return Err(e).with_context(|| format!("{}: capture failed", path.display()));
            }
        };
        let used = (meta.bytesused as usize).min(data.len());
        let (w, h) = (self.config.width, self.config.height);
        let image = to_gray(self.config.format, &data[..used], w, h)
            .with_context(|| format!("{}: frame {}", path.display(), self.frames))?;
        self.frames += 1;
        Ok(Some(Frame { image, origin: format!("{}#{}", path.display(), self.frames) }))
    }

    /// Opens the device and applies the profile's format and size; refuses a camera that
    /// substitutes another.
    fn reopen(&mut self) -> Result<()> {
        self.open = None;
        let path = self.path();
        let device = Device::with_path(&path).with_context(|| format!("{}: cannot open camera", path.display()))?;
        let mut format = device.format().with_context(|| format!("{}: cannot read format", path.display()))?;
        format.width = self.config.width;
        format.height = self.config.height;
        format.fourcc = fourcc(self.config.format);
        format.stride = 0; // let the driver choose bytes per line
        let got = device.set_format(&format).with_context(|| format!("{}: cannot set format", path.display()))?;
        if got.fourcc != format.fourcc || got.width != format.width || got.height != format.height {
            bail!(
                "{}: camera gives {} {}x{} instead of the profile's {} {}x{}",
                path.display(),
                got.fourcc,
                got.width,
                got.height,
                format.fourcc,
                format.width,
                format.height
            );
        }
        let mut stream = Stream::with_buffers(&device, Type::VideoCapture, 4)
            .with_context(|| format!("{}: cannot start streaming", path.display()))?;
        stream.set_timeout(FRAME_TIMEOUT);
        self.open = Some((device, stream));
        Ok(())
    }
}

/// The luma plane of one captured frame.
pub fn to_gray(format: PixelFormat, data: &[u8], width: u32, height: u32) -> Result<GrayImage> {
    let pixels = width as usize * height as usize;
    match format {
        PixelFormat::GREY => {
            let bytes = data.get(..pixels).context("short GREY frame")?;
            GrayImage::from_raw(width, height, bytes.to_vec()).context("GREY frame size")
        }
        PixelFormat::YUYV => {
            let bytes = data.get(..2 * pixels).context("short YUYV frame")?;
            let luma: Vec<u8> = bytes.iter().step_by(2).copied().collect();
            GrayImage::from_raw(width, height, luma).context("YUYV frame size")
        }
        PixelFormat::MJPG => {
            let jpeg = with_mjpeg_tables(data);
            let image = image::load_from_memory_with_format(&jpeg, image::ImageFormat::Jpeg)
                .context("undecodable MJPEG frame")?;
            Ok(image.to_luma8())
        }
    }
}

/// Many USB cameras send MJPEG frames without Huffman tables (DHT), relying on the standard
/// ones. The JPEG decoder fills those in when an APP0 `AVI1` marker says the data is MJPEG, so
/// a frame without DHT gets that marker right after its start-of-image.
pub fn with_mjpeg_tables(jpeg: &[u8]) -> std::borrow::Cow<'_, [u8]> {
    if jpeg.len() < 4 || jpeg[..2] != [0xFF, 0xD8] || has_huffman_tables(jpeg) {
        return std::borrow::Cow::Borrowed(jpeg);
    }
    let mut patched = Vec::with_capacity(jpeg.len() + 10);
    patched.extend_from_slice(&jpeg[..2]);
    patched.extend_from_slice(&[0xFF, 0xE0, 0x00, 0x08, b'A', b'V', b'I', b'1', 0x00, 0x00]);
    patched.extend_from_slice(&jpeg[2..]);
    std::borrow::Cow::Owned(patched)
}

/// Walks the marker segments up to start-of-scan looking for DHT.
fn has_huffman_tables(jpeg: &[u8]) -> bool {
    let mut at = 2;
    while at + 4 <= jpeg.len() && jpeg[at] == 0xFF {
        let marker = jpeg[at + 1];
        match marker {
            0xC4 => return true,
            0xDA | 0xD9 => return false,
            0xD0..=0xD7 | 0x01 | 0xFF => at += 2,
            _ => at += 2 + u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize,
        }
    }
    false
}

#[cfg(test)]
mod tests {
    use super::*;

    fn jpeg_of(image: &GrayImage) -> Vec<u8> {
        let mut bytes = Vec::new();
        image::codecs::jpeg::JpegEncoder::new_with_quality(&mut bytes, 90).encode_image(image).unwrap();
        bytes
    }

    /// Removes every DHT segment, as a camera that relies on the standard tables sends it.
    fn strip_huffman_tables(jpeg: &[u8]) -> Vec<u8> {
        let mut out = jpeg[..2].to_vec();
        let mut at = 2;
        loop {
            let marker = jpeg[at + 1];
            if marker == 0xDA {
                out.extend_from_slice(&jpeg[at..]);
                return out;
            }
            let len = 2 + u16::from_be_bytes([jpeg[at + 2], jpeg[at + 3]]) as usize;
            if marker != 0xC4 {
                out.extend_from_slice(&jpeg[at..at + len]);
            }
            at += len;
        }
    }

    #[test]
    fn yuyv_and_grey_give_the_luma_plane() {
        let yuyv = [10, 128, 20, 128, 30, 128, 40, 128];
        assert_eq!(to_gray(PixelFormat::YUYV, &yuyv, 2, 2).unwrap().as_raw(), &[10, 20, 30, 40]);
        assert_eq!(to_gray(PixelFormat::GREY, &[1, 2, 3, 4, 9], 2, 2).unwrap().as_raw(), &[1, 2, 3, 4]);
        assert!(to_gray(PixelFormat::YUYV, &yuyv[..6], 2, 2).is_err());
    }

    #[test]
    fn mjpeg_without_huffman_tables_decodes_like_the_full_frame() {
        let image = GrayImage::from_fn(64, 48, |x, y| image::Luma([((x * 4 + y * 2) % 256) as u8]));
        let full = jpeg_of(&image);
        let bare = strip_huffman_tables(&full);
        assert!(has_huffman_tables(&full) && !has_huffman_tables(&bare));
        let expected = to_gray(PixelFormat::MJPG, &full, 64, 48).unwrap();
        // The encoder's tables are the standard ones, so the patched frame decodes identically.
        let decoded = to_gray(PixelFormat::MJPG, &bare, 64, 48).unwrap();
        assert_eq!(decoded, expected);
        assert!(image::load_from_memory(&bare).is_err(), "the unpatched frame must not decode");
    }
}
