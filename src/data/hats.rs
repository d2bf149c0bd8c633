//! HATS catalogues (what LSDB opens): `hats.properties` at the root, partition
//! files at `dataset/Norder=k/Dir=D/Npix=n.parquet`, `partition_info.csv`.
//!
//! An input catalogue is read partition by partition (each partition file is a
//! chunk), and a folder output mirrors its partitions, so the predictions form a
//! sibling catalogue with the same HEALPix pixels, carrying `_healpix_29`, `ra`,
//! `dec` and the id: LSDB joins the two without repartitioning. The catalogue's
//! metadata is written once every partition is done.

use crate::data::atomic::write_atomically;
use crate::data::parquet::table_writer::TableWriter;
use crate::data::remote;
use crate::{Error, Result};
use arrow_schema::SchemaRef;
use std::collections::BTreeMap;
use std::path::{Path, PathBuf};

/// `schema` with its tensor columns as plain fixed-size lists, their shape kept
/// as field metadata `lensmae:shape` (`[H, W]`): astropy's `Table.read` cannot
/// read a partition holding an Arrow extension type, and a HATS catalogue is
/// read partition by partition by tools that know nothing of lensmae.
pub fn plain_tensor_columns(schema: &SchemaRef) -> SchemaRef {
    use crate::data::parquet::{EXTENSION_METADATA_KEY, EXTENSION_NAME_KEY};
    let fields: Vec<arrow_schema::Field> = schema
        .fields()
        .iter()
        .map(|f| {
            let mut metadata = f.metadata().clone();
            let Some(parameters) = metadata.remove(EXTENSION_METADATA_KEY) else { return f.as_ref().clone() };
            metadata.remove(EXTENSION_NAME_KEY);
            let shape = serde_json::from_str::<serde_json::Value>(&parameters)
                .ok()
                .and_then(|v| v.get("shape").map(|s| s.to_string()))
                .unwrap_or(parameters);
            metadata.insert("lensmae:shape".to_string(), shape);
            f.as_ref().clone().with_metadata(metadata)
        })
        .collect();
    SchemaRef::new(arrow_schema::Schema::new_with_metadata(fields, schema.metadata().clone()))
}

/// The properties file of a catalogue root (older catalogues call it `properties`).
fn properties_path(dir: &Path) -> Option<PathBuf> {
    ["hats.properties", "properties"].iter().map(|n| dir.join(n)).find(|p| p.is_file())
}

/// Whether `dir` is a HATS catalogue (a remote one: whether it has a properties
/// file; a URL naming a `.parquet` file is not asked).
pub fn is_catalogue(dir: &Path) -> Result<bool> {
    if remote::is_remote(dir) {
        let named_file = dir.extension().is_some_and(|e| e.eq_ignore_ascii_case("parquet") || e == "pq");
        return Ok(!named_file && remote_properties(dir)?.is_some());
    }
    Ok(dir.is_dir() && properties_path(dir).is_some() && dir.join("dataset").is_dir())
}

/// The text of a remote catalogue's properties file, if it has one.
fn remote_properties(dir: &Path) -> Result<Option<String>> {
    for name in ["hats.properties", "properties"] {
        let path = dir.join(name);
        if let Some(bytes) = remote::read_small_object(&path)? {
            return utf8_text(&path, bytes).map(Some);
        }
    }
    Ok(None)
}

fn utf8_text(path: &Path, bytes: Vec<u8>) -> Result<String> {
    String::from_utf8(bytes).map_err(|_| Error::config("input", format!("{}: not UTF-8 text", path.display())))
}

/// `key=value` lines of a properties file (comments and blank lines skipped).
pub fn read_properties(dir: &Path) -> Result<BTreeMap<String, String>> {
    let missing = || Error::config("input", format!("{}: no hats.properties", dir.display()));
    let text = if remote::is_remote(dir) {
        remote_properties(dir)?.ok_or_else(missing)?
    } else {
        // Bounded as remote ones are: a hostile catalogue's properties file may be
        // gigabytes of sparse file.
        let path = properties_path(dir).ok_or_else(missing)?;
        let bytes = crate::data::read_whole_at_most(&path, remote::LARGEST_SMALL_OBJECT)?.map_err(|_| {
            let largest = remote::LARGEST_SMALL_OBJECT;
            Error::config(
                "input",
                format!("{}: more than {largest} bytes (files read whole here are <= that)", path.display()),
            )
        })?;
        utf8_text(&path, bytes)?
    };
    Ok(text
        .lines()
        .map(str::trim)
        .filter(|l| !l.is_empty() && !l.starts_with('#'))
        .filter_map(|l| l.split_once('=').map(|(k, v)| (k.trim().to_string(), v.trim().to_string())))
        .collect())
}

