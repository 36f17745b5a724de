//! The event's fields as data: each field's name and kind, its value read by name, and an event
//! rebuilt from its fields' values.
//!
//! The fields are declared once, in `event.rs` ([`crate::AuditEvent`]'s definition, through
//! `define_event!`). Everything that lists them (the stores' columns and row decoders, the
//! PostgreSQL append's arrays, the canonical encoding, the CSV export, the metrics' known
//! fields) iterates [`EventField::ALL`] instead of restating them.

use chrono::{DateTime, Utc};
use serde_json::{Map, Value};
use uuid::Uuid;

use crate::event::EventOutcome;

/// What a field holds, as a store needs to know it (PostgreSQL's type, SQLite's encoding).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum FieldKind {
    Uuid,
    Text,
    Time,
    /// A 64-bit integer.
    Int64,
    /// A 32-bit integer.
    Int32,
    /// A JSON object.
    Object,
    Bool,
}

/// A field's value, borrowed from an event.
#[derive(Debug, Clone, Copy, PartialEq)]
pub enum FieldRef<'a> {
    /// An optional field that is not set.
    Absent,
    Uuid(Uuid),
    Text(&'a str),
    Time(DateTime<Utc>),
    Int(i64),
    Object(&'a Map<String, Value>),
    Bool(bool),
}

impl FieldRef<'_> {
    /// The owned value.
    pub fn to_owned(self) -> FieldValue {
        match self {
            FieldRef::Absent => FieldValue::Absent,
            FieldRef::Uuid(u) => FieldValue::Uuid(u),
            FieldRef::Text(t) => FieldValue::Text(t.to_owned()),
            FieldRef::Time(t) => FieldValue::Time(t),
            FieldRef::Int(i) => FieldValue::Int(i),
            FieldRef::Object(m) => FieldValue::Object(m.clone()),
            FieldRef::Bool(b) => FieldValue::Bool(b),
        }
    }
}

/// A field's value, owned: what [`crate::AuditEvent::from_fields`] is given.
#[derive(Debug, Clone, PartialEq)]
pub enum FieldValue {
    Absent,
    Uuid(Uuid),
    Text(String),
    Time(DateTime<Utc>),
    Int(i64),
    Object(Map<String, Value>),
    Bool(bool),
}

impl FieldValue {
    /// A text value, absent when `None`.
    pub fn text(value: Option<impl Into<String>>) -> FieldValue {
        value.map_or(FieldValue::Absent, |t| FieldValue::Text(t.into()))
    }
}

/// Why [`crate::AuditEvent::from_fields`] could not build an event.
#[derive(Debug, thiserror::Error)]
pub enum FromFieldsError<E> {
    /// The source of the values failed (a column could not be read).
    #[error(transparent)]
    Read(E),
    /// A value does not fit its field.
    #[error("{field}: {problem}")]
    Value {
        field: &'static str,
        problem: &'static str,
    },
}

/// A Rust type a field of the event can have: how it is read, shown and rebuilt.
pub trait FieldType: Sized {
    /// What the field's accessor answers.
    type Ref<'a>
    where
        Self: 'a;
    const KIND: FieldKind;
    /// Whether an event must have the field.
    const REQUIRED: bool;
    fn access(&self) -> Self::Ref<'_>;
    fn field_ref(&self) -> FieldRef<'_>;
    /// The field from its value; `Err` says what is wrong with it.
    fn from_value(value: FieldValue) -> Result<Self, &'static str>;
}

pub(crate) const ABSENT: &str = "a required field is absent";
const WRONG_KIND: &str = "the value is of another kind than the field";

/// The required and optional forms of a field type, from how its value is read and made.
macro_rules! field_type {
    ($ty:ty, $kind:ident, ref $r:ty => |$v:ident| $access:expr,
     $to_ref:expr, |$value:ident| $from:expr) => {
        impl FieldType for $ty {
            type Ref<'a> = $r;
            const KIND: FieldKind = FieldKind::$kind;
            const REQUIRED: bool = true;
            fn access(&self) -> Self::Ref<'_> {
                let $v = self;
                $access
            }
            fn field_ref(&self) -> FieldRef<'_> {
                let $v = self;
                $to_ref
            }
            fn from_value(value: FieldValue) -> Result<Self, &'static str> {
                match value {
                    FieldValue::Absent => Err(ABSENT),
                    $value => $from,
                }
            }
        }

        impl FieldType for Option<$ty> {
            type Ref<'a> = Option<$r>;
            const KIND: FieldKind = FieldKind::$kind;
            const REQUIRED: bool = false;
            fn access(&self) -> Self::Ref<'_> {
                self.as_ref().map(FieldType::access)
            }
            fn field_ref(&self) -> FieldRef<'_> {
                self.as_ref().map_or(FieldRef::Absent, FieldType::field_ref)
            }
            fn from_value(value: FieldValue) -> Result<Self, &'static str> {
                match value {
                    FieldValue::Absent => Ok(None),
                    value => <$ty>::from_value(value).map(Some),
                }
            }
        }
    };
}

