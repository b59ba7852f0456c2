//! Value objects of a return: each parses raw input into a type that can only hold a valid
//! value, with an error a caller can act on.

use crate::values::{Quantity, Sku, ValueError};
use serde::{Deserialize, Serialize};
use std::fmt;

/// The return merchandise authorization number given when a return is approved: 3 to 32
/// letters, digits or `-`.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RmaNumber(String);

impl RmaNumber {
    /// The fewest characters an RMA number may have, after trimming.
    pub const MIN_LEN: usize = 3;
    /// The most characters an RMA number may have, after trimming.
    pub const MAX_LEN: usize = 32;

    /// # Errors
    /// When the RMA number is not 3 to 32 letters, digits or `-`.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = raw.trim();
        if !(Self::MIN_LEN..=Self::MAX_LEN).contains(&s.len())
            || !s.chars().all(|c| c.is_ascii_alphanumeric() || c == '-')
        {
            return Err(ValueError(format!(
                "RMA number must be {} to {} letters, digits or '-'",
                Self::MIN_LEN,
                Self::MAX_LEN
            )));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for RmaNumber {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        Self::parse(&s)
    }
}
impl From<RmaNumber> for String {
    fn from(v: RmaNumber) -> String {
        v.0
    }
}
impl fmt::Display for RmaNumber {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// The payment service's id for a refund: 1 to 128 printable characters.
#[derive(Debug, Clone, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(try_from = "String", into = "String")]
pub struct RefundId(String);

impl RefundId {
    /// The most characters a refund id may have, after trimming.
    pub const MAX_CHARS: usize = 128;

    /// # Errors
    /// When the refund id is empty, longer than 128 characters or holds control characters.
    pub fn parse(raw: &str) -> Result<Self, ValueError> {
        let s = raw.trim();
        if s.is_empty() {
            return Err(ValueError("refund id must not be empty".into()));
        }
        if s.chars().count() > Self::MAX_CHARS {
            return Err(ValueError(format!(
                "refund id must be at most {} characters",
                Self::MAX_CHARS
            )));
        }
        if s.chars().any(char::is_control) {
            return Err(ValueError(
                "refund id must not contain control characters".into(),
            ));
        }
        Ok(Self(s.to_owned()))
    }
    pub fn as_str(&self) -> &str {
        &self.0
    }
}
impl TryFrom<String> for RefundId {
    type Error = ValueError;
    fn try_from(s: String) -> Result<Self, ValueError> {
        Self::parse(&s)
    }
}
impl From<RefundId> for String {
    fn from(v: RefundId) -> String {
        v.0
    }
}
impl fmt::Display for RefundId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// How long after delivery a return may be requested, in whole days (1 to 365).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(try_from = "i64", into = "i64")]
pub struct ReturnWindow(u32);

impl ReturnWindow {
    /// The window when configuration sets none: 30 days after delivery.
    pub const DEFAULT_DAYS: u32 = 30;
    /// The longest window configuration may set.
    pub const MAX_DAYS: i64 = 365;

    /// # Errors
    /// When the number of days is outside 1..=365.
    pub fn parse(days: i64) -> Result<Self, ValueError> {
        if (1..=Self::MAX_DAYS).contains(&days) {
            Ok(Self(days as u32))
        } else {
            Err(ValueError(format!(
                "the return window must be between 1 and {} days",
                Self::MAX_DAYS
            )))
        }
    }
    pub fn days(&self) -> u32 {
        self.0
    }
    /// The window as a duration.
    pub fn duration(&self) -> chrono::Duration {
        chrono::Duration::days(i64::from(self.0))
    }
}
impl Default for ReturnWindow {
    fn default() -> Self {
        Self(Self::DEFAULT_DAYS)
    }
}
impl TryFrom<i64> for ReturnWindow {
    type Error = ValueError;
    fn try_from(days: i64) -> Result<Self, ValueError> {
        Self::parse(days)
    }
}
impl From<ReturnWindow> for i64 {
    fn from(w: ReturnWindow) -> i64 {
        w.0.into()
    }
}

/// A line the customer asks to return: a SKU of the order and how many units.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct RequestedLine {
    pub sku: Sku,
    pub quantity: Quantity,
}

impl RequestedLine {
    /// # Errors
    /// When the SKU or the quantity does not parse.
    pub fn parse(sku: &str, quantity: i64) -> Result<Self, ValueError> {
        Ok(Self {
            sku: Sku::parse(sku)?,
            quantity: Quantity::parse(quantity)?,
        })
    }
}

/// A line of a requested return, priced with the order's unit price.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct ReturnLine {
    pub sku: Sku,
    pub quantity: Quantity,
    pub unit_price_minor: i64,
}

impl ReturnLine {
    /// What returning this line refunds, in minor units; cannot overflow given its parts'
    /// bounds.
    pub fn refund_minor(&self) -> i64 {
        i64::from(self.quantity.get()) * self.unit_price_minor
    }
}

/// What inspection found for one returned line.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[serde(rename_all = "SCREAMING_SNAKE_CASE")]
pub enum InspectionOutcome {
    /// The items are as described; the line is refunded.
    Accepted,
    /// The items fail inspection; the line is not refunded.
    Refused,
}

/// The inspection of one returned line, by SKU.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct LineInspection {
    pub sku: Sku,
    pub outcome: InspectionOutcome,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn rma_numbers_are_letters_digits_and_dashes() {
        assert_eq!(RmaNumber::parse(" RMA-1 ").unwrap().as_str(), "RMA-1");
        assert!(RmaNumber::parse("R1").is_err());
        assert!(RmaNumber::parse("RMA 1").is_err());
        assert!(RmaNumber::parse(&"R".repeat(33)).is_err());
    }

    #[test]
    fn refund_ids_are_trimmed_and_bounded() {
        assert_eq!(RefundId::parse(" rf-1 ").unwrap().as_str(), "rf-1");
        assert!(RefundId::parse("  ").is_err());
        assert!(RefundId::parse(&"x".repeat(129)).is_err());
        assert!(RefundId::parse("a\u{7}b").is_err());
    }

    #[test]
    fn the_return_window_defaults_to_30_days_and_is_bounded() {
        assert_eq!(ReturnWindow::default().days(), 30);
        assert!(ReturnWindow::parse(0).is_err());
        assert_eq!(ReturnWindow::parse(365).unwrap().days(), 365);
        assert!(ReturnWindow::parse(366).is_err());
    }

    #[test]
    fn a_requested_line_refuses_a_bad_sku_or_quantity() {
        assert!(RequestedLine::parse("A-1", 2).is_ok());
        assert!(RequestedLine::parse("A 1", 2).is_err());
        assert!(RequestedLine::parse("A-1", 0).is_err());
    }
}
