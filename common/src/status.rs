//! The two status machines and their ordering rules, as pure functions.

use std::fmt;
use std::str::FromStr;

/// The life of a verification. Only `Pending` can change; every other status is final.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum VerificationStatus {
    Pending,
    Approved,
    Canceled,
    MaxAttemptsReached,
    Expired,
    Failed,
}

/// The life of a verification's SMS, in order. A status only moves to a later rank, and
/// the final ones (rank 4) never change.
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub enum DeliveryStatus {
    Queued,
    Sending,
    Submitted,
    Sent,
    Delivered,
    Undelivered,
    Failed,
    Expired,
    Canceled,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("unknown status {0:?}")]
pub struct UnknownStatus(pub String);

macro_rules! string_enum {
    ($ty:ident { $($variant:ident => $text:literal),+ $(,)? }) => {
        impl $ty {
            pub const ALL: &'static [$ty] = &[$($ty::$variant),+];
            pub fn as_str(self) -> &'static str {
                match self { $($ty::$variant => $text),+ }
            }
        }
        impl FromStr for $ty {
            type Err = UnknownStatus;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                match s { $($text => Ok($ty::$variant),)+ _ => Err(UnknownStatus(s.to_owned())) }
            }
        }
        impl fmt::Display for $ty {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result { f.write_str(self.as_str()) }
        }
        impl utoipa::PartialSchema for $ty {
            fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
                utoipa::openapi::ObjectBuilder::new()
                    .schema_type(utoipa::openapi::schema::Type::String)
                    .enum_values(Some($ty::ALL.iter().map(|s| s.as_str())))
                    .into()
            }
        }
        impl utoipa::ToSchema for $ty {}
        impl serde::Serialize for $ty {
            fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
                s.serialize_str(self.as_str())
            }
        }
        impl<'de> serde::Deserialize<'de> for $ty {
            fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
                let text = <std::borrow::Cow<'de, str>>::deserialize(d)?;
                text.parse().map_err(serde::de::Error::custom)
            }
        }
    };
}

string_enum!(VerificationStatus {
    Pending => "pending",
    Approved => "approved",
    Canceled => "canceled",
    MaxAttemptsReached => "max_attempts_reached",
    Expired => "expired",
    Failed => "failed",
});

string_enum!(DeliveryStatus {
    Queued => "queued",
    Sending => "sending",
    Submitted => "submitted",
    Sent => "sent",
    Delivered => "delivered",
    Undelivered => "undelivered",
    Failed => "failed",
    Expired => "expired",
    Canceled => "canceled",
});

impl DeliveryStatus {
    fn rank(self) -> u8 {
        match self {
            Self::Queued => 0,
            Self::Sending => 1,
            Self::Submitted => 2,
            Self::Sent => 3,
            Self::Delivered | Self::Undelivered | Self::Failed | Self::Expired | Self::Canceled => 4,
        }
    }

    pub fn is_final(self) -> bool {
        self.rank() == 4
    }

    /// Whether a record in `self` may move to `next`: only forwards, never out of a final status.
    pub fn can_advance_to(self, next: Self) -> bool {
        !self.is_final() && next.rank() > self.rank()
    }

    /// The statuses from which `next` may be reached: what a conditional SQL update matches.
    pub fn predecessors(next: Self) -> Vec<&'static str> {
        Self::ALL
            .iter()
            .filter(|s| s.can_advance_to(next))
            .map(|s| s.as_str())
            .collect()
    }

    /// The delivery status a Twilio status callback reports, if it is one we track.
    /// Twilio's early statuses (`queued`, `accepted`, `sending`, …) say no more than
    /// `submitted` already does, so they map to nothing.
    pub fn from_twilio(message_status: &str) -> Option<Self> {
        match message_status {
            "sent" => Some(Self::Sent),
            "delivered" | "read" => Some(Self::Delivered),
            "undelivered" => Some(Self::Undelivered),
            "failed" | "canceled" => Some(Self::Failed),
            _ => None,
        }
    }

    /// The delivery status a call's progress (`CallStatus`) means: ringing is `sent`, an
    /// answered call has spoken the code (`delivered`), `busy` and `no-answer` are
    /// `undelivered`, `failed` is `failed`; `queued` and `canceled` change nothing.
    pub fn from_call(call_status: &str) -> Option<Self> {
        match call_status {
            "initiated" | "ringing" => Some(Self::Sent),
            "in-progress" | "completed" => Some(Self::Delivered),
            "busy" | "no-answer" => Some(Self::Undelivered),
            "failed" => Some(Self::Failed),
            _ => None,
        }
    }

    /// The delivery status a stored callback means: a call's (`CA…` sid) or a message's.
    pub fn from_callback(sid: &str, status: &str) -> Option<Self> {
        if sid.starts_with("CA") {
            Self::from_call(status)
        } else {
            Self::from_twilio(status)
        }
    }

    /// Whether this status means the SMS will never reach the phone.
    pub fn is_failure(self) -> bool {
        matches!(self, Self::Undelivered | Self::Failed)
    }
}

