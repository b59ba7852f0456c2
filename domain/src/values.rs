//! Value objects. Each one parses from raw input into a type that can only hold a valid value;
//! the error says, in words a caller can act on, what was wrong.

use serde::{Deserialize, Serialize};
use std::fmt;
use uuid::Uuid;

/// Why a raw value was refused. The message is meant for the caller (it ends up in a 422).
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{0}")]
pub struct ValueError(pub String);

fn err<T>(msg: impl Into<String>) -> Result<T, ValueError> {
    Err(ValueError(msg.into()))
}

/// Checks a free-text identifier: trimmed, non-empty, bounded, printable.
fn parse_text(raw: &str, what: &str, max: usize) -> Result<String, ValueError> {
    let s = raw.trim();
    if s.is_empty() {
        return err(format!("{what} must not be empty"));
    }
    if s.chars().count() > max {
        return err(format!("{what} must be at most {max} characters"));
    }
    if s.chars().any(char::is_control) {
        return err(format!("{what} must not contain control characters"));
    }
    Ok(s.to_owned())
}

macro_rules! text_value {
    ($(#[$doc:meta])* $name:ident, $what:literal, $max:literal) => {
        $(#[$doc])*
        #[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
        #[serde(try_from = "String", into = "String")]
        pub struct $name(String);

        impl $name {
            /// The most characters the value may have, after trimming.
            pub const MAX_CHARS: usize = $max;

            /// Parses a raw value.
            ///
            /// # Errors
            /// When the value is empty, too long or holds control characters.
            pub fn parse(raw: &str) -> Result<Self, ValueError> {
                parse_text(raw, $what, $max).map(Self)
            }
            pub fn as_str(&self) -> &str {
                &self.0
            }
        }
        impl TryFrom<String> for $name {
            type Error = ValueError;
            fn try_from(s: String) -> Result<Self, ValueError> {
                Self::parse(&s)
            }
        }
        impl From<$name> for String {
            fn from(v: $name) -> String {
                v.0
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&self.0)
            }
        }
    };
}

text_value!(
    /// The customer who placed the order, as the shop knows them.
    CustomerId, "customer id", 64);
text_value!(
    /// The payment service's id for an authorization.
    PaymentId, "payment id", 128);
text_value!(
    /// The inventory service's id for a stock reservation.
    ReservationId, "reservation id", 128);
text_value!(
    /// The carrier that ships the parcel.
    Carrier, "carrier", 64);
text_value!(
    /// Why something happened, in the words of whoever reported it.
    Reason, "reason", 500);
text_value!(
    /// A line of a postal address.
    AddressLine, "address line", 200);

/// The order's identity; its stream is `order-<uuid>`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(transparent)]
pub struct OrderId(Uuid);

impl OrderId {
    pub fn new(id: Uuid) -> Self {
        Self(id)
    }
    /// Parses the textual form of a UUID.
    ///
    /// # Errors
    /// When the text is not a UUID.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        Uuid::parse_str(raw.trim()).map(Self).map_err(|_| {
            ValueError(format!(
                "'{}' is not a valid order id (a UUID)",
                truncate(raw)
            ))
        })
    }
    pub fn as_uuid(&self) -> Uuid {
        self.0
    }
    /// The name of the event stream that holds this order.
    pub fn stream_name(&self) -> String {
        format!("{}{}", crate::ORDER_STREAM_PREFIX, self.0)
    }
}

impl fmt::Display for OrderId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        self.0.fmt(f)
    }
}

fn truncate(raw: &str) -> String {
    raw.chars().take(40).collect()
}

/// A stock-keeping unit: 1 to 64 characters of letters, digits, `-`, `_` or `.`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, PartialOrd, Ord, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct Sku(String);

impl Sku {
    /// The most characters a SKU may have, after trimming.
    pub const MAX_LEN: usize = 64;

    /// # Errors
    /// When the SKU is empty, longer than 64 characters or holds other characters.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = raw.trim();
        if s.is_empty() || s.len() > Self::MAX_LEN {
            return err(format!("sku must be 1 to {} characters", Self::MAX_LEN));
        }
        if !s
            .chars()
            .all(|c| c.is_ascii_alphanumeric() || matches!(c, '-' | '_' | '.'))
        {
            return err("sku may only contain letters, digits, '-', '_' and '.'");
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for Sku {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        Self::parse(&s)
    }
}
impl From<Sku> for String {
    fn from(v: Sku) -> String {
        v.0
    }
}

/// How many units of a SKU: 1 to 1000.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct Quantity(u32);

impl Quantity {
    pub const MAX: i64 = 1000;
    /// # Errors
    /// When the quantity is outside 1..=1000.
    pub fn parse(raw: i64) -> Result<Self, ValueError> {
        if (1..=Self::MAX).contains(&raw) {
            Ok(Self(raw as u32))
        } else {
            err(format!("quantity must be between 1 and {}", Self::MAX))
        }
    }
    pub fn get(&self) -> u32 {
        self.0
    }
}
impl TryFrom<i64> for Quantity {
    type Error = ValueError;
    fn try_from(v: i64) -> Result<Self, ValueError> {
        Self::parse(v)
    }
}
impl From<Quantity> for i64 {
    fn from(q: Quantity) -> i64 {
        q.0.into()
    }
}

/// ISO 4217 currencies we accept.
pub const CURRENCIES: &[&str] = &[
    "AUD", "BRL", "CAD", "CHF", "CNY", "CZK", "DKK", "EUR", "GBP", "HKD", "HUF", "INR", "JPY",
    "KRW", "MXN", "NOK", "NZD", "PLN", "SEK", "SGD", "USD", "ZAR",
];

/// An ISO 4217 currency code that we know.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize)]
#[serde(into = "String")]
pub struct Currency(&'static str);

impl<'de> Deserialize<'de> for Currency {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let raw = String::deserialize(d)?;
        Self::parse(&raw).map_err(serde::de::Error::custom)
    }
}

impl Currency {
    /// # Errors
    /// When the code is not a known ISO 4217 currency (codes are upper case).
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        CURRENCIES
            .iter()
            .find(|code| **code == raw)
            .map(|code| Self(code))
            .ok_or_else(|| {
                ValueError(format!(
                    "'{}' is not a known ISO 4217 currency code (e.g. EUR, USD)",
                    truncate(raw)
                ))
            })
    }
    pub fn code(&self) -> &'static str {
        self.0
    }
}
impl TryFrom<String> for Currency {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        Self::parse(&s)
    }
}
impl From<Currency> for String {
    fn from(c: Currency) -> String {
        c.0.to_owned()
    }
}
impl fmt::Display for Currency {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.0)
    }
}

