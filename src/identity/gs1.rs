//! GS1 element strings: the data of GS1-128, GS1 DataMatrix, GS1 QR Code and GS1 DataBar symbols.
//!
//! [`parse`] takes either form of an element string and returns its (AI, value) pairs in order, validated:
//! - the barcode form, `01095060001343521726123110ABC123<GS>21XYZ`, where `<GS>` (ASCII 29,
//!   the FNC1 separator) ends a variable-length value that is not last; an AIM symbology identifier (`]C1`,
//!   `]d2`, `]Q3`, `]e0`) and a leading FNC1 are skipped;
//! - the human-readable form, `(01)09506000134352(17)261231(10)ABC123`.
//!
//! Every AI is looked up in a table of the AIs this station knows (their titles, lengths and formats follow the
//! GS1 General Specifications and the GS1 Barcode Syntax Dictionary), then its value is checked: lengths, digits
//! only for numeric fields, GS1 character set 82 for alphanumeric ones, the mod-10 check digit of GTINs, SSCCs and
//! GLNs, and real calendar dates (YYMMDD, the century by the General Specifications' sliding window, DD = 00
//! meaning "no day given" where the dictionary allows it). What fails is a [`Gs1Error`] naming the AI, the byte
//! position in the input and what was expected. The AI table and the rules are listed in `docs/IDENTITY.md`.

/// The FNC1 separator as scanners transmit it: ASCII 29, GS.
pub const GS: u8 = 29;

/// How long a value is: `min_len == max_len` for fixed-length AIs.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Length {
    min_len: usize,
    max_len: usize,
}

const fn fixed(len: usize) -> Length {
    Length {
        min_len: len,
        max_len: len,
    }
}

const fn up_to(max_len: usize) -> Length {
    Length {
        min_len: 1,
        max_len,
    }
}

/// What a value may contain.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Format {
    /// Digits only.
    Digits,
    /// Digits, the last one a GS1 mod-10 check digit (GTIN, SSCC, GLN).
    CheckDigit,
    /// GS1 AI encodable character set 82.
    Cset82,
    /// YYMMDD; DD = 00 allowed (no day given).
    Date,
    /// YYMMDDHHMM (AI 7003); DD = 00 not allowed.
    DateTime,
    /// Six digits; the AI's last digit is the number of decimal places.
    Measure,
    /// An ISO 3166 numeric country code (3 digits), then CSET 82 (AI 421).
    CountryThenCset82,
}

/// One application identifier this parser knows.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct AiSpec {
    title: &'static str,
    length: Length,
    format: Format,
}

const fn spec(title: &'static str, length: Length, format: Format) -> AiSpec {
    AiSpec {
        title,
        length,
        format,
    }
}

/// The fixed AIs known, by their digits (the measure AIs 31nn-36nn and the internal 91-99 are in [`lookup_ai`]).
const AI_TABLE: &[(&str, AiSpec)] = &[
    ("00", spec("SSCC", fixed(18), Format::CheckDigit)),
    ("01", spec("GTIN", fixed(14), Format::CheckDigit)),
    ("02", spec("CONTENT", fixed(14), Format::CheckDigit)),
    ("10", spec("BATCH/LOT", up_to(20), Format::Cset82)),
    ("11", spec("PROD DATE", fixed(6), Format::Date)),
    ("12", spec("DUE DATE", fixed(6), Format::Date)),
    ("13", spec("PACK DATE", fixed(6), Format::Date)),
    ("15", spec("BEST BEFORE", fixed(6), Format::Date)),
    ("16", spec("SELL BY", fixed(6), Format::Date)),
    ("17", spec("USE BY OR EXPIRY", fixed(6), Format::Date)),
    ("20", spec("VARIANT", fixed(2), Format::Digits)),
    ("21", spec("SERIAL", up_to(20), Format::Cset82)),
    ("22", spec("CPV", up_to(20), Format::Cset82)),
    ("240", spec("ADDITIONAL ID", up_to(30), Format::Cset82)),
    ("241", spec("CUST. PART No.", up_to(30), Format::Cset82)),
    ("250", spec("SECONDARY SERIAL", up_to(30), Format::Cset82)),
    ("30", spec("VAR. COUNT", up_to(8), Format::Digits)),
    ("37", spec("COUNT", up_to(8), Format::Digits)),
    ("400", spec("ORDER NUMBER", up_to(30), Format::Cset82)),
    ("401", spec("GINC", up_to(30), Format::Cset82)),
    ("402", spec("GSIN", fixed(17), Format::CheckDigit)),
    ("410", spec("SHIP TO LOC", fixed(13), Format::CheckDigit)),
    ("411", spec("BILL TO", fixed(13), Format::CheckDigit)),
    ("412", spec("PURCHASE FROM", fixed(13), Format::CheckDigit)),
    ("413", spec("SHIP FOR LOC", fixed(13), Format::CheckDigit)),
    ("414", spec("LOC No.", fixed(13), Format::CheckDigit)),
    ("415", spec("PAY TO", fixed(13), Format::CheckDigit)),
    ("416", spec("PROD/SERV LOC", fixed(13), Format::CheckDigit)),
    ("417", spec("PARTY", fixed(13), Format::CheckDigit)),
    ("420", spec("SHIP TO POST", up_to(20), Format::Cset82)),
    (
        "421",
        spec(
            "SHIP TO POST",
            Length {
                min_len: 4,
                max_len: 12,
            },
            Format::CountryThenCset82,
        ),
    ),
    ("7003", spec("EXPIRY TIME", fixed(10), Format::DateTime)),
    ("8004", spec("GIAI", up_to(30), Format::Cset82)),
    ("8020", spec("REF No.", up_to(25), Format::Cset82)),
    ("90", spec("INTERNAL", up_to(30), Format::Cset82)),
];

