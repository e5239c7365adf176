//! Twilio's Calls API: a call that speaks the code (inline TwiML), and the list of calls to a
//! number, to learn whether an ambiguous create rang it (creating a call has no idempotency
//! key: a blind retry could ring the user twice).

use serde::Deserialize;
use time::OffsetDateTime;

use super::{CallResult, TwilioClient};

/// One call to create.
pub struct NewCall<'a> {
    pub to: &'a str,
    pub from: &'a str,
    /// What the call says ([`common::texts::twiml`]).
    pub twiml: &'a str,
    pub status_callback: &'a str,
}

/// A call as the list endpoint shows it (what the duplicate check needs).
#[derive(Debug, Clone, Deserialize)]
pub struct ListedCall {
    pub sid: String,
    pub to: Option<String>,
    pub from: Option<String>,
    /// RFC 2822, as Twilio writes it.
    pub date_created: Option<String>,
}

impl ListedCall {
    /// When Twilio created the call, if it says so readably.
    pub fn created(&self) -> Option<OffsetDateTime> {
        let text = self.date_created.as_deref()?;
        OffsetDateTime::parse(text, &time::format_description::well_known::Rfc2822).ok()
    }
}

#[derive(Deserialize)]
struct CallPage {
    calls: Vec<ListedCall>,
}

impl TwilioClient {
    fn calls_url(&self) -> String {
        format!("{}/2010-04-01/Accounts/{}/Calls.json", self.base, self.account_sid)
    }

    /// `POST …/Calls.json` with the TwiML inline and a status callback for every progress
    /// event (one parameter per event, as Twilio takes them). Never fails, like
    /// [`TwilioClient::create_message`].
    pub async fn create_call(&self, call: &NewCall<'_>) -> CallResult {
        let form = [
            ("To", call.to),
            ("From", call.from),
            ("Twiml", call.twiml),
            ("StatusCallback", call.status_callback),
            ("StatusCallbackMethod", "POST"),
            ("StatusCallbackEvent", "initiated"),
            ("StatusCallbackEvent", "ringing"),
            ("StatusCallbackEvent", "answered"),
            ("StatusCallbackEvent", "completed"),
        ];
        self.create(&self.calls_url(), &form).await
    }

    /// `GET …/Calls.json?To=…`: the newest calls to `to` (a queued call has no start time
    /// yet, so no date filter: the caller compares `date_created`). Errors carry no URL.
    pub async fn list_calls(&self, to: &str) -> anyhow::Result<Vec<ListedCall>> {
        let page: CallPage = self.list(&self.calls_url(), &[("To", to), ("PageSize", "50")]).await?;
        Ok(page.calls)
    }
}
