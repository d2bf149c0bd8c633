//! Arrow IPC files: the file format (`.arrow`, `.feather`: Feather v2) and the
//! stream format written to a file (`.arrows`), read message by message and
//! written batch by batch.
//!
//! arrow-ipc trusts what a file declares: it allocates a message's metadata and
//! body lengths before reading them, a compressed buffer's uncompressed length
//! before inflating it, and panics on a buffer that points past its body. So
//! [`IpcTable`] frames every message itself and checks it before the crate
//! decodes it: metadata up to [`MAX_METADATA_BYTES`] and a verified flatbuffer,
//! a body within the bytes left before the file's footer, every buffer inside its
//! body, at most [`MAX_BODY_BYTES`] once inflated, and no more rows than the
//! body's bits could hold; a compressed buffer is inflated once and counted, and
//! must come to what it declares. The crate then decodes only the columns asked
//! for and validates every array it builds.
//!
//! The file format is read through its footer's list of messages, as pyarrow
//! reads it: writers differ in what they put between the magic and the first
//! listed message (polars writes no standard message there).

pub mod cutouts;
pub mod table_writer;

use crate::{Error, Result};
use arrow_array::{ArrayRef, RecordBatch};
use arrow_buffer::Buffer;
use arrow_ipc::{root_as_message, Message, MessageHeader, MetadataVersion};
use arrow_schema::{DataType, SchemaRef};
use std::collections::HashMap;
use std::fs::File;
use std::io::{Read, Seek, SeekFrom};
use std::os::unix::fs::FileExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

/// The largest message metadata read (a schema or a batch's buffer list; writers
/// put kilobytes there).
pub const MAX_METADATA_BYTES: u64 = 64 << 20;
/// The largest record batch read, its buffers inflated: 65,536 cutouts of 64x64
/// float32 (pyarrow's default batch of a Feather file) take 1 GiB.
pub const MAX_BODY_BYTES: u64 = 4 << 30;

/// The file format's first (and last) bytes.
const FILE_MAGIC: &[u8; 6] = b"ARROW1";
/// What precedes each message's metadata length since Arrow 0.15.
const CONTINUATION: [u8; 4] = [0xff; 4];
/// The file format's end: the footer's length (4 bytes) and the magic.
const TRAILER_BYTES: u64 = 10;

/// The two layouts of Arrow IPC.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum IpcFormat {
    /// The random-access file format (`.arrow`, `.feather`): magic, messages, footer.
    File,
    /// The stream format (`.arrows`): messages up to an end-of-stream marker.
    Stream,
}

impl IpcFormat {
    /// The format a file of this name is written in: `.arrow`, `.feather`, `.ipc`
    /// as files, `.arrows` as a stream; `None` for other names.
    pub fn for_name(path: &Path) -> Option<IpcFormat> {
        match path.extension()?.to_str()?.to_ascii_lowercase().as_str() {
            "arrow" | "feather" | "ipc" => Some(IpcFormat::File),
            "arrows" => Some(IpcFormat::Stream),
            _ => None,
        }
    }

    /// The format of the file at `path` by its first bytes (the file format's
    /// magic, or a stream's first continuation marker); `None` for another file.
    pub fn of_file(path: &Path) -> Result<Option<IpcFormat>> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let mut head = Vec::with_capacity(8);
        file.take(8).read_to_end(&mut head).map_err(|e| Error::io(path, e))?;
        Ok(if head.starts_with(FILE_MAGIC) {
            Some(IpcFormat::File)
        } else if head.len() == 8 && head.starts_with(&CONTINUATION) {
            Some(IpcFormat::Stream)
        } else {
            None
        })
    }
}

/// An Arrow IPC error naming the file.
fn ipc_error(path: &Path, message: impl Into<String>) -> Error {
    Error::Table { path: path.to_path_buf(), message: format!("Arrow IPC: {}", message.into()) }
}

/// One message's metadata, checked, and where its body lies.
struct Frame {
    /// The flatbuffer `Message` (verified when the frame was read).
    metadata: Vec<u8>,
    /// The body's first byte in the file.
    body_at: u64,
    /// The body's length.
    body_len: u64,
}

impl Frame {
    fn message(&self) -> Message<'_> {
        root_as_message(&self.metadata).expect("verified when framed")
    }
}

/// Where a message of the file format lies, as its footer lists it.
#[derive(Debug, Clone, Copy)]
struct Block {
    /// The message's first byte (its length prefix).
    offset: u64,
    /// The prefix, the flatbuffer and its padding.
    metadata_len: u64,
}