field_type!(Uuid, Uuid, ref Uuid => |v| *v, FieldRef::Uuid(*v), |value| match value {
    FieldValue::Uuid(u) => Ok(u),
    _ => Err(WRONG_KIND),
});
field_type!(String, Text, ref &'a str => |v| v.as_str(), FieldRef::Text(v), |value| match value {
    FieldValue::Text(t) => Ok(t),
    _ => Err(WRONG_KIND),
});
field_type!(DateTime<Utc>, Time, ref DateTime<Utc> => |v| *v, FieldRef::Time(*v), |value| match value {
    FieldValue::Time(t) => Ok(t),
    _ => Err(WRONG_KIND),
});
field_type!(i64, Int64, ref i64 => |v| *v, FieldRef::Int(*v), |value| match value {
    FieldValue::Int(i) => Ok(i),
    _ => Err(WRONG_KIND),
});
field_type!(i32, Int32, ref i32 => |v| *v, FieldRef::Int(i64::from(*v)), |value| match value {
    FieldValue::Int(i) => i32::try_from(i).map_err(|_| "the number is out of range"),
    _ => Err(WRONG_KIND),
});
field_type!(bool, Bool, ref bool => |v| *v, FieldRef::Bool(*v), |value| match value {
    FieldValue::Bool(b) => Ok(b),
    _ => Err(WRONG_KIND),
});
field_type!(EventOutcome, Text, ref EventOutcome => |v| *v, FieldRef::Text(v.as_str()),
|value| match value {
    FieldValue::Text(t) => EventOutcome::from_str_exact(&t).ok_or("not an event outcome"),
    _ => Err(WRONG_KIND),
});
field_type!(Map<String, Value>, Object, ref &'a Map<String, Value> => |v| v, FieldRef::Object(v),
|value| match value {
    FieldValue::Object(m) => Ok(m),
    _ => Err(WRONG_KIND),
});

/// Declares [`crate::AuditEvent`] from one list of fields: the struct (fields private to this
/// crate, each with its serde and schema attributes), an accessor per field, [`EventField`] with
/// each field's name and kind, [`crate::AuditEvent::get`] and [`crate::AuditEvent::from_fields`].
macro_rules! define_event {
    (
        $(#[$meta:meta])*
        pub struct AuditEvent {
            $(
                $(#[$field_meta:meta])*
                $name:ident / $variant:ident : $ty:ty,
            )*
        }
    ) => {
        $(#[$meta])*
        pub struct AuditEvent {
            $(
                $(#[$field_meta])*
                pub(crate) $name: $ty,
            )*
        }

        /// One field of [`AuditEvent`], in declaration order (the stores' column order).
        #[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
        pub enum EventField {
            $($variant,)*
        }

        impl EventField {
            /// Every field, in declaration order.
            pub const ALL: &'static [EventField] = &[$(EventField::$variant,)*];

            /// The field's name: its JSON member and its column.
            pub const fn name(self) -> &'static str {
                match self {
                    $(EventField::$variant => stringify!($name),)*
                }
            }

            /// What the field holds.
            pub const fn kind(self) -> $crate::event_field::FieldKind {
                match self {
                    $(EventField::$variant => <$ty as $crate::event_field::FieldType>::KIND,)*
                }
            }

            /// Whether every event has the field.
            pub const fn required(self) -> bool {
                match self {
                    $(EventField::$variant => <$ty as $crate::event_field::FieldType>::REQUIRED,)*
                }
            }
        }

        impl AuditEvent {
            $(
                #[doc = concat!("The `", stringify!($name), "` field.")]
                pub fn $name(&self) -> <$ty as $crate::event_field::FieldType>::Ref<'_> {
                    $crate::event_field::FieldType::access(&self.$name)
                }
            )*

            /// A field's value.
            pub fn get(&self, field: EventField) -> $crate::event_field::FieldRef<'_> {
                match field {
                    $(EventField::$variant =>
                        $crate::event_field::FieldType::field_ref(&self.$name),)*
                }
            }

            /// Rebuilds an event from its fields' values, each asked for once in declaration
            /// order: the one constructor besides the parsers, for content that was valid when
            /// it was written (a stored row, an event Data Storage writes itself). It checks
            /// each value's kind and presence, not the parser's rules.
            pub fn from_fields<E>(
                mut value: impl FnMut(EventField) -> Result<$crate::event_field::FieldValue, E>,
            ) -> Result<AuditEvent, $crate::event_field::FromFieldsError<E>> {
                use $crate::event_field::{FieldType, FromFieldsError};
                Ok(AuditEvent {
                    $(
                        $name: {
                            let field = EventField::$variant;
                            let v = value(field).map_err(FromFieldsError::Read)?;
                            FieldType::from_value(v).map_err(|problem| FromFieldsError::Value {
                                field: field.name(),
                                problem,
                            })?
                        },
                    )*
                })
            }
        }
    };
}

pub(crate) use define_event;
