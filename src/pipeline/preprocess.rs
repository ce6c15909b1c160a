//! Preprocessing spec `karyoscreen-pre-v1` (docs/preprocessing.md): one chromosome image in,
//! one model input out. The trainer implements the same text in numpy; golden vectors in
//! tests/fixtures/golden prove the two agree.

use image::GrayImage;
use serde::{Deserialize, Serialize};

pub const SPEC: &str = "karyoscreen-pre-v1";

/// Every parameter of the spec, as the model card carries it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct PreprocessParams {
    pub spec: String,
    pub input_size: usize,
    pub margin: usize,
    pub polarity_threshold: u8,
    pub contrast_percentile: f64,
    pub smoothing: String,
    pub size_features: Vec<String>,
}

impl Default for PreprocessParams {
    fn default() -> Self {
        PreprocessParams {
            spec: SPEC.into(),
            input_size: 64,
            margin: 2,
            polarity_threshold: 128,
            contrast_percentile: 0.99,
            smoothing: "binomial3".into(),
            size_features: vec!["ln_rel_length".into(), "ln_rel_area".into()],
        }
    }
}

impl PreprocessParams {
    /// This runtime implements one spec; the size and margin may vary, nothing else.
    pub fn check_supported(&self) -> Result<(), String> {
        let reference = PreprocessParams { input_size: self.input_size, margin: self.margin, ..Default::default() };
        if *self != reference {
            return Err(format!("preprocessing {:?} is not the one this runtime implements ({:?})", self, reference));
        }
        if self.input_size < 8 || 2 * self.margin >= self.input_size {
            return Err(format!("input_size {} with margin {} is unusable", self.input_size, self.margin));
        }
        Ok(())
    }
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Polarity {
    /// G-band look: dark chromosomes on a light background.
    DarkOnLight,
    /// Q-band / fluorescence look: bright chromosomes on a dark background.
    LightOnDark,
}

/// One chromosome ready for the model, plus the native-scale measures the cell step needs.
#[derive(Debug, Clone)]
pub struct Prepared {
    /// `input_size × input_size`, row-major, values in [0, 1].
    pub pixels: Vec<f32>,
    /// Long-axis extent in source pixels.
    pub length: f64,
    /// Mask pixel count.
    pub area: usize,
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PreprocessError {
    NoChromosome,
}

impl std::fmt::Display for PreprocessError {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self {
            PreprocessError::NoChromosome => write!(f, "no chromosome in crop (blank or flat image)"),
        }
    }
}

impl std::error::Error for PreprocessError {}

/// Median of the first/last row and first/last column, each pixel once (lower median).
pub fn border_median(width: usize, height: usize, pixels: &[u8]) -> u8 {
    let mut border = Vec::with_capacity(2 * (width + height));
    for x in 0..width {
        border.push(pixels[x]);
        if height > 1 {
            border.push(pixels[(height - 1) * width + x]);
        }
    }
    for y in 1..height.saturating_sub(1) {
        border.push(pixels[y * width]);
        if width > 1 {
            border.push(pixels[y * width + width - 1]);
        }
    }
    border.sort_unstable();
    border[(border.len() - 1) / 2]
}

pub fn detect_polarity(image: &GrayImage, threshold: u8) -> Polarity {
    let (w, h) = image.dimensions();
    if border_median(w as usize, h as usize, image.as_raw()) >= threshold {
        Polarity::DarkOnLight
    } else {
        Polarity::LightOnDark
    }
}

/// Otsu threshold on a 256-bin histogram; `None` when fewer than two distinct values exist.
pub fn otsu_threshold(values: &[u8]) -> Option<u8> {
    let mut hist = [0u64; 256];
    for &v in values {
        hist[v as usize] += 1;
    }
    otsu_from_histogram(&hist)
}

/// Otsu threshold of a 256-bin histogram (see `otsu_threshold`).
pub fn otsu_from_histogram(hist: &[u64; 256]) -> Option<u8> {
    let total: u64 = hist.iter().sum();
    let total_sum: f64 = hist.iter().enumerate().map(|(v, &c)| v as f64 * c as f64).sum();
    let (mut w0, mut sum0) = (0u64, 0f64);
    let mut best: Option<(u8, f64)> = None;
    for (t, &count) in hist.iter().enumerate().take(255) {
        w0 += count;
        sum0 += t as f64 * count as f64;
        let w1 = total - w0;
        if w0 == 0 || w1 == 0 {
            continue;
        }
        let mu0 = sum0 / w0 as f64;
        let mu1 = (total_sum - sum0) / w1 as f64;
        let score = w0 as f64 * w1 as f64 * (mu0 - mu1) * (mu0 - mu1);
        if best.is_none_or(|(_, s)| score > s) {
            best = Some((t as u8, score));
        }
    }
    best.map(|(t, _)| t)
}

/// Runs the spec on one crop. `polarity` is the frame's when known, else detected from the crop.
pub fn preprocess_crop(
    image: &GrayImage,
    polarity: Option<Polarity>,
    params: &PreprocessParams,
) -> Result<Prepared, PreprocessError> {
    let (w, h) = (image.width() as usize, image.height() as usize);
    let polarity = polarity.unwrap_or_else(|| detect_polarity(image, params.polarity_threshold));
    let ink: Vec<u8> = match polarity {
        Polarity::DarkOnLight => image.as_raw().iter().map(|&g| 255 - g).collect(),
        Polarity::LightOnDark => image.as_raw().clone(),
    };
    let background = border_median(w, h, &ink);
    let ink: Vec<u8> = ink.iter().map(|&v| v.saturating_sub(background)).collect();

    let threshold = otsu_threshold(&ink).ok_or(PreprocessError::NoChromosome)?;
    let mask: Vec<bool> = ink.iter().map(|&v| v > threshold).collect();
    let mut under_mask: Vec<u8> = ink.iter().zip(&mask).filter(|(_, &m)| m).map(|(&v, _)| v).collect();
    if under_mask.is_empty() {
        return Err(PreprocessError::NoChromosome);
    }
    under_mask.sort_unstable();
    let index = (params.contrast_percentile * (under_mask.len() - 1) as f64).floor() as usize;
    let top = under_mask[index].max(1) as f64;
    let norm: Vec<f64> = ink.iter().map(|&v| (v as f64 / top).min(1.0)).collect();
    let smooth = binomial3(&norm, w, h);

    let axes = Axes::from_mask(&mask, w);
    let side = params.input_size;
    let scale = (side - 2 * params.margin) as f64 / axes.length.max(axes.width);
    let half = side as f64 / 2.0;
    let mut pixels = Vec::with_capacity(side * side);
    for i in 0..side {
        let dv = (i as f64 + 0.5 - half) / scale;
        for j in 0..side {
            let du = (j as f64 + 0.5 - half) / scale;
            let (s, t) = (axes.sc + du, axes.tc + dv);
            let x = axes.cx + s * axes.u.0 + t * axes.a.0;
            let y = axes.cy + s * axes.u.1 + t * axes.a.1;
            pixels.push(bilinear(&smooth, w, h, x, y) as f32);
        }
    }
    Ok(Prepared { pixels, length: axes.length, area: under_mask.len() })
}

/// The mask's principal axes: `a` along the chromosome (pointing down), `u` across it.
struct Axes {
    cx: f64,
    cy: f64,
    a: (f64, f64),
    u: (f64, f64),
    length: f64,
    width: f64,
    sc: f64,
    tc: f64,
}

impl Axes {
    fn from_mask(mask: &[bool], w: usize) -> Axes {
        let points: Vec<(f64, f64)> =
            mask.iter().enumerate().filter(|(_, &m)| m).map(|(i, _)| ((i % w) as f64, (i / w) as f64)).collect();
        let n = points.len() as f64;
        let cx = points.iter().map(|p| p.0).sum::<f64>() / n;
        let cy = points.iter().map(|p| p.1).sum::<f64>() / n;
        let (mut m20, mut m02, mut m11) = (0.0, 0.0, 0.0);
        for &(x, y) in &points {
            m20 += (x - cx) * (x - cx);
            m02 += (y - cy) * (y - cy);
            m11 += (x - cx) * (y - cy);
        }
        let theta = 0.5 * (2.0 * m11 / n).atan2(m20 / n - m02 / n);
        let mut a = (theta.cos(), theta.sin());
        if a.1 < 0.0 {
            a = (-a.0, -a.1);
        }
        let u = (a.1, -a.0);
        let (mut smin, mut smax, mut tmin, mut tmax) = (f64::MAX, f64::MIN, f64::MAX, f64::MIN);
        for &(x, y) in &points {
            let s = (x - cx) * u.0 + (y - cy) * u.1;
            let t = (x - cx) * a.0 + (y - cy) * a.1;
            smin = smin.min(s);
            smax = smax.max(s);
            tmin = tmin.min(t);
            tmax = tmax.max(t);
        }
        Axes {
            cx,
            cy,
            a,
            u,
            length: tmax - tmin + 1.0,
            width: smax - smin + 1.0,
            sc: (smax + smin) / 2.0,
            tc: (tmax + tmin) / 2.0,
        }
    }
}

/// `[1,2,1]/4` along x then y, zero outside the image.
fn binomial3(src: &[f64], w: usize, h: usize) -> Vec<f64> {
    let at = |v: &[f64], x: isize, y: isize| -> f64 {
        if x < 0 || y < 0 || x >= w as isize || y >= h as isize {
            0.0
        } else {
            v[y as usize * w + x as usize]
        }
    };
    let mut along_x = vec![0.0; w * h];
    for y in 0..h as isize {
        for x in 0..w as isize {
            along_x[y as usize * w + x as usize] = (at(src, x - 1, y) + 2.0 * at(src, x, y) + at(src, x + 1, y)) / 4.0;
        }
    }
    let mut out = vec![0.0; w * h];
    for y in 0..h as isize {
        for x in 0..w as isize {
            out[y as usize * w + x as usize] =
                (at(&along_x, x, y - 1) + 2.0 * at(&along_x, x, y) + at(&along_x, x, y + 1)) / 4.0;
        }
    }
    out
}

fn bilinear(src: &[f64], w: usize, h: usize, x: f64, y: f64) -> f64 {
    let (x0, y0) = (x.floor(), y.floor());
    let (fx, fy) = (x - x0, y - y0);
    let pixel = |xi: f64, yi: f64| -> f64 {
        if xi < 0.0 || yi < 0.0 || xi >= w as f64 || yi >= h as f64 {
            0.0
        } else {
            src[yi as usize * w + xi as usize]
        }
    };
    let top = pixel(x0, y0) * (1.0 - fx) + pixel(x0 + 1.0, y0) * fx;
    let bottom = pixel(x0, y0 + 1.0) * (1.0 - fx) + pixel(x0 + 1.0, y0 + 1.0) * fx;
    top * (1.0 - fy) + bottom * fy
}

/// Median of a cell's measures (mean of the two middle values for an even count).
pub fn median(values: &[f64]) -> f64 {
    let mut sorted = values.to_vec();
    sorted.sort_by(|a, b| a.total_cmp(b));
    let n = sorted.len();
    if n == 0 {
        return f64::NAN;
    }
    if n % 2 == 1 {
        sorted[n / 2]
    } else {
        (sorted[n / 2 - 1] + sorted[n / 2]) / 2.0
    }
}

/// `[ln(length / median length), ln(area / median area)]` for every object of one cell.
pub fn size_features(objects: &[Prepared]) -> Vec<[f32; 2]> {
    let lengths: Vec<f64> = objects.iter().map(|o| o.length).collect();
    let areas: Vec<f64> = objects.iter().map(|o| o.area as f64).collect();
    let (ml, ma) = (median(&lengths), median(&areas));
    objects.iter().map(|o| [(o.length / ml).ln() as f32, (o.area as f64 / ma).ln() as f32]).collect()
}

#[cfg(test)]
mod tests {
    use super::*;