/// `Norder=k` / `Npix=n` of a partition path.
fn order_and_pixel(relative: &Path) -> Option<(u8, u64)> {
    let mut order = None;
    let mut pixel = None;
    for part in relative.components() {
        let part = part.as_os_str().to_string_lossy();
        let stem = part.strip_suffix(".parquet").unwrap_or(&part);
        if let Some(k) = stem.strip_prefix("Norder=") {
            order = k.parse().ok();
        } else if let Some(n) = stem.strip_prefix("Npix=") {
            pixel = n.parse().ok();
        }
    }
    Some((order?, pixel?))
}

/// The partition files of a catalogue, paths relative to its root, in (order,
/// pixel) order; `Npix=n/` folders of several files are read file by file. A
/// remote catalogue in S3 is listed; on a web server, which cannot list, its
/// `partition_info.csv` names the partitions.
pub fn partition_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = if remote::is_remote(dir) { remote_partition_files(dir)? } else { local_partition_files(dir)? };
    found.sort_by_key(|p| (order_and_pixel(p), p.clone()));
    if found.is_empty() {
        return Err(Error::config("input", format!("{}: a HATS catalogue without partition files", dir.display())));
    }
    Ok(found)
}

/// Whether `name` (a file name) is a partition file rather than metadata or a temporary.
fn is_partition_file(name: &str) -> bool {
    name.ends_with(".parquet") && !name.starts_with('_') && !name.starts_with('.')
}

fn remote_partition_files(dir: &Path) -> Result<Vec<PathBuf>> {
    if dir.to_string_lossy().starts_with("s3://") {
        let listed = remote::list_folder(&dir.join("dataset"))?;
        return Ok(listed
            .iter()
            .filter(|key| key.rsplit('/').next().is_some_and(is_partition_file))
            .map(|key| Path::new("dataset").join(key))
            .filter(|relative| order_and_pixel(relative).is_some())
            .collect());
    }
    let info = dir.join("partition_info.csv");
    let bytes = remote::read_small_object(&info)?.ok_or_else(|| {
        Error::config(
            "input",
            format!("{}: no partition_info.csv (a web server cannot list the partitions without it)", dir.display()),
        )
    })?;
    partitions_of_info(&String::from_utf8_lossy(&bytes))
        .map_err(|why| Error::config("input", format!("{}: {why}", info.display())))
}

/// The partition files `partition_info.csv` names (columns `Norder` and `Npix`).
fn partitions_of_info(text: &str) -> std::result::Result<Vec<PathBuf>, String> {
    let mut lines = text.lines().filter(|l| !l.trim().is_empty());
    let header: Vec<&str> = lines.next().ok_or("empty")?.split(',').map(str::trim).collect();
    let column = |name: &str| header.iter().position(|h| *h == name).ok_or(format!("no column `{name}`"));
    let (order_col, pixel_col) = (column("Norder")?, column("Npix")?);
    lines
        .enumerate()
        .map(|(i, line)| {
            let values: Vec<&str> = line.split(',').map(str::trim).collect();
            let value = |c: usize| values.get(c).and_then(|v| v.parse::<u64>().ok());
            let (Some(order), Some(pixel)) = (value(order_col), value(pixel_col)) else {
                return Err(format!("line {}: `{line}` has no Norder and Npix", i + 2));
            };
            if order > 29 {
                return Err(format!("line {}: order {order} (HEALPix orders go to 29)", i + 2));
            }
            let dir = pixel / 10_000 * 10_000;
            Ok(PathBuf::from(format!("dataset/Norder={order}/Dir={dir}/Npix={pixel}.parquet")))
        })
        .collect()
}

