//! Importing `.npy` arrays as a split: row selection, id-based label lookup, appending
//! with de-duplication by id.

use std::collections::HashSet;
use std::fs;
use std::path::{Path, PathBuf};

use crate::IMAGE_BYTES;
use crate::dataset::{Dataset, DatasetParts, Normalization};
use crate::error::{DatasetError, Result};
use crate::formats::check_rows;
use crate::npy::{ImageRange, read_human, read_ids, read_images, read_labels};

/// Parses a row list such as `0..1000`, `5`, `0..10,20..30,99` (half-open ranges,
/// comma-separated, 0-based) into row numbers in the order given.
pub fn parse_rows(spec: &str) -> Result<Vec<usize>> {
    let bad = |part: &str, why: &str| {
        DatasetError::invalid(
            "row list",
            format!(
                "{part:?} in {spec:?}: {why}; expected comma-separated rows or half-open ranges like 0..1000"
            ),
        )
    };
    let mut rows = Vec::new();
    for part in spec.split(',').map(str::trim).filter(|p| !p.is_empty()) {
        if let Some((a, b)) = part.split_once("..") {
            let a: usize = a
                .trim()
                .parse()
                .map_err(|_| bad(part, "not a number before '..'"))?;
            let b: usize = b
                .trim()
                .parse()
                .map_err(|_| bad(part, "not a number after '..'"))?;
            if b < a {
                return Err(bad(part, "the end is before the start"));
            }
            rows.extend(a..b);
        } else {
            rows.push(part.parse().map_err(|_| bad(part, "not a row number"))?);
        }
    }
    if rows.is_empty() {
        return Err(bad(spec, "no rows"));
    }
    Ok(rows)
}

/// Rows (0-based, counting data lines after the header) of a CSV file whose `column`
/// equals `value`. Fields are split at commas; double-quoted fields may hold commas.
pub fn csv_rows_where(path: &Path, column: &str, value: &str) -> Result<Vec<usize>> {
    let text = fs::read_to_string(path).map_err(|e| DatasetError::io(path, "read", e))?;
    let mut lines = text.lines();
    let header = lines.next().ok_or_else(|| DatasetError::Csv {
        path: path.to_path_buf(),
        line: 1,
        reason: "the file is empty; expected a header line".into(),
    })?;
    let names = split_csv_line(header);
    let col = names
        .iter()
        .position(|n| n == column)
        .ok_or_else(|| DatasetError::Csv {
            path: path.to_path_buf(),
            line: 1,
            reason: format!("no column {column:?}; the columns are {names:?}"),
        })?;
    let mut rows = Vec::new();
    for (i, line) in lines.enumerate() {
        if line.trim().is_empty() {
            continue;
        }
        let fields = split_csv_line(line);
        let field = fields.get(col).ok_or_else(|| DatasetError::Csv {
            path: path.to_path_buf(),
            line: i + 2,
            reason: format!(
                "{} fields, but column {column:?} is field {}",
                fields.len(),
                col + 1
            ),
        })?;
        if field == value {
            rows.push(i);
        }
    }
    Ok(rows)
}

fn split_csv_line(line: &str) -> Vec<String> {
    let mut fields = Vec::new();
    let mut cur = String::new();
    let mut quoted = false;
    let mut chars = line.chars().peekable();
    while let Some(c) = chars.next() {
        match c {
            '"' if quoted && chars.peek() == Some(&'"') => {
                cur.push('"');
                chars.next();
            }
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut cur)),
            _ => cur.push(c),
        }
    }
    fields.push(cur);
    fields
}

/// A `.npy` import: which arrays, which rows, how labels line up with images.
#[derive(Clone, Debug)]
pub struct NpyImport {
    /// Images `.npy` (u8/f32/f64, N×32×32×3 or N×3×32×32).
    pub images: PathBuf,
    /// Hard labels `.npy`: one per image, or indexed by id when `labels_by_id`.
    pub labels: PathBuf,
    /// Optional human label distributions: one row per image, or indexed by id when `human_by_id`.
    pub human: Option<PathBuf>,
    /// Optional ids `.npy` (one integer per image). Without it an image's id is its row
    /// in the images file.
    pub ids: Option<PathBuf>,
    /// Labels file row `id` holds the label of the image with that id (e.g. the full
    /// 50,000 CIFAR-10 train labels for images identified by their train index).
    pub labels_by_id: bool,
    /// Like `labels_by_id`, for human labels.
    pub human_by_id: bool,
    /// Rows of the images file to keep, in this order (default: all).
    pub rows: Option<Vec<usize>>,
    /// Scale of float images.
    pub image_range: ImageRange,
    /// Class names (their number is the number of classes).
    pub class_names: Vec<String>,
    /// Normalisation recorded for the split.
    pub normalization: Normalization,
}

