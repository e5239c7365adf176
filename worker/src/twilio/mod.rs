//! A small client for Twilio's Messages API (SMS and WhatsApp) and Calls API ([`calls`]):
//! create, and list to learn whether an ambiguous create went out.

mod calls;

pub use calls::{ListedCall, NewCall};

use std::time::Duration;

use common::settings::Secret;
use serde::Deserialize;

use crate::classify::CallOutcome;
use crate::config::Sender;

#[derive(Clone)]
pub struct TwilioClient {
    http: reqwest::Client,
    base: String,
    account_sid: String,
    auth_token: Secret,
}

/// One message to create: an SMS, or a WhatsApp message (`whatsapp:` addresses).
pub struct NewMessage<'a> {
    pub to: &'a str,
    pub sender: Sender<'a>,
    /// The text, or an approved template and its variables (a JSON object as a string).
    pub content: Content<'a>,
    pub status_callback: &'a str,
    /// Seconds Twilio may keep it queued (1..=36000).
    pub validity_period: u64,
}

/// What a message says.
pub enum Content<'a> {
    Body(&'a str),
    Template { sid: &'a str, variables: String },
}

/// What a create call returned.
#[derive(Debug, Clone)]
pub struct CallResult {
    pub outcome: CallOutcome,
    /// The `SM…` (message) or `CA…` (call) sid on success.
    pub sid: Option<String>,
    pub error_message: Option<String>,
    /// How long Twilio asked us to wait (`Retry-After` on a 429 or 503, in seconds).
    pub retry_after: Option<Duration>,
}

impl CallResult {
    /// A send this worker has no sender for: final, like a permanent refusal.
    pub fn not_configured(setting: &str) -> Self {
        Self {
            outcome: CallOutcome::NotConfigured,
            sid: None,
            error_message: Some(format!("{setting} is not set on this worker")),
            retry_after: None,
        }
    }
}

#[derive(Deserialize)]
struct Created {
    sid: String,
}

#[derive(Deserialize)]
struct TwilioError {
    code: Option<i32>,
    message: Option<String>,
}

/// A message as the list endpoint shows it (only what the duplicate check needs).
#[derive(Debug, Clone, Deserialize)]
pub struct ListedMessage {
    pub sid: String,
    pub to: Option<String>,
    pub body: Option<String>,
}

#[derive(Deserialize)]
struct MessagePage {
    messages: Vec<ListedMessage>,
}

impl TwilioClient {
    pub fn new(base: &str, account_sid: &str, auth_token: Secret, timeout: Duration) -> anyhow::Result<Self> {
        let http = reqwest::Client::builder()
            .timeout(timeout)
            .connect_timeout(timeout.min(Duration::from_secs(3)))
            .user_agent(concat!("verify-worker/", env!("CARGO_PKG_VERSION")))
            .build()?;
        Ok(Self {
            http,
            base: base.to_owned(),
            account_sid: account_sid.to_owned(),
            auth_token,
        })
    }

    fn messages_url(&self) -> String {
        format!("{}/2010-04-01/Accounts/{}/Messages.json", self.base, self.account_sid)
    }

    /// `POST …/Messages.json`. Never fails: every result is a [`CallOutcome`] for the policy.
    pub async fn create_message(&self, msg: &NewMessage<'_>) -> CallResult {
        let validity = msg.validity_period.to_string();
        let mut form = vec![
            ("To", msg.to),
            ("StatusCallback", msg.status_callback),
            ("ValidityPeriod", validity.as_str()),
        ];
        match &msg.content {
            Content::Body(body) => form.push(("Body", body)),
            Content::Template { sid, variables } => {
                form.push(("ContentSid", sid));
                form.push(("ContentVariables", variables));
            }
        }
        match msg.sender {
            Sender::From(from) => form.push(("From", from)),
            Sender::MessagingService(sid) => form.push(("MessagingServiceSid", sid)),
        }
        self.create(&self.messages_url(), &form).await
    }

    /// Posts a create (message or call) and reads its answer as a [`CallResult`].
    async fn create(&self, url: &str, form: &[(&str, &str)]) -> CallResult {
        let response = self
            .http
            .post(url)
            .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
            .form(form)
            .send()
            .await;
        let response = match response {
            Ok(r) => r,
            Err(e) => return transport_failure(&e),
        };
        let status = response.status().as_u16();
        let retry_after = retry_after(response.headers());
        let body = match response.bytes().await {
            Ok(b) => b,
            Err(e) => return transport_failure(&e),
        };
        if status == 201 {
            if let Ok(created) = serde_json::from_slice::<Created>(&body) {
                return CallResult {
                    outcome: CallOutcome::Created,
                    sid: Some(created.sid),
                    error_message: None,
                    retry_after: None,
                };
            }
            // A 201 we cannot read: the message exists, but we do not know its sid.
            return CallResult {
                outcome: CallOutcome::NoAnswer { written: true },
                sid: None,
                error_message: Some("201 with an unreadable body".into()),
                retry_after: None,
            };
        }
        let error = serde_json::from_slice::<TwilioError>(&body).ok();
        CallResult {
            outcome: CallOutcome::Answered {
                http_status: status,
                twilio_code: error.as_ref().and_then(|e| e.code),
            },
            sid: None,
            error_message: error.and_then(|e| e.message).or_else(|| Some(format!("HTTP {status}"))),
            retry_after,
        }
    }

    /// `GET …/Messages.json?To=…&DateSent>=…`: messages sent to `to` since `date` (YYYY-MM-DD).
    /// Errors carry no URL (it holds the phone number).
    pub async fn list_messages(&self, to: &str, date: &str) -> anyhow::Result<Vec<ListedMessage>> {
        let query = [("To", to), ("DateSent>", date), ("PageSize", "100")];
        let page: MessagePage = self.list(&self.messages_url(), &query).await?;
        Ok(page.messages)
    }

    /// `GET url?query` read as `T`. Errors carry no URL (it holds a phone number).
    async fn list<T: serde::de::DeserializeOwned>(&self, url: &str, query: &[(&str, &str)]) -> anyhow::Result<T> {
        let page = async {
            self.http
                .get(url)
                .basic_auth(&self.account_sid, Some(self.auth_token.expose()))
                .query(query)
                .send()
                .await?
                .error_for_status()?
                .json()
                .await
        }
        .await
        .map_err(reqwest::Error::without_url)?;
        Ok(page)
    }
}

/// A `Retry-After` header in seconds (the form Twilio uses; an HTTP date is not honoured),
/// at most a day.
fn retry_after(headers: &reqwest::header::HeaderMap) -> Option<Duration> {
    let seconds: u64 = headers
        .get(reqwest::header::RETRY_AFTER)?
        .to_str()
        .ok()?
        .trim()
        .parse()
        .ok()?;
    Some(Duration::from_secs(seconds.min(86_400)))
}

fn transport_failure(e: &reqwest::Error) -> CallResult {
    // Only a connection that was never made is certain not to have reached Twilio.
    let written = !e.is_connect();
    CallResult {
        outcome: CallOutcome::NoAnswer { written },
        sid: None,
        error_message: Some(if e.is_timeout() {
            "timed out".into()
        } else {
            // Without the URL: it holds the account sid, which logs need not show.
            let mut shown = String::from("transport error");
            let mut source: Option<&dyn std::error::Error> = std::error::Error::source(e);
            while let Some(cause) = source {
                shown = format!("{shown}: {cause}");
                source = cause.source();
            }
            shown
        }),
        retry_after: None,
    }
}
