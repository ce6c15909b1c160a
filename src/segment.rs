//! Finding the chromosomes in a metaphase frame: polarity, background, Otsu threshold and
//! 8-connected components; each object is cut out at native scale, with every other object's
//! pixels painted over with background, so the crop looks like a training crop.

use image::{GrayImage, Luma};
use imageproc::region_labelling::{connected_components, Connectivity};
use serde::Serialize;

use crate::preprocess::{border_median, detect_polarity, otsu_threshold, Polarity};

/// Pixels of background kept around each object's box.
const CROP_PAD: u32 = 3;

#[derive(Debug, Clone, Copy, Serialize)]
pub struct BBox {
    pub x: u32,
    pub y: u32,
    pub width: u32,
    pub height: u32,
}

#[derive(Debug, Clone)]
pub struct Object {
    pub bbox: BBox,
    pub area: usize,
    /// The object alone on the frame's background, in the frame's polarity.
    pub crop: GrayImage,
}

#[derive(Debug, Clone)]
pub struct Segmentation {
    pub polarity: Polarity,
    pub objects: Vec<Object>,
    /// Components too small to be a chromosome (debris, noise).
    pub debris: usize,
}

#[derive(Debug, Clone)]
pub struct SegmentParams {
    pub polarity_threshold: u8,
    /// Components smaller than this many pixels are debris.
    pub min_area: usize,
}

impl Default for SegmentParams {
    fn default() -> Self {
        SegmentParams { polarity_threshold: 128, min_area: 40 }
    }
}

pub fn segment(frame: &GrayImage, params: &SegmentParams) -> Segmentation {
    let polarity = detect_polarity(frame, params.polarity_threshold);
    let (w, h) = frame.dimensions();
    let background_gray = border_median(w as usize, h as usize, frame.as_raw());
    let ink = ink_image(frame, polarity);
    let background = border_median(w as usize, h as usize, ink.as_raw());
    let above: Vec<u8> = ink.as_raw().iter().map(|&v| v.saturating_sub(background)).collect();
    let Some(threshold) = otsu_threshold(&above) else {
        return Segmentation { polarity, objects: Vec::new(), debris: 0 };
    };
    let mask = GrayImage::from_fn(w, h, |x, y| {
        Luma([if above[(y * w + x) as usize] > threshold { 255 } else { 0 }])
    });
    let labels = connected_components(&mask, Connectivity::Eight, Luma([0u8]));

    let components = label_boxes(&labels);
    let mut objects = Vec::new();
    let mut debris = 0;
    for (label, component) in components.iter().enumerate().skip(1) {
        let Some((area, x0, y0, x1, y1)) = *component else { continue };
        if area < params.min_area {
            debris += 1;
            continue;
        }
        let (cx0, cy0) = (x0.saturating_sub(CROP_PAD), y0.saturating_sub(CROP_PAD));
        let (cx1, cy1) = ((x1 + CROP_PAD).min(w - 1), (y1 + CROP_PAD).min(h - 1));
        let crop = GrayImage::from_fn(cx1 - cx0 + 1, cy1 - cy0 + 1, |x, y| {
            let (fx, fy) = (cx0 + x, cy0 + y);
            let other = labels.get_pixel(fx, fy)[0];
            if other != 0 && other != label as u32 {
                Luma([background_gray])
            } else {
                *frame.get_pixel(fx, fy)
            }
        });
        objects.push(Object {
            bbox: BBox { x: x0, y: y0, width: x1 - x0 + 1, height: y1 - y0 + 1 },
            area,
            crop,
        });
    }
    Segmentation { polarity, objects, debris }
}

/// Chromosomes bright: the frame inverted when it is dark-on-light.
fn ink_image(frame: &GrayImage, polarity: Polarity) -> GrayImage {
    match polarity {
        Polarity::DarkOnLight => GrayImage::from_fn(frame.width(), frame.height(), |x, y| {
            Luma([255 - frame.get_pixel(x, y)[0]])
        }),
        Polarity::LightOnDark => frame.clone(),
    }
}

/// Per label: pixel count and bounding box (inclusive), indexed by label.
fn label_boxes(labels: &image::ImageBuffer<Luma<u32>, Vec<u32>>) -> Vec<Option<(usize, u32, u32, u32, u32)>> {
    let mut boxes: Vec<Option<(usize, u32, u32, u32, u32)>> = Vec::new();
    for (x, y, label) in labels.enumerate_pixels() {
        let label = label[0] as usize;
        if label == 0 {
            continue;
        }
        if boxes.len() <= label {
            boxes.resize(label + 1, None);
        }
        boxes[label] = Some(match boxes[label] {
            None => (1, x, y, x, y),
            Some((n, x0, y0, x1, y1)) => (n + 1, x0.min(x), y0.min(y), x1.max(x), y1.max(y)),
        });
    }
    boxes
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_separate_objects_and_drops_specks() {
        let mut frame = GrayImage::from_pixel(200, 120, Luma([230]));
        for (x0, y0) in [(20u32, 20u32), (100, 30), (150, 60)] {
            for y in y0..y0 + 40 {
                for x in x0..x0 + 8 {
                    frame.put_pixel(x, y, Luma([60]));
                }
            }
        }
        frame.put_pixel(5, 100, Luma([40]));
        let seg = segment(&frame, &SegmentParams::default());
        assert_eq!(seg.polarity, Polarity::DarkOnLight);
        assert_eq!(seg.objects.len(), 3);
        assert_eq!(seg.debris, 1);
        assert!(seg.objects.iter().all(|o| o.area == 320));
        assert_eq!(seg.objects[0].crop.dimensions(), (8 + 6, 40 + 6));
    }
}