/// The measure AIs' first three digits (the fourth, 0-5, is the number of decimal places).
fn is_measure_group(group: u32) -> bool {
    matches!(group, 310..=316 | 320..=329 | 330..=337 | 340..=349 | 350..=357 | 360..=369)
}

/// The AI at the start of `data` and its spec, when `data` starts with a known AI.
fn lookup_ai(data: &[u8]) -> Option<(&str, AiSpec)> {
    let digits = data
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    let head = std::str::from_utf8(&data[..digits]).ok()?;
    for len in 2..=digits {
        let ai = &head[..len];
        if let Some((_, spec)) = AI_TABLE.iter().find(|(known, _)| *known == ai) {
            return Some((ai, *spec));
        }
    }
    if digits >= 2
        && matches!(
            &head[..2],
            "91" | "92" | "93" | "94" | "95" | "96" | "97" | "98" | "99"
        )
    {
        return Some((&head[..2], spec("INTERNAL", up_to(90), Format::Cset82)));
    }
    let group: u32 = head.get(..3)?.parse().ok()?;
    let decimals = head.get(3..4)?.parse::<u8>().ok()?;
    if is_measure_group(group) && decimals <= 5 {
        return Some((head, spec("VARIABLE MEASURE", fixed(6), Format::Measure)));
    }
    None
}

/// The title of a known AI (`"GTIN"` for `"01"`), `None` for an unknown one.
pub fn ai_title(ai: &str) -> Option<&'static str> {
    match lookup_ai(ai.as_bytes()) {
        Some((found, spec)) if found == ai => Some(spec.title),
        _ => None,
    }
}

/// `data` starts with the digits of a known AI (used to take unmarked data as GS1 when configured).
pub fn starts_with_known_ai(data: &[u8]) -> bool {
    lookup_ai(data).is_some()
}

/// What is wrong with an element string.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum Gs1Error {
    #[error("no GS1 data (nothing after the symbology identifier and FNC1)")]
    Empty,
    #[error(
        "byte {position}: unknown application identifier {found:?} (expected a known AI, see docs/IDENTITY.md)"
    )]
    UnknownAi { position: usize, found: String },
    #[error("byte {position}: expected an application identifier in parentheses such as (01)")]
    MalformedParentheses { position: usize },
    #[error("AI ({ai}) at byte {position}: expected {expected}, found {found_len} characters")]
    Length {
        ai: String,
        position: usize,
        expected: String,
        found_len: usize,
    },
    #[error("AI ({ai}) at byte {position}: expected a digit, found {found:?}")]
    NotNumeric {
        ai: String,
        position: usize,
        found: char,
    },
    #[error("AI ({ai}) at byte {position}: {found:?} is not in GS1 character set 82")]
    InvalidCharacter {
        ai: String,
        position: usize,
        found: char,
    },
    #[error("AI ({ai}) at byte {position}: check digit is {found}, expected {expected}")]
    CheckDigit {
        ai: String,
        position: usize,
        found: u8,
        expected: u8,
    },
    #[error("AI ({ai}) at byte {position}: {value:?} is not a valid date YYMMDD: {reason}")]
    InvalidDate {
        ai: String,
        position: usize,
        value: String,
        reason: String,
    },
    #[error("AI ({ai}) at byte {position}: {value:?} is not a valid time HHMM")]
    InvalidTime {
        ai: String,
        position: usize,
        value: String,
    },
    #[error("AI ({ai}) at byte {position}: repeated with a different value")]
    Conflict { ai: String, position: usize },
}

