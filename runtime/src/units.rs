//! Durations and byte sizes as people write them: `30s`, `1h30m`, `64MiB`, `1.5GiB`.
//!
//! Owns parsing and formatting of those two units, for the CLI and for the serde form of
//! durations in specs and configs ([`serde_duration`]). It does not own the limits on any
//! particular value; those live with the value (see [`crate::spec`]).

use std::time::Duration;

/// Why a duration or size did not parse. Each variant quotes the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum UnitError {
    /// Not a duration.
    #[error(
        "invalid duration {input:?}: {reason}; expected a duration like 30s, 5m, 1h30m or 250ms"
    )]
    Duration {
        /// The input.
        input: String,
        /// What the parser found wrong.
        reason: String,
    },
    /// Not a size.
    #[error(
        "invalid size {input:?}: expected a number of bytes like 4096, or a number and a unit \
         like 512KiB, 64MiB, 1.5GiB or 10MB"
    )]
    Size {
        /// The input.
        input: String,
    },
    /// A size that does not fit in 64 bits.
    #[error("size {input:?} is too large: sizes must be below 16 EiB")]
    SizeTooLarge {
        /// The input.
        input: String,
    },
}

/// Parses a duration such as `30s`, `5m`, `1h30m`, `250ms` or `1.5s` (humantime's syntax: a
/// sequence of numbers with units from `ns` to `y`, with or without spaces). A bare `0` is zero;
/// other bare numbers are refused, since whether they meant seconds cannot be known.
pub fn parse_duration(input: &str) -> Result<Duration, UnitError> {
    humantime::parse_duration(input.trim()).map_err(|e| UnitError::Duration {
        input: input.to_owned(),
        reason: e.to_string(),
    })
}

/// Formats a duration compactly, without spaces, so that it can be pasted back into a command
/// line: `1h30m`, `250ms`, `1s500ms`, `0s`. [`parse_duration`] reads it back exactly.
pub fn format_duration(duration: Duration) -> String {
    humantime::format_duration(duration)
        .to_string()
        .replace(' ', "")
}

/// Binary units, largest first, as [`format_size`] prints them.
const BINARY_UNITS: [(&str, u64); 6] = [
    ("EiB", 1 << 60),
    ("PiB", 1 << 50),
    ("TiB", 1 << 40),
    ("GiB", 1 << 30),
    ("MiB", 1 << 20),
    ("KiB", 1 << 10),
];

/// Parses a byte size: a number, optionally followed (with or without a space) by a unit.
///
/// Units are binary `KiB` `MiB` `GiB` `TiB` `PiB` `EiB` (powers of 1024), decimal `KB` `MB` `GB`
/// `TB` `PB` `EB` (powers of 1000) or `B`; case does not matter. No unit means bytes. The number
/// may have a decimal fraction (`1.5GiB`); a result that is not a whole number of bytes is
/// rounded down.
pub fn parse_size(input: &str) -> Result<u64, UnitError> {
    let invalid = || UnitError::Size {
        input: input.to_owned(),
    };
    let too_large = || UnitError::SizeTooLarge {
        input: input.to_owned(),
    };

    let text = input.trim();
    let split = text
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(text.len());
    let (number, unit) = text.split_at(split);
    let multiplier: u128 = match unit.trim_start().to_ascii_lowercase().as_str() {
        "" | "b" => 1,
        "kib" => 1 << 10,
        "mib" => 1 << 20,
        "gib" => 1 << 30,
        "tib" => 1 << 40,
        "pib" => 1 << 50,
        "eib" => 1 << 60,
        "kb" => 1_000,
        "mb" => 1_000_000,
        "gb" => 1_000_000_000,
        "tb" => 1_000_000_000_000,
        "pb" => 1_000_000_000_000_000,
        "eb" => 1_000_000_000_000_000_000,
        _ => return Err(invalid()),
    };

    let (whole, fraction) = number.split_once('.').unwrap_or((number, ""));
    let all_digits = |s: &str| s.bytes().all(|b| b.is_ascii_digit());
    if whole.is_empty()
        || !all_digits(whole)
        || !all_digits(fraction)
        || (number.contains('.') && fraction.is_empty())
    {
        return Err(invalid());
    }
    // Digits past the 18th cannot change a u64 result by a whole byte (2^60 / 10^18 < 2), and
    // dropping them keeps the arithmetic in u128.
    let fraction = &fraction[..fraction.len().min(18)];

    let whole: u128 = whole.parse().map_err(|_| too_large())?;
    let mut bytes = whole.checked_mul(multiplier).ok_or_else(too_large)?;
    if !fraction.is_empty() {
        let numerator: u128 = fraction.parse().expect("at most 18 digits");
        bytes += numerator * multiplier / 10u128.pow(fraction.len() as u32);
    }
    u64::try_from(bytes).map_err(|_| too_large())
}

/// Formats a byte size in binary units for people: `64 MiB`, `1 GiB`, `1.5 GiB`, `100 B`.
///
/// Exact multiples of a unit print exactly and parse back with [`parse_size`]; other sizes are
/// shown with at most two decimals, rounded down, so the text is then approximate.
pub fn format_size(bytes: u64) -> String {
    let Some(&(name, unit)) = BINARY_UNITS.iter().find(|&&(_, unit)| bytes >= unit) else {
        return format!("{bytes} B");
    };
    if bytes.is_multiple_of(unit) {
        return format!("{} {name}", bytes / unit);
    }
    let hundredths = u128::from(bytes) * 100 / u128::from(unit);
    let text = format!("{}.{:02}", hundredths / 100, hundredths % 100);
    let text = text.trim_end_matches('0').trim_end_matches('.');
    format!("{text} {name}")
}

