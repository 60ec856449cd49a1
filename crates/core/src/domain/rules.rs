//! The validation rules every stored value obeys, whatever edge it came in
//! through (gRPC, the CLI's files, the bench): well-formed ids, bounded free
//! text, instants and dates within the supported years, and the currency
//! codes a tenant may report in. The conversions at the API edge apply them
//! and name the offending field; the rules themselves live here, once.

use chrono::{DateTime, Datelike, NaiveDate};

use super::records::Instant;

/// Longest accepted id, in characters.
pub const MAX_ID_LEN: usize = 128;
/// Longest accepted free text (names, e-mails, categories), in characters.
pub const MAX_TEXT_LEN: usize = 256;
/// Most pipeline stages or referral sources a tenant may configure.
pub const MAX_SETTINGS_LIST_LEN: usize = 100;
/// First accepted instant, 2000-01-01T00:00:00Z, in Unix seconds.
pub const MIN_INSTANT_SECONDS: i64 = 946_684_800;
/// First instant no longer accepted, 2100-01-01T00:00:00Z, in Unix seconds.
pub const END_INSTANT_SECONDS: i64 = 4_102_444_800;

/// Active ISO 4217 currency codes accepted as a tenant's reporting currency
/// (ISO 4217 list one as of 2025). Precious metals (XAU, XAG, XPD, XPT), bond
/// market units (XBA–XBD), the SDR and other supranational units (XDR, XSU,
/// XUA) and the testing and "no currency" codes (XTS, XXX) are left out: none
/// of them is money a business reports sales in.
pub const ISO_4217_CODES: &[&str] = &[
    "AED", "AFN", "ALL", "AMD", "ANG", "AOA", "ARS", "AUD", "AWG", "AZN", "BAM", "BBD", "BDT",
    "BGN", "BHD", "BIF", "BMD", "BND", "BOB", "BOV", "BRL", "BSD", "BTN", "BWP", "BYN", "BZD",
    "CAD", "CDF", "CHE", "CHF", "CHW", "CLF", "CLP", "CNY", "COP", "COU", "CRC", "CUC", "CUP",
    "CVE", "CZK", "DJF", "DKK", "DOP", "DZD", "EGP", "ERN", "ETB", "EUR", "FJD", "FKP", "GBP",
    "GEL", "GHS", "GIP", "GMD", "GNF", "GTQ", "GYD", "HKD", "HNL", "HTG", "HUF", "IDR", "ILS",
    "INR", "IQD", "IRR", "ISK", "JMD", "JOD", "JPY", "KES", "KGS", "KHR", "KMF", "KPW", "KRW",
    "KWD", "KYD", "KZT", "LAK", "LBP", "LKR", "LRD", "LSL", "LYD", "MAD", "MDL", "MGA", "MKD",
    "MMK", "MNT", "MOP", "MRU", "MUR", "MVR", "MWK", "MXN", "MXV", "MYR", "MZN", "NAD", "NGN",
    "NIO", "NOK", "NPR", "NZD", "OMR", "PAB", "PEN", "PGK", "PHP", "PKR", "PLN", "PYG", "QAR",
    "RON", "RSD", "RUB", "RWF", "SAR", "SBD", "SCR", "SDG", "SEK", "SGD", "SHP", "SLE", "SLL",
    "SOS", "SRD", "SSP", "STN", "SVC", "SYP", "SZL", "THB", "TJS", "TMT", "TND", "TOP", "TRY",
    "TTD", "TWD", "TZS", "UAH", "UGX", "USD", "USN", "UYI", "UYU", "UYW", "UZS", "VED", "VES",
    "VND", "VUV", "WST", "XAF", "XCD", "XCG", "XOF", "XPF", "YER", "ZAR", "ZMW", "ZWG", "ZWL",
];

/// Whether `code` is an accepted reporting currency ([`ISO_4217_CODES`]).
pub fn is_currency_code(code: &str) -> bool {
    ISO_4217_CODES.binary_search(&code).is_ok()
}

/// Digits after the decimal point of a currency's major unit, its ISO 4217
/// "minor unit" (2 for all but the codes named here); `code` is read
/// case-insensitively.
pub fn currency_minor_digits(code: &str) -> u32 {
    match code.to_ascii_uppercase().as_str() {
        "BIF" | "CLP" | "DJF" | "GNF" | "ISK" | "JPY" | "KMF" | "KRW" | "PYG" | "RWF" | "UGX"
        | "UYI" | "VND" | "VUV" | "XAF" | "XOF" | "XPF" => 0,
        "BHD" | "IQD" | "JOD" | "KWD" | "LYD" | "OMR" | "TND" => 3,
        "CLF" | "UYW" => 4,
        _ => 2,
    }
}

/// Whether `s` is a well-formed id: 1–128 characters of `[A-Za-z0-9._:-]`.
pub fn is_valid_id(s: &str) -> bool {
    id_problem(s).is_none()
}