/// A calendar date from a YYMMDD field.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord)]
pub struct Gs1Date {
    pub year: i32,
    pub month: u8,
    /// `None` when the field said DD = 00: no day given, read as the month's last day ([`Gs1Date::last_day`]).
    pub day: Option<u8>,
}

impl Gs1Date {
    /// The day, or the month's last day when none was given (how GS1 reads DD = 00 for expiry dates).
    pub fn last_day(&self) -> u8 {
        self.day
            .unwrap_or_else(|| days_in_month(self.year, self.month))
    }
}

impl std::fmt::Display for Gs1Date {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.day {
            Some(day) => write!(f, "{:04}-{:02}-{:02}", self.year, self.month, day),
            None => write!(f, "{:04}-{:02}", self.year, self.month),
        }
    }
}

/// A variable measure (AIs 31nn-36nn): `digits` / 10^`decimals` in the AI's unit.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Measure {
    pub digits: u32,
    pub decimals: u8,
}

impl Measure {
    pub fn as_f64(&self) -> f64 {
        f64::from(self.digits) / 10f64.powi(i32::from(self.decimals))
    }
}

/// One element: an AI and its value as encoded.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Field {
    pub ai: String,
    pub value: String,
    /// The date, for date AIs (11-17, 7003).
    pub date: Option<Gs1Date>,
}

/// A parsed element string: its elements in the order they were encoded.
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ElementString {
    pub fields: Vec<Field>,
}

impl ElementString {
    /// The value of `ai`, if present.
    pub fn get(&self, ai: &str) -> Option<&str> {
        self.field(ai).map(|f| f.value.as_str())
    }

    fn field(&self, ai: &str) -> Option<&Field> {
        self.fields.iter().find(|f| f.ai == ai)
    }

    /// AI (01), the GTIN-14 (a GTIN-8, -12 or -13 padded with leading zeros).
    pub fn gtin(&self) -> Option<&str> {
        self.get("01")
    }

    /// AI (21), the serial number.
    pub fn serial(&self) -> Option<&str> {
        self.get("21")
    }

    /// AI (10), the batch or lot number.
    pub fn lot(&self) -> Option<&str> {
        self.get("10")
    }

    /// AI (17), the expiry date.
    pub fn expiry(&self) -> Option<Gs1Date> {
        self.field("17").and_then(|f| f.date)
    }

    /// AI (11), the production date.
    pub fn production_date(&self) -> Option<Gs1Date> {
        self.field("11").and_then(|f| f.date)
    }

    /// A variable measure AI (e.g. `"3103"`, net weight in kg with 3 decimals).
    pub fn measure(&self, ai: &str) -> Option<Measure> {
        let (found, spec) = lookup_ai(ai.as_bytes())?;
        if found != ai || spec.format != Format::Measure {
            return None;
        }
        Some(Measure {
            digits: self.get(ai)?.parse().ok()?,
            decimals: ai.as_bytes()[3] - b'0',
        })
    }
}

/// Parses an element string in either form (see the module docs). `current_year` (e.g. 2026) places two-digit
/// years in their century by the GS1 General Specifications' rule ([`resolve_year`]).
pub fn parse(input: &[u8], current_year: i32) -> Result<ElementString, Gs1Error> {
    let mut start = 0;
    if crate::identity::scan::Symbology::from_prefix(input).is_some_and(|s| s.is_gs1()) {
        start = 3;
    }
    while input.get(start) == Some(&GS) {
        start += 1;
    }
    if start == input.len() {
        return Err(Gs1Error::Empty);
    }
    let mut parser = Parser {
        input,
        current_year,
        fields: Vec::new(),
    };
    if input[start] == b'(' {
        parser.parse_parenthesised(start)?;
    } else {
        parser.parse_barcode(start)?;
    }
    Ok(ElementString {
        fields: parser.fields,
    })
}

