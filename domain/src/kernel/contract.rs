//! Events as wire contracts: a stable type name and a schema version per event, stored beside
//! the data; decoding upcasts older versions step by step to the current one.

use serde::de::value::BorrowedStrDeserializer;
use serde::de::{DeserializeOwned, DeserializeSeed, MapAccess, Visitor};
use serde::Serialize;
use serde_json::Value;
use std::borrow::Cow;

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
    /// Readers that keep events as JSON (exports) use this; [`EventContract::decode`] upcasts the
    /// same way.
    ///
    /// # Errors
    /// Unknown type, a version newer than the code knows or with no upcaster, or data an
    /// upcaster cannot rewrite.
    fn upcast(event_type: &str, version: u32, data: &Value) -> Result<(u32, Value), DecodeError> {
        upcast_data::<Self>(event_type, version, data).map(|(v, data)| (v, data.into_owned()))
    }

    /// Rebuilds an event from its stored type, schema version and data, upcasting older
    /// versions to the current one. Data of the current version is read in place (no copy).
    ///
    /// # Errors
    /// Unknown type, a version newer than the code knows or with no upcaster, or data that
    /// does not match the schema.
    fn decode(event_type: &str, version: u32, data: &Value) -> Result<Self, DecodeError> {
        let (_, data) = upcast_data::<Self>(event_type, version, data)?;
        Self::deserialize(Tagged {
            event_type,
            data: &data,
        })
        .map_err(|source| DecodeError::Invalid {
            event_type: event_type.to_owned(),
            source,
        })
    }
}

/// [`EventContract::upcast`], borrowing `data` when it is of the current version already.
fn upcast_data<'a, E: EventContract>(
    event_type: &str,
    version: u32,
    data: &'a Value,
) -> Result<(u32, Cow<'a, Value>), DecodeError> {
    let current = current_version::<E>(event_type)
        .ok_or_else(|| DecodeError::UnknownType(event_type.to_owned()))?;
    let unsupported = || DecodeError::UnsupportedVersion {
        event_type: event_type.to_owned(),
        version,
    };
    if version == 0 || version > current {
        return Err(unsupported());
    }
    if version == current {
        return Ok((current, Cow::Borrowed(data)));
    }
    let mut data = data.clone();
    for from in version..current {
        let upcaster = E::UPCASTERS
            .iter()
            .find(|u| u.event_type == event_type && u.from_version == from)
            .ok_or_else(unsupported)?;
        data = (upcaster.upcast)(data).map_err(|reason| DecodeError::Upcast {
            event_type: event_type.to_owned(),
            version: from,
            reason,
        })?;
    }
    Ok((current, Cow::Owned(data)))
}

/// An event as its enum deserialises it, `{"type": <name>, "data": <data>}`, over borrowed data:
/// the type comes first, so the enum reads the data straight into its variant (a JSON object,
/// whose keys are sorted, would put "data" first and make serde buffer it).
struct Tagged<'a> {
    event_type: &'a str,
    data: &'a Value,
}

impl<'de> serde::Deserializer<'de> for Tagged<'de> {
    type Error = serde_json::Error;

    fn deserialize_any<V: Visitor<'de>>(self, visitor: V) -> Result<V::Value, Self::Error> {
        visitor.visit_map(TaggedEntries {
            tagged: self,
            read: 0,
        })
    }

    serde::forward_to_deserialize_any! {
        bool i8 i16 i32 i64 i128 u8 u16 u32 u64 u128 f32 f64 char str string bytes byte_buf
        option unit unit_struct newtype_struct seq tuple tuple_struct map struct enum
        identifier ignored_any
    }
}

/// The two entries of a [`Tagged`] event, "type" then "data"; `read` counts the values read.
struct TaggedEntries<'a> {
    tagged: Tagged<'a>,
    read: u8,
}

impl<'de> MapAccess<'de> for TaggedEntries<'de> {
    type Error = serde_json::Error;

    fn next_key_seed<K: DeserializeSeed<'de>>(
        &mut self,
        seed: K,
    ) -> Result<Option<K::Value>, Self::Error> {
        let key = match self.read {
            0 => "type",
            1 => "data",
            _ => return Ok(None),
        };
        seed.deserialize(BorrowedStrDeserializer::new(key))
            .map(Some)
    }

    fn next_value_seed<V: DeserializeSeed<'de>>(
        &mut self,
        seed: V,
    ) -> Result<V::Value, Self::Error> {
        self.read += 1;
        match self.read {
            1 => seed.deserialize(BorrowedStrDeserializer::new(self.tagged.event_type)),
            _ => seed.deserialize(self.tagged.data),
        }
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
