//! Scan framing: raw scanner bytes in, complete scans out.
//!
//! A barcode scanner on a serial line writes each read as a line of bytes, in whatever chunks the port hands
//! over: one scan may be split across several reads, several scans may arrive in one read. [`ScanFramer::feed`]
//! takes those chunks and returns every scan completed by them, the same scans whatever the chunking.
//!
//! Rules (also in `docs/IDENTITY.md`):
//! - a scan ends at CR, LF or CRLF; a CRLF ends one scan (the LF after a CR only closes an empty line, and empty
//!   lines are ignored), even when CR and LF arrive in different chunks;
//! - the configured prefix, then the AIM symbology identifier (`]` and two characters, when enabled), then the
//!   configured suffix are taken off, each only when present;
//! - a line longer than `max_scan_bytes` is reported once as [`ScanError::TooLong`]; its bytes are dropped up to
//!   the next terminator, where framing resumes, so a scanner stuck without terminator cannot grow memory;
//! - a line left empty once prefix, identifier and suffix are off is ignored like an empty line.

/// How a scanner frames its reads.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct FramerConfig {
    /// Bytes the scanner sends before each scan, removed when present.
    pub prefix: Vec<u8>,
    /// Bytes the scanner sends after each scan (before the terminator), removed when present.
    pub suffix: Vec<u8>,
    /// The scanner sends an AIM symbology identifier (`]C1`, `]d2`, ...) before the data.
    pub aim_identifier: bool,
    /// The longest line accepted, terminator excluded.
    pub max_scan_bytes: usize,
}

impl Default for FramerConfig {
    fn default() -> Self {
        Self {
            prefix: Vec::new(),
            suffix: Vec::new(),
            aim_identifier: false,
            max_scan_bytes: 4096,
        }
    }
}

/// An AIM symbology identifier: `]`, a code character and a modifier character (ISO/IEC 15424).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Symbology {
    code: u8,
    modifier: u8,
}

impl Symbology {
    /// Reads an identifier from the first three bytes of `bytes`, if they form one.
    pub fn from_prefix(bytes: &[u8]) -> Option<Self> {
        match bytes {
            [b']', code, modifier, ..]
                if code.is_ascii_alphabetic() && modifier.is_ascii_alphanumeric() =>
            {
                Some(Self {
                    code: *code,
                    modifier: *modifier,
                })
            }
            _ => None,
        }
    }

    /// The identifier as written, e.g. `]d2`.
    pub fn as_string(&self) -> String {
        format!("]{}{}", char::from(self.code), char::from(self.modifier))
    }

    /// The symbology's name when it carries a GS1 element string: `]C1` GS1-128, `]d2` GS1 DataMatrix,
    /// `]Q3` GS1 QR Code, `]e0` GS1 DataBar.
    pub fn gs1_name(&self) -> Option<&'static str> {
        match (self.code, self.modifier) {
            (b'C', b'1') => Some("GS1-128"),
            (b'd', b'2') => Some("GS1 DataMatrix"),
            (b'Q', b'3') => Some("GS1 QR Code"),
            (b'e', b'0') => Some("GS1 DataBar"),
            _ => None,
        }
    }

    /// The data after this identifier is a GS1 element string.
    pub fn is_gs1(&self) -> bool {
        self.gs1_name().is_some()
    }
}

/// One complete scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Scan {
    /// The line as received, terminator excluded (prefix, identifier and suffix included).
    pub raw: Vec<u8>,
    /// The AIM symbology identifier, when enabled and present.
    pub symbology: Option<Symbology>,
    /// The data: the line without prefix, identifier and suffix.
    pub data: Vec<u8>,
}

/// A line the framer could not turn into a scan.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ScanError {
    #[error(
        "scan longer than {max_bytes} bytes without a terminator (CR or LF): dropped up to the next terminator"
    )]
    TooLong { max_bytes: usize },
}

/// Splits a byte stream into scans; see the module docs for the rules.
#[derive(Debug)]
pub struct ScanFramer {
    config: FramerConfig,
    line: Vec<u8>,
    /// Dropping an overlong line's bytes up to the next terminator.
    dropping: bool,
}

impl ScanFramer {
    pub fn new(config: FramerConfig) -> Self {
        Self {
            config,
            line: Vec::new(),
            dropping: false,
        }
    }

    /// Takes the next chunk of bytes and returns the scans (and errors) it completes, in order.
    pub fn feed(&mut self, chunk: &[u8]) -> Vec<Result<Scan, ScanError>> {
        let mut out = Vec::new();
        for &byte in chunk {
            if byte == b'\r' || byte == b'\n' {
                self.end_line(&mut out);
            } else if !self.dropping {
                self.push_byte(byte, &mut out);
            }
        }
        out
    }

    /// Bytes of the scan in progress (not yet terminated).
    pub fn pending_bytes(&self) -> usize {
        self.line.len()
    }

