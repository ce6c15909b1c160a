//! V4L2 camera source (the pure-Rust `linuxvideo` crate, so building needs no libclang): USB
//! UVC microscope cameras and the like, in YUYV, GREY or MJPEG. The luma plane is what the
//! pipeline needs, so colour is dropped at once.

use std::os::fd::AsRawFd;
use std::path::Path;
use std::time::Duration;

use anyhow::{bail, Context, Result};
use image::GrayImage;
use linuxvideo::format::{PixFormat, PixelFormat as FourCc};
use linuxvideo::stream::ReadStream;
use linuxvideo::Device;

use super::{CaptureError, Frame, FrameSource};
use crate::device::board::{CameraConfig, PixelFormat};

/// A frame that does not arrive within this long counts as a lost camera.
const FRAME_TIMEOUT: Duration = Duration::from_secs(5);

pub struct Camera {
    config: CameraConfig,
    /// The running stream and the driver's bytes per line; `None` after a failure until
    /// `reopen` succeeds.
    open: Option<(ReadStream, usize)>,
    frames: u64,
}

impl Camera {
    pub fn open(config: &CameraConfig) -> Result<Camera> {
        let mut camera = Camera { config: config.clone(), open: None, frames: 0 };
        camera.reopen()?;
        Ok(camera)
    }
}

fn fourcc(format: PixelFormat) -> FourCc {
    FourCc::from_fourcc(*match format {
        PixelFormat::YUYV => b"YUYV",
        PixelFormat::GREY => b"GREY",
        PixelFormat::MJPG => b"MJPG",
    })
}

fn fourcc_text(format: FourCc) -> String {
    String::from_utf8_lossy(&format.as_fourcc()).into_owned()
}

/// Waits until the stream has a filled buffer, so that a stalled camera is an error, not a hang.
fn wait_readable(stream: &ReadStream, timeout: Duration) -> std::io::Result<bool> {
    let mut poll = libc::pollfd { fd: stream.as_raw_fd(), events: libc::POLLIN, revents: 0 };
    let millis = timeout.as_millis().min(i32::MAX as u128) as i32;
    loop {
        // SAFETY: one valid pollfd for the stream's open descriptor.
        match unsafe { libc::poll(&mut poll, 1, millis) } {
            -1 if std::io::Error::last_os_error().kind() == std::io::ErrorKind::Interrupted => continue,
            -1 => return Err(std::io::Error::last_os_error()),
            0 => return Ok(false),
            _ => return Ok(true),
        }
    }
}

impl FrameSource for Camera {
    fn next_frame(&mut self) -> Result<Option<Frame>, CaptureError> {
        let path = self.config.device.clone();
        let (format, (w, h)) = (self.config.format, (self.config.width, self.config.height));
        let Some((stream, stride)) = self.open.as_mut() else {
            return Err(CaptureError::Source(anyhow::anyhow!("{}: camera is not open", path.display())));
        };
        let stride = *stride;
        let captured = match wait_readable(stream, FRAME_TIMEOUT) {
            Ok(true) => stream.dequeue(|buffer| Ok(to_gray(format, &buffer, w, h, stride))),
            Ok(false) => Err(std::io::Error::new(
                std::io::ErrorKind::TimedOut,
                format!("no frame within {} s", FRAME_TIMEOUT.as_secs()),
            )),
            Err(e) => Err(e),
        };
        let image = match captured {
            Ok(image) => image
                .with_context(|| format!("{}: frame {}", path.display(), self.frames))
                .map_err(CaptureError::Frame)?,
            Err(e) => {
                self.open = None;
                let error = anyhow::Error::new(e).context(format!("{}: capture failed", path.display()));
                return Err(CaptureError::Source(error));
            }
        };
        self.frames += 1;
        Ok(Some(Frame { image, origin: format!("{}#{}", path.display(), self.frames) }))
    }

