//! Bad input, end to end through the real binary: one row per case. Every case either fails
//! with exactly one clear line on stderr (naming the offending path or value and saying what
//! is wrong) and a non-zero exit, or, where the input is a valid image, exits 0 with an
//! indeterminate verdict and its reasons. Never a panic. Every fixture is made here, at test
//! time, in a scratch folder.

use std::io::Cursor;
use std::path::{Path, PathBuf};
use std::process::{Command, Output};

use image::{DynamicImage, GrayImage, ImageFormat, Luma};
use rand::{rngs::SmallRng, RngExt, SeedableRng};

/// What a case must do.
enum Expect {
    /// Non-zero exit; stderr is one line containing every one of these.
    Error(Vec<String>),
    /// Exit 0; the JSON on stdout has verdict "indeterminate" and at least one reason.
    Indeterminate,
}

struct Case {
    name: &'static str,
    args: Vec<String>,
    expect: Expect,
}

fn err(needles: &[&str]) -> Expect {
    Expect::Error(needles.iter().map(|s| s.to_string()).collect())
}

fn s(p: &Path) -> String {
    p.to_str().unwrap().to_string()
}

fn analyze(p: &Path) -> Vec<String> {
    vec!["analyze".into(), s(p), "--json".into()]
}

/// `run` on a board profile file; a bad profile must stop it before any frame or LED.
fn run_config(p: &Path) -> Vec<String> {
    ["run", "--config", &s(p), "--source", "demo", "--console-leds", "--max-frames", "1"].map(String::from).to_vec()
}

fn args(list: &[&str]) -> Vec<String> {
    list.iter().map(|a| a.to_string()).collect()
}

// --- fixture makers -----------------------------------------------------------------------

/// Deterministic pseudo-random bytes, so every run sees the same "random" input.
fn noise(len: usize, seed: u64) -> Vec<u8> {
    let mut rng = SmallRng::seed_from_u64(seed);
    (0..len).map(|_| rng.random()).collect()
}

fn crc32(bytes: &[u8]) -> u32 {
    let mut crc = !0u32;
    for &b in bytes {
        crc ^= b as u32;
        for _ in 0..8 {
            crc = if crc & 1 != 0 { (crc >> 1) ^ 0xEDB8_8320 } else { crc >> 1 };
        }
    }
    !crc
}

/// zlib stream of stored (uncompressed) deflate blocks.
fn zlib_stored(data: &[u8]) -> Vec<u8> {
    let mut out = vec![0x78, 0x01];
    let blocks: Vec<&[u8]> = if data.is_empty() { vec![&[][..]] } else { data.chunks(65535).collect() };
    for (i, block) in blocks.iter().enumerate() {
        out.push((i + 1 == blocks.len()) as u8);
        let len = block.len() as u16;
        out.extend(len.to_le_bytes());
        out.extend((!len).to_le_bytes());
        out.extend(*block);
    }
    let (mut a, mut b) = (1u32, 0u32);
    for &byte in data {
        a = (a + byte as u32) % 65521;
        b = (b + a) % 65521;
    }
    out.extend(((b << 16) | a).to_be_bytes());
    out
}

fn png_chunk(out: &mut Vec<u8>, kind: &[u8; 4], data: &[u8]) {
    out.extend((data.len() as u32).to_be_bytes());
    let mut body = kind.to_vec();
    body.extend(data);
    out.extend(&body);
    out.extend(crc32(&body).to_be_bytes());
}

/// A PNG written by hand: any header (absurd sizes included), optional palette, `idat` as the
/// zlib stream's payload (filtered scanlines; may be short on purpose).
fn png(width: u32, height: u32, depth: u8, color: u8, palette: Option<&[u8]>, scanlines: &[u8]) -> Vec<u8> {
    let mut out = b"\x89PNG\r\n\x1a\n".to_vec();
    let mut ihdr = Vec::new();
    ihdr.extend(width.to_be_bytes());
    ihdr.extend(height.to_be_bytes());
    ihdr.extend([depth, color, 0, 0, 0]);
    png_chunk(&mut out, b"IHDR", &ihdr);
    if let Some(p) = palette {
        png_chunk(&mut out, b"PLTE", p);
    }
    png_chunk(&mut out, b"IDAT", &zlib_stored(scanlines));
    png_chunk(&mut out, b"IEND", &[]);
    out
}

/// A baseline TIFF header declaring `width`×`height` 8-bit gray with one short strip.
fn tiff(width: u32, height: u32) -> Vec<u8> {
    let entries: [(u16, u16, u32); 9] = [
        (256, 4, width),
        (257, 4, height),
        (258, 3, 8),
        (259, 3, 1),
        (262, 3, 1),
        (273, 4, 8 + 2 + 9 * 12 + 4),
        (277, 3, 1),
        (278, 4, height),
        (279, 4, 16),
    ];
    let mut out = b"II*\0".to_vec();
    out.extend(8u32.to_le_bytes());
    out.extend((entries.len() as u16).to_le_bytes());
    for (tag, kind, value) in entries {
        out.extend(tag.to_le_bytes());
        out.extend(kind.to_le_bytes());
        out.extend(1u32.to_le_bytes());
        if kind == 3 {
            out.extend((value as u16).to_le_bytes());
            out.extend([0, 0]);
        } else {
            out.extend(value.to_le_bytes());
        }
    }
    out.extend(0u32.to_le_bytes());
    out.extend([0x80; 16]);
    out
}

/// A BMP header (BITMAPINFOHEADER, 24 bits) declaring `width`×`height`, with a few pixels.
fn bmp(width: i32, height: i32) -> Vec<u8> {
    let mut out = b"BM".to_vec();
    out.extend(70u32.to_le_bytes());
    out.extend(0u32.to_le_bytes());
    out.extend(54u32.to_le_bytes());
    out.extend(40u32.to_le_bytes());
    out.extend(width.to_le_bytes());
    out.extend(height.to_le_bytes());
    out.extend(1u16.to_le_bytes());
    out.extend(24u16.to_le_bytes());
    out.extend([0u8; 24]);
    out.extend([0x80; 16]);
    out
}

fn encode(image: DynamicImage, format: ImageFormat) -> Vec<u8> {
    let mut bytes = Cursor::new(Vec::new());
    image.write_to(&mut bytes, format).unwrap();
    bytes.into_inner()
}

fn gray(w: u32, h: u32, v: u8) -> DynamicImage {
    DynamicImage::ImageLuma8(GrayImage::from_pixel(w, h, Luma([v])))
}

/// A signed model bundle in `dir`: `stem.onnx` with `stem.card.json`, the card edited by `edit`
/// and its sha256 set to the ONNX bytes' own, signed with `key` (so the hash and signature
/// checks pass and what follows them is tested).
fn bundle(dir: &Path, stem: &str, key: &Path, onnx: &[u8], edit: impl FnOnce(&mut serde_json::Value)) -> PathBuf {
    let mut card: serde_json::Value = serde_json::from_str(include_str!("../models/karyoscreen.card.json")).unwrap();
    card["onnx_sha256"] = karyoscreen::integrity::card::sha256_hex(onnx).into();
    edit(&mut card);
    let path = dir.join(format!("{stem}.onnx"));
    std::fs::write(&path, onnx).unwrap();
    std::fs::write(dir.join(format!("{stem}.card.json")), card.to_string()).unwrap();
    karyoscreen::integrity::bundle::sign(&path, key).unwrap();
    path
}

const SHIPPED_ONNX: &[u8] = include_bytes!("../models/karyoscreen.onnx");
const PI4: &str = include_str!("../boards/raspberry-pi-4.toml");

