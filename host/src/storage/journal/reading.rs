//! Reading the journal: forwards from a position, with its archives, and backwards a
//! block at a time (the newest records first, without reading the whole history).

use super::*;

/// What was read back, with anything wrong in it (tests read a journal whole; the
/// daemon and the commands never do).
#[cfg(test)]
#[derive(Debug, Default)]
pub(crate) struct Contents {
    /// The records, in file order.
    pub records: Vec<Record>,
    /// One sentence per line that could not be read (a torn last line after a crash).
    pub problems: Vec<String>,
}

/// Reads a journal; a missing file is an empty one. Lines that cannot be read are
/// reported and skipped, never fatal.
#[cfg(test)]
pub(crate) fn read(path: &Path) -> io::Result<Contents> {
    let mut records = Vec::new();
    let problems = each(path, |record| records.push(record))?;
    Ok(Contents { records, problems })
}

/// Hands every record of a journal to `take`, in file order, holding one line at a time
/// in memory; returns one sentence per line that could not be read. A missing file is
/// an empty one.
#[cfg(test)]
pub(crate) fn each(path: &Path, take: impl FnMut(Record)) -> io::Result<Vec<String>> {
    each_from(path, 0, take).map(|(_, problems)| problems)
}

/// The same from byte `offset` on (the start of a line); also returns where the last
/// whole line ends (a line still being written, or torn, is left for later).
pub(crate) fn each_from(
    path: &Path,
    offset: u64,
    mut take: impl FnMut(Record),
) -> io::Result<(u64, Vec<String>)> {
    each_line_from(path, offset, |line| {
        take(serde_json::from_str(line)?);
        Ok(())
    })
}

/// The same with each line's text (trimmed, never blank) handed to `take`, which reads
/// what it needs of it: an error it returns makes the line unreadable.
pub(crate) fn each_line_from(
    path: &Path,
    offset: u64,
    mut take: impl FnMut(&str) -> Result<(), serde_json::Error>,
) -> io::Result<(u64, Vec<String>)> {
    let mut file = match fs::File::open(path) {
        Ok(f) => f,
        Err(e) if e.kind() == io::ErrorKind::NotFound => return Ok((0, Vec::new())),
        Err(e) => return Err(e),
    };
    file.seek(SeekFrom::Start(offset))?;
    let mut end = offset;
    let mut problems = Vec::new();
    let mut reader = io::BufReader::new(file);
    let mut line = Vec::new();
    let mut number = 0;
    loop {
        let LineRead {
            taken,
            complete,
            too_long,
        } = next_line(&mut reader, &mut line, MAX_LINE)?;
        if taken == 0 {
            break;
        }
        number += 1;
        if complete {
            end += taken;
        }
        if too_long {
            problems.push(format!(
                "{}: line {number} is longer than {} MiB, no record (zeros after a crash?); ignored",
                path.display(),
                MAX_LINE >> 20
            ));
            continue;
        }
        // Lines the monkey wrote are UTF-8: checked the quick way first.
        let text = match std::str::from_utf8(&line) {
            Ok(text) => std::borrow::Cow::Borrowed(text),
            Err(_) => String::from_utf8_lossy(&line),
        };
        if text.trim().is_empty() {
            continue;
        }
        match take(text.trim_end()) {
            Ok(()) => {}
            Err(_) if !complete => problems.push(format!(
                "{}: line {number} is torn (the daemon stopped while writing it); ignored",
                path.display()
            )),
            // Serde quotes what it could not read: text of the journal's, escaped.
            Err(e) => problems.push(format!(
                "{}: line {number} is unreadable ({}); ignored",
                path.display(),
                crate::support::text::escape_controls(&e.to_string())
            )),
        }
    }
    Ok((end, problems))
}

/// What [`next_line`] read.
#[derive(Debug, PartialEq, Eq)]
pub(super) struct LineRead {
    /// The bytes the line took in the file (0: the file's end).
    pub(super) taken: u64,
    /// Whether it ended with a newline (else the file ended first).
    pub(super) complete: bool,
    /// Whether it was longer than the longest kept, and dropped.
    pub(super) too_long: bool,
}

