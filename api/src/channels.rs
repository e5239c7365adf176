//! Which channels carry a start's code: the start's `channels`, else `DEFAULT_CHANNELS`; each
//! must be one the service can send on (`TWILIO_WHATSAPP_FROM` for WhatsApp, a voice number
//! for calls), else 400 `channel_unavailable`.
//!
//! One channel per verification for now: moving on to the next channel of a list (the
//! fallback) is not built yet, so a list of two or three is refused rather than half-served.

use common::settings::{ChannelSenders, SettingError};
use common::texts::{self, Channel};

use crate::error::ApiError;

/// `DEFAULT_CHANNELS`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChannelConfig {
    /// the channels of a start that names none: sms, whatsapp or call
    #[arg(long = "default-channels", env = "DEFAULT_CHANNELS", default_value = "sms", value_parser = channels)]
    pub default_channels: Channels,
}

/// An ordered list of channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels(pub Vec<Channel>);

fn channels(value: &str) -> Result<Channels, String> {
    texts::parse_channels(value.split(',')).map(Channels)
}

impl ChannelConfig {
    /// Every default channel must be offered, and (until the fallback is built) be one.
    pub fn check(&self, senders: &ChannelSenders) -> Result<(), SettingError> {
        let refuse = |why: String| Err(SettingError::new("DEFAULT_CHANNELS", why));
        if let Some(missing) = self.default_channels.0.iter().find(|c| !senders.offers(**c)) {
            return refuse(format!("lists {}, which has no sender configured", missing.as_str()));
        }
        if self.default_channels.0.len() > 1 {
            return refuse("must be one channel: moving on to the next channel is not available yet".into());
        }
        Ok(())
    }

    /// The channels of a start: `requested`, else the defaults.
    pub fn choose(&self, requested: Option<&[String]>, senders: &ChannelSenders) -> Result<Vec<Channel>, ApiError> {
        let Some(requested) = requested else {
            return Ok(self.default_channels.0.clone());
        };
        let chosen = texts::parse_channels(requested.iter().map(String::as_str))
            .map_err(|e| ApiError::InvalidRequest(format!("channels {e}")))?;
        if let Some(missing) = chosen.iter().find(|c| !senders.offers(**c)) {
            return Err(ApiError::ChannelUnavailable(format!(
                "the {} channel is not configured on this service",
                missing.as_str()
            )));
        }
        if chosen.len() > 1 {
            return Err(ApiError::ChannelUnavailable(
                "one channel per verification: moving on to the next channel of a list is not available yet".into(),
            ));
        }
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::read;
    use common::texts::Channel;

    #[test]
    fn default_channels_need_a_sender_and_are_one_for_now() {
        assert_eq!(read(&[]).unwrap().channels.default_channels.0, [Channel::Sms]);
        let from = ("TWILIO_FROM", "+14155550100");
        let call = read(&[from, ("DEFAULT_CHANNELS", "call")]).unwrap();
        assert_eq!(call.channels.default_channels.0, [Channel::Call]);
        for bad in [
            vec![("DEFAULT_CHANNELS", "call")],
            vec![("DEFAULT_CHANNELS", "whatsapp"), from],
            vec![("DEFAULT_CHANNELS", "sms,call"), from],
            vec![("DEFAULT_CHANNELS", "fax")],
            vec![("TWILIO_WHATSAPP_CONTENT_SID", "HX123")],
        ] {
            assert!(read(&bad).is_err(), "{bad:?}");
        }
        let whatsapp = read(&[
            ("TWILIO_WHATSAPP_FROM", "+14155550100"),
            ("DEFAULT_CHANNELS", "whatsapp"),
        ])
        .unwrap();
        assert!(whatsapp.shared.channels.offers(Channel::Whatsapp) && !whatsapp.shared.channels.offers(Channel::Call));
    }
}