fn local_partition_files(dir: &Path) -> Result<Vec<PathBuf>> {
    let mut found = Vec::new();
    let into_folder = |name: &str| ["Norder=", "Dir=", "Npix="].iter().any(|level| name.starts_with(level));
    crate::data::walk_files(&dir.join("dataset"), into_folder, |path, name| {
        if path.is_file() && is_partition_file(name) {
            let relative = path.strip_prefix(dir).expect("under the root").to_path_buf();
            if order_and_pixel(&relative).is_some() {
                found.push(relative);
            }
        }
    })?;
    Ok(found)
}

/// Writes `hats.properties`, `partition_info.csv` and `dataset/_common_metadata` of
/// the predictions catalogue `out`, once every partition file in `partitions`
/// (relative paths) exists; returns whether it did.
pub fn finish_catalogue(
    out: &Path,
    input: &BTreeMap<String, String>,
    partitions: &[(String, usize)],
    schema: SchemaRef,
) -> Result<bool> {
    if partitions.iter().any(|(p, _)| !out.join(p).exists()) {
        return Ok(false);
    }
    let rows: usize = partitions.iter().map(|p| p.1).sum();
    let name =
        out.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_else(|| "lensmae_predictions".into());
    // The predictions are a sibling of the input: its name, when it has one.
    let name = input.get("obs_collection").cloned().unwrap_or(name);
    let mut props = BTreeMap::from([
        ("obs_collection".to_string(), name),
        ("hats_creation_date".to_string(), chrono::Utc::now().format("%Y-%m-%dT%H:%MUTC").to_string()),
        ("dataproduct_type".to_string(), input.get("dataproduct_type").cloned().unwrap_or_else(|| "object".into())),
        ("hats_nrows".to_string(), rows.to_string()),
        ("hats_builder".to_string(), format!("lensmae v{}", env!("CARGO_PKG_VERSION"))),
    ]);
    let columns: Vec<&str> = schema.fields().iter().map(|f| f.name().as_str()).collect();
    let copied = [
        "hats_col_ra",
        "hats_col_dec",
        "hats_col_healpix",
        "hats_col_healpix_order",
        "hats_npix_suffix",
        "hats_max_rows",
        "hats_order",
        "hats_version",
        "moc_sky_fraction",
    ];
    for key in copied {
        if let Some(v) = input.get(key) {
            // A column key only where the predictions carry that column.
            if !key.starts_with("hats_col_") || key == "hats_col_healpix_order" || columns.contains(&v.as_str()) {
                props.insert(key.to_string(), v.clone());
            }
        }
    }
    let text: String = props.iter().map(|(k, v)| format!("{k}={v}\n")).collect();
    write_atomically(&out.join("hats.properties"), text)?;
    let mut pixels: Vec<(u8, u64)> = partitions.iter().filter_map(|(p, _)| order_and_pixel(Path::new(p))).collect();
    pixels.dedup();
    let csv: String =
        std::iter::once("Norder,Npix\n".to_string()).chain(pixels.iter().map(|(k, n)| format!("{k},{n}\n"))).collect();
    write_atomically(&out.join("partition_info.csv"), csv)?;
    TableWriter::create(&out.join("dataset").join("_common_metadata"), schema, true)?.finish()?;
    write_metadata_file(out, partitions)?;
    Ok(true)
}