fn build_cases(dir: &Path) -> Vec<Case> {
    let f = |name: &str, bytes: &[u8]| -> PathBuf {
        let path = dir.join(name);
        std::fs::write(&path, bytes).unwrap();
        path
    };
    let mut cases = Vec::new();
    let mut add = |name: &'static str, args: Vec<String>, expect: Expect| cases.push(Case { name, args, expect });
    let valid_png = encode(gray(64, 64, 200), ImageFormat::Png);
    let valid_jpeg = encode(gray(64, 64, 200), ImageFormat::Jpeg);
    let valid_tiff = encode(gray(64, 64, 200), ImageFormat::Tiff);
    let valid_bmp = encode(gray(64, 64, 200).to_rgb8().into(), ImageFormat::Bmp);

    // Empty, truncated, random, not an image at all.
    let unreadable = "not a readable PNG, JPEG, TIFF or BMP image";
    for (name, bytes) in [
        ("empty.png", vec![]),
        ("signature-only.png", valid_png[..8].to_vec()),
        ("truncated-header.png", valid_png[..20].to_vec()),
        ("truncated-idat.png", valid_png[..valid_png.len() - 20].to_vec()),
        ("random.png", noise(4096, 1)),
        ("random.jpg", noise(4096, 2)),
        ("random.tif", noise(4096, 3)),
        ("random.bmp", noise(4096, 4)),
        ("png-magic-then-random.png", [&valid_png[..8], &noise(4096, 5)[..]].concat()),
        ("text.png", b"not an image\n".to_vec()),
        ("jpeg-soi-only.jpg", valid_jpeg[..2].to_vec()),
        ("jpeg-header-only.jpg", valid_jpeg[..valid_jpeg.len() / 4].to_vec()),
        ("tiff-truncated.tif", valid_tiff[..valid_tiff.len() / 2].to_vec()),
        ("tiff-header-only.tif", valid_tiff[..8].to_vec()),
        ("bmp-truncated.bmp", valid_bmp[..40].to_vec()),
        ("gif.gif", b"GIF89a\x01\x00\x01\x00\x00\x00\x00;".to_vec()),
        ("webp.webp", [&b"RIFF\x1a\0\0\0WEBPVP8 "[..], &noise(32, 6)[..]].concat()),
    ] {
        let path = f(name, &bytes);
        add(name, analyze(&path), err(&[name, unreadable]));
    }
    let mut bad_crc = valid_png.clone();
    bad_crc[20] ^= 0xff; // inside IHDR: the chunk CRC no longer matches
    add("png-bad-crc", analyze(&f("bad-crc.png", &bad_crc)), err(&["bad-crc.png", unreadable]));
    add(
        "png-zero-width",
        analyze(&f("zero-width.png", &png(0, 16, 8, 0, None, &[]))),
        err(&["zero-width.png", unreadable]),
    );
    add(
        "png-bad-depth",
        analyze(&f("depth-3.png", &png(16, 16, 3, 0, None, &[0; 64]))),
        err(&["depth-3.png", unreadable]),
    );
    add("bmp-zero-size", analyze(&f("zero.bmp", &bmp(0, 0))), err(&["zero.bmp"]));

    // Decompression bombs and absurd dimensions: refused from the header, before allocating.
    let too_large = "too large";
    for (name, bytes) in [
        ("bomb-100000x100000.png", png(100_000, 100_000, 8, 0, None, &[0; 64])),
        ("bomb-16-bit-rgba-8192x8192.png", png(8192, 8192, 16, 6, None, &[0; 64])),
        ("wide-20000x1.png", png(20_000, 1, 8, 0, None, &[0; 64])),
        ("tall-1x2000000000.png", png(1, 2_000_000_000, 8, 0, None, &[0; 64])),
        ("max-u31.png", png(0x7fff_ffff, 0x7fff_ffff, 8, 0, None, &[0; 64])),
        ("bomb-100000x100000.tif", tiff(100_000, 100_000)),
        ("bomb-100000x100000.bmp", bmp(100_000, 100_000)),
        ("bomb-negative-height.bmp", bmp(60_000, -60_000)),
    ] {
        let path = f(name, &bytes);
        add(name, analyze(&path), err(&[name, too_large]));
    }
    let mut jpeg_bomb = valid_jpeg.clone();
    let sof = jpeg_bomb.windows(2).position(|w| w == [0xff, 0xc0]).expect("baseline JPEG has SOF0");
    jpeg_bomb[sof + 5..sof + 9].copy_from_slice(&[0xff, 0xf0, 0xff, 0xf0]);
    add(
        "bomb-65520x65520.jpg",
        analyze(&f("bomb-65520x65520.jpg", &jpeg_bomb)),
        err(&["bomb-65520x65520.jpg", too_large]),
    );

    // Valid images that hold no cell: any depth or colour type, tiny, blank, extreme aspect.
    let rgba = image::RgbaImage::from_pixel(48, 32, image::Rgba([30, 200, 90, 128]));
    let valid: Vec<(&'static str, Vec<u8>)> = vec![
        (
            "gray16.png",
            encode(
                DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(64, 64, Luma([40000u16]))),
                ImageFormat::Png,
            ),
        ),
        ("rgba8.png", encode(DynamicImage::ImageRgba8(rgba.clone()), ImageFormat::Png)),
        ("rgba16.png", encode(DynamicImage::ImageRgba8(rgba.clone()).to_rgba16().into(), ImageFormat::Png)),
        ("gray-alpha.png", encode(DynamicImage::ImageRgba8(rgba.clone()).to_luma_alpha8().into(), ImageFormat::Png)),
        ("rgb8.png", encode(DynamicImage::ImageRgba8(rgba.clone()).to_rgb8().into(), ImageFormat::Png)),
        ("1-bit.png", png(16, 16, 1, 0, None, &[[0u8, 0xaa, 0x55].as_slice(); 16].concat())),
        ("palette.png", png(4, 4, 8, 3, Some(&[0, 0, 0, 255, 255, 255]), &[[0u8, 0, 1, 0, 1].as_slice(); 4].concat())),
        ("1x1.png", encode(gray(1, 1, 0), ImageFormat::Png)),
        (
            "2x2.png",
            encode(
                DynamicImage::ImageLuma8(GrayImage::from_raw(2, 2, vec![0, 255, 255, 0]).unwrap()),
                ImageFormat::Png,
            ),
        ),
        (
            "3x3-one-dark-pixel.png",
            encode(
                DynamicImage::ImageLuma8(GrayImage::from_fn(3, 3, |x, y| {
                    Luma([if x == 1 && y == 1 { 0 } else { 250 }])
                })),
                ImageFormat::Png,
            ),
        ),
        ("white-16x16.png", encode(gray(16, 16, 255), ImageFormat::Png)),
        ("black-64x64.png", encode(gray(64, 64, 0), ImageFormat::Png)),
        ("mid-gray-512.png", encode(gray(512, 512, 128), ImageFormat::Png)),
        (
            "strip-4096x1.png",
            encode(
                DynamicImage::ImageLuma8(GrayImage::from_fn(4096, 1, |x, _| Luma([if x % 97 < 9 { 20 } else { 230 }]))),
                ImageFormat::Png,
            ),
        ),
        (
            "strip-1x4096.png",
            encode(
                DynamicImage::ImageLuma8(GrayImage::from_fn(1, 4096, |_, y| Luma([if y % 97 < 9 { 20 } else { 230 }]))),
                ImageFormat::Png,
            ),
        ),
        (
            "strip-8192x3.png",
            encode(
                DynamicImage::ImageLuma8(GrayImage::from_fn(8192, 3, |x, _| Luma([if x % 50 < 5 { 20 } else { 230 }]))),
                ImageFormat::Png,
            ),
        ),
        (
            "noise-256.png",
            encode(
                DynamicImage::ImageLuma8(GrayImage::from_raw(256, 256, noise(256 * 256, 7)).unwrap()),
                ImageFormat::Png,
            ),
        ),
        (
            "checkerboard-128.png",
            encode(
                DynamicImage::ImageLuma8(GrayImage::from_fn(128, 128, |x, y| {
                    Luma([if (x + y) % 2 == 0 { 0 } else { 255 }])
                })),
                ImageFormat::Png,
            ),
        ),
        (
            "one-big-blob-256.png",
            encode(
                DynamicImage::ImageLuma8(GrayImage::from_fn(256, 256, |x, y| {
                    Luma([if (16..240).contains(&x) && (16..240).contains(&y) { 30 } else { 230 }])
                })),
                ImageFormat::Png,
            ),
        ),
        ("white-4096x4096.png", encode(gray(4096, 4096, 255), ImageFormat::Png)),
        ("gray.jpg", valid_jpeg.clone()),
        ("gray.tif", valid_tiff.clone()),
        (
            "gray16.tif",
            encode(
                DynamicImage::ImageLuma16(image::ImageBuffer::from_pixel(32, 32, Luma([1000u16]))),
                ImageFormat::Tiff,
            ),
        ),
        (
            "rgb32f-nan.tif",
            encode(
                DynamicImage::ImageRgb32F(image::ImageBuffer::from_fn(32, 32, |x, _| {
                    image::Rgb([f32::NAN, f32::INFINITY, -(x as f32)])
                })),
                ImageFormat::Tiff,
            ),
        ),
        ("rgb.bmp", valid_bmp.clone()),
        ("png-named.jpg", valid_png.clone()),
    ];
    for (name, bytes) in valid {
        let path = f(name, &bytes);
        add(name, analyze(&path), Expect::Indeterminate);
    }

    // Paths that are not readable files.
    let folder = dir.join("folder.png");
    std::fs::create_dir_all(&folder).unwrap();
    let plain = f("plain.png", &valid_png);
    let dangling = dir.join("dangling.png");
    std::os::unix::fs::symlink(dir.join("nowhere.png"), &dangling).unwrap();
    let null = dir.join("null.png");
    std::os::unix::fs::symlink("/dev/null", &null).unwrap();
    add("missing frame", analyze(&dir.join("missing.png")), err(&["missing.png", "cannot read frame"]));
    add("directory as frame", analyze(&folder), err(&["folder.png", "a directory"]));
    add("path through a file", analyze(&plain.join("child.png")), err(&["child.png", "cannot read frame"]));
    add("dangling symlink", analyze(&dangling), err(&["dangling.png", "cannot read frame"]));
    add("/dev/null as frame", analyze(&null), err(&["null.png", "not a regular file"]));
    let fifo = dir.join("fifo.png");
    let made = Command::new("mkfifo").arg(&fifo).status().expect("mkfifo runs");
    assert!(made.success());
    add("a FIFO as frame (would block)", analyze(&fifo), err(&["fifo.png", "not a regular file"]));
    let mem = dir.join("mem.png");
    std::os::unix::fs::symlink("/proc/self/mem", &mem).unwrap();
    add("unreadable even for root", analyze(&mem), err(&["mem.png", "cannot read frame"]));

    // Case folders.
    let case = |name: &str| -> PathBuf {
        let p = dir.join(name);
        std::fs::create_dir_all(&p).unwrap();
        p
    };
    let empty_case = case("case-empty");
    let text_case = case("case-text-only");
    std::fs::write(text_case.join("notes.txt"), "hello").unwrap();
    let corrupt_case = case("case-corrupt");
    std::fs::write(corrupt_case.join("a.png"), &valid_png).unwrap();
    std::fs::write(corrupt_case.join("b-broken.png"), &valid_png[..30]).unwrap();
    let blank_case = case("case-blank");
    for i in 0..3 {
        std::fs::write(blank_case.join(format!("{i}.png")), &valid_png).unwrap();
    }
    std::fs::create_dir_all(blank_case.join("sub.png")).unwrap();
    add(
        "case: missing folder",
        args(&["case", &s(&dir.join("no-case"))]),
        err(&["no-case", "cannot read case folder"]),
    );
    add("case: a file", args(&["case", &s(&plain)]), err(&["plain.png", "cannot read case folder"]));
    add("case: empty folder", args(&["case", &s(&empty_case)]), err(&["case-empty", "no frames"]));
    add("case: no images", args(&["case", &s(&text_case)]), err(&["case-text-only", "no frames"]));
    add("case: a corrupt frame", args(&["case", &s(&corrupt_case)]), err(&["b-broken.png", unreadable]));
    add("case: no cells to count", args(&["case", &s(&blank_case), "--count", "0"]), err(&["--count", "0"]));
    add("case: no cells to analyse", args(&["case", &s(&blank_case), "--analyze", "0"]), err(&["--analyze", "0"]));
    add("case: blank frames", args(&["case", &s(&blank_case), "--json"]), Expect::Indeterminate);

    // Board profiles.
    let nested = format!("x = {}1{}\n", "[".repeat(50_000), "]".repeat(50_000));
    for (name, text, what) in [
        ("empty.toml", Vec::new(), "missing field"),
        ("random.toml", noise(2048, 8), "cannot read board profile"),
        ("syntax.toml", b"name = \"x\"\n[gpio\nchip = 1\n".to_vec(), "unclosed table"),
        ("unknown-field.toml", format!("{PI4}\nbogus = 1\n").into_bytes(), "bogus"),
        ("wrong-type.toml", PI4.replace("width = 1280", "width = \"wide\"").into_bytes(), "invalid type"),
        ("abi-v3.toml", PI4.replace("abi = \"v2\"", "abi = \"v3\"").into_bytes(), "v3"),
        ("shared-line.toml", PI4.replace("GPIO27", "GPIO17").into_bytes(), "share GPIO17"),
        ("camera-0x0.toml", PI4.replace("width = 1280", "width = 0").into_bytes(), "camera size"),
        ("camera-huge.toml", PI4.replace("width = 1280", "width = 4000000000").into_bytes(), "camera size"),
        ("negative-offset.toml", PI4.replace("offset = 17", "offset = -1").into_bytes(), "offset"),
        ("int-overflow.toml", PI4.replace("width = 1280", "width = 99999999999999999999999").into_bytes(), "width"),
        ("nested-arrays.toml", nested.into_bytes(), "nested-arrays.toml"),
        ("bad-format.toml", PI4.replace("format = \"MJPG\"", "format = \"H264\"").into_bytes(), "H264"),
    ] {
        let path = f(name, &text);
        add(name, run_config(&path), err(&[name, what]));
    }
    let no_led = dir.join("no-led-line.toml");
    let pi4_no_line = PI4.replace("ready = { line = \"GPIO17\", offset = 17 }", "ready = {}");
    std::fs::write(&no_led, pi4_no_line).unwrap();
    add("no-led-line.toml", run_config(&no_led), err(&["no-led-line.toml", "needs a line name or an offset"]));
    add(
        "board profile missing",
        run_config(&dir.join("nowhere.toml")),
        err(&["nowhere.toml", "cannot read board profile"]),
    );
    add("board profile is a folder", run_config(&folder), err(&["folder.png", "cannot read board profile"]));
    add(
        "unknown built-in board",
        args(&["run", "--board", "toaster", "--console-leds"]),
        err(&["toaster", "possible values"]),
    );

    // Models and cards.
    let models = case("models");
    let card = |stem: &str, text: &str| std::fs::write(models.join(format!("{stem}.card.json")), text).unwrap();
    let key = models.join("test-key");
    karyoscreen::integrity::bundle::keygen(&key).unwrap();
    let trusted = s(&karyoscreen::integrity::bundle::pub_path_for(&key));
    let on_model = |model: &Path| -> Vec<String> {
        vec!["demo".into(), "--trusted-key".into(), trusted.clone(), "--model".into(), s(model)]
    };
    add("model missing", on_model(&models.join("missing.onnx")), err(&["missing.onnx", "cannot read model"]));
    add("model is a folder", on_model(&folder), err(&["folder.png", "cannot read model"]));
    std::fs::write(models.join("lonely.onnx"), SHIPPED_ONNX).unwrap();
    add(
        "model without card",
        on_model(&models.join("lonely.onnx")),
        err(&["lonely.card.json", "cannot read the model card"]),
    );
    std::fs::write(models.join("bad-json.onnx"), SHIPPED_ONNX).unwrap();
    card("bad-json", "{\"name\": ");
    add(
        "card: malformed JSON",
        on_model(&models.join("bad-json.onnx")),
        err(&["bad-json.onnx", "model card is not valid"]),
    );
    std::fs::write(models.join("empty-card.onnx"), SHIPPED_ONNX).unwrap();
    card("empty-card", "{}");
    add(
        "card: empty object",
        on_model(&models.join("empty-card.onnx")),
        err(&["empty-card.onnx", "model card is not valid"]),
    );
    std::fs::write(models.join("array-card.onnx"), SHIPPED_ONNX).unwrap();
    card("array-card", "[1, 2, 3]");
    add(
        "card: a JSON array",
        on_model(&models.join("array-card.onnx")),
        err(&["array-card.onnx", "model card is not valid"]),
    );
    let mut tampered = SHIPPED_ONNX.to_vec();
    *tampered.last_mut().unwrap() ^= 1;
    std::fs::write(models.join("tampered.onnx"), &tampered).unwrap();
    card("tampered", include_str!("../models/karyoscreen.card.json"));
    add(
        "model: tampered (sha256 mismatch)",
        on_model(&models.join("tampered.onnx")),
        err(&["tampered.onnx", "sha256"]),
    );
    let loadable = "not a loadable ONNX model";
    let m = bundle(&models, "random", &key, &noise(50_000, 9), |_| {});
    add("model: random bytes", on_model(&m), err(&["random.onnx", loadable]));
    let m = bundle(&models, "empty", &key, &[], |_| {});
    add("model: empty file", on_model(&m), err(&["empty.onnx", loadable]));
    let m = bundle(&models, "truncated", &key, &SHIPPED_ONNX[..SHIPPED_ONNX.len() / 2], |_| {});
    add("model: truncated", on_model(&m), err(&["truncated.onnx", loadable]));
    let m = bundle(&models, "renamed-input", &key, SHIPPED_ONNX, |c| c["inputs"][0]["name"] = "pixels".into());
    add("card: input renamed", on_model(&m), err(&["renamed-input.onnx", "inputs"]));
    let m = bundle(&models, "other-size", &key, SHIPPED_ONNX, |c| c["preprocessing"]["input_size"] = 0.into());
    add("card: input_size 0", on_model(&m), err(&["other-size.onnx", "input_size"]));
    let m = bundle(&models, "other-output", &key, SHIPPED_ONNX, |c| c["outputs"][0]["name"] = "logits".into());
    add("card: output renamed", on_model(&m), err(&["other-output.onnx", "logits"]));
    let m = bundle(&models, "short", &key, SHIPPED_ONNX, |c| {
        c["outputs"][0]["labels"].as_array_mut().unwrap().pop();
    });
    add("card: one identity label short", on_model(&m), err(&["short.onnx", "labels"]));
    let m = bundle(&models, "int8-size", &key, SHIPPED_ONNX, |c| c["inputs"][1]["dtype"] = "int8".into());
    add("card: wrong input dtype", on_model(&m), err(&["int8-size.onnx", "dtype"]));

    // Signatures and trusted keys.
    let other_key = models.join("other-key");
    karyoscreen::integrity::bundle::keygen(&other_key).unwrap();
    let m = bundle(&models, "foreign", &other_key, SHIPPED_ONNX, |_| {});
    add("bundle: signed by an untrusted key", on_model(&m), err(&["foreign.onnx", "not trusted"]));
    let m = bundle(&models, "unsigned", &key, SHIPPED_ONNX, |_| {});
    std::fs::remove_file(models.join("unsigned.sig")).unwrap();
    add("bundle: no signature", on_model(&m), err(&["unsigned.sig", "missing signature"]));
    let m = bundle(&models, "garbled-sig", &key, SHIPPED_ONNX, |_| {});
    std::fs::write(models.join("garbled-sig.sig"), noise(300, 11)).unwrap();
    add("bundle: garbled signature file", on_model(&m), err(&["garbled-sig.sig", "not a karyoscreen signature"]));
    let m = bundle(&models, "card-edited", &key, SHIPPED_ONNX, |_| {});
    let edited =
        std::fs::read_to_string(models.join("card-edited.card.json")).unwrap().replacen("\"name\"", "\"name\" ", 1);
    std::fs::write(models.join("card-edited.card.json"), edited).unwrap();
    add("bundle: card edited after signing", on_model(&m), err(&["card-edited.onnx", "does not verify"]));
    let bad_pub = f("bad.pub", b"zz-not-hex\n");
    let good = bundle(&models, "good", &key, SHIPPED_ONNX, |_| {});
    add(
        "trusted key file malformed",
        args(&["demo", "--trusted-key", &s(&bad_pub), "--model", &s(&good)]),
        err(&["bad.pub"]),
    );
    add(
        "trusted key file missing",
        args(&["demo", "--trusted-key", &s(&dir.join("gone.pub")), "--model", &s(&good)]),
        err(&["gone.pub"]),
    );

    // Labelled sets for eval.
    let set = |name: &str, labels: Option<&[u8]>| -> PathBuf {
        let p = case(name);
        std::fs::write(p.join("crop.png"), encode(gray(40, 12, 230), ImageFormat::Png)).unwrap();
        std::fs::write(p.join("broken.png"), b"\x89PNG\r\n").unwrap();
        if let Some(labels) = labels {
            std::fs::write(p.join("labels.csv"), labels).unwrap();
        }
        p
    };
    let header = "path,label_idx,cell_id,split\n";
    for (name, labels, what) in [
        ("eval-no-labels", None, "cannot read labels"),
        ("eval-empty-labels", Some(Vec::new()), "no rows"),
        ("eval-header-only", Some(header.as_bytes().to_vec()), "no rows"),
        ("eval-missing-column", Some(b"path,cell_id\ncrop.png,c1\n".to_vec()), "row 2"),
        ("eval-label-not-number", Some(format!("{header}crop.png,seven,c1,test\n").into_bytes()), "row 2"),
        ("eval-label-negative", Some(format!("{header}crop.png,-1,c1,test\n").into_bytes()), "row 2"),
        ("eval-label-out-of-range", Some(format!("{header}crop.png,999,c1,test\n").into_bytes()), "not a model class"),
        ("eval-image-missing", Some(format!("{header}gone.png,0,c1,test\n").into_bytes()), "gone.png"),
        ("eval-image-corrupt", Some(format!("{header}broken.png,0,c1,test\n").into_bytes()), "broken.png"),
        ("eval-image-is-folder", Some(format!("{header}.,0,c1,test\n").into_bytes()), "cannot read image"),
        ("eval-ragged-row", Some(format!("{header}crop.png,0\n").into_bytes()), "row 2"),
        ("eval-random-labels", Some(noise(2048, 10)), "labels.csv"),
    ] {
        let p = set(name, labels.as_deref());
        add(name, args(&["eval", &s(&p)]), err(&[name, what]));
    }
    let good_labels = format!("{header}crop.png,0,c1,test\n").into_bytes();
    let good_set = set("eval-good", Some(&good_labels));
    add(
        "eval: split with no rows",
        args(&["eval", &s(&good_set), "--split", "val"]),
        err(&["labels.csv", "no rows in split \"val\""]),
    );
    add(
        "eval: unknown split",
        args(&["eval", &s(&good_set), "--split", "nosuch"]),
        err(&["nosuch", "possible values: train, val, test"]),
    );
    add("eval: missing folder", args(&["eval", &s(&dir.join("no-set"))]), err(&["no-set", "cannot read labels"]));

    // Frames sets for eval-frames: the table, an annotation or a label map that cannot be used
    // is named, with the row or instance at fault.
    let frames_set = |name: &str, table: &str, ann: &[u8]| -> PathBuf {
        let p = case(name);
        std::fs::write(p.join("f.png"), encode(gray(64, 48, 230), ImageFormat::Png)).unwrap();
        std::fs::write(p.join("small.png"), encode(gray(10, 10, 0), ImageFormat::Png)).unwrap();
        std::fs::write(p.join("f.json"), ann).unwrap();
        std::fs::write(p.join("frames.csv"), format!("image,ann,group_id,split,count,karyotype,band\n{table}"))
            .unwrap();
        p
    };
    let row = "f.png,f.json,g,test,46,\"46,XX\",G\n";
    let polygon = |points: &str| format!("{{\"instances\":[{{\"polygon\":{points},\"label\":\"1\"}}]}}").into_bytes();
    for (name, table, ann, what) in [
        ("frames-count-not-number", "f.png,f.json,g,test,many,,G\n".to_string(), b"{}".to_vec(), "row 2"),
        ("frames-ragged-row", "f.png,f.json\n".to_string(), b"{}".to_vec(), "row 2"),
        ("frames-ann-missing", "f.png,gone.json,g,test,46,,G\n".to_string(), b"{}".to_vec(), "gone.json"),
        ("frames-ann-not-json", row.to_string(), b"{\"instances\": [".to_vec(), "not a frame annotation"),
        ("frames-ann-bad-polygon", row.to_string(), polygon("[[1,2],\"x\"]"), "not a frame annotation"),
        ("frames-polygon-two-points", row.to_string(), polygon("[[1,2],[3,4]]"), "instance 0: a polygon needs"),
        (
            "frames-instance-without-shape",
            row.to_string(),
            b"{\"instances\":[{\"label\":\"1\"}]}".to_vec(),
            "instance 0",
        ),
        ("frames-labelmap-missing", row.to_string(), b"{\"labelmap\":\"gone.png\"}".to_vec(), "gone.png"),
        ("frames-labelmap-wrong-size", row.to_string(), b"{\"labelmap\":\"small.png\"}".to_vec(), "small.png"),
        (
            "frames-labelmap-not-image",
            row.to_string(),
            b"{\"labelmap\":\"f.json\"}".to_vec(),
            "not a readable label map",
        ),
        ("frames-image-missing", "gone.png,f.json,g,test,46,,G\n".to_string(), b"{}".to_vec(), "gone.png"),
    ] {
        let p = frames_set(name, &table, &ann);
        add(name, args(&["eval-frames", &s(&p)]), err(&[name, what]));
    }
    let good_frames = frames_set("frames-good", row, b"{}");
    add(
        "eval-frames: split with no frames",
        args(&["eval-frames", &s(&good_frames), "--split", "val"]),
        err(&["frames.csv", "no frames in split \"val\""]),
    );
    add(
        "eval-frames: missing folder",
        args(&["eval-frames", &s(&dir.join("no-frames"))]),
        err(&["no-frames", "frames.csv", "cannot read frames table"]),
    );

    // Karyogram import: a file that is no image stops the run before anything is written; a
    // box file that cannot be used refuses its image with the file and line named; an output
    // folder in use is refused.
    let not_image = f("karyogram.png", b"not an image at all");
    add(
        "import-karyograms: not an image",
        args(&["import-karyograms", &s(&not_image), "--out", &s(&dir.join("import-1"))]),
        err(&["karyogram.png", "not a readable"]),
    );
    let boxed = case("import-boxes");
    std::fs::write(boxed.join("k.png"), encode(gray(64, 48, 230), ImageFormat::Png)).unwrap();
    std::fs::write(boxed.join("k.xml"), "<annotation><object><name>chr5</name></object>").unwrap();
    add(
        "import-karyograms: VOC box file not XML",
        args(&["import-karyograms", &s(&boxed.join("k.png")), "--out", &s(&dir.join("import-2"))]),
        err(&["k.png: refused", "k.xml: not XML"]),
    );
    add(
        "import-karyograms: output folder in use",
        args(&["import-karyograms", &s(&boxed.join("k.png")), "--out", &s(&boxed)]),
        err(&["import-boxes", "not empty"]),
    );

    // Lab adaptation: a secret key without its public half, an --out that names the file
    // rather than the stem, a set without labels; each refused before anything is written.
    let lab = case("adapt");
    let lab_key = lab.join("lab.key");
    karyoscreen::integrity::bundle::keygen(&lab_key).unwrap();
    let lonely_key = lab.join("lonely.key");
    std::fs::copy(&lab_key, &lonely_key).unwrap();
    add(
        "adapt: secret key without its public half",
        args(&["adapt", &s(&boxed), "--out", &s(&lab.join("m")), "--key", &s(&lonely_key)]),
        err(&["lonely.key.pub", "no public key"]),
    );
    add(
        "adapt: --out is the ONNX file",
        args(&["adapt", &s(&boxed), "--out", &s(&lab.join("m.onnx")), "--key", &s(&lab_key)]),
        err(&["m.onnx", "stem"]),
    );
    add(
        "adapt: set without labels",
        args(&["adapt", &s(&boxed), "--out", &s(&lab.join("m")), "--key", &s(&lab_key)]),
        err(&["labels.csv"]),
    );

    // Outputs that cannot be written, demo frames that do not exist, bench on a bad frame.
    let frame = f("ok.png", &valid_png);
    add(
        "record into a folder",
        args(&["analyze", "--record", &s(&folder), &s(&frame)]),
        err(&["folder.png", "cannot open the record"]),
    );
    add(
        "record in a missing folder",
        args(&["analyze", "--record", &s(&dir.join("no-dir/r.jsonl")), &s(&frame)]),
        err(&["r.jsonl", "cannot open the record"]),
    );
    add("report into a file", args(&["analyze", &s(&frame), "--report", &s(&plain)]), err(&["plain.png"]));
    add(
        "demo frame 0",
        args(&["demo", "--write-frame", "0", "--out", &s(&dir.join("d.png"))]),
        err(&["demo frame 0 does not exist"]),
    );
    add(
        "demo frame 99",
        args(&["demo", "--write-frame", "99", "--out", &s(&dir.join("d.png"))]),
        err(&["demo frame 99 does not exist"]),
    );
    add(
        "demo frame into a missing folder",
        args(&["demo", "--write-frame", "1", "--out", &s(&dir.join("no-dir/d.png"))]),
        err(&["d.png", "cannot write frame"]),
    );
    add(
        "bench on a corrupt frame",
        args(&["bench", &s(&dir.join("truncated-idat.png")), "--rounds", "1"]),
        err(&["truncated-idat.png", unreadable]),
    );
    add(
        "bench on a bomb",
        args(&["bench", &s(&dir.join("bomb-100000x100000.png")), "--rounds", "1"]),
        err(&["bomb-100000x100000.png", "too large"]),
    );

    // Budgets: pixels before decoding, objects before classifying.
    let big = encode(gray(8192, 8192, 230), ImageFormat::Png);
    add("8192x8192 frame", analyze(&f("big-8192.png", &big)), err(&["big-8192.png", "megapixels"]));
    add(
        "6000x4000 frame",
        analyze(&f("big-6000x4000.png", &encode(gray(6000, 4000, 230), ImageFormat::Png))),
        err(&["big-6000x4000.png", "megapixels"]),
    );
    let confetti = GrayImage::from_fn(1500, 1500, |x, y| Luma([if x % 20 < 12 && y % 20 < 4 { 30 } else { 230 }]));
    add(
        "5,625 objects",
        analyze(&f("confetti.png", &encode(confetti.into(), ImageFormat::Png))),
        Expect::Indeterminate,
    );
    let comb = GrayImage::from_fn(1500, 1500, |x, y| Luma([if y < 10 || x % 6 < 2 { 30 } else { 230 }]));
    add("one comb-shaped blob", analyze(&f("comb.png", &encode(comb.into(), ImageFormat::Png))), Expect::Indeterminate);
    let bomb_set = set("eval-bomb-crop", Some(format!("{header}bomb.png,0,c1,test\n").as_bytes()));
    std::fs::copy(dir.join("bomb-100000x100000.png"), bomb_set.join("bomb.png")).unwrap();
    add("eval crop that is a bomb", args(&["eval", &s(&bomb_set)]), err(&["bomb.png", "too large"]));

    // Signed but absurd: a signature says who made a bundle, not that it is sane.
    let absurd: [CardEdit; 9] = [
        ("huge extra slot cost", |c| c["cell_assignment"]["extra_slot_cost"] = 1e300.into(), "extra_slot_cost"),
        (
            "negative missing slot cost",
            |c| c["cell_assignment"]["missing_slot_cost"] = (-4.0).into(),
            "missing_slot_cost",
        ),
        ("capacity of a million", |c| c["cell_assignment"]["capacity"]["1"] = 1_000_000.into(), "capacity"),
        ("structure threshold 7", |c| c["structure_threshold"] = 7.0.into(), "structure_threshold"),
        ("input size 100000", |c| c["preprocessing"]["input_size"] = 100_000.into(), "input_size"),
        ("rel_length 1e9", |c| c["class_stats"][0]["rel_length"] = 1e9.into(), "rel_length"),
        ("aspect 0 to infinity", |c| c["class_stats"][3]["aspect"] = 1e308.into(), "aspect"),
        ("empty ink profile", |c| c["class_stats"][5]["ink_profile"] = serde_json::json!([]), "ink_profile"),
        ("homolog weight -1", |c| c["cell_assignment"]["homolog_weight"] = (-1.0).into(), "homolog_weight"),
    ];
    for (i, (name, edit, field)) in absurd.into_iter().enumerate() {
        let m = bundle(&models, &format!("absurd-{i}"), &key, SHIPPED_ONNX, edit);
        add(leak(format!("signed card: {name}")), on_model(&m), err(&[leak(format!("absurd-{i}.onnx")), field]));
        add(
            leak(format!("model verify, signed card: {name}")),
            args(&["model", "verify", "--trusted-key", &trusted, &s(&m)]),
            err(&[field]),
        );
    }
    let m = bundle(&models, "huge-constant", &key, &onnx_with_constant(&[1_000_000, 1_000_000]), |_| {});
    add(
        "signed graph: a 10^12-element constant",
        on_model(&m),
        err(&["huge-constant.onnx", "elements a constant may have"]),
    );
    add(
        "model install: a 10^12-element constant",
        args(&["model", "install", "--trusted-key", &trusted, &s(&m), "--dir", &s(&dir.join("installed"))]),
        err(&["elements a constant may have"]),
    );

    // Truncated JPEGs: decoders fill the missing scan with grey, so each must be refused.
    let whole = encode(noisy_gray(256, 192), ImageFormat::Jpeg);
    for (name, percent) in [("cut-50.jpg", 50), ("cut-90.jpg", 90), ("cut-95.jpg", 95), ("cut-99.jpg", 99)] {
        let path = f(name, &whole[..whole.len() * percent / 100]);
        add(name, analyze(&path), err(&[name, "truncated JPEG"]));
    }
    let mut eoi_lost = whole.clone();
    eoi_lost.truncate(whole.len() - 2);
    add("jpeg without its end marker", analyze(&f("no-eoi.jpg", &eoi_lost)), err(&["no-eoi.jpg", "truncated JPEG"]));
    let mut padded = whole.clone();
    padded.extend_from_slice(&[0, 0, 0]);
    add("whole jpeg with padding after its end", analyze(&f("padded.jpg", &padded)), Expect::Indeterminate);
    add(
        "bench on a truncated JPEG",
        args(&["bench", &s(&dir.join("cut-95.jpg")), "--rounds", "1"]),
        err(&["cut-95.jpg", "truncated JPEG"]),
    );

    // Special files wherever a path is read: refused at once, never waited on or read forever.
    let zero = dir.join("zero.bin");
    std::os::unix::fs::symlink("/dev/zero", &zero).unwrap();
    let fifo_key = dir.join("fifo.pub");
    assert!(Command::new("mkfifo").arg(&fifo_key).status().expect("mkfifo runs").success());
    for (what, special) in [("FIFO", &fifo), ("device", &zero)] {
        let name: &'static str = if what == "FIFO" { "FIFO" } else { "a device" };
        add(leak(format!("{what} as model")), on_model(special), err(&[name, "not a regular file"]));
        add(leak(format!("{what} as board profile")), run_config(special), err(&[name, "not a regular file"]));
        add(
            leak(format!("{what} as bench frame")),
            args(&["bench", &s(special), "--rounds", "1"]),
            err(&[name, "not a regular file"]),
        );
        add(
            leak(format!("{what} as record")),
            args(&["analyze", "--record", &s(special), &s(&frame)]),
            err(&["not a regular file"]),
        );
    }
    add(
        "FIFO as trusted key",
        args(&["demo", "--trusted-key", &s(&fifo_key)]),
        err(&["fifo.pub", "not a regular file"]),
    );
    add("device as trusted key", args(&["demo", "--trusted-key", &s(&zero)]), err(&["zero.bin", "not a regular file"]));
    add(
        "device as signing key",
        args(&["model", "sign", "--key", &s(&zero), &s(&models.join("foreign.onnx"))]),
        err(&["zero.bin", "not a regular file"]),
    );
    for (name, card_is) in [("fifo-card", "FIFO"), ("zero-card", "device")] {
        let onnx = models.join(format!("{name}.onnx"));
        std::fs::write(&onnx, SHIPPED_ONNX).unwrap();
        let card_path = models.join(format!("{name}.card.json"));
        if card_is == "FIFO" {
            assert!(Command::new("mkfifo").arg(&card_path).status().expect("mkfifo runs").success());
        } else {
            std::os::unix::fs::symlink("/dev/zero", &card_path).unwrap();
        }
        add(
            leak(format!("{card_is} as model card")),
            on_model(&onnx),
            err(&[leak(format!("{name}.card.json")), "not a regular file"]),
        );
    }
    let fifo_set = case("eval-fifo-labels");
    assert!(Command::new("mkfifo").arg(fifo_set.join("labels.csv")).status().expect("mkfifo runs").success());
    add("FIFO as eval labels", args(&["eval", &s(&fifo_set)]), err(&["labels.csv", "not a regular file"]));
    let fifo_crop_set = set("eval-fifo-crop", Some(format!("{header}fifo.png,0,c1,test\n").as_bytes()));
    assert!(Command::new("mkfifo").arg(fifo_crop_set.join("fifo.png")).status().expect("mkfifo runs").success());
    add("FIFO as eval crop", args(&["eval", &s(&fifo_crop_set)]), err(&["fifo.png", "not a regular file"]));

    // A record that is not one is refused and left as it was (see also record_mistakes_change_nothing).
    let not_record = f("notes.txt", b"a lab's notes\nsecond line\nno newline at the end");
    add(
        "record: a text file",
        args(&["analyze", "--record", &s(&not_record), &s(&frame)]),
        err(&["notes.txt", "not a karyoscreen record"]),
    );
    add(
        "record: the frame itself",
        args(&["analyze", "--record", &s(&frame), &s(&frame)]),
        err(&["ok.png", "not a karyoscreen record"]),
    );
    let no_seq = f("no-seq.jsonl", b"{\"kind\":\"cell\",\"origin\":\"x\"}\n");
    add(
        "record: last line without seq",
        args(&["analyze", "--record", &s(&no_seq), &s(&frame)]),
        err(&["no-seq.jsonl", "no valid seq"]),
    );
    let huge_seq = f("huge-seq.jsonl", format!("{{\"kind\":\"cell\",\"seq\":{}}}\n", u64::MAX).as_bytes());
    add(
        "record: seq about to wrap",
        args(&["analyze", "--record", &s(&huge_seq), &s(&frame)]),
        err(&["huge-seq.jsonl", "no valid seq"]),
    );
    let text_seq = f("text-seq.jsonl", b"{\"kind\":\"cell\",\"seq\":\"7\"}\n");
    add(
        "record: seq as text",
        args(&["analyze", "--record", &s(&text_seq), &s(&frame)]),
        err(&["text-seq.jsonl", "no valid seq"]),
    );

    // `run` on a file it cannot use says so and exits non-zero, instead of doing nothing.
    let run_on = |source: &Path| args(&["run", "--board", "generic", "--console-leds", "--source", &s(source)]);
    add("run: missing source file", run_on(&dir.join("gone.png")), err(&["gone.png", "cannot read frame"]));
    add(
        "run: corrupt source file",
        run_on(&dir.join("truncated-idat.png")),
        err(&["truncated-idat.png", "not a readable"]),
    );
    add("run: truncated JPEG source", run_on(&dir.join("cut-90.jpg")), err(&["cut-90.jpg", "truncated JPEG"]));
    let looped = dir.join("loop.png");
    std::os::unix::fs::symlink(&looped, &looped).unwrap();
    add("run: symlink loop as source", run_on(&looped), err(&["loop.png", "cannot read frame"]));

    // Usage mistakes: one line each, naming the problem.
    add("usage: analyze without a frame", args(&["analyze"]), err(&["<FRAME>"]));
    add("usage: unknown option", args(&["analyze", "--jsn", &s(&frame)]), err(&["--jsn"]));
    add(
        "usage: --out without --write-frame",
        args(&["demo", "--out", &s(&dir.join("o.png"))]),
        err(&["--write-frame"]),
    );
    add("usage: --record on eval", args(&["eval", &s(dir), "--record", &s(&dir.join("r.jsonl"))]), err(&["--record"]));
    add("usage: hold 0", args(&["run", "--board", "generic", "--hold", "0"]), err(&["--hold", "0"]));

    // Keys given for the wrong role.
    let secret = s(&models.join("test-key"));
    add(
        "signing with a public key",
        args(&["model", "sign", "--key", &trusted, &s(&models.join("foreign.onnx"))]),
        err(&["test-key.pub", "this is a public key"]),
    );
    add("trusting a secret key", args(&["demo", "--trusted-key", &secret]), err(&["test-key", "secret signing key"]));
    cases
}