/// How the messages are found.
enum Messages {
    /// One after another, up to the end-of-stream marker or the end of the file.
    Stream { position: u64, finished: bool },
    /// The record batches the file format's footer lists, the next one to read
    /// (its dictionaries were read when the file was opened).
    File { batches: Vec<Block>, next: usize },
}

/// A table in an Arrow IPC file, read record batch by record batch.
pub struct IpcTable {
    path: PathBuf,
    file: File,
    format: IpcFormat,
    messages: Messages,
    /// Where the file's messages end: the file format's footer, or its end.
    end: u64,
    schema: SchemaRef,
    version: MetadataVersion,
    dictionaries: HashMap<i64, ArrayRef>,
}

impl IpcTable {
    /// Opens `path` and reads its schema (and, in the file format, its dictionaries).
    pub fn open(path: &Path) -> Result<IpcTable> {
        let format = IpcFormat::of_file(path)?.ok_or_else(|| {
            ipc_error(
                path,
                "neither the file format (it begins with `ARROW1`) nor the stream format (Feather v1 files, \
                 which begin with `FEA1`, are not read: write them again with pyarrow's `feather.write_feather`)",
            )
        })?;
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        let size = file.metadata().map_err(|e| Error::io(path, e))?.len();
        let mut table = IpcTable {
            path: path.to_path_buf(),
            file,
            format,
            messages: Messages::Stream { position: 0, finished: false },
            end: size,
            schema: Arc::new(arrow_schema::Schema::empty()),
            version: MetadataVersion::V5,
            dictionaries: HashMap::new(),
        };
        match format {
            IpcFormat::Stream => {
                let frame =
                    table.next_frame()?.ok_or_else(|| ipc_error(path, "no schema: the stream holds no message"))?;
                let message = frame.message();
                let fb = message.header_as_schema().ok_or_else(|| {
                    ipc_error(path, format!("the first message is a {:?}, not the schema", message.header_type()))
                })?;
                table.schema =
                    Arc::new(guarded(path, || arrow_ipc::convert::try_fb_to_schema(fb).map_err(|e| e.to_string()))?);
                table.version = message.version();
                table.skip(&frame);
            }
            IpcFormat::File => table.read_footer(size)?,
        }
        Ok(table)
    }

    /// The file format's footer: its schema, the blocks of its record batches,
    /// and its dictionaries, read now.
    fn read_footer(&mut self, size: u64) -> Result<()> {
        let path = self.path.clone();
        let start = footer_start(&self.file, size).map_err(|m| ipc_error(&path, m))?;
        let length = size - TRAILER_BYTES - start;
        if length > MAX_METADATA_BYTES {
            return Err(ipc_error(&path, format!("a footer of {length} bytes, more than the 64 MiB allowed")));
        }
        let mut bytes = vec![0u8; length as usize];
        self.file.read_exact_at(&mut bytes, start).map_err(|e| Error::io(&path, e))?;
        let footer = arrow_ipc::root_as_footer(&bytes)
            .map_err(|e| ipc_error(&path, format!("the footer is not a valid footer: {e}")))?;
        let fb = footer.schema().ok_or_else(|| ipc_error(&path, "the footer holds no schema"))?;
        self.schema = Arc::new(guarded(&path, || arrow_ipc::convert::try_fb_to_schema(fb).map_err(|e| e.to_string()))?);
        self.version = footer.version();
        self.end = start;
        let blocks = |list: Vec<arrow_ipc::Block>| -> Result<Vec<Block>> {
            list.iter()
                .map(|b| {
                    let offset = u64::try_from(b.offset()).ok().filter(|&o| o >= 8);
                    let metadata_len = u64::try_from(b.metaDataLength()).ok().filter(|&m| m >= 4);
                    let body = u64::try_from(b.bodyLength()).ok();
                    match (offset, metadata_len, body) {
                        (Some(offset), Some(metadata_len), Some(body))
                            if offset.checked_add(metadata_len).and_then(|e| e.checked_add(body)).is_some_and(|e| e <= start) =>
                        {
                            Ok(Block { offset, metadata_len })
                        }
                        _ => Err(ipc_error(
                            &path,
                            format!(
                                "the footer lists a message of {} + {} bytes at byte {}, outside the {start} bytes before it",
                                b.metaDataLength(),
                                b.bodyLength(),
                                b.offset()
                            ),
                        )),
                    }
                })
                .collect()
        };
        let dictionaries = blocks(footer.dictionaries().map(|v| v.iter().cloned().collect()).unwrap_or_default())?;
        let batches = blocks(footer.recordBatches().map(|v| v.iter().cloned().collect()).unwrap_or_default())?;
        self.messages = Messages::File { batches, next: 0 };
        for block in dictionaries {
            let frame = self.frame_at(block)?;
            let message = frame.message();
            if message.header_type() != MessageHeader::DictionaryBatch {
                return Err(ipc_error(
                    &path,
                    format!("the dictionary at byte {} is a {:?}", block.offset, message.header_type()),
                ));
            }
            let body = self.body(&frame)?;
            self.read_dictionary(&frame.message(), &body)?;
        }
        Ok(())
    }