/// `dataset/_metadata`: every partition file's row groups in one footer, each
/// column chunk naming its file (relative to `dataset/`), as pyarrow's
/// `write_metadata` makes it; hats and LSDB plan reads from it.
fn write_metadata_file(out: &Path, partitions: &[(String, usize)]) -> Result<()> {
    use parquet::file::metadata::{FileMetaData, ParquetMetaDataBuilder, ParquetMetaDataReader, ParquetMetaDataWriter};
    let parquet_error = |path: &Path, e: parquet::errors::ParquetError| Error::Parquet {
        path: path.to_path_buf(),
        message: e.to_string(),
    };
    let (mut first, mut groups, mut rows) = (None, Vec::new(), 0i64);
    for (relative, _) in partitions {
        let path = out.join(relative);
        let file = std::fs::File::open(&path).map_err(|e| Error::io(&path, e))?;
        let metadata = ParquetMetaDataReader::new().parse_and_finish(&file).map_err(|e| parquet_error(&path, e))?;
        let in_dataset = Path::new(relative).strip_prefix("dataset").unwrap_or(Path::new(relative));
        let file_path = in_dataset.to_string_lossy().replace('\\', "/");
        rows += metadata.file_metadata().num_rows();
        for group in metadata.row_groups() {
            let columns = group
                .columns()
                .iter()
                .map(|c| c.clone().into_builder().set_file_path(file_path.clone()).build())
                .collect::<parquet::errors::Result<Vec<_>>>()
                .map_err(|e| parquet_error(&path, e))?;
            groups.push(
                group
                    .clone()
                    .into_builder()
                    .set_column_metadata(columns)
                    .build()
                    .map_err(|e| parquet_error(&path, e))?,
            );
        }
        first.get_or_insert_with(|| metadata.file_metadata().clone());
    }
    let Some(first) = first else { return Ok(()) };
    let file_metadata = FileMetaData::new(
        first.version(),
        rows,
        first.created_by().map(String::from),
        first.key_value_metadata().cloned(),
        first.schema_descr_ptr(),
        first.column_orders().cloned(),
    );
    let metadata = ParquetMetaDataBuilder::new(file_metadata).set_row_groups(groups).build();
    let target = out.join("dataset").join("_metadata");
    let mut bytes = b"PAR1".to_vec();
    ParquetMetaDataWriter::new(&mut bytes, &metadata).finish().map_err(|e| parquet_error(&target, e))?;
    write_atomically(&target, bytes)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_properties_file_larger_than_metadata_ever_is_refused_unread() {
        let dir = tempfile::tempdir().unwrap();
        std::fs::create_dir(dir.path().join("dataset")).unwrap();
        let path = dir.path().join("hats.properties");
        std::fs::write(&path, "obs_collection=cutouts\nhats_order=3\n").unwrap();
        assert_eq!(read_properties(dir.path()).unwrap()["hats_order"], "3");
        // A sparse file of 64 MiB + 1: no disk used, and none of it read into memory.
        std::fs::File::options().write(true).open(&path).unwrap().set_len(remote::LARGEST_SMALL_OBJECT + 1).unwrap();
        let e = read_properties(dir.path()).unwrap_err().to_string();
        assert!(e.contains("hats.properties") && e.contains("more than 67108864 bytes"), "{e}");
    }

    #[cfg(unix)]
    #[test]
    fn folders_linked_back_up_or_across_the_tree_are_walked_once() {
        let dir = tempfile::tempdir().unwrap();
        let order = dir.path().join("dataset/Norder=0");
        std::fs::create_dir_all(order.join("Dir=0")).unwrap();
        std::fs::write(order.join("Dir=0/Npix=1.parquet"), b"").unwrap();
        std::fs::write(order.join("Dir=0/Npix=2.parquet"), b"").unwrap();
        for (link, target) in [("Dir=1", ".."), ("Dir=2", ".."), ("Npix=3", ".."), ("Dir=10000", "Dir=0")] {
            std::os::unix::fs::symlink(target, order.join(link)).unwrap();
        }
        std::os::unix::fs::symlink("..", order.join("Dir=0/Npix=4")).unwrap();
        let files = partition_files(dir.path()).unwrap();
        assert_eq!(files.len(), 2, "{files:?}");
        assert!(files.iter().all(|f| f.starts_with("dataset/Norder=0")), "{files:?}");
    }

    #[test]
    fn partition_info_names_the_partition_files_and_bad_lines_are_refused() {
        let files = partitions_of_info("Norder,Npix,num_rows\n0,1,4\n\n3,10401,2\n").unwrap();
        assert_eq!(
            files,
            [
                PathBuf::from("dataset/Norder=0/Dir=0/Npix=1.parquet"),
                "dataset/Norder=3/Dir=10000/Npix=10401.parquet".into()
            ]
        );
        assert!(partitions_of_info("Npix\n1\n").unwrap_err().contains("no column `Norder`"));
        assert!(partitions_of_info("Norder,Npix\n0,x\n").unwrap_err().contains("line 2"));
        assert!(partitions_of_info("Norder,Npix\n30,1\n").unwrap_err().contains("order 30"));
    }
}