/// A minimal ONNX model (protobuf written out by hand) whose one constant declares `dims` and
/// holds no data.
fn onnx_with_constant(dims: &[u64]) -> Vec<u8> {
    fn varint(mut v: u64, out: &mut Vec<u8>) {
        while v >= 0x80 {
            out.push((v as u8) | 0x80);
            v >>= 7;
        }
        out.push(v as u8);
    }
    fn field(number: u64, bytes: &[u8], out: &mut Vec<u8>) {
        varint(number << 3 | 2, out);
        varint(bytes.len() as u64, out);
        out.extend_from_slice(bytes);
    }
    let mut tensor = Vec::new();
    for &d in dims {
        varint(1 << 3, &mut tensor); // dims (int64, unpacked)
        varint(d, &mut tensor);
    }
    varint(2 << 3, &mut tensor); // data_type FLOAT
    varint(1, &mut tensor);
    field(8, b"huge", &mut tensor); // name
    let mut output = Vec::new();
    field(1, b"huge", &mut output);
    let mut graph = Vec::new();
    field(2, b"g", &mut graph); // name
    field(5, &tensor, &mut graph); // initializer
    field(12, &output, &mut graph); // output
    let mut opset = Vec::new();
    varint(2 << 3, &mut opset);
    varint(13, &mut opset);
    let mut model = Vec::new();
    varint(1 << 3, &mut model); // ir_version
    varint(7, &mut model);
    field(7, &graph, &mut model);
    field(8, &opset, &mut model);
    model
}