    /// The table's columns and metadata.
    pub fn schema(&self) -> &SchemaRef {
        &self.schema
    }

    /// File or stream.
    pub fn format(&self) -> IpcFormat {
        self.format
    }

    /// The next record batch, of the columns `projection` (indices into the
    /// schema; all when `None`), or `None` at the end.
    pub fn next_batch(&mut self, projection: Option<&[usize]>) -> Result<Option<RecordBatch>> {
        let Some(frame) = self.next_record_batch()? else { return Ok(None) };
        let body = self.body(&frame)?;
        let message = frame.message();
        let batch = message.header_as_record_batch().expect("a record batch's frame");
        let (schema, dictionaries, version) = (self.schema.clone(), &self.dictionaries, self.version);
        guarded(&self.path, || {
            arrow_ipc::reader::read_record_batch(&body, batch, schema, dictionaries, projection, &version)
                .map_err(|e| e.to_string())
        })
        .map(Some)
    }

    /// Passes over the next record batch without decoding it; its rows, or `None`
    /// at the end.
    pub fn skip_batch(&mut self) -> Result<Option<usize>> {
        let Some(frame) = self.next_record_batch()? else { return Ok(None) };
        let rows = self.declared_rows(&frame)?;
        self.skip(&frame);
        Ok(Some(rows))
    }

    /// The rows of every record batch from here on, from the messages' metadata
    /// (no batch's body is decoded).
    pub fn batch_rows(mut self) -> Result<Vec<usize>> {
        std::iter::from_fn(|| self.skip_batch().transpose()).collect()
    }

    /// The next record batch's frame, its body unread; a stream's dictionaries on
    /// the way are read (later batches use them), other messages passed over.
    fn next_record_batch(&mut self) -> Result<Option<Frame>> {
        loop {
            let Some(frame) = self.next_frame()? else { return Ok(None) };
            match frame.message().header_type() {
                MessageHeader::RecordBatch => return Ok(Some(frame)),
                MessageHeader::DictionaryBatch => {
                    let body = self.body(&frame)?;
                    self.read_dictionary(&frame.message(), &body)?;
                }
                _ => self.skip(&frame),
            }
        }
    }

    fn read_dictionary(&mut self, message: &Message<'_>, body: &Buffer) -> Result<()> {
        let dictionary = message.header_as_dictionary_batch().expect("the header's type");
        let (schema, version) = (self.schema.clone(), self.version);
        let dictionaries = &mut self.dictionaries;
        guarded(&self.path, || {
            arrow_ipc::reader::read_dictionary(body, dictionary, &schema, dictionaries, &version)
                .map_err(|e| e.to_string())
        })
    }

    /// The next message: a stream's next one (`None` at its end-of-stream
    /// marker or the end of the file), or the next record batch the file
    /// format's footer lists.
    fn next_frame(&mut self) -> Result<Option<Frame>> {
        match &mut self.messages {
            Messages::File { batches, next } => {
                let Some(&block) = batches.get(*next) else { return Ok(None) };
                *next += 1;
                self.frame_at(block).map(Some)
            }
            Messages::Stream { position, finished } => {
                if *finished || *position >= self.end {
                    return Ok(None);
                }
                let at = *position;
                let frame = self.frame_from(at, self.end - at, None)?;
                if frame.is_none() {
                    if let Messages::Stream { finished, .. } = &mut self.messages {
                        *finished = true;
                    }
                }
                Ok(frame)
            }
        }
    }

    /// The message the file format's footer lists at `block`.
    fn frame_at(&mut self, block: Block) -> Result<Frame> {
        self.frame_from(block.offset, self.end - block.offset, Some(block.metadata_len))?.ok_or_else(|| {
            ipc_error(&self.path, format!("the message at byte {} is an end-of-stream marker", block.offset))
        })
    }