struct Parser<'a> {
    input: &'a [u8],
    current_year: i32,
    fields: Vec<Field>,
}

impl Parser<'_> {
    /// The barcode form: AIs one after another, a GS after each variable-length value that is not last.
    fn parse_barcode(&mut self, mut pos: usize) -> Result<(), Gs1Error> {
        while pos < self.input.len() {
            if self.input[pos] == GS {
                pos += 1;
                continue;
            }
            let (ai, spec) =
                lookup_ai(&self.input[pos..]).ok_or_else(|| unknown_ai(self.input, pos, 4))?;
            let ai = ai.to_string();
            let value_start = pos + ai.len();
            let rest = &self.input[value_start..];
            let mut value_len = rest.iter().position(|&b| b == GS).unwrap_or(rest.len());
            if spec.length.min_len == spec.length.max_len {
                value_len = value_len.min(spec.length.max_len);
            }
            self.add(&ai, spec, value_start, value_len)?;
            pos = value_start + value_len;
        }
        Ok(())
    }

    /// The human-readable form: `(AI)value` repeated; a value runs to the next `(` + 2 to 4 digits + `)`.
    fn parse_parenthesised(&mut self, mut pos: usize) -> Result<(), Gs1Error> {
        while pos < self.input.len() {
            let digits = parenthesised_ai(self.input, pos)
                .ok_or(Gs1Error::MalformedParentheses { position: pos })?;
            let (ai, spec) = match lookup_ai(digits) {
                Some((ai, spec)) if ai.len() == digits.len() => (ai.to_string(), spec),
                _ => return Err(unknown_ai(self.input, pos + 1, digits.len())),
            };
            let value_start = pos + ai.len() + 2;
            let value_len = (value_start..self.input.len())
                .find(|&i| parenthesised_ai(self.input, i).is_some())
                .unwrap_or(self.input.len())
                - value_start;
            self.add(&ai, spec, value_start, value_len)?;
            pos = value_start + value_len;
        }
        Ok(())
    }

    /// Validates one value and appends it (a repeat with the same value is dropped, one that differs is an error).
    fn add(&mut self, ai: &str, spec: AiSpec, position: usize, len: usize) -> Result<(), Gs1Error> {
        let value = &self.input[position..position + len];
        check_length(ai, spec.length, position, len)?;
        let date = check_value(ai, spec.format, position, value, self.current_year)?;
        // Every byte is ASCII once checked: the conversion cannot lose anything.
        let value = String::from_utf8_lossy(value).into_owned();
        if let Some(previous) = self.fields.iter().find(|f| f.ai == ai) {
            if previous.value == value {
                return Ok(());
            }
            return Err(Gs1Error::Conflict {
                ai: ai.to_string(),
                position,
            });
        }
        self.fields.push(Field {
            ai: ai.to_string(),
            value,
            date,
        });
        Ok(())
    }
}

/// The digits of an AI written as `(` + 2 to 4 digits + `)` at `pos`.
fn parenthesised_ai(input: &[u8], pos: usize) -> Option<&[u8]> {
    let inner = input.get(pos + 1..).filter(|_| input[pos] == b'(')?;
    let digits = inner
        .iter()
        .take(4)
        .take_while(|b| b.is_ascii_digit())
        .count();
    (digits >= 2 && inner.get(digits) == Some(&b')')).then_some(&inner[..digits])
}

fn unknown_ai(input: &[u8], position: usize, len: usize) -> Gs1Error {
    let end = (position + len).min(input.len());
    Gs1Error::UnknownAi {
        position,
        found: String::from_utf8_lossy(&input[position..end]).into_owned(),
    }
}

fn check_length(
    ai: &str,
    length: Length,
    position: usize,
    found_len: usize,
) -> Result<(), Gs1Error> {
    if (length.min_len..=length.max_len).contains(&found_len) {
        return Ok(());
    }
    let expected = if length.min_len == length.max_len {
        format!("{} characters", length.max_len)
    } else if found_len > length.max_len {
        format!(
            "at most {} characters (or a GS separator after them)",
            length.max_len
        )
    } else {
        format!("{} to {} characters", length.min_len, length.max_len)
    };
    Err(Gs1Error::Length {
        ai: ai.to_string(),
        position,
        expected,
        found_len,
    })
}

