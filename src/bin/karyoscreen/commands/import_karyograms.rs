//! `karyoscreen import-karyograms`: a lab's karyogram images to a labelled crop set.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::ExitCode;

use anyhow::{bail, Context, Result};
use clap::Args;

use karyoscreen::device::capture::load_frame;
use karyoscreen::integrity::bundle::write_atomic;
use karyoscreen::integrity::input::read_text;
use karyoscreen::tools::karyogram::{
    crops_from_boxes, parse_voc, parse_yolo, read_karyogram, Crop, Layout, CLASS_NAMES,
};

#[derive(Args, Debug)]
#[command(after_help = "Examples:\n  karyoscreen import-karyograms lab/karyograms/*.png --out lab-set\n  \
                        karyoscreen eval lab-set")]
pub struct ImportKaryogramsArgs {
    /// Karyogram images (PNG, JPEG, TIFF, BMP). A YOLO `<stem>.txt` or Pascal VOC `<stem>.xml`
    /// beside an image gives its classes; without one the image's layout must be read: 24
    /// frames or 24 underlines, classes 1-22, X, Y in rows, left to right, top to bottom.
    #[arg(required = true)]
    images: Vec<PathBuf>,
    /// The set to write: DIR/labels.csv and DIR/crops/<karyogram>/…; a new or empty folder.
    #[arg(long, value_name = "DIR")]
    out: PathBuf,
    /// The `split` column of every row.
    #[arg(long, default_value = "lab")]
    split: String,
}

/// The labels of one image: from its box file if it has one, else from its layout; `Err` is
/// the reason it was refused.
fn read_one(path: &Path) -> Result<std::result::Result<(Layout, Vec<Crop>), String>> {
    let image = load_frame(path)?.image;
    for (extension, layout) in [("txt", Layout::Yolo), ("xml", Layout::Voc)] {
        let boxes_path = path.with_extension(extension);
        if !boxes_path.exists() {
            continue;
        }
        let text = read_text(&boxes_path, "box file")?;
        let boxes = match layout {
            Layout::Yolo => parse_yolo(&text, image.dimensions()),
            _ => parse_voc(&text),
        };
        let crops = boxes.and_then(|b| crops_from_boxes(&image, &b));
        return Ok(crops.map(|c| (layout, c)).map_err(|e| format!("{}: {e}", boxes_path.display())));
    }
    Ok(read_karyogram(&image))
}

fn layout_name(layout: Layout) -> &'static str {
    match layout {
        Layout::Frames => "frames",
        Layout::Underlines => "underlines",
        Layout::Yolo => "yolo",
        Layout::Voc => "voc",
    }
}

pub fn exec(args: ImportKaryogramsArgs) -> Result<ExitCode> {
    let out = &args.out;
    if out.exists()
        && std::fs::read_dir(out).with_context(|| format!("{}: not a folder", out.display()))?.next().is_some()
    {
        bail!("{}: exists and is not empty; give a new folder to --out", out.display());
    }
    let mut stems = HashSet::new();
    for path in &args.images {
        let stem = path.file_stem().map(|s| s.to_string_lossy().to_string()).unwrap_or_default();
        if !stems.insert(stem.clone()) {
            bail!(
                "{}: a second karyogram named {stem:?}; each becomes one cell_id, so names must differ",
                path.display()
            );
        }
    }

    let mut rows =
        String::from("path,label_idx,class_name,group_id,cell_id,split,width,height,layout,x,y,box_width,box_height\n");
    let (mut per_class, mut imported, mut refused) = ([0usize; 24], 0, Vec::new());
    // Every image is read before anything is written: a file that cannot be read stops the
    // run with nothing written.
    let results = args.images.iter().map(|path| read_one(path)).collect::<Result<Vec<_>>>()?;
    for (path, result) in args.images.iter().zip(results) {
        let stem = path.file_stem().unwrap_or_default().to_string_lossy().to_string();
        match result {
            Err(reason) => {
                let line = format!("{}: refused: {reason}", path.display());
                outln!("{line}")?;
                refused.push(line);
            }
            Ok((layout, crops)) => {
                let dir = out.join("crops").join(&stem);
                std::fs::create_dir_all(&dir).with_context(|| format!("{}: cannot create", dir.display()))?;
                let mut index = [0usize; 24];
                for crop in &crops {
                    let name = format!("{stem}_{}_{}.png", CLASS_NAMES[crop.class], index[crop.class]);
                    index[crop.class] += 1;
                    per_class[crop.class] += 1;
                    let file = dir.join(&name);
                    crop.image.save(&file).with_context(|| format!("{}: cannot write", file.display()))?;
                    rows += &format!(
                        "crops/{stem}/{name},{},{},{stem},{stem},{},{},{},{},{},{},{},{}\n",
                        crop.class,
                        CLASS_NAMES[crop.class],
                        args.split,
                        crop.image.width(),
                        crop.image.height(),
                        layout_name(layout),
                        crop.bbox.x,
                        crop.bbox.y,
                        crop.bbox.width,
                        crop.bbox.height
                    );
                }
                imported += 1;
                outln!("{}: {} layout, {} crops", path.display(), layout_name(layout), crops.len())?;
            }
        }
    }
    std::fs::create_dir_all(out).with_context(|| format!("{}: cannot create", out.display()))?;
    write_atomic(&out.join("labels.csv"), rows.as_bytes())?;
    let classes: Vec<String> = CLASS_NAMES.iter().zip(per_class).map(|(c, n)| format!("{c}:{n}")).collect();
    outln!(
        "imported {imported} of {} karyograms ({} refused): {} crops to {}",
        args.images.len(),
        refused.len(),
        per_class.iter().sum::<usize>(),
        out.join("labels.csv").display()
    )?;
    outln!("crops per class  {}", classes.join(" "))?;
    match refused.first() {
        None => Ok(ExitCode::SUCCESS),
        Some(first) => bail!("{} of {} karyograms refused (the first: {first})", refused.len(), args.images.len()),
    }
}