    /// Reads the message whose length prefix is at byte `at`, with `left` bytes
    /// of messages from there (and, from a footer, `metadata_len` bytes of prefix,
    /// flatbuffer and padding); `None` for an end-of-stream marker.
    fn frame_from(&mut self, at: u64, left: u64, metadata_len: Option<u64>) -> Result<Option<Frame>> {
        let path = self.path.clone();
        let err = |m: String| ipc_error(&path, format!("the message at byte {at}: {m}"));
        let mut prefix = [0u8; 8];
        let prefix_len = if left >= 8 { 8 } else { 4 };
        if left < 4 {
            return Err(err(format!("{left} bytes are left, too few for a message's length (a file cut short?)")));
        }
        self.read_exact_at(&mut prefix[..prefix_len], at)?;
        // Since Arrow 0.15 a continuation marker precedes the length.
        let (length, header) = if prefix[..4] == CONTINUATION {
            if prefix_len < 8 {
                return Err(err("cut short after its continuation marker".into()));
            }
            (i32::from_le_bytes(prefix[4..8].try_into().expect("4 bytes")), 8)
        } else {
            (i32::from_le_bytes(prefix[..4].try_into().expect("4 bytes")), 4)
        };
        if length == 0 {
            if let Messages::Stream { position, .. } = &mut self.messages {
                *position = at + header;
            }
            return Ok(None);
        }
        let length = u64::try_from(length).map_err(|_| err(format!("declares {length} bytes of metadata")))?;
        let available = left - header;
        let room = metadata_len.map_or(available, |m| m.saturating_sub(header).min(available));
        if length > MAX_METADATA_BYTES || length > room {
            return Err(err(format!(
                "declares {length} bytes of metadata, {room} are left{}",
                if length > MAX_METADATA_BYTES { " (or more than the 64 MiB allowed)" } else { "" }
            )));
        }
        let mut metadata = vec![0u8; length as usize];
        self.read_exact_at(&mut metadata, at + header)?;
        let message = root_as_message(&metadata).map_err(|e| err(format!("not a valid message: {e}")))?;
        let body_at = at + metadata_len.unwrap_or(header + length);
        let body_len = u64::try_from(message.bodyLength())
            .map_err(|_| err(format!("a body of {} bytes", message.bodyLength())))?;
        let left = self.end.saturating_sub(body_at);
        if body_len > left {
            return Err(err(format!("declares a body of {body_len} bytes, {left} are left (a file cut short?)")));
        }
        if body_len > MAX_BODY_BYTES {
            return Err(self.too_large(at, body_len));
        }
        if let Messages::Stream { position, .. } = &mut self.messages {
            *position = body_at;
        }
        Ok(Some(Frame { metadata, body_at, body_len }))
    }

    /// Reads `frame`'s body and checks every buffer its batch declares against it.
    fn body(&mut self, frame: &Frame) -> Result<Buffer> {
        let mut body = Vec::new();
        body.try_reserve_exact(frame.body_len as usize)
            .map_err(|e| ipc_error(&self.path, format!("a body of {} bytes: {e}", frame.body_len)))?;
        let mut file = &self.file;
        file.seek(SeekFrom::Start(frame.body_at)).map_err(|e| Error::io(&self.path, e))?;
        file.take(frame.body_len).read_to_end(&mut body).map_err(|e| Error::io(&self.path, e))?;
        if body.len() as u64 != frame.body_len {
            return Err(ipc_error(&self.path, format!("the body at byte {} ends early", frame.body_at)));
        }
        self.skip(frame);
        let codec = batch_of(&frame.message()).and_then(|batch| batch.compression()).map(|c| c.codec());
        self.check_buffers(frame, |offset, length| {
            let (start, end) = (offset as usize, (offset + length) as usize);
            let declared = i64::from_le_bytes(body[start..start + 8].try_into().expect("checked inside the body"));
            // (More than a batch may hold is refused by the sum, without inflating.)
            if let (Some(codec), Ok(declared @ ..=MAX_BODY_BYTES)) = (codec, u64::try_from(declared)) {
                check_inflated(codec, &body[start + 8..end], declared).map_err(|m| {
                    ipc_error(&self.path, format!("the batch whose body is at byte {}: {m}", frame.body_at))
                })?;
            }
            Ok(declared)
        })?;
        Ok(Buffer::from_vec(body))
    }