/// Checks a value of the right length against its format; returns the date of date AIs.
fn check_value(
    ai: &str,
    format: Format,
    position: usize,
    value: &[u8],
    current_year: i32,
) -> Result<Option<Gs1Date>, Gs1Error> {
    match format {
        Format::Cset82 => check_cset82(ai, position, value)?,
        Format::CountryThenCset82 => {
            check_digits(ai, position, &value[..3])?;
            check_cset82(ai, position + 3, &value[3..])?;
        }
        Format::Digits | Format::Measure => check_digits(ai, position, value)?,
        Format::CheckDigit => {
            check_digits(ai, position, value)?;
            check_check_digit(ai, position, value)?;
        }
        Format::Date => {
            check_digits(ai, position, value)?;
            return parse_date(ai, position, value, true, current_year).map(Some);
        }
        Format::DateTime => {
            check_digits(ai, position, value)?;
            let date = parse_date(ai, position, &value[..6], false, current_year)?;
            check_time(ai, position + 6, &value[6..])?;
            return Ok(Some(date));
        }
    }
    Ok(None)
}

fn check_digits(ai: &str, position: usize, value: &[u8]) -> Result<(), Gs1Error> {
    match value.iter().position(|b| !b.is_ascii_digit()) {
        None => Ok(()),
        Some(i) => Err(Gs1Error::NotNumeric {
            ai: ai.to_string(),
            position: position + i,
            found: char::from(value[i]),
        }),
    }
}

/// GS1 AI encodable character set 82 (GS1 General Specifications, figure 7.11-1).
pub fn is_cset82(byte: u8) -> bool {
    byte.is_ascii_alphanumeric() || b"!\"%&'()*+,-./:;<=>?_".contains(&byte)
}

fn check_cset82(ai: &str, position: usize, value: &[u8]) -> Result<(), Gs1Error> {
    match value.iter().position(|&b| !is_cset82(b)) {
        None => Ok(()),
        Some(i) => Err(Gs1Error::InvalidCharacter {
            ai: ai.to_string(),
            position: position + i,
            found: char::from(value[i]),
        }),
    }
}

/// The GS1 mod-10 check digit for `digits` (the data without its check digit): weights 3, 1, 3 ... from the
/// right. `None` when `digits` holds anything but ASCII digits.
pub fn check_digit(digits: &[u8]) -> Option<u8> {
    let mut sum = 0u32;
    for (i, &b) in digits.iter().rev().enumerate() {
        if !b.is_ascii_digit() {
            return None;
        }
        let weight = if i % 2 == 0 { 3 } else { 1 };
        sum += weight * u32::from(b - b'0');
    }
    Some(((10 - sum % 10) % 10) as u8)
}

/// A GTIN-8, -12, -13 or -14 (or any GS1 key ending in a mod-10 check digit) whose check digit is right.
pub fn has_valid_check_digit(number: &str) -> bool {
    match number.as_bytes().split_last() {
        Some((&last, body)) if last.is_ascii_digit() => check_digit(body) == Some(last - b'0'),
        _ => false,
    }
}

fn check_check_digit(ai: &str, position: usize, value: &[u8]) -> Result<(), Gs1Error> {
    let (&last, body) = value.split_last().ok_or(Gs1Error::Empty)?;
    let expected = check_digit(body).unwrap_or(0);
    let found = last - b'0';
    if found == expected {
        return Ok(());
    }
    Err(Gs1Error::CheckDigit {
        ai: ai.to_string(),
        position: position + value.len() - 1,
        found,
        expected,
    })
}

/// The four-digit year of a two-digit `yy`, by the GS1 General Specifications' rule (section 7.12): with the
/// difference `yy` minus the current year's last two digits, 51 to 99 is the previous century, -99 to -50 the
/// next one, anything else the current century.
pub fn resolve_year(yy: i32, current_year: i32) -> i32 {
    let current_yy = current_year.rem_euclid(100);
    let century = current_year - current_yy;
    match yy - current_yy {
        51.. => century - 100 + yy,
        ..=-50 => century + 100 + yy,
        _ => century + yy,
    }
}

fn is_leap_year(year: i32) -> bool {
    year % 4 == 0 && (year % 100 != 0 || year % 400 == 0)
}

