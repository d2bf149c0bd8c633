//! Remote objects: Parquet files and HATS catalogues at `s3://`, `https://` and
//! `http://` URLs, read with range requests through the object_store crate.
//!
//! The readers above are synchronous. Each opened object holds its own store and a
//! current-thread tokio runtime that drives it: nothing is process-global, and a
//! library caller may open several objects from several threads.
//!
//! Reads go through a [`RemoteReader`]'s cache of whole column chunks. The Parquet
//! decoder reads a page header (tens of bytes) and then its page, and the bounded
//! walk of `parquet_bounds` reads every page header first: one range request per
//! column chunk serves the walk and the decode after it. The cache keeps at most
//! [`CACHE_BYTES`]; column chunks larger than [`LARGEST_PREFETCH`] are read page by
//! page, and reads outside any column chunk (the footer) read [`READ_AHEAD`] bytes.
//!
//! Credentials and endpoints come from the environment variables the AWS tools
//! use: `AWS_ACCESS_KEY_ID`, `AWS_SECRET_ACCESS_KEY`, `AWS_SESSION_TOKEN`,
//! `AWS_REGION` / `AWS_DEFAULT_REGION`, `AWS_ENDPOINT_URL` (an S3-compatible
//! server: MinIO, Ceph, a data centre's own), `AWS_SKIP_SIGNATURE=true` for public
//! buckets. An `http://` endpoint is allowed when it is the one named.

use crate::{Error, Result};
use bytes::Bytes;
use object_store::path::Path as ObjectPath;
use object_store::{ObjectStore, ObjectStoreExt};
use std::collections::VecDeque;
use std::io::Read;
use std::ops::Range;
use std::path::Path;
use std::sync::{Arc, Mutex};

/// Bytes a reader's cache keeps (least recently fetched dropped first).
pub const CACHE_BYTES: usize = 512 << 20;
/// The largest column chunk fetched whole.
pub const LARGEST_PREFETCH: u64 = 256 << 20;
/// The least a read outside the column chunks fetches (backwards from the end of
/// the object near it).
pub const READ_AHEAD: u64 = 1 << 20;
/// The largest small object read whole (`hats.properties`, `partition_info.csv`).
pub const LARGEST_SMALL_OBJECT: u64 = 64 << 20;

const SCHEMES: [&str; 3] = ["s3://", "https://", "http://"];

/// Whether `location` is a URL this module reads, not a local path.
pub fn is_remote(location: &Path) -> bool {
    location.to_str().is_some_and(|s| SCHEMES.iter().any(|scheme| s.starts_with(scheme)))
}

/// A store and the key of one object in it, with the runtime that drives the store.
struct Connection {
    url: String,
    store: Arc<dyn ObjectStore>,
    key: ObjectPath,
    runtime: tokio::runtime::Runtime,
}

impl Connection {
    fn new(location: &Path) -> Result<Connection> {
        let url = location.to_string_lossy().into_owned();
        let bad = |why: String| Error::config("input", format!("{url}: {why}"));
        let (store, key): (Arc<dyn ObjectStore>, String) = if let Some(rest) = url.strip_prefix("s3://") {
            let (bucket, key) = rest.split_once('/').unwrap_or((rest, ""));
            if bucket.is_empty() {
                return Err(bad("no bucket in the URL".into()));
            }
            let mut builder = object_store::aws::AmazonS3Builder::from_env().with_bucket_name(bucket);
            let endpoint = std::env::var("AWS_ENDPOINT_URL").or_else(|_| std::env::var("AWS_ENDPOINT"));
            if endpoint.is_ok_and(|e| e.starts_with("http://")) {
                builder = builder.with_allow_http(true);
            }
            (Arc::new(builder.build().map_err(|e| bad(e.to_string()))?), key.to_string())
        } else {
            let scheme_end = url.find("://").expect("a remote URL") + 3;
            let host_end = url[scheme_end..].find('/').map_or(url.len(), |i| scheme_end + i);
            let options = object_store::ClientOptions::new().with_allow_http(url.starts_with("http://"));
            let store = object_store::http::HttpBuilder::new()
                .with_url(&url[..host_end])
                .with_client_options(options)
                .build()
                .map_err(|e| bad(e.to_string()))?;
            (Arc::new(store), url[host_end..].trim_start_matches('/').to_string())
        };
        let key = ObjectPath::parse(&key).map_err(|e| bad(e.to_string()))?;
        let runtime =
            tokio::runtime::Builder::new_current_thread().enable_all().build().map_err(|e| Error::io(location, e))?;
        Ok(Connection { url, store, key, runtime })
    }