    /// The rows `frame`'s record batch declares, checked against its buffers as
    /// [`IpcTable::body`] checks them (reading only compressed buffers' prefixes).
    fn declared_rows(&self, frame: &Frame) -> Result<usize> {
        let file = &self.file;
        self.check_buffers(frame, |offset, _| {
            let mut word = [0u8; 8];
            file.read_exact_at(&mut word, frame.body_at + offset).map_err(|e| Error::io(&self.path, e))?;
            Ok(i64::from_le_bytes(word))
        })
    }

    /// Checks the buffers of `frame`'s record batch (or dictionary batch) lie in
    /// its body, that inflated they stay within [`MAX_BODY_BYTES`] (`prefix`
    /// reads the uncompressed length of the compressed buffer at an offset, of a
    /// length), and that the batch declares no more rows than they have bits; the
    /// batch's rows.
    fn check_buffers(&self, frame: &Frame, prefix: impl Fn(u64, u64) -> Result<i64>) -> Result<usize> {
        let message = frame.message();
        let at = frame.body_at;
        if !matches!(message.header_type(), MessageHeader::RecordBatch | MessageHeader::DictionaryBatch) {
            return Ok(0);
        }
        let batch = batch_of(&message);
        let bad = |why: String| Err(ipc_error(&self.path, format!("the batch whose body is at byte {at}: {why}")));
        let Some(batch) = batch else { return bad("no record batch in the message".into()) };
        let Ok(rows) = u64::try_from(batch.length()) else { return bad(format!("{} rows", batch.length())) };
        for node in batch.nodes().iter().flatten() {
            if node.length() < 0 || node.null_count() < 0 || node.null_count() > node.length() {
                return bad(format!("a column of {} values with {} nulls", node.length(), node.null_count()));
            }
        }
        let compressed = batch.compression().is_some();
        let mut inflated = 0u64;
        let mut lengths = Vec::new();
        for buffer in batch.buffers().iter().flatten() {
            let (offset, length) = (buffer.offset(), buffer.length());
            let inside = u64::try_from(offset)
                .ok()
                .zip(u64::try_from(length).ok())
                .filter(|&(o, l)| o.checked_add(l).is_some_and(|end| end <= frame.body_len));
            let Some((offset, length)) = inside else {
                return bad(format!("a buffer of {length} bytes at {offset}, outside its body of {}", frame.body_len));
            };
            let length = match (compressed, length) {
                (false, _) | (true, 0) => length,
                (true, 1..8) => return bad(format!("a compressed buffer of {length} bytes, without its length")),
                (true, _) => match prefix(offset, length)? {
                    -1 => length - 8,
                    n if n >= 0 => n as u64,
                    n => return bad(format!("a compressed buffer declaring {n} bytes")),
                },
            };
            lengths.push(length);
            inflated += length;
            if inflated > MAX_BODY_BYTES {
                return Err(self.too_large(at, inflated));
            }
        }
        if rows > inflated.saturating_mul(8).saturating_add(64) {
            return bad(format!("{rows} rows in {inflated} bytes of buffers"));
        }
        // The columns the buffers belong to: the schema's, or the one column of a
        // dictionary's values.
        let columns: Vec<DataType> = match message.header_as_dictionary_batch() {
            #[allow(deprecated)] // arrow-ipc itself finds a dictionary's field by its id
            Some(dictionary) => match self.schema.fields_with_dict_id(dictionary.id()).first().map(|f| f.data_type()) {
                Some(DataType::Dictionary(_, values)) => vec![values.as_ref().clone()],
                _ => vec![],
            },
            None => self.schema.fields().iter().map(|f| f.data_type().clone()).collect(),
        };
        let node_lengths: Vec<u64> = batch.nodes().iter().flatten().map(|n| n.length() as u64).collect();
        let mut nodes = node_lengths.into_iter();
        let mut buffers = lengths.into_iter();
        let v5 = self.version >= MetadataVersion::V5;
        for column in &columns {
            match typed_buffers_whole(column, &mut nodes, &mut buffers, v5) {
                Ok(true) => {}
                Ok(false) => break,
                Err(why) => return bad(why),
            }
        }
        Ok(rows as usize)
    }

    fn too_large(&self, at: u64, bytes: u64) -> Error {
        ipc_error(
            &self.path,
            format!(
                "the batch at byte {at} holds {:.1} GiB, more than the {} GiB read at once: write smaller batches \
                 (pyarrow: `feather.write_feather(table, path, chunksize=8192)`)",
                bytes as f64 / (1u64 << 30) as f64,
                MAX_BODY_BYTES >> 30
            ),
        )
    }

