//! Which channels carry a start's code: the start's `channels`, else `DEFAULT_CHANNELS`; each
//! must be one the service can send on (`TWILIO_WHATSAPP_FROM` for WhatsApp, a voice number
//! for calls), else 400 `channel_unavailable`. The next channel of a list is used when the
//! one in use fails for good or goes `FALLBACK_AFTER_SECONDS` without approval
//! ([`crate::fallback`]).

use std::time::Duration;

use common::settings::{ChannelSenders, SettingError, seconds};
use common::texts::{self, Channel};

use crate::error::ApiError;

/// `DEFAULT_CHANNELS`.
#[derive(Debug, Clone, clap::Args)]
pub struct ChannelConfig {
    /// the channels of a start that names none, in order: sms, whatsapp, call (e.g. sms,call)
    #[arg(long = "default-channels", env = "DEFAULT_CHANNELS", default_value = "sms", value_parser = channels)]
    pub default_channels: Channels,
    /// how long a step handed to Twilio waits for approval before the next channel is used, 1 to 3600 seconds
    #[arg(long = "fallback-after-seconds", env = "FALLBACK_AFTER_SECONDS", default_value = "60", value_parser = seconds(1..=3600))]
    pub fallback_after: Duration,
}

/// An ordered list of channels.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Channels(pub Vec<Channel>);

fn channels(value: &str) -> Result<Channels, String> {
    texts::parse_channels(value.split(',')).map(Channels)
}

impl ChannelConfig {
    /// Every default channel must be offered.
    pub fn check(&self, senders: &ChannelSenders) -> Result<(), SettingError> {
        match self.default_channels.0.iter().find(|c| !senders.offers(**c)) {
            Some(missing) => Err(SettingError::new(
                "DEFAULT_CHANNELS",
                format!("lists {}, which has no sender configured", missing.as_str()),
            )),
            None => Ok(()),
        }
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
        Ok(chosen)
    }
}

#[cfg(test)]
mod tests {
    use crate::config::tests::read;
    use common::texts::Channel;

    #[test]
    fn default_channels_need_a_sender() {
        assert_eq!(read(&[]).unwrap().channels.default_channels.0, [Channel::Sms]);
        let from = ("TWILIO_FROM", "+14155550100");
        let call = read(&[from, ("DEFAULT_CHANNELS", "call")]).unwrap();
        assert_eq!(call.channels.default_channels.0, [Channel::Call]);
        let fallback = read(&[from, ("DEFAULT_CHANNELS", "sms,call"), ("FALLBACK_AFTER_SECONDS", "30")]).unwrap();
        assert_eq!(fallback.channels.default_channels.0, [Channel::Sms, Channel::Call]);
        assert_eq!(fallback.channels.fallback_after.as_secs(), 30);
        assert_eq!(call.channels.fallback_after.as_secs(), 60);
        for bad in [
            vec![("DEFAULT_CHANNELS", "call")],
            vec![("DEFAULT_CHANNELS", "whatsapp"), from],
            vec![("DEFAULT_CHANNELS", "sms,call")],
            vec![("DEFAULT_CHANNELS", "sms,sms"), from],
            vec![("FALLBACK_AFTER_SECONDS", "0")],
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