/// Reads the next line into `line` (its newline kept), as `read_until` would, but keeps
/// at most `max` bytes of it: a longer line is read to its end and dropped, so that
/// memory does not grow with a run of zeros or garbage in a journal.
pub(super) fn next_line(
    reader: &mut impl BufRead,
    line: &mut Vec<u8>,
    max: usize,
) -> io::Result<LineRead> {
    line.clear();
    let mut read = LineRead {
        taken: 0,
        complete: false,
        too_long: false,
    };
    while !read.complete {
        let available = match reader.fill_buf() {
            Ok(available) => available,
            Err(e) if e.kind() == io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(e),
        };
        if available.is_empty() {
            break;
        }
        let part = match memchr::memchr(b'\n', available) {
            Some(at) => {
                read.complete = true;
                &available[..=at]
            }
            None => available,
        };
        if !read.too_long && line.len() + part.len() <= max {
            line.extend_from_slice(part);
        } else {
            read.too_long = true;
            line.clear();
        }
        let used = part.len();
        reader.consume(used);
        read.taken += used as u64;
    }
    Ok(read)
}

/// Hands every record of a journal and its archives to `take`, the oldest archive first
/// and the journal last, one line at a time in memory; returns one sentence per line
/// that could not be read.
pub(crate) fn each_with_archives(
    path: &Path,
    mut take: impl FnMut(Record),
) -> io::Result<Vec<String>> {
    each_line_with_archives(path, |line| {
        take(serde_json::from_str(line)?);
        Ok(())
    })
}

/// [`each_with_archives`] with each line's text handed to `take`, which reads what it
/// needs of it (see [`each_line_from`]).
pub(crate) fn each_line_with_archives(
    path: &Path,
    mut take: impl FnMut(&str) -> Result<(), serde_json::Error>,
) -> io::Result<Vec<String>> {
    let mut problems = Vec::new();
    let mut files = crate::storage::archive::newest_first(path)?;
    files.reverse();
    for file in files {
        problems.extend(each_line_from(&file, 0, &mut take)?.1);
    }
    Ok(problems)
}

/// The lines of a journal and then of its archives, from the last to the first: see
/// [`lines_backwards`]. [`AllBackwards::position`] says where the line just read is.
pub(crate) fn lines_backwards_with_archives(path: &Path) -> io::Result<AllBackwards> {
    let mut files = crate::storage::archive::newest_first(path)?;
    files.reverse();
    Ok(AllBackwards {
        files,
        reading: None,
        problems: Vec::new(),
    })
}

/// Where a line of a journal starts: the file (by device and inode, which it keeps when
/// it is rotated into an archive) and the byte offset in it. What a page of history
/// hands back to ask for the one before it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) struct Position {
    pub dev: u64,
    pub ino: u64,
    pub offset: u64,
}

impl std::fmt::Display for Position {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "{}.{}.{}", self.dev, self.ino, self.offset)
    }
}

impl std::str::FromStr for Position {
    type Err = String;

    fn from_str(text: &str) -> Result<Self, String> {
        let mut parts = text.split('.').map(str::parse::<u64>);
        match (parts.next(), parts.next(), parts.next(), parts.next()) {
            (Some(Ok(dev)), Some(Ok(ino)), Some(Ok(offset)), None) => {
                Ok(Position { dev, ino, offset })
            }
            _ => Err(format!(
                "invalid before `{text}`: expected the `next` of a page, like 2049.1835.42"
            )),
        }
    }
}

/// See [`lines_backwards_with_archives`].
pub(crate) struct AllBackwards {
    /// The files still to read, the next one last.
    files: Vec<PathBuf>,
    reading: Option<Backwards>,
    /// Those of the files read before this one.
    problems: Vec<String>,
}

impl AllBackwards {
    /// One sentence per line passed over so far (longer than 4 MiB): read
    /// forward, each would be said; read back, it is too.
    pub(crate) fn problems(&mut self) -> Vec<String> {
        let mut problems = std::mem::take(&mut self.problems);
        if let Some(reading) = &mut self.reading {
            problems.append(&mut reading.problems);
        }
        problems
    }

    /// Where the line just read starts.
    pub(crate) fn position(&self) -> Option<Position> {
        self.reading.as_ref().map(|r| Position {
            dev: r.dev,
            ino: r.ino,
            offset: r.offset,
        })
    }
}

impl Iterator for AllBackwards {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        loop {
            if let Some(line) = self.reading.as_mut().and_then(Iterator::next) {
                return Some(line);
            }
            let file = self.files.pop()?;
            if let Some(done) = &mut self.reading {
                self.problems.append(&mut done.problems);
            }
            match lines_backwards(&file) {
                Ok(lines) => self.reading = Some(lines),
                Err(e) => return Some(Err(e)),
            }
        }
    }
}