    fn error(&self, e: object_store::Error) -> Error {
        Error::io(&self.url, io_error(e, String::new()))
    }

    /// A GET of `range` (`None`: the whole object), streamed and cut off one piece
    /// past `limit` bytes: what a server sends beyond what was asked is never buffered.
    fn get_bounded(&self, range: Option<Range<u64>>, limit: u64) -> object_store::Result<Vec<u8>> {
        use futures_util::StreamExt;
        self.runtime.block_on(async {
            let options = object_store::GetOptions::new().with_range(range);
            let mut stream = self.store.get_opts(&self.key, options).await?.into_stream();
            // Grown as bytes arrive: `limit` comes from sizes a hostile file declares.
            let mut bytes = Vec::with_capacity(limit.min(READ_AHEAD) as usize);
            while let Some(piece) = stream.next().await {
                bytes.extend_from_slice(&piece?);
                if bytes.len() as u64 > limit {
                    break;
                }
            }
            Ok(bytes)
        })
    }
}

/// An object_store error as an I/O error (a missing object as `NotFound`), `what`
/// said first.
fn io_error(e: object_store::Error, what: String) -> std::io::Error {
    let kind = match e {
        object_store::Error::NotFound { .. } => std::io::ErrorKind::NotFound,
        _ => std::io::ErrorKind::Other,
    };
    std::io::Error::new(kind, format!("{what}{e}"))
}

/// One remote object, its size and version as a HEAD request gave them.
pub struct RemoteObject {
    connection: Connection,
    size: u64,
    etag: Option<String>,
    modified: u64,
}

impl std::fmt::Debug for RemoteObject {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "RemoteObject({}, {} bytes)", self.connection.url, self.size)
    }
}

impl RemoteObject {
    /// Asks the store for the object at `location` (a `HEAD` request).
    pub fn open(location: &Path) -> Result<Arc<RemoteObject>> {
        let connection = Connection::new(location)?;
        let meta =
            connection.runtime.block_on(connection.store.head(&connection.key)).map_err(|e| connection.error(e))?;
        Ok(Arc::new(RemoteObject {
            size: meta.size,
            etag: meta.e_tag,
            modified: meta.last_modified.timestamp().max(0) as u64,
            connection,
        }))
    }

    /// The URL.
    pub fn url(&self) -> &str {
        &self.connection.url
    }

    /// Bytes in the object.
    pub fn size(&self) -> u64 {
        self.size
    }

    /// The store's version tag of the content (S3 and HTTP `ETag`), if it gives one.
    pub fn etag(&self) -> Option<&str> {
        self.etag.as_deref()
    }

    /// Last modification, seconds since 1970.
    pub fn modified(&self) -> u64 {
        self.modified
    }

    /// A reader with an empty cache.
    pub fn reader(self: &Arc<Self>) -> RemoteReader {
        RemoteReader { object: Arc::clone(self), state: Arc::new(Mutex::new(CacheState::default())) }
    }

    /// The bytes of `range`: a server that sends more or fewer is refused.
    fn fetch(&self, range: Range<u64>) -> std::io::Result<Bytes> {
        let c = &self.connection;
        let want = range.end - range.start;
        let bytes = c
            .get_bounded(Some(range.clone()), want)
            .map_err(|e| io_error(e, format!("bytes {}..{} of {}: ", range.start, range.end, c.url)))?;
        // A server that answers with other bytes than asked changed the object or ignores ranges.
        if bytes.len() as u64 != want {
            let sent = if bytes.len() as u64 > want { "more".to_string() } else { bytes.len().to_string() };
            return Err(std::io::Error::other(format!(
                "{}: asked for {want} bytes at {}, the server sent {sent}",
                c.url, range.start
            )));
        }
        Ok(Bytes::from(bytes))
    }
}

#[derive(Default)]
struct CacheState {
    /// Byte ranges of the column chunks, sorted by start: what a miss fetches whole.
    column_chunks: Vec<Range<u64>>,
    /// Fetched pieces, oldest first.
    pieces: VecDeque<(u64, Bytes)>,
    bytes: usize,
}