#[cfg(test)]
mod tests {
    use super::DeliveryStatus::*;
    use super::*;

    #[test]
    fn the_usual_path_only_moves_forwards() {
        let path = [Queued, Sending, Submitted, Sent, Delivered];
        for pair in path.windows(2) {
            assert!(pair[0].can_advance_to(pair[1]), "{:?} -> {:?}", pair[0], pair[1]);
            assert!(!pair[1].can_advance_to(pair[0]), "{:?} -> {:?}", pair[1], pair[0]);
        }
        assert!(Queued.can_advance_to(Delivered), "a callback may skip statuses");
    }

    #[test]
    fn a_final_status_never_changes() {
        for &final_status in &[Delivered, Undelivered, Failed, Expired, Canceled] {
            for &next in DeliveryStatus::ALL {
                assert!(!final_status.can_advance_to(next), "{final_status:?} -> {next:?}");
            }
        }
    }

    #[test]
    fn a_repeated_status_changes_nothing() {
        for &s in DeliveryStatus::ALL {
            assert!(!s.can_advance_to(s));
        }
    }

    #[test]
    fn predecessors_of_sent_are_the_earlier_statuses() {
        assert_eq!(
            DeliveryStatus::predecessors(Sent),
            vec!["queued", "sending", "submitted"]
        );
        assert_eq!(
            DeliveryStatus::predecessors(Failed),
            vec!["queued", "sending", "submitted", "sent"]
        );
        assert!(DeliveryStatus::predecessors(Queued).is_empty());
    }

    #[test]
    fn twilio_statuses_map_onto_ours() {
        assert_eq!(DeliveryStatus::from_twilio("sent"), Some(Sent));
        assert_eq!(DeliveryStatus::from_twilio("delivered"), Some(Delivered));
        assert_eq!(DeliveryStatus::from_twilio("undelivered"), Some(Undelivered));
        assert_eq!(DeliveryStatus::from_twilio("failed"), Some(Failed));
        assert_eq!(DeliveryStatus::from_twilio("queued"), None);
        assert_eq!(DeliveryStatus::from_call("ringing"), Some(Sent));
        assert_eq!(DeliveryStatus::from_call("completed"), Some(Delivered));
        assert_eq!(DeliveryStatus::from_call("busy"), Some(Undelivered));
        assert_eq!(DeliveryStatus::from_call("no-answer"), Some(Undelivered));
        assert_eq!(DeliveryStatus::from_call("failed"), Some(Failed));
        assert_eq!(DeliveryStatus::from_call("queued"), None);
        let call = "CA0123456789abcdef0123456789abcdef";
        assert_eq!(DeliveryStatus::from_callback(call, "completed"), Some(Delivered));
        assert_eq!(DeliveryStatus::from_callback("SM01", "completed"), None);
        assert_eq!(DeliveryStatus::from_twilio("sending"), None);
    }

    #[test]
    fn statuses_round_trip_through_text() {
        for &s in DeliveryStatus::ALL {
            assert_eq!(s.as_str().parse::<DeliveryStatus>().unwrap(), s);
        }
        for &s in VerificationStatus::ALL {
            assert_eq!(s.as_str().parse::<VerificationStatus>().unwrap(), s);
        }
        assert!("bogus".parse::<DeliveryStatus>().is_err());
    }
}