fn days_in_month(year: i32, month: u8) -> u8 {
    match month {
        2 if is_leap_year(year) => 29,
        2 => 28,
        4 | 6 | 9 | 11 => 30,
        _ => 31,
    }
}

/// Two ASCII digits (already checked) as a number.
fn two_digits(pair: &[u8]) -> u8 {
    (pair[0] - b'0') * 10 + (pair[1] - b'0')
}

/// YYMMDD (already checked to be six digits) as a date.
fn parse_date(
    ai: &str,
    position: usize,
    value: &[u8],
    day_zero_allowed: bool,
    current_year: i32,
) -> Result<Gs1Date, Gs1Error> {
    let year = resolve_year(i32::from(two_digits(&value[0..2])), current_year);
    let (month, day) = (two_digits(&value[2..4]), two_digits(&value[4..6]));
    let invalid = |reason: String| Gs1Error::InvalidDate {
        ai: ai.to_string(),
        position,
        value: String::from_utf8_lossy(value).into_owned(),
        reason,
    };
    if !(1..=12).contains(&month) {
        return Err(invalid(format!("month {month:02} is not 01 to 12")));
    }
    if day == 0 && day_zero_allowed {
        return Ok(Gs1Date {
            year,
            month,
            day: None,
        });
    }
    let last = days_in_month(year, month);
    if !(1..=last).contains(&day) {
        let zero = if day_zero_allowed { "00 or " } else { "" };
        return Err(invalid(format!(
            "day {day:02} is not {zero}01 to {last} in {year:04}-{month:02}"
        )));
    }
    Ok(Gs1Date {
        year,
        month,
        day: Some(day),
    })
}