impl CacheState {
    fn cached(&self, at: u64) -> Option<Bytes> {
        self.pieces
            .iter()
            .find(|(start, b)| *start <= at && at < start + b.len() as u64)
            .map(|(start, b)| b.slice((at - start) as usize..))
    }

    /// The range a miss at `at` (wanting `len` bytes) fetches.
    fn to_fetch(&self, at: u64, len: u64, size: u64) -> Range<u64> {
        let end = at + len;
        let chunk =
            self.column_chunks.partition_point(|r| r.start <= at).checked_sub(1).map(|i| &self.column_chunks[i]);
        match chunk {
            Some(r) if end <= r.end && r.end - r.start <= LARGEST_PREFETCH && r.end <= size => r.clone(),
            _ => {
                // Near the end, read ahead backwards: the footer length comes first
                // and the footer just before it, in one request.
                let stop = end.max(at + READ_AHEAD).min(size);
                stop.saturating_sub(READ_AHEAD).min(at)..stop
            }
        }
    }

    fn keep(&mut self, start: u64, bytes: Bytes) {
        if bytes.len() > CACHE_BYTES {
            return;
        }
        self.bytes += bytes.len();
        self.pieces.push_back((start, bytes));
        while self.bytes > CACHE_BYTES {
            let (_, dropped) = self.pieces.pop_front().expect("bytes counted");
            self.bytes -= dropped.len();
        }
    }
}

/// Reads of one remote object through one cache; clones share it.
#[derive(Clone)]
pub struct RemoteReader {
    object: Arc<RemoteObject>,
    state: Arc<Mutex<CacheState>>,
}

impl RemoteReader {
    /// The object read.
    pub fn object(&self) -> &Arc<RemoteObject> {
        &self.object
    }

    /// Tells the cache the byte ranges of the file's column chunks, which a miss
    /// inside them fetches whole.
    pub fn set_column_chunks(&self, mut ranges: Vec<Range<u64>>) {
        ranges.sort_by_key(|r| r.start);
        self.state.lock().expect("not poisoned").column_chunks = ranges;
    }

    /// Up to `max` bytes from `at` (fewer at the end of a cached piece or the object).
    pub fn read_some(&self, at: u64, max: u64) -> std::io::Result<Bytes> {
        let size = self.object.size;
        if at >= size || max == 0 {
            return Ok(Bytes::new());
        }
        let max = max.min(size - at);
        let mut state = self.state.lock().expect("not poisoned");
        if let Some(bytes) = state.cached(at) {
            return Ok(bytes.slice(..(max as usize).min(bytes.len())));
        }
        let range = state.to_fetch(at, max, size);
        let fetched = self.object.fetch(range.clone())?;
        let out = fetched.slice((at - range.start) as usize..(at - range.start + max) as usize);
        state.keep(range.start, fetched);
        Ok(out)
    }

    /// Exactly `len` bytes from `at`: an error past the end, never a larger read.
    pub fn read_exact_at(&self, at: u64, len: u64) -> std::io::Result<Bytes> {
        if at.checked_add(len).is_none_or(|end| end > self.object.size) {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                format!("{} bytes at {at} run past the end of {} ({} bytes)", len, self.object.url(), self.object.size),
            ));
        }
        let first = self.read_some(at, len)?;
        if first.len() as u64 == len {
            return Ok(first);
        }
        // Across cached pieces: gather into one buffer, pieces fetched as needed.
        let mut out = Vec::with_capacity(len as usize);
        out.extend_from_slice(&first);
        while (out.len() as u64) < len {
            let piece = self.read_some(at + out.len() as u64, len - out.len() as u64)?;
            if piece.is_empty() {
                return Err(std::io::ErrorKind::UnexpectedEof.into());
            }
            out.extend_from_slice(&piece);
        }
        Ok(Bytes::from(out))
    }

    /// A [`Read`] from `at` on.
    pub fn stream_from(&self, at: u64) -> RemoteStream {
        RemoteStream { reader: self.clone(), at }
    }
}

/// Sequential reads of a [`RemoteReader`] from a position.
pub struct RemoteStream {
    reader: RemoteReader,
    at: u64,
}

