//! Folders of Parquet files as Spark, Dask, Ray and pyarrow write them, read by
//! `predict` as one table.

use crate::stage::{classifier, predict_options, read, strings, write_parquet};
use arrow_array::cast::AsArray;
use arrow_array::types::Int64Type;
use arrow_array::RecordBatch;
use arrow_schema::{DataType, Field};
use lensmae::stage::{open_input, predict, InputOptions};
use std::path::{Path, PathBuf};

/// Rows `rows` of the Model II fixture (id and image) written to `path`.
fn part(path: &Path, fixture: &RecordBatch, rows: std::ops::Range<usize>) {
    std::fs::create_dir_all(path.parent().unwrap()).unwrap();
    let slice = fixture.slice(rows.start, rows.len());
    let column = |name: &str| slice.column_by_name(name).unwrap().clone();
    let image = column("image");
    write_parquet(
        path,
        vec![
            (Field::new("id", DataType::Int64, false), column("id")),
            (Field::new("image", image.data_type().clone(), false), image),
        ],
    );
}

fn ids(out: &Path) -> Vec<i64> {
    read(out).column_by_name("id").unwrap().as_primitive::<Int64Type>().values().to_vec()
}

#[test]
fn a_dask_style_folder_is_read_in_natural_order_past_the_writers_bookkeeping() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = read(&crate::fixture("catalog/deeplense-model2-12.parquet"));
    let dataset = dir.path().join("cutouts");
    // Eleven files of one row, then one of the last two: part.10 after part.9.
    for k in 0..11 {
        part(&dataset.join(format!("part.{k}.parquet")), &fixture, k..k + 1);
    }
    // What Spark, Hadoop and pyarrow leave beside the data, none of it cutouts.
    for junk in ["_SUCCESS", "._SUCCESS.crc", ".part.0.parquet.crc", "_metadata", "_temporary/0/part.99.parquet"] {
        let path = dataset.join(junk);
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        std::fs::write(path, b"not parquet").unwrap();
    }
    part(&dataset.join("tail/part.11.parquet"), &fixture, 11..12);
    // A link back up the tree is walked once, not forever nor twice.
    std::os::unix::fs::symlink(&dataset, dataset.join("tail/loop")).unwrap();
    let reader = open_input(std::slice::from_ref(&dataset), &InputOptions::default()).unwrap();
    assert_eq!(reader.describe().rows, 12);
    assert!(reader.describe().layout.starts_with("Parquet dataset, 12 files"), "{}", reader.describe().layout);

    let out = dir.path().join("pred.parquet");
    predict(&predict_options(std::slice::from_ref(&dataset), classifier(Path::new("bundled:classifier"), 5), &out))
        .unwrap();
    assert_eq!(ids(&out), (0..12).collect::<Vec<_>>());
    // The same answers as from the one file.
    let whole = dir.path().join("whole.parquet");
    let source = crate::fixture("catalog/deeplense-model2-12.parquet");
    predict(&predict_options(&[source], classifier(Path::new("bundled:classifier"), 5), &whole)).unwrap();
    for column in ["p_axion", "p_cdm", "p_no_sub"] {
        assert_eq!(read(&out).column_by_name(column), read(&whole).column_by_name(column), "{column}");
    }
    assert_eq!(strings(&read(&out), "status"), strings(&read(&whole), "status"));
}