/// A signed-card mistake: its name, the edit, the field the error must name.
type CardEdit = (&'static str, fn(&mut serde_json::Value), &'static str);

/// A case name made at run time.
fn leak(name: String) -> &'static str {
    Box::leak(name.into_boxed_str())
}

/// Speckled grey, so a JPEG of it has a long scan to cut.
fn noisy_gray(w: u32, h: u32) -> DynamicImage {
    let mut rng = SmallRng::seed_from_u64(5);
    DynamicImage::ImageLuma8(GrayImage::from_fn(w, h, |_, _| Luma([rng.random_range(90..170)])))
}

fn check(case: &Case, out: &Output) -> Result<(), String> {
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    if stderr.contains("panicked") || out.status.code().is_none() {
        return Err(format!("crashed ({}): {stderr}", out.status));
    }
    match &case.expect {
        Expect::Error(needles) => {
            if out.status.success() {
                return Err(format!("exited 0, expected an error; stdout: {stdout} stderr: {stderr}"));
            }
            let lines: Vec<&str> = stderr.lines().collect();
            if lines.len() != 1 || lines[0].trim().is_empty() || !lines[0].starts_with("karyoscreen: ") {
                return Err(format!("stderr must be one `karyoscreen: ` line, got {}: {stderr:?}", lines.len()));
            }
            let missing: Vec<&String> = needles.iter().filter(|n| !lines[0].contains(n.as_str())).collect();
            if !missing.is_empty() {
                return Err(format!("error line lacks {missing:?}: {}", lines[0]));
            }
            Ok(())
        }
        Expect::Indeterminate => {
            if !out.status.success() {
                return Err(format!("a valid image must give a verdict, got {}: {stderr}", out.status));
            }
            let json: serde_json::Value =
                serde_json::from_str(&stdout).map_err(|e| format!("stdout is not JSON ({e}): {stdout}"))?;
            if json["verdict"] != "indeterminate" {
                return Err(format!("verdict {} (expected indeterminate): {}", json["verdict"], json["reasons"]));
            }
            if json["reasons"].as_array().is_none_or(|r| r.is_empty()) {
                return Err(format!("indeterminate without reasons: {stdout}"));
            }
            // A cell whose objects cannot be a karyotype must not read as a list of losses.
            if let Some(count) = json["count"].as_u64().filter(|&n| n < 40) {
                let wanted = format!("karyotype not determined: {count} objects found");
                if json["karyotype"] != wanted.as_str() {
                    return Err(format!("karyotype {} (expected {wanted:?})", json["karyotype"]));
                }
            }
            Ok(())
        }
    }
}