impl Read for RemoteStream {
    fn read(&mut self, buf: &mut [u8]) -> std::io::Result<usize> {
        let bytes = self.reader.read_some(self.at, buf.len() as u64)?;
        buf[..bytes.len()].copy_from_slice(&bytes);
        self.at += bytes.len() as u64;
        Ok(bytes.len())
    }
}

/// A whole small object (`hats.properties`, `partition_info.csv`); `None` when the
/// store has no object there. Objects over [`LARGEST_SMALL_OBJECT`] are refused.
pub fn read_small_object(location: &Path) -> Result<Option<Vec<u8>>> {
    let object = match RemoteObject::open(location) {
        Ok(object) => object,
        Err(Error::Io { cause, .. }) if cause.kind() == std::io::ErrorKind::NotFound => return Ok(None),
        Err(e) => return Err(e),
    };
    if object.size > LARGEST_SMALL_OBJECT {
        return Err(Error::config(
            "input",
            format!(
                "{}: {} bytes (files read whole here are <= {LARGEST_SMALL_OBJECT})",
                location.display(),
                object.size
            ),
        ));
    }
    // A plain GET: a web server need not answer ranges for these.
    let bytes = object.connection.get_bounded(None, LARGEST_SMALL_OBJECT).map_err(|e| object.connection.error(e))?;
    if bytes.len() as u64 > LARGEST_SMALL_OBJECT {
        return Err(Error::config("input", format!("{}: more than {LARGEST_SMALL_OBJECT} bytes", location.display())));
    }
    Ok(Some(bytes))
}

/// Keys under the remote folder `location`, relative to it (S3 lists; a plain HTTP
/// server cannot, and says so in the error).
pub fn list_folder(location: &Path) -> Result<Vec<String>> {
    use futures_util::TryStreamExt;
    let connection = Connection::new(location)?;
    let prefix = connection.key.clone();
    let listed: Vec<object_store::ObjectMeta> = connection
        .runtime
        .block_on(connection.store.list(Some(&prefix)).try_collect())
        .map_err(|e| connection.error(e))?;
    let base = prefix.as_ref().len();
    Ok(listed
        .into_iter()
        .map(|m| m.location.as_ref()[base..].trim_start_matches('/').to_string())
        .filter(|k| !k.is_empty())
        .collect())
}

#[cfg(test)]
mod tests {
    use super::*;
    use std::path::PathBuf;

    #[test]
    fn urls_are_told_from_paths_and_path_join_extends_them() {
        assert!(is_remote(Path::new("s3://bucket/cat")));
        assert!(is_remote(Path::new("https://data.example.org/cat/")));
        assert!(!is_remote(Path::new("/data/s3://x")));
        assert!(!is_remote(Path::new("cat.parquet")));
        // Members of a remote folder are named with `Path::join`, as on disk.
        assert_eq!(Path::new("s3://b/cat/").join("dataset/x.parquet"), PathBuf::from("s3://b/cat/dataset/x.parquet"));
        assert_eq!(Path::new("https://h/cat").join("hats.properties").to_str(), Some("https://h/cat/hats.properties"));
    }

    #[test]
    fn a_miss_fetches_its_whole_column_chunk_unless_it_is_too_large() {
        let mut state =
            CacheState { column_chunks: vec![100..300, 300..(300 + LARGEST_PREFETCH + 1)], ..Default::default() };
        let size = 10 * LARGEST_PREFETCH;
        assert_eq!(state.to_fetch(150, 10, size), 100..300);
        // Running past the chunk's end, or in a chunk too large: what was asked, read ahead.
        assert_eq!(state.to_fetch(290, 20, size), 290..290 + READ_AHEAD);
        assert_eq!(state.to_fetch(400, 10, size), 400..400 + READ_AHEAD);
        assert_eq!(state.to_fetch(10, 5, 50), 0..50);
        // The last 8 bytes of a large object: the megabyte before them too (the footer).
        assert_eq!(state.to_fetch(size - 8, 8, size), size - READ_AHEAD..size);
        state.keep(100, Bytes::from(vec![7u8; 200]));
        assert_eq!(state.cached(299).map(|b| b.len()), Some(1));
        assert!(state.cached(300).is_none());
        // The cache drops its oldest pieces past its bound.
        state.keep(1000, Bytes::from(vec![0u8; CACHE_BYTES - 100]));
        assert!(state.cached(150).is_none() && state.bytes == CACHE_BYTES - 100);
    }
}