/// HHMM (already checked to be four digits).
fn check_time(ai: &str, position: usize, value: &[u8]) -> Result<(), Gs1Error> {
    if two_digits(&value[0..2]) <= 23 && two_digits(&value[2..4]) <= 59 {
        return Ok(());
    }
    Err(Gs1Error::InvalidTime {
        ai: ai.to_string(),
        position,
        value: String::from_utf8_lossy(value).into_owned(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    const YEAR: i32 = 2026;

    fn ok(input: &str) -> ElementString {
        match parse(input.as_bytes(), YEAR) {
            Ok(parsed) => parsed,
            Err(e) => panic!("{input:?}: {e}"),
        }
    }

    fn err(input: &str) -> Gs1Error {
        match parse(input.as_bytes(), YEAR) {
            Ok(parsed) => panic!("{input:?} parsed as {parsed:?}"),
            Err(e) => e,
        }
    }

    fn pairs(parsed: &ElementString) -> Vec<(&str, &str)> {
        parsed
            .fields
            .iter()
            .map(|f| (f.ai.as_str(), f.value.as_str()))
            .collect()
    }

    fn date(year: i32, month: u8, day: u8) -> Gs1Date {
        Gs1Date {
            year,
            month,
            day: Some(day),
        }
    }

    #[test]
    fn parenthesised_example() {
        let parsed = ok("(01)09506000134352(17)261231(10)ABC123");
        assert_eq!(
            pairs(&parsed),
            [("01", "09506000134352"), ("17", "261231"), ("10", "ABC123")]
        );
        assert_eq!(parsed.gtin(), Some("09506000134352"));
        assert_eq!(parsed.lot(), Some("ABC123"));
        assert_eq!(parsed.expiry(), Some(date(2026, 12, 31)));
        assert_eq!(parsed.serial(), None);
    }

    #[test]
    fn barcode_example_with_gs_and_identifiers() {
        let expected = [
            ("01", "09506000134352"),
            ("17", "261231"),
            ("10", "ABC123"),
            ("21", "XYZ"),
        ];
        for prefix in ["", "]C1", "]d2", "]Q3", "\u{1d}", "]d2\u{1d}"] {
            let parsed = ok(&format!(
                "{prefix}01095060001343521726123110ABC123\u{1d}21XYZ"
            ));
            assert_eq!(pairs(&parsed), expected, "prefix {prefix:?}");
            assert_eq!(parsed.serial(), Some("XYZ"));
        }
    }

    #[test]
    fn variable_field_last_needs_no_gs() {
        let parsed = ok("010950600013435210ABC123");
        assert_eq!(pairs(&parsed), [("01", "09506000134352"), ("10", "ABC123")]);
        let parsed = ok("0109506000134352\u{1d}21SN-0001\u{1d}");
        assert_eq!(
            pairs(&parsed),
            [("01", "09506000134352"), ("21", "SN-0001")]
        );
    }

    #[test]
    fn gs_between_variable_fields_and_missing_gs_read_as_one_value() {
        let parsed = ok("10LOT-7\u{1d}21SN-1\u{1d}3103000125");
        assert_eq!(
            pairs(&parsed),
            [("10", "LOT-7"), ("21", "SN-1"), ("3103", "000125")]
        );
        // Without the GS, "21SN-1" is part of the lot: still a valid lot, as GS1 defines it.
        assert_eq!(pairs(&ok("10LOT-721SN-1")), [("10", "LOT-721SN-1")]);
        let e = err("10ABCDEFGHIJKLMNOPQRST21SN-1");
        assert!(
            matches!(&e, Gs1Error::Length { ai, position: 2, found_len: 26, .. } if ai == "10"),
            "{e:?}"
        );
        assert!(e.to_string().contains("at most 20 characters"), "{e}");
    }

    #[test]
    fn published_check_digits() {
        for number in [
            "09506000134352",
            "04006381333931",
            "4006381333931",
            "036000291452",
            "96385074",
        ] {
            assert!(has_valid_check_digit(number), "{number}");
        }
        assert!(!has_valid_check_digit("09506000134353"));
        assert!(!has_valid_check_digit("0950600013435A"));
        assert_eq!(check_digit(b"400638133393"), Some(1));
        assert_eq!(ok("(01)04006381333931").gtin(), Some("04006381333931"));
        assert_eq!(
            pairs(&ok("00106141411234567897")),
            [("00", "106141411234567897")]
        );
        assert_eq!(pairs(&ok("(414)9506000134369")), [("414", "9506000134369")]);
    }

    #[test]
    fn bad_check_digit_names_ai_01() {
        let e = err("(01)09506000134353");
        assert_eq!(
            e,
            Gs1Error::CheckDigit {
                ai: "01".into(),
                position: 17,
                found: 3,
                expected: 2
            }
        );
        assert_eq!(
            e.to_string(),
            "AI (01) at byte 17: check digit is 3, expected 2"
        );
        assert!(matches!(err("0009506000134352"), Gs1Error::Length { ai, .. } if ai == "00"));
    }

    #[test]
    fn non_numeric_gtin() {
        let e = err("01095060001343A2");
        assert_eq!(
            e,
            Gs1Error::NotNumeric {
                ai: "01".into(),
                position: 14,
                found: 'A'
            }
        );
        assert_eq!(
            e.to_string(),
            "AI (01) at byte 14: expected a digit, found 'A'"
        );
    }

    #[test]
    fn leap_days() {
        assert_eq!(ok("(17)280229").expiry(), Some(date(2028, 2, 29)));
        let e = err("(17)270229");
        assert!(
            matches!(&e, Gs1Error::InvalidDate { ai, position: 4, .. } if ai == "17"),
            "{e:?}"
        );
        assert_eq!(
            e.to_string(),
            "AI (17) at byte 4: \"270229\" is not a valid date YYMMDD: day 29 is not 00 or 01 to 28 in 2027-02"
        );
        // 2000 is a leap year (divisible by 400); 2100 is not.
        assert_eq!(ok("(11)000229").production_date(), Some(date(2000, 2, 29)));
        assert!(parse(b"(11)000229", 2075).is_err(), "YY 00 in 2075 is 2100");
        assert!(
            matches!(err("(11)261301"), Gs1Error::InvalidDate { reason, .. } if reason.contains("month 13"))
        );
        assert!(matches!(err("(15)260431"), Gs1Error::InvalidDate { .. }));
    }

    #[test]
    fn day_zero_is_end_of_month() {
        let expiry = ok("(17)260200").expiry().expect("an expiry");
        assert_eq!((expiry.year, expiry.month, expiry.day), (2026, 2, None));
        assert_eq!(expiry.last_day(), 28);
        assert_eq!(expiry.to_string(), "2026-02");
        assert_eq!(ok("(17)280200").expiry().map(|d| d.last_day()), Some(29));
        assert_eq!(
            ok("(17)261231").expiry().map(|d| d.to_string()),
            Some("2026-12-31".into())
        );
        assert!(ok("(15)261100").get("15").is_some());
        assert!(
            matches!(err("(7003)2612000930"), Gs1Error::InvalidDate { ai, .. } if ai == "7003")
        );
    }

    #[test]
    fn century_window() {
        assert_eq!(resolve_year(26, 2026), 2026);
        assert_eq!(resolve_year(76, 2026), 2076);
        assert_eq!(resolve_year(77, 2026), 1977);
        assert_eq!(resolve_year(0, 2026), 2000);
        assert_eq!(resolve_year(10, 2060), 2110);
        assert_eq!(resolve_year(11, 2060), 2011);
        assert_eq!(resolve_year(99, 2000), 1999);
    }

    #[test]
    fn unknown_ai() {
        assert_eq!(
            err("(01)09506000134352(05)ABC"),
            Gs1Error::UnknownAi {
                position: 19,
                found: "05".into()
            }
        );
        let e = err("0109506000134352051234");
        assert_eq!(
            e,
            Gs1Error::UnknownAi {
                position: 16,
                found: "0512".into()
            }
        );
        assert!(
            e.to_string()
                .starts_with("byte 16: unknown application identifier \"0512\""),
            "{e}"
        );
        assert_eq!(
            err("(2)ABC"),
            Gs1Error::MalformedParentheses { position: 0 }
        );
        assert_eq!(err("(01"), Gs1Error::MalformedParentheses { position: 0 });
        assert_eq!(err("]d2"), Gs1Error::Empty);
        assert!(
            matches!(
                err("]C00109506000134352"),
                Gs1Error::UnknownAi { position: 0, .. }
            ),
            "not a GS1 symbology"
        );
    }

    #[test]
    fn measure_decimals() {
        let parsed = ok("01095060001343523103000125");
        assert_eq!(
            pairs(&parsed),
            [("01", "09506000134352"), ("3103", "000125")]
        );
        let measure = parsed.measure("3103").expect("a measure");
        assert_eq!(
            measure,
            Measure {
                digits: 125,
                decimals: 3
            }
        );
        assert_eq!(measure.as_f64(), 0.125);
        assert!(
            matches!(err("3106000125"), Gs1Error::UnknownAi { position: 0, .. }),
            "3106: 6 decimals is no AI"
        );
        assert!(
            matches!(err("310312345"), Gs1Error::Length { ai, expected, .. } if ai == "3103" && expected == "6 characters")
        );
        assert_eq!(ai_title("3103"), Some("VARIABLE MEASURE"));
        assert_eq!(ai_title("01"), Some("GTIN"));
        assert_eq!(ai_title("0"), None);
    }

    #[test]
    fn character_set_82() {
        assert_eq!(pairs(&ok("(21)A-b_c.1/2%(x)")), [("21", "A-b_c.1/2%(x)")]);
        let e = err("21AB CD");
        assert_eq!(
            e,
            Gs1Error::InvalidCharacter {
                ai: "21".into(),
                position: 4,
                found: ' '
            }
        );
        assert!(matches!(
            err("(10)A#B"),
            Gs1Error::InvalidCharacter { found: '#', .. }
        ));
        assert_eq!(pairs(&ok("(421)276D-10115")), [("421", "276D-10115")]);
        assert!(
            matches!(err("(421)27AD"), Gs1Error::NotNumeric { ai, position: 7, .. } if ai == "421")
        );
    }

    #[test]
    fn other_known_ais() {
        let parsed = ok(
            "(02)09506000134352(37)12(400)PO-1(8004)ASSET-9(8020)REF(90)INT(99)X(7003)2612310930",
        );
        let ais: Vec<&str> = parsed.fields.iter().map(|f| f.ai.as_str()).collect();
        assert_eq!(ais, ["02", "37", "400", "8004", "8020", "90", "99", "7003"]);
        assert_eq!(parsed.fields[7].date, Some(date(2026, 12, 31)));
        assert!(matches!(
            err("(7003)2612312460"),
            Gs1Error::InvalidTime { .. }
        ));
        assert!(matches!(err("(30)123456789"), Gs1Error::Length { .. }));
        assert!(matches!(err("(10)"), Gs1Error::Length { found_len: 0, .. }));
    }

    #[test]
    fn repeated_ai() {
        assert_eq!(pairs(&ok("(10)A(10)A")), [("10", "A")]);
        assert_eq!(
            err("(10)A(10)B"),
            Gs1Error::Conflict {
                ai: "10".into(),
                position: 9
            }
        );
    }
}