/// A case's index, what it said (or why it failed) and its seconds.
type Outcome = (usize, Result<String, String>, f64);

/// Runs the binary with output to files, killing it after a minute: a case that hangs (a
/// FIFO, say) fails with a message instead of hanging the test.
fn run_with_deadline(dir: &Path, i: usize, args: &[String]) -> Output {
    let (out_path, err_path) = (dir.join(format!("case-{i}.stdout")), dir.join(format!("case-{i}.stderr")));
    let mut child = Command::new(env!("CARGO_BIN_EXE_karyoscreen"))
        .args(args)
        .current_dir(dir)
        .env("RUST_LOG", "warn")
        .stdin(std::process::Stdio::null())
        .stdout(std::fs::File::create(&out_path).unwrap())
        .stderr(std::fs::File::create(&err_path).unwrap())
        .spawn()
        .expect("binary runs");
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(60);
    let status = loop {
        if let Some(status) = child.try_wait().unwrap() {
            break status;
        }
        if std::time::Instant::now() > deadline {
            child.kill().unwrap();
            let _ = child.wait();
            let stderr = b"karyoscreen did not finish within 60 s (killed)\npanicked".to_vec();
            return Output { status: std::process::ExitStatus::default(), stdout: Vec::new(), stderr };
        }
        std::thread::sleep(std::time::Duration::from_millis(10));
    };
    Output { status, stdout: std::fs::read(&out_path).unwrap(), stderr: std::fs::read(&err_path).unwrap() }
}