/// Serde for a [`Duration`] as its [`format_duration`] text, read back with
/// [`parse_duration`]: use as `#[serde(with = "wasmjob::units::serde_duration")]`.
pub mod serde_duration {
    use serde::{Deserialize, Deserializer, Serializer};
    use std::time::Duration;

    /// Writes the duration as text, e.g. `"10m"`.
    pub fn serialize<S: Serializer>(duration: &Duration, serializer: S) -> Result<S::Ok, S::Error> {
        serializer.serialize_str(&super::format_duration(*duration))
    }

    /// Reads a duration from text, e.g. `"10m"` or `"1h 30m"`.
    pub fn deserialize<'de, D: Deserializer<'de>>(deserializer: D) -> Result<Duration, D::Error> {
        let text = String::deserialize(deserializer)?;
        super::parse_duration(&text).map_err(serde::de::Error::custom)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_durations() {
        let cases = [
            ("30s", Duration::from_secs(30)),
            ("5m", Duration::from_secs(300)),
            ("1h30m", Duration::from_secs(5400)),
            ("1h 30m", Duration::from_secs(5400)),
            ("250ms", Duration::from_millis(250)),
            ("1.5s", Duration::from_millis(1500)),
            (" 7days ", Duration::from_secs(7 * 86400)),
            ("0", Duration::ZERO),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_duration(input), Ok(expected), "{input:?}");
        }
    }

    #[test]
    fn rejects_bad_durations() {
        for input in ["", "abc", "30", "5 parsecs", "-1s", "1h30"] {
            let err = parse_duration(input).unwrap_err();
            assert!(matches!(err, UnitError::Duration { .. }), "{input:?}");
            let message = err.to_string();
            assert!(message.contains(&format!("{input:?}")), "{message}");
            assert!(
                message.contains("expected a duration like 30s"),
                "{message}"
            );
        }
    }

    #[test]
    fn formats_durations_compactly_and_round_trips() {
        let cases = [
            (Duration::ZERO, "0s"),
            (Duration::from_secs(30), "30s"),
            (Duration::from_secs(600), "10m"),
            (Duration::from_secs(5400), "1h30m"),
            (Duration::from_millis(1500), "1s500ms"),
            (Duration::from_secs(7 * 86400 + 3600), "7days1h"),
            (Duration::new(3, 7), "3s7ns"),
        ];
        for (duration, text) in cases {
            assert_eq!(format_duration(duration), text);
            assert_eq!(parse_duration(text), Ok(duration), "{text}");
        }
    }

    #[test]
    fn parses_sizes() {
        let cases = [
            ("4096", 4096),
            ("0", 0),
            ("12B", 12),
            ("512KiB", 512 << 10),
            ("64MiB", 64 << 20),
            ("64 MiB", 64 << 20),
            ("64mib", 64 << 20),
            ("1GiB", 1 << 30),
            ("1.5GiB", 3 << 29),
            ("0.5KiB", 512),
            ("1.0009765625KiB", 1025),
            ("10MB", 10_000_000),
            ("2kb", 2000),
            ("1.3B", 1),
            ("15EiB", 15 << 60),
            ("18446744073709551615", u64::MAX),
        ];
        for (input, expected) in cases {
            assert_eq!(parse_size(input), Ok(expected), "{input:?}");
        }
    }

    #[test]
    fn rejects_bad_sizes() {
        let invalid = [
            "",
            "MiB",
            "abc",
            "-1",
            "1.",
            ".5MiB",
            "1.2.3",
            "5 parsecs",
            "1 K",
            "1e6",
        ];
        for input in invalid {
            assert_eq!(
                parse_size(input),
                Err(UnitError::Size {
                    input: input.into()
                }),
                "{input:?}"
            );
        }
        for input in [
            "16EiB",
            "18446744073709551616",
            "99999999999999999999999999999999999999999",
        ] {
            assert_eq!(
                parse_size(input),
                Err(UnitError::SizeTooLarge {
                    input: input.into()
                }),
                "{input:?}"
            );
        }
        assert_eq!(
            parse_size("64 megs").unwrap_err().to_string(),
            "invalid size \"64 megs\": expected a number of bytes like 4096, or a number and a \
             unit like 512KiB, 64MiB, 1.5GiB or 10MB"
        );
    }

    #[test]
    fn formats_sizes() {
        let cases = [
            (0, "0 B"),
            (1000, "1000 B"),
            (1024, "1 KiB"),
            (64 << 20, "64 MiB"),
            (1 << 30, "1 GiB"),
            (3 << 29, "1.5 GiB"),
            ((1 << 20) - 1, "1023.99 KiB"),
            ((1 << 30) + 1, "1 GiB"),
            (u64::MAX, "15.99 EiB"),
        ];
        for (bytes, text) in cases {
            assert_eq!(format_size(bytes), text, "{bytes}");
        }
        for bytes in [0, 4096, 64 << 20, 5 << 40] {
            assert_eq!(parse_size(&format_size(bytes)), Ok(bytes));
        }
    }

    #[test]
    fn serde_duration_uses_text() {
        #[derive(serde::Serialize, serde::Deserialize, PartialEq, Debug)]
        struct Config {
            #[serde(with = "serde_duration")]
            timeout: Duration,
        }
        let config = Config {
            timeout: Duration::from_secs(90),
        };
        let json = serde_json::to_string(&config).unwrap();
        assert_eq!(json, r#"{"timeout":"1m30s"}"#);
        assert_eq!(serde_json::from_str::<Config>(&json).unwrap(), config);
        assert!(serde_json::from_str::<Config>(r#"{"timeout":"soon"}"#).is_err());
    }
}