#[test]
fn hive_partition_folders_are_string_columns_to_carry() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = read(&crate::fixture("catalog/deeplense-model2-12.parquet"));
    let dataset = dir.path().join("by-label");
    part(&dataset.join("label=axion/part-00000.snappy.parquet"), &fixture, 0..4);
    part(&dataset.join("label=cdm/part-00000.snappy.parquet"), &fixture, 4..8);
    part(&dataset.join("label=__HIVE_DEFAULT_PARTITION__/part-00000.snappy.parquet"), &fixture, 8..10);
    part(&dataset.join("label=no%2Fsub/part-00000.snappy.parquet"), &fixture, 10..12);
    let out = dir.path().join("pred.parquet");
    let mut options =
        predict_options(std::slice::from_ref(&dataset), classifier(Path::new("bundled:classifier"), 4), &out);
    options.input.keep = vec!["label".into()];
    predict(&options).unwrap();
    let labels = strings(&read(&out), "label");
    let want: Vec<Option<String>> = ["axion"; 4]
        .into_iter()
        .map(Some)
        .chain(["cdm"; 4].map(Some))
        .chain([None, None])
        .chain(["no/sub"; 2].map(Some))
        .map(|l| l.map(str::to_string))
        .collect();
    // Natural order of the folder names: `__HIVE...` sorts before `axion`.
    let order = ids(&out);
    let by_id = |id: i64| want[id as usize].clone();
    assert_eq!(labels, order.iter().map(|&id| by_id(id)).collect::<Vec<_>>());
    assert_eq!(order[..2], [8, 9]);
}

#[test]
fn folders_that_are_not_one_dataset_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let fixture = read(&crate::fixture("catalog/deeplense-model2-12.parquet"));
    let open = |paths: &[PathBuf]| open_input(paths, &InputOptions::default()).map(|_| ()).unwrap_err().to_string();

    let mixed = dir.path().join("mixed");
    part(&mixed.join("part.0.parquet"), &fixture, 0..2);
    std::fs::write(mixed.join("lens.npy"), b"").unwrap();
    let err = open(std::slice::from_ref(&mixed));
    assert!(err.contains("holds both Parquet files and .npy images"), "{err}");

    let keys = dir.path().join("keys");
    part(&keys.join("label=cdm/part.0.parquet"), &fixture, 0..2);
    part(&keys.join("band=VIS/part.0.parquet"), &fixture, 2..4);
    let err = open(std::slice::from_ref(&keys));
    assert!(err.contains("partition folders disagree"), "{err}");

    let (a, b) = (dir.path().join("a"), dir.path().join("b"));
    part(&a.join("part.0.parquet"), &fixture, 0..2);
    part(&b.join("part.0.parquet"), &fixture, 2..4);
    let err = open(&[a.clone(), b]);
    assert!(err.contains("one folder of Parquet files at a time"), "{err}");
}

#[test]
fn a_labelled_dataset_reads_its_labels_from_its_files_or_its_folders() {
    use lensmae::data::images::{read_float_columns, read_labelled_images};
    let dir = tempfile::tempdir().unwrap();
    let source = crate::fixture("catalog/deeplense-model2-12.parquet");
    let whole = read_labelled_images(&source, "image").unwrap();
    let fixture = read(&source);
    let labels = strings(&fixture, "label");

    // Labels in the folders' names, as `partitionBy("label")` writes them; a
    // numeric column to bin a report by in the files.
    let by_label = dir.path().join("by-label");
    for (k, label) in labels.iter().enumerate() {
        let path = by_label.join(format!("label={}/part-{k:05}.parquet", label.as_deref().unwrap()));
        std::fs::create_dir_all(path.parent().unwrap()).unwrap();
        let row = fixture.slice(k, 1);
        let column = |name: &str| row.column_by_name(name).unwrap().clone();
        write_parquet(
            &path,
            vec![
                (Field::new("id", DataType::Int64, false), column("id")),
                (Field::new("image", column("image").data_type().clone(), false), column("image")),
                (Field::new("lens_theta_e", DataType::Float64, false), column("lens_theta_e")),
            ],
        );
    }
    let set = read_labelled_images(&by_label, "image").unwrap();
    assert_eq!(set.class_names, whole.class_names);
    // Rows come folder by folder: each image keeps its own label and id.
    assert_eq!(set.len(), 12);
    for row in 0..12 {
        let k = whole.ids.iter().position(|&id| id == set.ids[row]).unwrap();
        assert_eq!(set.labels[row], whole.labels[k]);
        assert_eq!(set.image(row), whole.image(k));
    }
    let theta = read_float_columns(&by_label, &["lens_theta_e"]).unwrap();
    assert_eq!(theta[0].1.len(), 12);

    // Labels in the files, and a file without them.
    let in_files = dir.path().join("in-files");
    part(&in_files.join("part.0.parquet"), &fixture, 0..6);
    let err = read_labelled_images(&in_files, "image").unwrap_err().to_string();
    assert!(err.contains("no `label_idx` or `label` column"), "{err}");
    std::fs::remove_file(in_files.join("part.0.parquet")).unwrap();
    let with_labels = |path: &Path, rows: std::ops::Range<usize>| {
        let slice = fixture.slice(rows.start, rows.len());
        let column = |name: &str| slice.column_by_name(name).unwrap().clone();
        write_parquet(
            path,
            vec![
                (Field::new("id", DataType::Int64, false), column("id")),
                (Field::new("label", DataType::Utf8, false), column("label")),
                (Field::new("image", column("image").data_type().clone(), false), column("image")),
            ],
        );
    };
    std::fs::create_dir_all(&in_files).unwrap();
    with_labels(&in_files.join("part.0.parquet"), 0..6);
    with_labels(&in_files.join("part.1.parquet"), 6..12);
    let set = read_labelled_images(&in_files, "image").unwrap();
    assert_eq!((&set.labels, &set.ids, &set.pixels), (&whole.labels, &whole.ids, &whole.pixels));
    part(&in_files.join("part.2.parquet"), &fixture, 0..1);
    let err = read_labelled_images(&in_files, "image").unwrap_err().to_string();
    assert!(err.contains("part.2.parquet") && err.contains("no column `label`"), "{err}");
}