    fn push_byte(&mut self, byte: u8, out: &mut Vec<Result<Scan, ScanError>>) {
        if self.line.len() >= self.config.max_scan_bytes {
            self.line.clear();
            self.dropping = true;
            out.push(Err(ScanError::TooLong {
                max_bytes: self.config.max_scan_bytes,
            }));
        } else {
            self.line.push(byte);
        }
    }

    fn end_line(&mut self, out: &mut Vec<Result<Scan, ScanError>>) {
        self.dropping = false;
        if self.line.is_empty() {
            return;
        }
        let raw = std::mem::take(&mut self.line);
        if let Some(scan) = self.unwrap_line(raw) {
            out.push(Ok(scan));
        }
    }

    /// Takes prefix, identifier and suffix off a line; `None` when nothing is left.
    fn unwrap_line(&self, raw: Vec<u8>) -> Option<Scan> {
        let mut data: &[u8] = &raw;
        if !self.config.prefix.is_empty() {
            data = data
                .strip_prefix(self.config.prefix.as_slice())
                .unwrap_or(data);
        }
        let symbology = if self.config.aim_identifier {
            Symbology::from_prefix(data)
        } else {
            None
        };
        if symbology.is_some() {
            data = &data[3..];
        }
        if !self.config.suffix.is_empty() {
            data = data
                .strip_suffix(self.config.suffix.as_slice())
                .unwrap_or(data);
        }
        if data.is_empty() {
            return None;
        }
        let data = data.to_vec();
        Some(Scan {
            raw,
            symbology,
            data,
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn framer() -> ScanFramer {
        ScanFramer::new(FramerConfig::default())
    }

    fn datas(results: &[Result<Scan, ScanError>]) -> Vec<String> {
        results
            .iter()
            .map(|r| match r {
                Ok(scan) => String::from_utf8_lossy(&scan.data).into_owned(),
                Err(e) => format!("ERR {e}"),
            })
            .collect()
    }

    /// Feeds `stream` in chunks split at `cuts` (sorted byte offsets).
    fn feed_split(
        stream: &[u8],
        cuts: &[usize],
        config: &FramerConfig,
    ) -> Vec<Result<Scan, ScanError>> {
        let mut f = ScanFramer::new(config.clone());
        let mut out = Vec::new();
        let mut start = 0;
        for &cut in cuts.iter().chain(std::iter::once(&stream.len())) {
            out.extend(f.feed(&stream[start..cut]));
            start = cut;
        }
        out
    }

    const STREAM: &[u8] = b"SN-1\rSN-22\nSN-333\r\nSN-4\r\n\r\n\nSN-5\n\rSN-6\r\r\nSN-7\n";
    const EXPECTED: [&str; 7] = ["SN-1", "SN-22", "SN-333", "SN-4", "SN-5", "SN-6", "SN-7"];

    #[test]
    fn whole_stream_at_once() {
        assert_eq!(datas(&framer().feed(STREAM)), EXPECTED);
    }

    #[test]
    fn same_scans_at_every_single_split_point() {
        let config = FramerConfig::default();
        for cut in 0..=STREAM.len() {
            assert_eq!(
                datas(&feed_split(STREAM, &[cut], &config)),
                EXPECTED,
                "split at {cut}"
            );
        }
    }

    #[test]
    fn same_scans_at_every_pair_of_split_points() {
        let config = FramerConfig::default();
        for a in 0..=STREAM.len() {
            for b in a..=STREAM.len() {
                assert_eq!(
                    datas(&feed_split(STREAM, &[a, b], &config)),
                    EXPECTED,
                    "split at {a}, {b}"
                );
            }
        }
    }

    #[test]
    fn same_scans_at_every_split_point_with_prefix_identifier_and_suffix() {
        let config = FramerConfig {
            prefix: b"<<".to_vec(),
            suffix: b">".to_vec(),
            aim_identifier: true,
            max_scan_bytes: 12,
        };
        let stream = b"<<]d2SN-1>\r\n<<SN-2>\r<<]C1SN-3\n<<]Q3SN-0123456789>\r\n<<]e0SN-4>\n";
        let whole = feed_split(stream, &[], &config);
        let ids: Vec<Option<String>> = whole
            .iter()
            .map(|r| {
                r.as_ref()
                    .ok()
                    .and_then(|s| s.symbology)
                    .map(|s| s.as_string())
            })
            .collect();
        assert_eq!(
            ids,
            [
                Some("]d2".into()),
                None,
                Some("]C1".into()),
                None,
                Some("]e0".into())
            ]
        );
        assert_eq!(datas(&whole)[..3], ["SN-1", "SN-2", "SN-3"]);
        assert_eq!(whole[3], Err(ScanError::TooLong { max_bytes: 12 }));
        assert_eq!(datas(&whole)[4], "SN-4");
        for cut in 0..=stream.len() {
            assert_eq!(feed_split(stream, &[cut], &config), whole, "split at {cut}");
        }
    }

    #[test]
    fn byte_by_byte_and_crlf_across_chunks() {
        let mut f = framer();
        let mut out = Vec::new();
        for byte in STREAM {
            out.extend(f.feed(std::slice::from_ref(byte)));
        }
        assert_eq!(datas(&out), EXPECTED);
        let mut f = framer();
        assert_eq!(datas(&f.feed(b"ABC\r")), ["ABC"]);
        assert!(
            f.feed(b"\n").is_empty(),
            "the LF of a split CRLF is no second scan"
        );
        assert_eq!(datas(&f.feed(b"DEF\n")), ["DEF"]);
    }

    #[test]
    fn scan_without_terminator_waits() {
        let mut f = framer();
        assert!(f.feed(b"SN-9").is_empty());
        assert_eq!(f.pending_bytes(), 4);
        assert_eq!(datas(&f.feed(b"\r\n")), ["SN-9"]);
        assert_eq!(f.pending_bytes(), 0);
    }

    #[test]
    fn prefix_and_suffix_stripped_when_present() {
        let mut f = ScanFramer::new(FramerConfig {
            prefix: b"<".to_vec(),
            suffix: b">!".to_vec(),
            ..FramerConfig::default()
        });
        let out = f.feed(b"<SN-1>!\r\nSN-2>!\r\n<SN-3\r\nSN-4\r\n<>!\r\n");
        assert_eq!(datas(&out), ["SN-1", "SN-2", "SN-3", "SN-4"]);
        let first = out[0].as_ref().expect("a scan");
        assert_eq!(first.raw, b"<SN-1>!");
    }

    #[test]
    fn symbology_identifier_split_off_and_reported() {
        let mut f = ScanFramer::new(FramerConfig {
            prefix: b"#".to_vec(),
            aim_identifier: true,
            ..FramerConfig::default()
        });
        let out = f.feed(b"#]d2010950600013435217261231\r\n]C1SN-1\n]E0\nplain\n");
        let scans: Vec<&Scan> = out.iter().map(|r| r.as_ref().expect("a scan")).collect();
        assert_eq!(scans.len(), 3, "a line with only an identifier is empty");
        let ids: Vec<Option<String>> = scans
            .iter()
            .map(|s| s.symbology.map(|s| s.as_string()))
            .collect();
        assert_eq!(
            ids,
            [Some("]d2".to_string()), Some("]C1".to_string()), None]
        );
        assert_eq!(scans[0].data, b"010950600013435217261231");
        assert_eq!(scans[0].raw, b"#]d2010950600013435217261231");
        assert_eq!(
            scans[0].symbology.and_then(|s| s.gs1_name()),
            Some("GS1 DataMatrix")
        );
        assert_eq!(scans[1].data, b"SN-1");
        assert_eq!(scans[2].data, b"plain");
    }

    #[test]
    fn gs1_symbologies_known() {
        for (id, gs1) in [
            ("]C1", true),
            ("]d2", true),
            ("]Q3", true),
            ("]e0", true),
            ("]C0", false),
            ("]Q1", false),
        ] {
            let symbology = Symbology::from_prefix(id.as_bytes()).expect("an identifier");
            assert_eq!(symbology.is_gs1(), gs1, "{id}");
        }
        assert_eq!(Symbology::from_prefix(b"]d"), None);
        assert_eq!(Symbology::from_prefix(b"d2]"), None);
    }

    #[test]
    fn identifier_not_split_when_disabled() {
        let out = framer().feed(b"]d2ABC\n");
        let scan = out[0].as_ref().expect("a scan");
        assert_eq!(
            (scan.symbology, scan.data.as_slice()),
            (None, b"]d2ABC".as_slice())
        );
    }

    #[test]
    fn overlong_scan_reported_once_then_framing_resumes() {
        let config = FramerConfig {
            max_scan_bytes: 8,
            ..FramerConfig::default()
        };
        let stream = b"12345678\r\n123456789012345678901234\r\nOK-1\n";
        let expected = [
            "12345678",
            "ERR scan longer than 8 bytes without a terminator (CR or LF): dropped up to the next terminator",
            "OK-1",
        ];
        for cut in 0..=stream.len() {
            assert_eq!(
                datas(&feed_split(stream, &[cut], &config)),
                expected,
                "split at {cut}"
            );
        }
        let mut f = ScanFramer::new(config);
        assert_eq!(
            f.feed(&[b'x'; 100]),
            vec![Err(ScanError::TooLong { max_bytes: 8 })]
        );
        assert!(
            f.feed(&[b'x'; 100]).is_empty(),
            "memory does not grow, reported once"
        );
        assert_eq!(f.pending_bytes(), 0);
        assert_eq!(datas(&f.feed(b"\nOK-2\n")), ["OK-2"]);
    }
}