#[test]
fn bad_input_corpus() {
    let start = std::time::Instant::now();
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join("bad-input");
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    let cases = build_cases(&dir);
    assert!(cases.len() >= 50, "the issue asks for at least 50 cases, have {}", cases.len());

    // A few at a time (each is a process that loads the model), the slow 4096² frame first.
    let mut order: Vec<usize> = (0..cases.len()).collect();
    order.sort_by_key(|&i| !cases[i].name.contains("4096x4096"));
    let next = std::sync::atomic::AtomicUsize::new(0);
    let results: std::sync::Mutex<Vec<Outcome>> = Default::default();
    std::thread::scope(|scope| {
        for _ in 0..3 {
            scope.spawn(|| {
                while let Some(&i) = order.get(next.fetch_add(1, std::sync::atomic::Ordering::SeqCst)) {
                    let case = &cases[i];
                    let clock = std::time::Instant::now();
                    let out = run_with_deadline(&dir, i, &case.args);
                    let verdict = check(case, &out).map(|()| {
                        let said = if out.status.success() { &out.stdout } else { &out.stderr };
                        let said = String::from_utf8_lossy(said);
                        let said = said.trim().replace(&format!("{}/", dir.display()), "");
                        said.chars().take(150).collect::<String>().replace('\n', " ")
                    });
                    results.lock().unwrap().push((i, verdict, clock.elapsed().as_secs_f64()));
                }
            });
        }
    });
    let mut results = results.into_inner().unwrap();
    results.sort_by_key(|r| r.0);
    let mut failures = Vec::new();
    for (i, verdict, secs) in &results {
        let case = &cases[*i];
        let kind = match case.expect {
            Expect::Error(_) => "error",
            Expect::Indeterminate => "indeterminate",
        };
        match verdict {
            Ok(said) => println!("ok   {:>3} {:<36} {kind:<13} {secs:>5.2}s  {said}", i + 1, case.name),
            Err(why) => {
                println!("FAIL {:>3} {:<40} {kind:<13} {secs:>6.2}s {why}", i + 1, case.name);
                failures.push(format!("{}: {why}", case.name));
            }
        }
    }
    println!("bad input: {} cases ran, {} failed, {:.1}s", cases.len(), failures.len(), start.elapsed().as_secs_f64());
    assert!(
        failures.is_empty(),
        "{} of {} bad-input cases failed:\n{}",
        failures.len(),
        cases.len(),
        failures.join("\n")
    );
}