/// The lines of a journal from the last to the first (without their newline), read in
/// blocks from the end: what a look at the recent past costs is the recent past. A
/// missing file has none.
pub(crate) fn lines_backwards(path: &Path) -> io::Result<Backwards> {
    use std::os::unix::fs::MetadataExt as _;
    let file = match fs::File::open(path) {
        Ok(f) => Some(f),
        Err(e) if e.kind() == io::ErrorKind::NotFound => None,
        Err(e) => return Err(e),
    };
    let meta = match &file {
        Some(f) => Some(f.metadata()?),
        None => None,
    };
    Ok(Backwards {
        file,
        end: meta.as_ref().map_or(0, fs::Metadata::len),
        dev: meta.as_ref().map_or(0, |m| m.dev()),
        ino: meta.as_ref().map_or(0, |m| m.ino()),
        offset: 0,
        carry: Vec::new(),
        ready: Vec::new(),
        skipping: false,
        path: path.to_owned(),
        problems: Vec::new(),
    })
}

/// See [`lines_backwards`].
pub(crate) struct Backwards {
    file: Option<fs::File>,
    /// Where the part not read yet ends.
    end: u64,
    /// The file's device and inode.
    dev: u64,
    ino: u64,
    /// Where the line returned last starts.
    offset: u64,
    /// The start of a line whose beginning is still to be read.
    carry: Vec<u8>,
    /// Whole lines read, with where each starts, the last one first... popped from the
    /// back.
    ready: Vec<(u64, Vec<u8>)>,
    /// A line too long to keep is being passed over.
    skipping: bool,
    /// The file, to name it in a problem.
    path: PathBuf,
    /// One sentence per line passed over.
    problems: Vec<String>,
}

impl Backwards {
    /// Notes the line at byte `start` as passed over (too long), worded as a forward
    /// reading words it.
    fn passed_over(&mut self, start: u64) {
        self.problems.push(format!(
            "{}: the line at byte {start} is longer than {} MiB, no record (zeros after a crash?); ignored",
            self.path.display(),
            MAX_LINE >> 20
        ));
    }
}

const BLOCK: u64 = 64 * 1024;

/// The longest line read back; a longer one is skipped.
const MAX_LINE: usize = 4 * 1024 * 1024;

impl Iterator for Backwards {
    type Item = io::Result<Vec<u8>>;

    fn next(&mut self) -> Option<Self::Item> {
        use std::os::unix::fs::FileExt as _;
        loop {
            if let Some((offset, line)) = self.ready.pop() {
                if line.iter().all(u8::is_ascii_whitespace) {
                    continue;
                }
                self.offset = offset;
                return Some(Ok(line));
            }
            let file = self.file.as_ref()?;
            if self.end == 0 {
                self.file = None;
                if std::mem::take(&mut self.skipping) {
                    // The file's first line.
                    self.passed_over(0);
                }
                let first = std::mem::take(&mut self.carry);
                if first.iter().all(u8::is_ascii_whitespace) {
                    return None;
                }
                self.offset = 0;
                return Some(Ok(first));
            }
            // A line of megabytes is no record (zeros after a crash, say): dropped, so
            // that reading back stays linear.
            if self.carry.len() > MAX_LINE {
                self.carry.clear();
                self.skipping = true;
            }
            let start = self.end.saturating_sub(BLOCK);
            let mut block = vec![0u8; (self.end - start) as usize];
            if let Err(e) = file.read_exact_at(&mut block, start) {
                self.file = None;
                return Some(Err(e));
            }
            self.end = start;
            block.extend_from_slice(&self.carry);
            let mut at = start;
            let mut parts: Vec<(u64, Vec<u8>)> = block
                .split(|b| *b == b'\n')
                .map(|part| {
                    let here = at;
                    at += part.len() as u64 + 1;
                    (here, part.to_vec())
                })
                .collect();
            // The first part may be the end of a line that starts in an earlier block.
            let (_, first) = parts.remove(0);
            if self.skipping {
                // Passing over a dropped line: what of it this block holds goes too.
                match parts.pop() {
                    None => self.carry = Vec::new(),
                    Some((start, _)) => {
                        self.skipping = false;
                        self.passed_over(start);
                        self.carry = first;
                    }
                }
            } else {
                self.carry = first;
            }
            self.ready = parts;
        }
    }
}