/// A non-negative amount in minor units (cents) of a currency. Never a float.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Money {
    pub amount_minor: i64,
    pub currency: Currency,
}

impl Money {
    /// The largest unit price we accept, so that 100 lines of 1000 units cannot overflow.
    pub const MAX_UNIT_MINOR: i64 = 100_000_000_000;

    /// # Errors
    /// When the amount is negative or above [`Money::MAX_UNIT_MINOR`].
    pub fn parse(amount_minor: i64, currency: Currency) -> Result<Self, ValueError> {
        if amount_minor < 0 {
            return err("amount must not be negative");
        }
        if amount_minor > Self::MAX_UNIT_MINOR {
            return err(format!(
                "amount must be at most {} minor units",
                Self::MAX_UNIT_MINOR
            ));
        }
        Ok(Self {
            amount_minor,
            currency,
        })
    }
}

impl fmt::Display for Money {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{} {} (minor units)", self.amount_minor, self.currency)
    }
}

/// A carrier's tracking number: 4 to 64 letters, digits or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct TrackingNumber(String);

impl TrackingNumber {
    /// The fewest characters a tracking number may have, after trimming.
    pub const MIN_LEN: usize = 4;
    /// The most characters a tracking number may have, after trimming.
    pub const MAX_LEN: usize = 64;

    /// # Errors
    /// When the tracking number is not 4 to 64 letters, digits or `-`.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = raw.trim();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&s.len())
            || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return err(format!(
                "tracking number must be {} to {} letters, digits or '-'",
                Self::MIN_LEN,
                Self::MAX_LEN
            ));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for TrackingNumber {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        Self::parse(&s)
    }
}
impl From<TrackingNumber> for String {
    fn from(v: TrackingNumber) -> String {
        v.0
    }
}

/// An ISO 3166-1 alpha-2 country code (two upper-case letters).
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct CountryCode(String);

impl CountryCode {
    /// # Errors
    /// When the code is not two upper-case ASCII letters.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        if raw.len() == 2 && raw.chars().all(|c| c.is_ascii_uppercase()) {
            Ok(Self(raw.to_owned()))
        } else {
            err("country must be an ISO 3166-1 alpha-2 code such as DE or US")
        }
    }
}
impl TryFrom<String> for CountryCode {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        Self::parse(&s)
    }
}
impl From<CountryCode> for String {
    fn from(v: CountryCode) -> String {
        v.0
    }
}

/// Where the parcel goes.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ShippingAddress {
    pub name: AddressLine,
    pub line1: AddressLine,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub line2: Option<AddressLine>,
    pub city: AddressLine,
    pub postal_code: AddressLine,
    pub country: CountryCode,
}

/// One line of an order: a SKU, how many, and the unit price in the order's currency.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct OrderLine {
    pub sku: Sku,
    pub quantity: Quantity,
    pub unit_price_minor: i64,
}

impl OrderLine {
    /// The line's total in minor units; cannot overflow given the bounds on its parts.
    pub fn total_minor(&self) -> i64 {
        i64::from(self.quantity.get()) * self.unit_price_minor
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn currency_accepts_known_codes_and_refuses_others() {
        assert_eq!(Currency::parse("EUR").unwrap().code(), "EUR");
        assert!(Currency::parse("eur").is_err());
        assert!(Currency::parse("XXX").is_err());
    }

    #[test]
    fn quantity_is_bounded() {
        assert!(Quantity::parse(0).is_err());
        assert!(Quantity::parse(1).is_ok());
        assert!(Quantity::parse(1000).is_ok());
        assert!(Quantity::parse(1001).is_err());
    }

    #[test]
    fn sku_refuses_spaces_and_empty() {
        assert!(Sku::parse("ABC-1").is_ok());
        assert!(Sku::parse("").is_err());
        assert!(Sku::parse("A B").is_err());
    }

    #[test]
    fn text_values_trim_and_bound() {
        assert_eq!(CustomerId::parse("  c-1 ").unwrap().as_str(), "c-1");
        assert!(CustomerId::parse(&"x".repeat(65)).is_err());
        assert!(Reason::parse("a\u{0}b").is_err());
    }

    #[test]
    fn money_refuses_negative_amounts() {
        let eur = Currency::parse("EUR").unwrap();
        assert!(Money::parse(-1, eur).is_err());
        assert!(Money::parse(0, eur).is_ok());
    }
}