/// A folder whose first file holds only null images in a list column (an empty
/// partition a distributed writer left, or a shard whose rows all failed
/// upstream): the image shape comes from the next file that has an image, as an
/// in-memory table's comes from its later batches, and each null image fails its
/// own row.
#[test]
fn a_first_file_of_null_images_leaves_the_shape_to_the_next() {
    use arrow_array::builder::{Float32Builder, ListBuilder};
    use arrow_array::Array;
    let dir = tempfile::tempdir().unwrap();
    let fixture = read(&crate::fixture("catalog/deeplense-model2-12.parquet"));
    let pixels = fixture.column_by_name("image").unwrap().as_fixed_size_list().values().clone();
    let pixels = pixels.as_primitive::<arrow_array::types::Float32Type>();
    let dataset = dir.path().join("parts");
    std::fs::create_dir_all(&dataset).unwrap();
    for (k, rows) in [(0, 0..3), (1, 3..12)] {
        let mut images = ListBuilder::new(Float32Builder::new());
        for row in rows.clone() {
            if k == 0 {
                images.append(false);
            } else {
                images.values().append_slice(&pixels.values()[row * 4096..(row + 1) * 4096]);
                images.append(true);
            }
        }
        let images = images.finish();
        let ids = arrow_array::Int64Array::from_iter_values(rows.map(|r| r as i64));
        write_parquet(
            &dataset.join(format!("part-{k}.parquet")),
            vec![
                (Field::new("id", DataType::Int64, false), std::sync::Arc::new(ids) as arrow_array::ArrayRef),
                (Field::new("image", images.data_type().clone(), true), std::sync::Arc::new(images)),
            ],
        );
    }
    let reader = open_input(std::slice::from_ref(&dataset), &InputOptions::default()).unwrap();
    assert_eq!((reader.describe().rows, reader.describe().image_shape), (12, [64, 64]));
    let out = dir.path().join("pred.parquet");
    predict(&predict_options(&[dataset], classifier(Path::new("bundled:classifier"), 5), &out)).unwrap();
    let status = strings(&read(&out), "status");
    assert!(status[..3].iter().all(|s| s.as_deref() == Some("skipped: null image")), "{status:?}");
    assert!(status[3..].iter().all(|s| s.as_ref().is_some_and(|s| !s.starts_with("skipped"))), "{status:?}");
}