    fn rod(w: u32, h: u32, light_background: bool) -> GrayImage {
        GrayImage::from_fn(w, h, |x, y| {
            let inside = (x as i32 - w as i32 / 2).abs() < 4 && y > 3 && y < h - 4;
            let dark = inside == light_background;
            image::Luma([if dark { 30 } else { 220 }])
        })
    }

    #[test]
    fn polarity_follows_the_border() {
        assert_eq!(detect_polarity(&rod(20, 40, true), 128), Polarity::DarkOnLight);
        assert_eq!(detect_polarity(&rod(20, 40, false), 128), Polarity::LightOnDark);
    }

    #[test]
    fn both_polarities_give_the_same_tensor() {
        let params = PreprocessParams::default();
        let a = preprocess_crop(&rod(20, 40, true), None, &params).unwrap();
        let inverted = GrayImage::from_fn(20, 40, |x, y| image::Luma([255 - rod(20, 40, true).get_pixel(x, y)[0]]));
        let b = preprocess_crop(&inverted, None, &params).unwrap();
        assert_eq!(a.pixels, b.pixels);
        assert_eq!(a.area, 7 * 32);
    }

    #[test]
    fn blank_crop_is_rejected() {
        let blank = GrayImage::from_pixel(10, 10, image::Luma([200]));
        let err = preprocess_crop(&blank, None, &PreprocessParams::default()).unwrap_err();
        assert_eq!(err, PreprocessError::NoChromosome);
    }

    #[test]
    fn horizontal_rod_is_turned_upright() {
        let params = PreprocessParams::default();
        let vertical = rod(20, 40, true);
        let horizontal = GrayImage::from_fn(40, 20, |x, y| *vertical.get_pixel(y, x));
        let v = preprocess_crop(&vertical, None, &params).unwrap();
        let h = preprocess_crop(&horizontal, None, &params).unwrap();
        assert!((v.length - h.length).abs() < 1e-9);
        let differ = v.pixels.iter().zip(&h.pixels).filter(|(a, b)| (**a - **b).abs() > 1e-4).count();
        assert_eq!(differ, 0, "a transposed rod must give the same tensor up to mirror symmetry");
    }

    #[test]
    fn median_of_even_count_is_the_middle_mean() {
        assert_eq!(median(&[4.0, 1.0, 3.0, 2.0]), 2.5);
        assert_eq!(median(&[5.0, 1.0, 3.0]), 3.0);
    }
}