    /// Opens the device and applies the profile's format and size; refuses a camera that
    /// substitutes another.
    fn reopen(&mut self) -> Result<()> {
        self.open = None;
        let path: &Path = &self.config.device;
        let device = Device::open(path).with_context(|| format!("{}: cannot open camera", path.display()))?;
        let (width, height, pixel_format) = (self.config.width, self.config.height, fourcc(self.config.format));
        let capture = device
            .video_capture(PixFormat::new(width, height, pixel_format))
            .with_context(|| format!("{}: cannot set format", path.display()))?;
        let got = capture.format();
        if got.pixel_format() != pixel_format || got.width() != width || got.height() != height {
            bail!(
                "{}: camera gives {} {}x{} instead of the profile's {} {}x{}",
                path.display(),
                fourcc_text(got.pixel_format()),
                got.width(),
                got.height(),
                fourcc_text(pixel_format),
                width,
                height
            );
        }
        let stride = got.bytes_per_line() as usize;
        let stream = capture.into_stream().with_context(|| format!("{}: cannot start streaming", path.display()))?;
        self.open = Some((stream, stride));
        Ok(())
    }
}

/// The luma plane of one captured frame; `stride` is the driver's bytes per line (0: packed).
pub fn to_gray(format: PixelFormat, data: &[u8], width: u32, height: u32, stride: usize) -> Result<GrayImage> {
    let (w, h) = (width as usize, height as usize);
    let rows = |bytes_per_pixel: usize| -> Result<Vec<u8>> {
        let row_bytes = w * bytes_per_pixel;
        let stride = if stride == 0 { row_bytes } else { stride };
        if stride < row_bytes || data.len() < stride * (h.max(1) - 1) + row_bytes {
            bail!("short frame: {} bytes for {width}x{height} at {stride} bytes per line", data.len());
        }
        let mut luma = Vec::with_capacity(w * h);
        for row in data.chunks(stride).take(h) {
            luma.extend(row[..row_bytes].iter().step_by(bytes_per_pixel));
        }
        Ok(luma)
    };
    match format {
        PixelFormat::GREY => GrayImage::from_raw(width, height, rows(1)?).context("GREY frame size"),
        PixelFormat::YUYV => GrayImage::from_raw(width, height, rows(2)?).context("YUYV frame size"),
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
        assert_eq!(to_gray(PixelFormat::YUYV, &yuyv, 2, 2, 0).unwrap().as_raw(), &[10, 20, 30, 40]);
        assert_eq!(to_gray(PixelFormat::GREY, &[1, 2, 3, 4, 9], 2, 2, 0).unwrap().as_raw(), &[1, 2, 3, 4]);
        assert!(to_gray(PixelFormat::YUYV, &yuyv[..6], 2, 2, 0).is_err());
    }

    #[test]
    fn padded_rows_are_read_at_the_drivers_stride() {
        let grey = [1, 2, 0, 0, 3, 4];
        assert_eq!(to_gray(PixelFormat::GREY, &grey, 2, 2, 4).unwrap().as_raw(), &[1, 2, 3, 4]);
        let yuyv = [10, 128, 20, 128, 0, 0, 30, 128, 40, 128];
        assert_eq!(to_gray(PixelFormat::YUYV, &yuyv, 2, 2, 6).unwrap().as_raw(), &[10, 20, 30, 40]);
        assert!(to_gray(PixelFormat::GREY, &grey, 2, 2, 1).is_err(), "a stride shorter than a row is refused");
    }

    #[test]
    fn mjpeg_without_huffman_tables_decodes_like_the_full_frame() {
        let image = GrayImage::from_fn(64, 48, |x, y| image::Luma([((x * 4 + y * 2) % 256) as u8]));
        let full = jpeg_of(&image);
        let bare = strip_huffman_tables(&full);
        assert!(has_huffman_tables(&full) && !has_huffman_tables(&bare));
        let expected = to_gray(PixelFormat::MJPG, &full, 64, 48, 0).unwrap();
        // The encoder's tables are the standard ones, so the patched frame decodes identically.
        let decoded = to_gray(PixelFormat::MJPG, &bare, 64, 48, 0).unwrap();
        assert_eq!(decoded, expected);
        assert!(image::load_from_memory(&bare).is_err(), "the unpatched frame must not decode");
    }
}