/// What is wrong with an id, in words; `None` when it is well-formed.
pub fn id_problem(s: &str) -> Option<String> {
    if s.is_empty() {
        return Some("is required".to_string());
    }
    let len = s.chars().count();
    if len > MAX_ID_LEN {
        return Some(format!(
            "must be at most {MAX_ID_LEN} characters, got {len}"
        ));
    }
    if let Some(c) = s
        .chars()
        .find(|c| !(c.is_ascii_alphanumeric() || matches!(c, '.' | '_' | ':' | '-')))
    {
        return Some(format!(
            "contains {c:?}; only A-Z, a-z, 0-9, '.', '_', ':' and '-' are allowed"
        ));
    }
    None
}

/// What is wrong with a free text, in words; `None` when it may be stored.
/// Free text is bounded in length and free of control characters (a NUL
/// byte, for one, cannot be stored in PostgreSQL text, and both backends
/// must accept exactly the same input).
pub fn text_problem(value: &str) -> Option<String> {
    if value.chars().any(char::is_control) {
        return Some("must not contain control characters".to_string());
    }
    let len = value.chars().count();
    if len > MAX_TEXT_LEN {
        return Some(format!(
            "must be at most {MAX_TEXT_LEN} characters, got {len}"
        ));
    }
    None
}

/// Trims and lower-cases a free-text category (stage names, lead sources,
/// spend categories): the form in which categories are stored and compared.
pub fn normalize_category(value: &str) -> String {
    value.trim().to_lowercase()
}

/// The instant `seconds` + `nanos` after the Unix epoch, if it lies within
/// [2000-01-01T00:00:00Z, 2100-01-01T00:00:00Z) with nanos in
/// `0..1_000_000_000`; otherwise what is wrong, in words.
pub fn instant_from_unix(seconds: i64, nanos: i32) -> Result<Instant, &'static str> {
    const OUT_OF_RANGE: &str = "must be within [2000-01-01T00:00:00Z, 2100-01-01T00:00:00Z)";
    let nanos = u32::try_from(nanos)
        .ok()
        .filter(|n| *n < 1_000_000_000)
        .ok_or("nanos must be within 0..=999999999")?;
    if !(MIN_INSTANT_SECONDS..END_INSTANT_SECONDS).contains(&seconds) {
        return Err(OUT_OF_RANGE);
    }
    DateTime::from_timestamp(seconds, nanos).ok_or(OUT_OF_RANGE)
}

/// The local date `year-month-day`, if it is a calendar date within
/// [2000-01-01, 2100-01-01]; otherwise what is wrong, in words.
pub fn date_from_parts(year: i32, month: i32, day: i32) -> Result<NaiveDate, &'static str> {
    let date = u32::try_from(month)
        .ok()
        .zip(u32::try_from(day).ok())
        .and_then(|(m, d)| NaiveDate::from_ymd_opt(year, m, d))
        .ok_or("is not a valid calendar date")?;
    if !(2000..=2099).contains(&date.year())
        && date != NaiveDate::from_ymd_opt(2100, 1, 1).unwrap_or(date)
    {
        return Err("must be within [2000-01-01, 2100-01-01]");
    }
    Ok(date)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_list_is_sorted_unique_codes() {
        assert!(ISO_4217_CODES.windows(2).all(|w| w[0] < w[1]));
        assert!(
            ISO_4217_CODES
                .iter()
                .all(|c| c.len() == 3 && c.chars().all(|ch| ch.is_ascii_uppercase()))
        );
        assert!(is_currency_code("USD") && is_currency_code("EUR"));
        assert!(!is_currency_code("XXX") && !is_currency_code("usd"));
    }

    #[test]
    fn minor_digits_follow_iso_4217() {
        let digits = |c| currency_minor_digits(c);
        assert_eq!(
            [
                digits("USD"),
                digits("eur"),
                digits("JPY"),
                digits("KWD"),
                digits("CLF")
            ],
            [2, 2, 0, 3, 4]
        );
        // Every code with other than 2 digits is an accepted currency.
        for code in ["JPY", "KRW", "BHD", "TND", "CLF", "UYW", "XOF"] {
            assert!(is_currency_code(code), "{code}");
        }
    }

    #[test]
    fn instants_and_dates_are_bounded_to_the_supported_years() {
        assert!(instant_from_unix(MIN_INSTANT_SECONDS, 0).is_ok());
        assert!(instant_from_unix(MIN_INSTANT_SECONDS - 1, 0).is_err());
        assert!(instant_from_unix(END_INSTANT_SECONDS - 1, 999_999_999).is_ok());
        assert!(instant_from_unix(END_INSTANT_SECONDS, 0).is_err());
        assert!(instant_from_unix(MIN_INSTANT_SECONDS, -1).is_err());
        assert!(date_from_parts(2100, 1, 1).is_ok());
        assert!(date_from_parts(2100, 1, 2).is_err());
        assert!(date_from_parts(1999, 12, 31).is_err());
        assert!(date_from_parts(2024, 2, 30).is_err());
    }
}