fn scratch(name: &str) -> PathBuf {
    let dir = Path::new(env!("CARGO_TARGET_TMPDIR")).join(name);
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).unwrap();
    dir
}

fn binary() -> Command {
    Command::new(env!("CARGO_BIN_EXE_karyoscreen"))
}

#[test]
fn record_mistakes_change_nothing() {
    let dir = scratch("record-mistakes");
    let frame = dir.join("frame.png");
    std::fs::write(&frame, encode(gray(64, 64, 200), ImageFormat::Png)).unwrap();
    let notes = dir.join("notes.txt");
    std::fs::write(&notes, "line one\nline two without a newline").unwrap();
    for target in [&frame, &notes] {
        let before = std::fs::read(target).unwrap();
        let out = binary().args(["analyze", "--record"]).arg(target).arg(&frame).output().unwrap();
        assert_eq!(out.status.code(), Some(1), "{}", String::from_utf8_lossy(&out.stderr));
        assert_eq!(std::fs::read(target).unwrap(), before, "{} was changed", target.display());
    }
}

#[test]
fn a_second_writer_continues_the_run_loops_record() {
    let dir = scratch("record-lock");
    let record = dir.join("record.jsonl");
    let frame = dir.join("frame.png");
    std::fs::write(&frame, encode(gray(64, 64, 200), ImageFormat::Png)).unwrap();
    let mut first = binary()
        .args(["run", "--board", "generic", "--console-leds", "--source", "demo", "--record"])
        .arg(&record)
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::null())
        .spawn()
        .unwrap();
    let clock = std::time::Instant::now();
    while std::fs::read(&record).map_or(true, |r| !r.contains(&b'\n')) {
        assert!(clock.elapsed().as_secs() < 120, "the first writer recorded nothing");
        std::thread::sleep(std::time::Duration::from_millis(100));
    }
    // While the run loop writes, other processes append between its lines.
    let seconds: Vec<_> =
        (0..3).map(|_| binary().args(["analyze", "--record"]).arg(&record).arg(&frame).output().unwrap()).collect();
    // SAFETY: signalling our own child.
    unsafe { libc::kill(first.id() as i32, libc::SIGTERM) };
    first.wait().unwrap();
    for second in &seconds {
        assert!(second.status.success(), "{}", String::from_utf8_lossy(&second.stderr));
    }
    let text = std::fs::read_to_string(&record).unwrap();
    let lines: Vec<serde_json::Value> = text.lines().map(|l| serde_json::from_str(l).unwrap()).collect();
    let seqs: Vec<u64> = lines.iter().map(|l| l["seq"].as_u64().unwrap()).collect();
    assert_eq!(seqs, (1..=seqs.len() as u64).collect::<Vec<_>>(), "the seq chain breaks");
    let analysed = lines.iter().filter(|l| l["origin"].as_str().is_some_and(|o| o.ends_with("frame.png"))).count();
    assert_eq!(analysed, 3, "{text}");
}

