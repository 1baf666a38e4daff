//! Part identity: what a barcode scanner read off the part, as the station will record it (issue 15).
//!
//! Pure functions, no I/O: [`scan::ScanFramer`] turns the scanner's bytes into [`scan::Scan`]s, [`identify`]
//! turns a scan into a [`PartIdentity`], parsing GS1 element strings with [`gs1::parse`] and taking any other
//! scan (a plain serial such as `SN-000123`) whole as the serial. The rules are in `docs/IDENTITY.md`.

pub mod config;
pub mod gs1;
pub mod matcher;
pub mod reader;
pub mod scan;

pub use config::{IdentityConfig, IdentitySource, ScannerConfig};
pub use matcher::ScanBook;

pub use gs1::{ElementString, Field, Gs1Date, Gs1Error};
pub use scan::{FramerConfig, Scan, ScanError, ScanFramer, Symbology};

/// How scans are read.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReadOptions {
    /// Data without a GS1 marker (GS1 symbology identifier, leading FNC1 or `(AI)`) is still taken as GS1 when it
    /// starts with the digits of a known AI: for scanners that send neither identifier nor FNC1.
    pub gs1_without_marker: bool,
    /// The current year, for the century of two-digit years ([`gs1::resolve_year`]).
    pub current_year: i32,
}

/// The identity of one part, from one scan.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PartIdentity {
    /// The scan's bytes as received (terminator excluded).
    pub raw: Vec<u8>,
    pub symbology: Option<Symbology>,
    /// AI (21) of a GS1 scan, or the whole of any other scan.
    pub serial: Option<String>,
    /// AI (01).
    pub gtin: Option<String>,
    /// AI (10).
    pub lot: Option<String>,
    /// AI (17).
    pub expiry: Option<Gs1Date>,
    /// AI (11).
    pub production_date: Option<Gs1Date>,
    /// Every GS1 element, in order (empty for a plain scan).
    pub fields: Vec<Field>,
    /// Why the scan, taken as GS1, did not parse (then no field is filled in).
    pub error: Option<Gs1Error>,
}

/// The scan holds a GS1 element string: a GS1 symbology identifier (reported by the framer or still in the
/// data), a leading FNC1, a leading `(` + digits + `)`, or (when so configured) a known AI's digits.
pub fn is_gs1(scan: &Scan, config: &ReadOptions) -> bool {
    let data = scan.data.as_slice();
    let marked = scan.symbology.is_some_and(|s| s.is_gs1())
        || Symbology::from_prefix(data).is_some_and(|s| s.is_gs1())
        || data.first() == Some(&gs1::GS)
        || starts_parenthesised(data);
    marked || (config.gs1_without_marker && gs1::starts_with_known_ai(data))
}

fn starts_parenthesised(data: &[u8]) -> bool {
    let digits = data
        .iter()
        .skip(1)
        .take_while(|b| b.is_ascii_digit())
        .count();
    data.first() == Some(&b'(') && (2..=4).contains(&digits) && data.get(1 + digits) == Some(&b')')
}

/// The identity a scan gives its part: GS1 data parsed into its fields, anything else whole as the serial.
pub fn identify(scan: &Scan, config: &ReadOptions) -> PartIdentity {
    let mut identity = PartIdentity {
        raw: scan.raw.clone(),
        symbology: scan.symbology,
        serial: None,
        gtin: None,
        lot: None,
        expiry: None,
        production_date: None,
        fields: Vec::new(),
        error: None,
    };
    if !is_gs1(scan, config) {
        identity.serial = Some(String::from_utf8_lossy(&scan.data).into_owned());
        return identity;
    }
    match gs1::parse(&scan.data, config.current_year) {
        Ok(parsed) => {
            identity.serial = parsed.serial().map(str::to_string);
            identity.gtin = parsed.gtin().map(str::to_string);
            identity.lot = parsed.lot().map(str::to_string);
            identity.expiry = parsed.expiry();
            identity.production_date = parsed.production_date();
            identity.fields = parsed.fields;
        }
        Err(e) => identity.error = Some(e),
    }
    identity
}