    /// Moves a stream past `frame`'s body.
    fn skip(&mut self, frame: &Frame) {
        if let Messages::Stream { position, .. } = &mut self.messages {
            *position = frame.body_at + frame.body_len;
        }
    }

    fn read_exact_at(&self, buf: &mut [u8], at: u64) -> Result<()> {
        if at.saturating_add(buf.len() as u64) > self.end {
            return Err(ipc_error(&self.path, format!("{} bytes at byte {at} run past the messages' end", buf.len())));
        }
        self.file.read_exact_at(buf, at).map_err(|e| Error::io(&self.path, e))
    }
}

/// Walks the buffers of a column of type `column` in the order arrow-ipc reads
/// them (`nodes`: each array's length; `buffers`: each buffer's length once
/// inflated) and checks those the crate reads as typed slices: offsets and
/// dictionary keys must hold whole values (its validation asserts it: a panic),
/// a union's type ids and offsets one per value (it slices them unchecked).
/// `Ok(false)` where the walk stops: a type it does not follow (views, list
/// views), or buffers that run out (the crate says so itself).
fn typed_buffers_whole(
    column: &DataType,
    nodes: &mut impl Iterator<Item = u64>,
    buffers: &mut impl Iterator<Item = u64>,
    v5: bool,
) -> std::result::Result<bool, String> {
    use DataType::*;
    let whole = |length: u64, width: u64, what: &str| {
        if length % width == 0 {
            Ok(())
        } else {
            Err(format!("{what} of {length} bytes, not a whole number of {width}-byte values"))
        }
    };
    let Some(length) = nodes.next() else { return Ok(false) };
    let mut next = |count: usize| -> Option<Vec<u64>> { (0..count).map(|_| buffers.next()).collect() };
    match column {
        Null => {}
        Utf8 | Binary | LargeUtf8 | LargeBinary => {
            let Some(b) = next(3) else { return Ok(false) };
            let width = if matches!(column, Utf8 | Binary) { 4 } else { 8 };
            whole(b[1], width, "an offsets buffer")?;
        }
        List(item) | LargeList(item) | Map(item, _) => {
            let Some(b) = next(2) else { return Ok(false) };
            whole(b[1], if matches!(column, LargeList(_)) { 8 } else { 4 }, "an offsets buffer")?;
            return typed_buffers_whole(item.data_type(), nodes, buffers, v5);
        }
        FixedSizeList(item, _) => {
            if next(1).is_none() {
                return Ok(false);
            }
            return typed_buffers_whole(item.data_type(), nodes, buffers, v5);
        }
        Struct(fields) => {
            if next(1).is_none() {
                return Ok(false);
            }
            for field in fields {
                if !typed_buffers_whole(field.data_type(), nodes, buffers, v5)? {
                    return Ok(false);
                }
            }
        }
        RunEndEncoded(run_ends, values) => {
            return Ok(typed_buffers_whole(run_ends.data_type(), nodes, buffers, v5)?
                && typed_buffers_whole(values.data_type(), nodes, buffers, v5)?);
        }
        Dictionary(key, _) => {
            let Some(b) = next(2) else { return Ok(false) };
            let width = key.primitive_width().unwrap_or(1) as u64;
            whole(b[1], width, "a dictionary's key buffer")?;
        }
        Union(fields, mode) => {
            if !v5 && next(1).is_none() {
                return Ok(false);
            }
            let Some(type_ids) = next(1) else { return Ok(false) };
            if type_ids[0] < length {
                return Err(format!("a union of {length} values with {} type ids", type_ids[0]));
            }
            if *mode == arrow_schema::UnionMode::Dense {
                let Some(offsets) = next(1) else { return Ok(false) };
                if offsets[0] < length.saturating_mul(4) {
                    return Err(format!("a union of {length} values with {} bytes of offsets", offsets[0]));
                }
            }
            for (_, field) in fields.iter() {
                if !typed_buffers_whole(field.data_type(), nodes, buffers, v5)? {
                    return Ok(false);
                }
            }
        }
        Utf8View | BinaryView | ListView(_) | LargeListView(_) => return Ok(false),
        _ => {
            if next(2).is_none() {
                return Ok(false);
            }
        }
    }
    Ok(true)
}

