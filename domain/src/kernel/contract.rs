//! Events as wire contracts: a stable type name and a schema version per event, stored beside
//! the data; decoding upcasts older versions step by step to the current one.

use serde::de::DeserializeOwned;
use serde::Serialize;
use serde_json::Value;

/// One event type's name and current schema version.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct EventType {
    pub name: &'static str,
    pub version: u32,
}

/// Rewrites the data of `event_type` at `from_version` into the shape of `from_version + 1`.
/// A released version's shape never changes; a new version comes with one of these.
#[derive(Debug, Clone, Copy)]
pub struct Upcaster {
    pub event_type: &'static str,
    pub from_version: u32,
    /// The rewrite; the error says what the stored data lacks.
    pub upcast: fn(Value) -> Result<Value, String>,
}

/// Why stored data could not be turned back into an event.
#[derive(Debug, thiserror::Error)]
pub enum DecodeError {
    #[error("unknown event type '{0}'")]
    UnknownType(String),
    #[error("unsupported schema version {version} for {event_type}")]
    UnsupportedVersion { event_type: String, version: u32 },
    #[error("event {event_type} v{version} cannot be upcast: {reason}")]
    Upcast {
        event_type: String,
        version: u32,
        reason: String,
    },
    #[error("event {event_type} does not match its schema: {source}")]
    Invalid {
        event_type: String,
        #[source]
        source: serde_json::Error,
    },
}

/// A workflow's event enum as a set of wire contracts. Implemented by [`event_contract!`],
/// which also makes the enum serialise as `{"type": <name>, "data": {...}}` — the shape the
/// provided methods rely on.
///
/// [`event_contract!`]: crate::event_contract
pub trait EventContract:
    Sized + Clone + std::fmt::Debug + PartialEq + Serialize + DeserializeOwned
{
    /// Every event type with its current schema version, in the workflow's order.
    const TYPES: &'static [EventType];
    /// Rewrites of older stored versions, applied by [`EventContract::decode`].
    const UPCASTERS: &'static [Upcaster] = &[];

    /// The stable type name stored beside the data.
    fn event_type(&self) -> &'static str;

    /// A one-line human summary, for timelines and history output.
    fn summary(&self) -> String;

    /// The schema version this event is written with: its type's current version.
    fn schema_version(&self) -> u32 {
        current_version::<Self>(self.event_type()).unwrap_or(1)
    }

    /// The event's data, without its type name.
    fn data(&self) -> Value {
        match serde_json::to_value(self) {
            Ok(Value::Object(mut map)) => map.remove("data").unwrap_or(Value::Null),
            // The macro's serde attributes make every event an object with "type" and "data".
            _ => Value::Null,
        }
    }

    /// Rewrites stored data of `event_type` at `version` into its type's current version,
    /// through the upcasters, without deserialising it; returns that version and the data.
    /// Readers that keep events as JSON (exports) use this; [`EventContract::decode`] builds on it.
    ///
    /// # Errors
    /// Unknown type, a version newer than the code knows or with no upcaster, or data an
    /// upcaster cannot rewrite.
    fn upcast(event_type: &str, version: u32, data: &Value) -> Result<(u32, Value), DecodeError> {
        let current = current_version::<Self>(event_type)
            .ok_or_else(|| DecodeError::UnknownType(event_type.to_owned()))?;
        let unsupported = || DecodeError::UnsupportedVersion {
            event_type: event_type.to_owned(),
            version,
        };
        if version == 0 || version > current {
            return Err(unsupported());
        }
        let mut data = data.clone();
        for from in version..current {
            let upcaster = Self::UPCASTERS
                .iter()
                .find(|u| u.event_type == event_type && u.from_version == from)
                .ok_or_else(unsupported)?;
            data = (upcaster.upcast)(data).map_err(|reason| DecodeError::Upcast {
                event_type: event_type.to_owned(),
                version: from,
                reason,
            })?;
        }
        Ok((current, data))
    }

    /// Rebuilds an event from its stored type, schema version and data, upcasting older
    /// versions to the current one.
    ///
    /// # Errors
    /// Unknown type, a version newer than the code knows or with no upcaster, or data that
    /// does not match the schema.
    fn decode(event_type: &str, version: u32, data: &Value) -> Result<Self, DecodeError> {
        let (_, data) = Self::upcast(event_type, version, data)?;
        let tagged = serde_json::json!({ "type": event_type, "data": data });
        serde_json::from_value(tagged).map_err(|source| DecodeError::Invalid {
            event_type: event_type.to_owned(),
            source,
        })
    }
}

fn current_version<E: EventContract>(event_type: &str) -> Option<u32> {
    E::TYPES
        .iter()
        .find(|t| t.name == event_type)
        .map(|t| t.version)
}

/// Declares a workflow's event enum with each variant's schema version, writing each type name
/// once: the variant name is the stored type name. Generates the enum (serialised as
/// `{"type", "data"}`), `EventContract::TYPES` and `event_type()`; the caller implements
/// `summary` (and `UPCASTERS`, when a version moved) in `impl_event_contract!`'s block.
///
/// ```ignore
/// event_contract! {
///     pub enum OrderEvent {
///         OrderPlaced(version 1) { order_id: OrderId, ... },
///         OrderAccepted(version 1) {},
///     }
///     upcasters = [];
///     fn summary(&self) -> String { ... }
/// }
/// ```
#[macro_export]
macro_rules! event_contract {
    (
        $(#[$meta:meta])*
        $vis:vis enum $name:ident {
            $( $(#[$vmeta:meta])* $variant:ident (version $version:literal) { $($fields:tt)* } ),* $(,)?
        }
        upcasters = $upcasters:expr;
        $($summary:tt)*
    ) => {
        $(#[$meta])*
        #[derive(::serde::Serialize, ::serde::Deserialize)]
        #[serde(tag = "type", content = "data")]
        $vis enum $name {
            $( $(#[$vmeta])* $variant { $($fields)* } ),*
        }

        impl $crate::kernel::EventContract for $name {
            const TYPES: &'static [$crate::kernel::EventType] = &[
                $( $crate::kernel::EventType { name: stringify!($variant), version: $version } ),*
            ];
            const UPCASTERS: &'static [$crate::kernel::Upcaster] = $upcasters;

            fn event_type(&self) -> &'static str {
                match self {
                    $( Self::$variant { .. } => stringify!($variant) ),*
                }
            }

            $($summary)*
        }
    };
}
