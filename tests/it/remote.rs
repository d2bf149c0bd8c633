//! Remote catalogues over HTTP: a range-capable web server started by the test
//! serves fixtures, and the stage reads them by URL as it reads them on disk.
//! (S3 is tested in `python/tests/test_remote.py` against moto's S3 server.)

use lensmae::stage::{predict, InputOptions, PredictOptions};
use std::io::{BufRead, BufReader, Write};
use std::net::{TcpListener, TcpStream};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

/// One request the server answered.
#[derive(Debug, Clone)]
struct Served {
    method: String,
    path: String,
    range: Option<String>,
    status: u16,
}

/// How the test's web server answers a range request.
#[derive(Clone, Copy, PartialEq)]
enum Answer {
    /// With the bytes asked for.
    Ranges,
    /// With the whole file, as servers that ignore ranges do.
    Whole,
    /// With the range's header and a megabyte more than asked for (a hostile server).
    Oversized,
}

/// A web server on 127.0.0.1 serving the files under `root` (HEAD, GET, single
/// `Range: bytes=a-b`), recording every request.
struct WebServer {
    url: String,
    log: Arc<Mutex<Vec<Served>>>,
}

impl WebServer {
    fn start(root: &Path, answer: Answer) -> WebServer {
        let listener = TcpListener::bind("127.0.0.1:0").unwrap();
        let url = format!("http://{}", listener.local_addr().unwrap());
        let log = Arc::new(Mutex::new(Vec::new()));
        let (root, served) = (root.to_path_buf(), Arc::clone(&log));
        std::thread::spawn(move || {
            for stream in listener.incoming().flatten() {
                let (root, served) = (root.clone(), Arc::clone(&served));
                std::thread::spawn(move || serve(stream, &root, answer, &served));
            }
        });
        WebServer { url, log }
    }

    fn requests(&self) -> Vec<Served> {
        self.log.lock().unwrap().clone()
    }
}

fn serve(stream: TcpStream, root: &Path, answer: Answer, log: &Mutex<Vec<Served>>) {
    let mut reader = BufReader::new(stream.try_clone().unwrap());
    let mut out = stream;
    loop {
        let mut request_line = String::new();
        if reader.read_line(&mut request_line).unwrap_or(0) == 0 {
            return;
        }
        let mut range = None;
        loop {
            let mut header = String::new();
            if reader.read_line(&mut header).unwrap_or(0) == 0 || header.trim().is_empty() {
                break;
            }
            if let Some((name, value)) = header.split_once(':') {
                if name.eq_ignore_ascii_case("range") {
                    range = Some(value.trim().to_string());
                }
            }
        }
        let mut parts = request_line.split_whitespace();
        let (method, path) = (parts.next().unwrap_or("").to_string(), parts.next().unwrap_or("/").to_string());
        let file = root.join(path.trim_start_matches('/'));
        let content = if path.contains("..") { None } else { std::fs::read(&file).ok().filter(|_| file.is_file()) };
        let (status, head, body) = match content {
            None => (404, String::new(), Vec::new()),
            Some(bytes) => {
                let etag =
                    format!("\"{}-{:x}\"", bytes.len(), bytes.iter().fold(0u64, |h, &b| h.wrapping_mul(31) ^ b as u64));
                let total = bytes.len();
                let asked = range.as_deref().filter(|_| answer != Answer::Whole && method == "GET").and_then(|r| {
                    let (a, b) = r.strip_prefix("bytes=")?.split_once('-')?;
                    let start: usize = a.parse().ok()?;
                    let end: usize = b.parse::<usize>().map_or(total - 1, |e| e.min(total - 1));
                    (start <= end).then_some((start, end))
                });
                match asked {
                    Some((a, b)) => {
                        let mut body = bytes[a..=b].to_vec();
                        if answer == Answer::Oversized {
                            body.resize(body.len() + (1 << 20), 0);
                        }
                        (206, format!("ETag: {etag}\r\nContent-Range: bytes {a}-{b}/{total}\r\n"), body)
                    }
                    None => (200, format!("ETag: {etag}\r\n"), bytes),
                }
            }
        };
        log.lock().unwrap().push(Served { method: method.clone(), path, range, status });
        let reason = match status {
            200 => "OK",
            206 => "Partial Content",
            _ => "Not Found",
        };
        let response = format!(
            "HTTP/1.1 {status} {reason}\r\n{head}Content-Length: {}\r\nAccept-Ranges: bytes\r\n\r\n",
            body.len()
        );
        if out.write_all(response.as_bytes()).is_err() || (method != "HEAD" && out.write_all(&body).is_err()) {
            return;
        }
        let _ = out.flush();
    }
}

/// The HATS fixture's 16x16 cutouts through the test classifier, into a new folder.
fn options(input: PathBuf, out: PathBuf) -> PredictOptions {
    let (clf, _) = crate::stage::models();
    let base = crate::stage::predict_options(&[input], crate::stage::classifier(clf, 8), &out);
    PredictOptions { input: InputOptions { shape: Some([16, 16]), ..Default::default() }, overwrite: false, ..base }
}

/// Every row of every Parquet file under `dir`, by relative path.
fn tables_under(dir: &Path) -> Vec<(String, arrow_array::RecordBatch)> {
    let mut found: Vec<PathBuf> = Vec::new();
    let mut stack = vec![dir.to_path_buf()];
    while let Some(d) = stack.pop() {
        for entry in std::fs::read_dir(&d).unwrap() {
            let path = entry.unwrap().path();
            if path.is_dir() {
                stack.push(path);
            } else if path.extension().is_some_and(|e| e == "parquet") {
                found.push(path);
            }
        }
    }
    found.sort();
    found
        .into_iter()
        .map(|p| {
            let name = p.strip_prefix(dir).unwrap().display().to_string();
            (name, crate::stage::read(&p))
        })
        .collect()
}