/// Inflates a compressed buffer without keeping what it inflates to, stopping one
/// byte past `declared`: the crate allocates the declared length before it
/// inflates, so a few bytes declaring gigabytes would cost gigabytes. A buffer
/// that inflates to what it declares costs no more than its data.
fn check_inflated(codec: arrow_ipc::CompressionType, data: &[u8], declared: u64) -> std::result::Result<(), String> {
    let decoder: Box<dyn Read + '_> = match codec {
        arrow_ipc::CompressionType::LZ4_FRAME => Box::new(lz4_flex::frame::FrameDecoder::new(data)),
        arrow_ipc::CompressionType::ZSTD => match zstd::stream::read::Decoder::with_buffer(data) {
            Ok(decoder) => Box::new(decoder),
            Err(e) => return Err(format!("its zstd data cannot be read: {e}")),
        },
        other => return Err(format!("compression {other:?}, which Arrow IPC does not define")),
    };
    let inflated = std::io::copy(&mut decoder.take(declared.saturating_add(1)), &mut std::io::sink());
    match inflated {
        Ok(n) if n == declared => Ok(()),
        Ok(n) if n > declared => Err(format!("a compressed buffer inflates past the {declared} bytes it declares")),
        Ok(n) => Err(format!("a compressed buffer declares {declared} bytes, it inflates to {n}")),
        Err(e) => Err(format!("a compressed buffer cannot be inflated: {e}")),
    }
}

/// The buffers and nodes of a record batch message, or of a dictionary batch's values.
fn batch_of<'a>(message: &Message<'a>) -> Option<arrow_ipc::RecordBatch<'a>> {
    match message.header_type() {
        MessageHeader::RecordBatch => message.header_as_record_batch(),
        MessageHeader::DictionaryBatch => message.header_as_dictionary_batch().and_then(|d| d.data()),
        _ => None,
    }
}

/// Where the file format's messages end: its footer's first byte, from the
/// trailer (the footer's length, then the magic).
fn footer_start(file: &File, size: u64) -> std::result::Result<u64, String> {
    if size < 8 + TRAILER_BYTES {
        return Err(format!("{size} bytes: too short for the file format"));
    }
    let mut trailer = [0u8; TRAILER_BYTES as usize];
    file.read_exact_at(&mut trailer, size - TRAILER_BYTES).map_err(|e| e.to_string())?;
    if &trailer[4..] != FILE_MAGIC {
        return Err("the file does not end with `ARROW1` (a file cut short, or still being written?)".into());
    }
    let footer = i32::from_le_bytes(trailer[..4].try_into().expect("4 bytes"));
    u64::try_from(footer)
        .ok()
        .and_then(|footer| (size - TRAILER_BYTES).checked_sub(footer))
        .filter(|&start| start >= 8)
        .ok_or_else(|| format!("the trailer declares a footer of {footer} bytes in a file of {size}"))
}

/// Runs an arrow-ipc decoder call, turning a panic on a malformed file into an
/// error naming it (the checks above keep the crate's known ones from happening).
fn guarded<T>(path: &Path, call: impl FnOnce() -> std::result::Result<T, String>) -> Result<T> {
    crate::data::contain_decoder_panic(call).and_then(|r| r).map_err(|m| ipc_error(path, m))
}