impl NpyImport {
    /// Reads, lines up, selects and validates the arrays.
    pub fn load(&self) -> Result<Dataset> {
        let classes = self.class_names.len();
        let pixels = read_images(&self.images, self.image_range)?;
        let n = pixels.len() / IMAGE_BYTES;
        let ids: Vec<i64> = match &self.ids {
            Some(path) => {
                let ids = read_ids(path, "ids")?;
                check_rows(&self.images, "images", n, path, "ids", ids.len())?;
                ids
            }
            None => (0..n as i64).collect(),
        };
        let rows: Vec<usize> = match &self.rows {
            Some(rows) => {
                if let Some(&bad) = rows.iter().find(|&&r| r >= n) {
                    return Err(DatasetError::invalid(
                        "row selection",
                        format!(
                            "row {bad} is out of range: {} has {n} images",
                            self.images.display()
                        ),
                    ));
                }
                rows.clone()
            }
            None => (0..n).collect(),
        };
        // Source row in the labels/human files of each selected image.
        let lookup = |path: &Path,
                      role: &'static str,
                      by_id: bool,
                      len: usize|
         -> Result<Vec<usize>> {
            if by_id {
                rows.iter()
                    .map(|&r| {
                        let id = ids[r];
                        usize::try_from(id).ok().filter(|&i| i < len).ok_or_else(|| {
                            DatasetError::invalid(
                                format!("{} ({role} by id)", path.display()),
                                format!("image row {r} has id {id}, but the file has only {len} rows (0..{len})"),
                            )
                        })
                    })
                    .collect()
            } else {
                check_rows(&self.images, "images", n, path, role, len)?;
                Ok(rows.clone())
            }
        };
        let all_labels = read_labels(&self.labels, classes)?;
        let label_rows = lookup(&self.labels, "labels", self.labels_by_id, all_labels.len())?;
        let human = match &self.human {
            Some(path) => {
                let all = read_human(path, classes)?;
                let human_rows = lookup(
                    path,
                    "human label rows",
                    self.human_by_id,
                    all.len() / classes,
                )?;
                Some(
                    human_rows
                        .iter()
                        .flat_map(|&r| all[r * classes..(r + 1) * classes].iter().copied())
                        .collect(),
                )
            }
            None => None,
        };
        let mut images = Vec::with_capacity(rows.len() * IMAGE_BYTES);
        for &r in &rows {
            images.extend_from_slice(&pixels[r * IMAGE_BYTES..(r + 1) * IMAGE_BYTES]);
        }
        Dataset::new(DatasetParts {
            images,
            labels: label_rows.iter().map(|&r| all_labels[r]).collect(),
            human,
            ids: Some(rows.iter().map(|&r| ids[r]).collect()),
            class_names: self.class_names.clone(),
            normalization: self.normalization,
        })
    }
}

/// What [`append_by_id`] did.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct AppendStats {
    /// Rows of the new data added.
    pub added: usize,
    /// Rows skipped because their id was already present.
    pub skipped: usize,
    /// Of the skipped rows, how many had pixels different from the existing image.
    pub skipped_with_different_pixels: usize,
}

/// Appends the rows of `new` whose id is not yet in `existing`. Both need ids and the
/// same classes; human labels must be present in both or in neither.
pub fn append_by_id(existing: &Dataset, new: &Dataset) -> Result<(Dataset, AppendStats)> {
    let what = "append";
    let (Some(old_ids), Some(new_ids)) = (existing.ids(), new.ids()) else {
        return Err(DatasetError::invalid(
            what,
            "both the existing split and the new rows need ids to append by id",
        ));
    };
    if existing.class_names() != new.class_names() {
        return Err(DatasetError::invalid(
            what,
            format!(
                "class names differ: existing {:?}, new {:?}",
                existing.class_names(),
                new.class_names()
            ),
        ));
    }
    if existing.human().is_some() != new.human().is_some() {
        return Err(DatasetError::invalid(
            what,
            "the existing split and the new rows must both have human labels or both have none",
        ));
    }
    let position: std::collections::HashMap<i64, usize> =
        old_ids.iter().enumerate().map(|(i, &id)| (id, i)).collect();
    let mut keep = Vec::new();
    let mut stats = AppendStats {
        added: 0,
        skipped: 0,
        skipped_with_different_pixels: 0,
    };
    let mut seen = HashSet::new();
    for (row, id) in new_ids.iter().enumerate() {
        if let Some(&old) = position.get(id) {
            stats.skipped += 1;
            if existing.image(old) != new.image(row) {
                stats.skipped_with_different_pixels += 1;
            }
        } else if seen.insert(*id) {
            keep.push(row);
        }
    }
    stats.added = keep.len();
    let added = new.select(&keep)?.into_parts();
    let mut parts = existing.clone().into_parts();
    parts.images.extend_from_slice(&added.images);
    parts.labels.extend_from_slice(&added.labels);
    if let (Some(h), Some(a)) = (parts.human.as_mut(), added.human) {
        h.extend_from_slice(&a);
    }
    if let (Some(i), Some(a)) = (parts.ids.as_mut(), added.ids) {
        i.extend_from_slice(&a);
    }
    Ok((Dataset::new(parts)?, stats))
}