#[test]
fn a_full_stdout_is_an_error_not_a_panic() {
    let dir = scratch("full-stdout");
    let frame = dir.join("frame.png");
    std::fs::write(&frame, encode(gray(64, 64, 200), ImageFormat::Png)).unwrap();
    let full = || std::fs::OpenOptions::new().write(true).open("/dev/full").unwrap();
    for args in [vec!["analyze", "--json"], vec!["analyze"], vec!["demo"]] {
        let mut command = binary();
        command.args(&args);
        if args[0] == "analyze" {
            command.arg(&frame);
        }
        let out = command.stdout(full()).output().unwrap();
        let stderr = String::from_utf8_lossy(&out.stderr);
        assert_eq!(out.status.code(), Some(1), "{args:?}: {stderr}");
        assert_eq!(stderr.lines().count(), 1, "{args:?}: {stderr}");
        assert!(stderr.contains("cannot write to standard output"), "{args:?}: {stderr}");
    }
}

#[test]
fn acknowledgements_cannot_be_forged_by_a_file_name() {
    let dir = scratch("forged-ack");
    let frame = dir.join("x\nrecorded 999 forged.png");
    let made = binary().args(["demo", "--write-frame", "1", "--out"]).arg(&frame).output().unwrap();
    assert!(made.status.success(), "{}", String::from_utf8_lossy(&made.stderr));
    let out = binary()
        .args(["run", "--board", "generic", "--console-leds", "--hold", "1", "--source"])
        .arg(&frame)
        .arg("--record")
        .arg(dir.join("record.jsonl"))
        .output()
        .unwrap();
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let acks: Vec<&str> = stdout.lines().filter(|l| l.starts_with("recorded ")).collect();
    assert_eq!(acks.len(), 1, "{stdout}");
    assert!(acks[0].starts_with("recorded 1 ") && acks[0].contains("\\n"), "{stdout}");
}