/// Every batch of the columns `names` of the IPC file `path`, in order; a
/// missing column is the error `missing` words.
pub fn for_each_batch(
    path: &Path,
    names: &[&str],
    missing: &dyn Fn(&str) -> String,
    mut each: impl FnMut(RecordBatch) -> Result<()>,
) -> Result<()> {
    let mut table = IpcTable::open(path)?;
    let projection: Vec<usize> = names
        .iter()
        .map(|name| table.schema().index_of(name).map_err(|_| ipc_error(path, missing(name))))
        .collect::<Result<_>>()?;
    while let Some(batch) = table.next_batch(Some(&projection))? {
        each(batch)?;
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow_array::{Float32Array, Int64Array};
    use arrow_schema::{DataType, Field, Schema};

    fn table(rows: usize) -> (SchemaRef, Vec<RecordBatch>) {
        let schema = Arc::new(Schema::new(vec![
            Field::new("id", DataType::Int64, false),
            Field::new("flux", DataType::Float32, true),
        ]));
        let batches = (0..3)
            .map(|b| {
                let ids = Int64Array::from_iter_values((0..rows as i64).map(|i| 100 * b + i));
                let flux = Float32Array::from_iter_values((0..rows).map(|i| i as f32 * 0.5));
                RecordBatch::try_new(schema.clone(), vec![Arc::new(ids), Arc::new(flux)]).expect("a batch")
            })
            .collect();
        (schema, batches)
    }

    fn write(path: &Path, format: IpcFormat, compression: Option<arrow_ipc::CompressionType>) {
        let (schema, batches) = table(5);
        let options = arrow_ipc::writer::IpcWriteOptions::default().try_with_compression(compression).expect("codec");
        let file = File::create(path).expect("scratch");
        match format {
            IpcFormat::File => {
                let mut w = arrow_ipc::writer::FileWriter::try_new_with_options(file, &schema, options).expect("w");
                batches.iter().for_each(|b| w.write(b).expect("written"));
                w.finish().expect("finished");
            }
            IpcFormat::Stream => {
                let mut w = arrow_ipc::writer::StreamWriter::try_new_with_options(file, &schema, options).expect("w");
                batches.iter().for_each(|b| w.write(b).expect("written"));
                w.finish().expect("finished");
            }
        }
    }

    #[test]
    fn files_and_streams_read_back_batch_by_batch() {
        let dir = tempfile::tempdir().expect("scratch");
        for (name, format, compression) in [
            ("plain.arrow", IpcFormat::File, None),
            ("lz4.feather", IpcFormat::File, Some(arrow_ipc::CompressionType::LZ4_FRAME)),
            ("zstd.arrows", IpcFormat::Stream, Some(arrow_ipc::CompressionType::ZSTD)),
        ] {
            let path = dir.path().join(name);
            write(&path, format, compression);
            assert_eq!(IpcFormat::of_file(&path).expect("readable"), Some(format), "{name}");
            assert_eq!(IpcFormat::for_name(&path), Some(format), "{name}");
            assert_eq!(IpcTable::open(&path).and_then(IpcTable::batch_rows).expect("counted"), vec![5, 5, 5], "{name}");
            let mut t = IpcTable::open(&path).expect("opens");
            assert_eq!(t.skip_batch().expect("skipped"), Some(5));
            let batch = t.next_batch(Some(&[0])).expect("decoded").expect("a batch");
            assert_eq!(batch.num_columns(), 1, "only the column asked for");
            let ids = batch.column(0).as_any().downcast_ref::<Int64Array>().expect("ids");
            assert_eq!(ids.values().to_vec(), vec![100, 101, 102, 103, 104], "{name}");
            assert!(t.next_batch(None).expect("decoded").is_some());
            assert!(t.next_batch(None).expect("the end").is_none());
        }
    }

    #[test]
    fn declared_sizes_beyond_the_file_are_refused_before_anything_is_allocated() {
        let dir = tempfile::tempdir().expect("scratch");
        let path = dir.path().join("t.arrows");
        write(&path, IpcFormat::Stream, None);
        let good = std::fs::read(&path).expect("written");
        // The schema message's metadata length, then a batch's body length, made huge.
        let mut huge_metadata = good.clone();
        huge_metadata[4..8].copy_from_slice(&0x7fff_fff0i32.to_le_bytes());
        std::fs::write(&path, &huge_metadata).expect("scratch");
        let why = IpcTable::open(&path).err().expect("refused").to_string();
        assert!(why.contains("bytes of metadata"), "{why}");
        // Cut short in the last batch's body.
        std::fs::write(&path, &good[..good.len() - 20]).expect("scratch");
        let mut t = IpcTable::open(&path).expect("the schema is whole");
        let why = (0..4).find_map(|_| t.next_batch(None).err()).expect("refused").to_string();
        assert!(why.contains("a file cut short"), "{why}");
        // Not IPC at all.
        std::fs::write(&path, b"PAR1 and more bytes").expect("scratch");
        assert!(IpcTable::open(&path).err().expect("refused").to_string().contains("neither"));
    }

    #[test]
    fn a_file_whose_trailer_lies_is_refused() {
        let dir = tempfile::tempdir().expect("scratch");
        let path = dir.path().join("t.arrow");
        write(&path, IpcFormat::File, None);
        let mut bytes = std::fs::read(&path).expect("written");
        let n = bytes.len();
        bytes[n - 10..n - 6].copy_from_slice(&i32::MAX.to_le_bytes());
        std::fs::write(&path, &bytes).expect("scratch");
        let why = IpcTable::open(&path).err().expect("refused").to_string();
        assert!(why.contains("declares a footer"), "{why}");
        std::fs::write(&path, &bytes[..n - 3]).expect("scratch");
        let why = IpcTable::open(&path).err().expect("refused").to_string();
        assert!(why.contains("does not end with"), "{why}");
    }
}