#[test]
fn a_hats_catalogue_over_http_gives_the_rows_it_gives_on_disk() {
    let fixtures = crate::fixture("");
    let server = WebServer::start(&fixtures, Answer::Ranges);
    let dir = tempfile::tempdir().unwrap();
    let local = predict(&options(crate::fixture("hats-cutouts"), dir.path().join("local"))).unwrap();
    let url = PathBuf::from(format!("{}/hats-cutouts", server.url));
    let remote = predict(&options(url.clone(), dir.path().join("remote"))).unwrap();
    assert_eq!((local.rows, remote.rows), (40, 40));
    assert_eq!(remote.catalogue_finished, Some(true));
    let (a, b) = (tables_under(&dir.path().join("local")), tables_under(&dir.path().join("remote")));
    assert_eq!(a.len(), 11);
    assert_eq!(a.iter().map(|t| &t.0).collect::<Vec<_>>(), b.iter().map(|t| &t.0).collect::<Vec<_>>());
    for ((name, x), (_, y)) in a.iter().zip(&b) {
        // Provenance (command, time, input) differs; every column is the same.
        assert_eq!(x.columns(), y.columns(), "{name}");
    }

    // A web server cannot list: the partitions came from partition_info.csv, and
    // the partition files were read with range requests, never whole.
    let served = server.requests();
    assert!(served.iter().any(|s| s.path.ends_with("/partition_info.csv")));
    let partition_gets: Vec<&Served> =
        served.iter().filter(|s| s.method == "GET" && s.path.contains("/Npix=")).collect();
    assert!(!partition_gets.is_empty());
    assert!(partition_gets.iter().all(|s| s.range.is_some() && s.status == 206), "{partition_gets:?}");

    // The manifest fingerprints each partition object by size and ETag.
    let manifest = std::fs::read_to_string(dir.path().join("remote").join(lensmae::stage::chunks::MANIFEST)).unwrap();
    let manifest: serde_json::Value = serde_json::from_str(&manifest).unwrap();
    let prints = manifest["fingerprints"].as_array().unwrap();
    assert_eq!(prints.len(), 11);
    assert!(prints.iter().all(|p| p["version"].as_str().is_some_and(|e| e.starts_with('"'))), "{prints:?}");
}

#[test]
fn a_parquet_file_over_http_reads_as_on_disk_and_failures_name_the_url() {
    let fixtures = crate::fixture("");
    let server = WebServer::start(&fixtures, Answer::Ranges);
    let partition = "hats-cutouts/dataset/Norder=0/Dir=0/Npix=1.parquet";
    let input = InputOptions { shape: Some([16, 16]), ..Default::default() };
    let (local, _) = crate::stage::read_pixels(&crate::fixture(partition), input.clone());
    let url = PathBuf::from(format!("{}/{partition}", server.url));
    let (remote, _) = crate::stage::read_pixels(&url, input.clone());
    assert!(!local.is_empty());
    assert_eq!(local, remote);

    let missing = PathBuf::from(format!("{}/hats-cutouts/nothing.parquet", server.url));
    let e = lensmae::stage::open_input(&[missing], &input).err().unwrap().to_string();
    assert!(e.contains("/hats-cutouts/nothing.parquet"), "{e}");
    let fits = PathBuf::from(format!("{}/x.fits", server.url));
    let e = lensmae::stage::open_input(&[fits], &input).err().unwrap().to_string();
    assert!(e.contains("URLs are read as Parquet files, S3 folders of them or HATS catalogues"), "{e}");

    // A server that ignores ranges is refused with the reason, not read whole.
    let whole = WebServer::start(&fixtures, Answer::Whole);
    let url = PathBuf::from(format!("{}/{partition}", whole.url));
    let e = lensmae::stage::open_input(&[url], &input).err().unwrap().to_string();
    assert!(e.contains("Npix=1.parquet") && e.to_lowercase().contains("range"), "{e}");
    // One that sends more than asked is cut off and refused, not buffered whole.
    let oversized = WebServer::start(&fixtures, Answer::Oversized);
    let url = PathBuf::from(format!("{}/{partition}", oversized.url));
    let e = lensmae::stage::open_input(&[url], &input).err().unwrap().to_string();
    assert!(e.contains("Npix=1.parquet") && e.contains("the server sent more"), "{e}");
}

#[test]
fn a_hostile_parquet_file_over_http_is_refused_as_on_disk() {
    let fuzz = crate::fixture("fuzz");
    let server = WebServer::start(&fuzz, Answer::Ranges);
    let name = "parquet-map-of-booleans.parquet";
    let local_path = fuzz.join(name);
    let url = format!("{}/{name}", server.url);
    let input = InputOptions { image_column: Some("tensor".into()), ..Default::default() };
    let local = read_all(&local_path, &input).unwrap_err();
    let remote = read_all(Path::new(&url), &input).unwrap_err();
    // The same walk refuses it for the same reason (a remote file's pages are walked
    // when its rows are read rather than when it is opened).
    assert_eq!(remote.replace(&url, &local_path.display().to_string()), local);
}

/// Every batch of an input, or the first error.
fn read_all(path: &Path, input: &InputOptions) -> Result<usize, String> {
    let mut reader = lensmae::stage::open_input(&[path.to_path_buf()], input).map_err(|e| e.to_string())?;
    let mut rows = 0;
    while let Some(batch) = reader.next_batch(64).map_err(|e| e.to_string())? {
        rows += batch.len();
    }
    Ok(rows)
}
