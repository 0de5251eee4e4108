//! A features array and a labels array read together, row by row, with every value checked
//! as it goes by: features finite, labels non-negative integers, both with the same rows.

use super::{ArrayError, ArrayReader};
use crate::Dataset;

/// Largest class id accepted in a labels array (ids index a per-class table).
const MAX_CLASS_ID: f64 = 1_000_000.0;

/// Features and labels of the same rows, streamed together.
pub struct LabelledArrays {
    features: ArrayReader,
    labels: ArrayReader,
    row: Vec<f64>,
    label: Vec<f64>,
}

impl LabelledArrays {
    /// Pairs `features` (`[N, …]`) with `labels` (`[N]` or `[N, 1]`, integers).
    pub fn new(features: ArrayReader, labels: ArrayReader) -> Result<Self, ArrayError> {
        let file = |r: &ArrayReader, message: String| ArrayError::File {
            where_: r.where_.clone(),
            message,
        };
        if features.header.shape.is_empty() || features.header.row_len() == 0 {
            return Err(file(
                &features,
                format!(
                    "'{}' has shape {:?}; features need a shape [N, ...] with at least one value per row",
                    features.name, features.header.shape
                ),
            ));
        }
        if labels.header.shape.is_empty() || labels.header.row_len() != 1 {
            return Err(file(
                &labels,
                format!(
                    "'{}' has shape {:?}; labels need the shape [N] (one class id per row)",
                    labels.name, labels.header.shape
                ),
            ));
        }
        if !labels.header.element.is_integer() {
            return Err(file(
                &labels,
                format!(
                    "'{}' holds {:?} values; labels must be integer class ids (save them with .astype(int))",
                    labels.name, labels.header.element
                ),
            ));
        }
        if features.header.rows() != labels.header.rows() {
            return Err(file(
                &labels,
                format!(
                    "'{}' has {} rows but '{}' ({}) has {}; give one label per row",
                    labels.name,
                    labels.header.rows(),
                    features.name,
                    features.where_,
                    features.header.rows()
                ),
            ));
        }
        Ok(Self {
            features,
            labels,
            row: Vec::new(),
            label: Vec::new(),
        })
    }

    /// Values per row (the product of the features' inner dimensions).
    pub fn width(&self) -> usize {
        self.features.header.row_len()
    }

    /// The shape of one row (`[C, H, W]` or `[H, W]` for images, `[F]` for tables).
    pub fn row_shape(&self) -> Vec<usize> {
        match &self.features.header.shape[..] {
            [_] => vec![1],
            [_, inner @ ..] => inner.to_vec(),
            [] => vec![],
        }
    }

    pub fn rows(&self) -> usize {
        self.features.header.rows()
    }

    /// The next row: its features into `out` (as `f32`, checked finite) and its class id.
    pub fn next_row(&mut self, out: &mut Vec<f32>) -> Result<Option<u32>, ArrayError> {
        if !self.features.next_row(&mut self.row)? {
            self.features.finish()?;
            self.labels.finish()?;
            return Ok(None);
        }
        if !self.labels.next_row(&mut self.label)? {
            unreachable!("the row counts were checked equal");
        }
        out.clear();
        for (i, &v) in self.row.iter().enumerate() {
            let f = v as f32;
            if !f.is_finite() {
                let what = if v.is_nan() {
                    "NaN".to_string()
                } else if v.is_finite() {
                    format!("{v} (beyond the float32 range)")
                } else {
                    format!("{v}")
                };
                return Err(self.features.value_error(
                    i,
                    format!("{what} is not a finite number; features must be finite: clean or drop the row"),
                ));
            }
            out.push(f);
        }
        let id = self.label[0];
        if !(0.0..=MAX_CLASS_ID).contains(&id) {
            return Err(self.labels.value_error(
                0,
                format!("class id {id} is out of range; class ids are 0 to {MAX_CLASS_ID}"),
            ));
        }
        Ok(Some(id as u32))
    }
}

/// Reads `arrays` whole into a [`Dataset`]: the class names are the class ids that occur,
/// in increasing order, and features are named by their index in the row shape
/// (`x[3]`, or `x[0,27,27]` for a `[1, 28, 28]` image).
pub fn load_labelled(mut arrays: LabelledArrays) -> Result<Dataset, ArrayError> {
    let width = arrays.width();
    let shape = arrays.row_shape();
    let mut features = Vec::with_capacity(arrays.rows().saturating_mul(width));
    let mut ids = Vec::with_capacity(arrays.rows());
    let mut row = Vec::with_capacity(width);
    while let Some(id) = arrays.next_row(&mut row)? {
        features.extend_from_slice(&row);
        ids.push(id);
    }
    let mut classes: Vec<u32> = ids.clone();
    classes.sort_unstable();
    classes.dedup();
    let targets = ids
        .iter()
        .map(|id| classes.binary_search(id).expect("every id is a class"))
        .collect();
    Ok(Dataset {
        width,
        feature_names: (0..width).map(|i| feature_name(&shape, i)).collect(),
        features,
        targets,
        labels: classes.iter().map(u32::to_string).collect(),
    })
}

