//! What differs by channel: what a send says (an SMS with its WebOTP line, a WhatsApp text or
//! template, a call's TwiML), the Twilio call that creates it, and how an ambiguous create is
//! looked up before anything is sent again (the messages or the calls to the number).

use common::metric_names as names;
use common::texts::{Channel, twiml};
use time::OffsetDateTime;

use super::{ClaimedSend, SendContext};
use crate::config::Sender;
use crate::twilio::{CallResult, Content, NewCall, NewMessage};

/// How far before a verification's start a call found at Twilio may have been created and
/// still be taken for this verification's (clocks of Twilio and PostgreSQL differ).
const CLOCK_SKEW: time::Duration = time::Duration::seconds(60);

impl SendContext {
    fn callback(&self, path: &str) -> String {
        format!("{}{path}", self.config.shared.public_base_url)
    }

    /// What `send` says on its channel, in its locale.
    pub(super) fn body(&self, send: &ClaimedSend<'_>) -> String {
        let texts = self.texts.get(&send.locale);
        let code = send.code.expose();
        match send.channel {
            Channel::Sms => crate::sms::compose(texts.text(Channel::Sms), code, self.config.webotp_domain.as_deref()),
            Channel::Whatsapp => texts.render(Channel::Whatsapp, code),
            Channel::Call => twiml::say_code(texts, code),
        }
    }

    /// Creates the message or call of `send`. A channel without a sender on this worker
    /// answers like a permanent Twilio refusal (the API refuses such starts; a worker whose
    /// settings differ from the API's gets here).
    pub(super) async fn create(&self, send: &ClaimedSend<'_>, body: &str) -> CallResult {
        let senders = &self.config.shared.channels;
        let started = std::time::Instant::now();
        let result = match send.channel {
            Channel::Sms => {
                self.twilio
                    .create_message(&NewMessage {
                        to: &send.phone,
                        sender: self.config.sender(),
                        content: Content::Body(body),
                        status_callback: &self.callback(common::STATUS_CALLBACK_PATH),
                        validity_period: send.remaining().as_secs().clamp(1, 36_000),
                    })
                    .await
            }
            Channel::Whatsapp => {
                let Some(from) = senders.whatsapp_from.as_deref() else {
                    return CallResult::not_configured("TWILIO_WHATSAPP_FROM");
                };
                let (to, from) = (format!("whatsapp:{}", send.phone), format!("whatsapp:{from}"));
                let content = match senders.whatsapp_content_sid.as_deref() {
                    Some(sid) => Content::Template {
                        sid,
                        variables: serde_json::json!({"1": send.code.expose()}).to_string(),
                    },
                    None => Content::Body(body),
                };
                self.twilio
                    .create_message(&NewMessage {
                        to: &to,
                        sender: Sender::From(&from),
                        content,
                        status_callback: &self.callback(common::STATUS_CALLBACK_PATH),
                        validity_period: send.remaining().as_secs().clamp(1, 36_000),
                    })
                    .await
            }
            Channel::Call => {
                let Some(from) = senders.voice_from() else {
                    return CallResult::not_configured("TWILIO_VOICE_FROM or TWILIO_FROM");
                };
                self.twilio
                    .create_call(&NewCall {
                        to: &send.phone,
                        from,
                        twiml: body,
                        status_callback: &self.callback(common::CALL_STATUS_CALLBACK_PATH),
                    })
                    .await
            }
        };
        metrics::histogram!(names::TWILIO_DURATION, "operation" => "create", "channel" => send.channel.as_str())
            .record(started.elapsed().as_secs_f64());
        result
    }

    /// Looks at Twilio for what an ambiguous create of `send` may have made: a message to the
    /// number since yesterday (UTC) with this send's text (for a WhatsApp template, holding
    /// its code), or a call to it from our number created since the step began.
    /// `Err`: Twilio could not be asked.
    pub(super) async fn find_sent(&self, send: &ClaimedSend<'_>) -> anyhow::Result<Option<String>> {
        let started = std::time::Instant::now();
        let found = match send.channel {
            Channel::Sms | Channel::Whatsapp => self.find_message(send).await,
            Channel::Call => self.find_call(send).await,
        };
        metrics::histogram!(names::TWILIO_DURATION, "operation" => "list", "channel" => send.channel.as_str())
            .record(started.elapsed().as_secs_f64());
        found.inspect_err(|e| tracing::warn!(error = %e, "could not ask Twilio to settle an ambiguous send"))
    }

    async fn find_message(&self, send: &ClaimedSend<'_>) -> anyhow::Result<Option<String>> {
        let to = match send.channel {
            Channel::Whatsapp => format!("whatsapp:{}", send.phone),
            _ => send.phone.clone(),
        };
        let since = (OffsetDateTime::now_utc() - time::Duration::days(1)).date().to_string();
        let body = self.body(send);
        let template = send.channel == Channel::Whatsapp && self.config.shared.channels.whatsapp_content_sid.is_some();
        let messages = self.twilio.list_messages(&to, &since).await?;
        Ok(messages
            .into_iter()
            .find(|m| {
                let text = m.body.as_deref().unwrap_or_default();
                let same = if template {
                    text.contains(send.code.expose())
                } else {
                    text == body
                };
                same && m.to.as_deref().is_none_or(|t| t == to)
            })
            .map(|m| m.sid))
    }

    async fn find_call(&self, send: &ClaimedSend<'_>) -> anyhow::Result<Option<String>> {
        let from = self.config.shared.channels.voice_from();
        let since = send.step_started_at - CLOCK_SKEW;
        let calls = self.twilio.list_calls(&send.phone).await?;
        Ok(calls
            .into_iter()
            .find(|c| {
                c.to.as_deref().is_none_or(|t| t == send.phone)
                    && c.from.as_deref() == from
                    && c.created().is_some_and(|at| at >= since)
            })
            .map(|c| c.sid))
    }
}