#[cfg(test)]
mod tests {
    use super::*;

    const CONFIG: ReadOptions = ReadOptions {
        gs1_without_marker: false,
        current_year: 2026,
    };

    fn scan(line: &[u8], aim_identifier: bool) -> Scan {
        let mut framer = ScanFramer::new(FramerConfig {
            aim_identifier,
            ..FramerConfig::default()
        });
        let mut out = framer.feed(line);
        out.extend(framer.feed(b"\r\n"));
        match out.pop() {
            Some(Ok(scan)) => scan,
            other => panic!("no scan from {line:?}: {other:?}"),
        }
    }

    #[test]
    fn plain_serial_taken_whole() {
        let id = identify(&scan(b"SN-000123", true), &CONFIG);
        assert_eq!(id.serial.as_deref(), Some("SN-000123"));
        assert_eq!((id.gtin, id.error, id.fields.len()), (None, None, 0));
        assert_eq!(id.raw, b"SN-000123");
        // Digits that look like an AI stay a serial unless configured otherwise.
        let digits = scan(b"10123456", false);
        assert_eq!(
            identify(&digits, &CONFIG).serial.as_deref(),
            Some("10123456")
        );
        let as_gs1 = ReadOptions {
            gs1_without_marker: true,
            ..CONFIG
        };
        let id = identify(&digits, &as_gs1);
        assert_eq!((id.serial, id.lot.as_deref()), (None, Some("123456")));
        // A symbology that is not GS1 (Code 128) keeps its data whole.
        let id = identify(&scan(b"]C0(A1)B7", true), &CONFIG);
        assert_eq!(
            id.serial.as_deref(),
            Some("(A1)B7"),
            "'(' marks GS1 only with an AI's digits"
        );
    }

    #[test]
    fn gs1_by_symbology_identifier() {
        let id = identify(
            &scan(b"]d201095060001343521726123110ABC123\x1d21XYZ", true),
            &CONFIG,
        );
        assert_eq!(id.symbology.map(|s| s.as_string()).as_deref(), Some("]d2"));
        assert_eq!(id.gtin.as_deref(), Some("09506000134352"));
        assert_eq!(id.lot.as_deref(), Some("ABC123"));
        assert_eq!(id.serial.as_deref(), Some("XYZ"));
        assert_eq!(
            id.expiry.map(|d| d.to_string()).as_deref(),
            Some("2026-12-31")
        );
        assert_eq!(id.fields.len(), 4);
        assert_eq!(id.error, None);
        // The same data with the identifier left in (framer not told about it).
        let id = identify(
            &scan(b"]d201095060001343521726123110ABC123\x1d21XYZ", false),
            &CONFIG,
        );
        assert_eq!((id.symbology, id.serial.as_deref()), (None, Some("XYZ")));
    }

    #[test]
    fn gs1_by_fnc1_or_parentheses() {
        let id = identify(&scan(b"\x1d0109506000134352", false), &CONFIG);
        assert_eq!(id.gtin.as_deref(), Some("09506000134352"));
        let id = identify(&scan(b"(01)09506000134352(21)SN-7", false), &CONFIG);
        assert_eq!(
            (id.gtin.as_deref(), id.serial.as_deref()),
            (Some("09506000134352"), Some("SN-7"))
        );
    }

    #[test]
    fn malformed_gs1_reported() {
        let id = identify(&scan(b"]C10109506000134353", true), &CONFIG);
        assert!(
            matches!(&id.error, Some(Gs1Error::CheckDigit { ai, .. }) if ai == "01"),
            "{:?}",
            id.error
        );
        assert_eq!((id.serial, id.gtin, id.fields.len()), (None, None, 0));
        assert_eq!(id.raw, b"]C10109506000134353");
    }
}