/// `x[i]` for a flat row, `x[c,h,w]` for a shaped one.
pub(crate) fn feature_name(shape: &[usize], i: usize) -> String {
    if shape.len() <= 1 {
        return format!("x[{i}]");
    }
    let mut rest = i;
    let mut index: Vec<String> = shape
        .iter()
        .rev()
        .map(|&d| {
            let v = rest % d.max(1);
            rest /= d.max(1);
            v.to_string()
        })
        .collect();
    index.reverse();
    format!("x[{}]", index.join(","))
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::arrays::idx::tests::idx_u8;
    use crate::arrays::npy::tests::npy_bytes;
    use crate::arrays::{open_idx, open_npy, open_npz_member};
    use std::io::Write;

    /// `x.npy` features with `y.npy` labels.
    fn npy_pair(x: &std::path::Path, y: &std::path::Path) -> Result<LabelledArrays, ArrayError> {
        LabelledArrays::new(
            open_npy(x, "x.npy", "features").unwrap(),
            open_npy(y, "y.npy", "labels").unwrap(),
        )
    }

    fn f32s(v: &[f32]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    fn i64s(v: &[i64]) -> Vec<u8> {
        v.iter().flat_map(|x| x.to_le_bytes()).collect()
    }

    #[test]
    fn npy_pair_loads_with_classes_in_id_order() {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
        std::fs::write(
            &x,
            npy_bytes("<f4", &[3, 2], &f32s(&[1., 2., 3., 4., 5., 6.])),
        )
        .unwrap();
        std::fs::write(&y, npy_bytes("<i8", &[3], &i64s(&[7, 2, 7]))).unwrap();
        let arrays = npy_pair(&x, &y).unwrap();
        let d = load_labelled(arrays).unwrap();
        assert_eq!(d.labels, vec!["2", "7"]);
        assert_eq!(d.targets, vec![1, 0, 1]);
        assert_eq!(d.row(2), &[5., 6.]);
        assert_eq!(d.feature_names, vec!["x[0]", "x[1]"]);
    }

    #[test]
    fn bad_values_are_named_by_array_and_index() {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = (dir.path().join("x.npy"), dir.path().join("y.npy"));
        let mut v = vec![0f32; 2 * 2 * 3];
        v[2 * 3 + 4] = f32::NAN; // row 1, [1, 1] of a [2, 3] image
        std::fs::write(&x, npy_bytes("<f4", &[2, 2, 3], &f32s(&v))).unwrap();
        std::fs::write(&y, npy_bytes("<i8", &[2], &i64s(&[0, 1]))).unwrap();
        let arrays = npy_pair(&x, &y).unwrap();
        let e = load_labelled(arrays).err().unwrap().to_string();
        assert!(
            e.starts_with("x.npy: features[1, 1, 1]: NaN is not a finite number"),
            "{e}"
        );

        std::fs::write(&x, npy_bytes("<f4", &[2, 1], &f32s(&[0., 1.]))).unwrap();
        std::fs::write(&y, npy_bytes("<i8", &[2], &i64s(&[0, -3]))).unwrap();
        let arrays = npy_pair(&x, &y).unwrap();
        let e = load_labelled(arrays).err().unwrap().to_string();
        assert!(
            e.starts_with("y.npy: labels[1]: class id -3 is out of range"),
            "{e}"
        );

        std::fs::write(&y, npy_bytes("<i8", &[3], &i64s(&[0, 1, 1]))).unwrap();
        let e = npy_pair(&x, &y).err().unwrap().to_string();
        assert!(e.contains("has 3 rows but 'features' (x.npy) has 2"), "{e}");

        std::fs::write(&y, npy_bytes("<f4", &[2], &f32s(&[0., 1.]))).unwrap();
        let e = npy_pair(&x, &y).err().unwrap().to_string();
        assert!(e.contains("astype(int)"), "{e}");
    }

    #[test]
    fn npz_stored_and_deflated_members() {
        let dir = tempfile::tempdir().unwrap();
        for method in [
            zip::CompressionMethod::Stored,
            zip::CompressionMethod::Deflated,
        ] {
            let path = dir.path().join("d.npz");
            let mut z = zip::ZipWriter::new(std::fs::File::create(&path).unwrap());
            let opts = zip::write::FileOptions::default().compression_method(method);
            z.start_file("features.npy", opts).unwrap();
            z.write_all(&npy_bytes(
                "<f8",
                &[2, 2],
                &[1f64, 2., 3., 4.]
                    .iter()
                    .flat_map(|x| x.to_le_bytes())
                    .collect::<Vec<_>>(),
            ))
            .unwrap();
            z.start_file("labels.npy", opts).unwrap();
            z.write_all(&npy_bytes("|u1", &[2], &[1, 0])).unwrap();
            z.finish().unwrap();
            let arrays = LabelledArrays::new(
                open_npz_member(&path, "d.npz", "features").unwrap(),
                open_npz_member(&path, "d.npz", "labels").unwrap(),
            )
            .unwrap();
            let d = load_labelled(arrays).unwrap();
            assert_eq!(
                (d.features.clone(), d.targets.clone()),
                (vec![1., 2., 3., 4.], vec![1, 0])
            );
            let e = open_npz_member(&path, "d.npz", "images")
                .err()
                .unwrap()
                .to_string();
            assert!(
                e.contains("no array 'images' (members: features.npy, labels.npy)"),
                "{e}"
            );
        }
    }

    #[test]
    fn idx_images_and_labels() {
        let dir = tempfile::tempdir().unwrap();
        let (x, y) = (dir.path().join("images"), dir.path().join("labels"));
        std::fs::write(&x, idx_u8(&[2, 2, 2], &[0, 1, 2, 3, 4, 5, 6, 255])).unwrap();
        std::fs::write(&y, idx_u8(&[2], &[9, 3])).unwrap();
        let arrays = LabelledArrays::new(
            open_idx(&x, "images", "images").unwrap(),
            open_idx(&y, "labels", "labels").unwrap(),
        )
        .unwrap();
        assert_eq!(arrays.row_shape(), vec![2, 2]);
        let d = load_labelled(arrays).unwrap();
        assert_eq!(d.labels, vec!["3", "9"]);
        assert_eq!(d.targets, vec![1, 0]);
        assert_eq!(d.row(1), &[4., 5., 6., 255.]);
        assert_eq!(d.feature_names[3], "x[1,1]");
    }
}
