"""Twilio's official Python helper library (twilio-python 9) against the fake Twilio.

Run against a `fake-twilio` process (.ci/run starts one): FAKE_TWILIO_BASE (default
http://127.0.0.1:18082), TWILIO_ACCOUNT_SID and TWILIO_AUTH_TOKEN (the fake's defaults).
Each check creates, lists or fetches through `twilio.rest.Client` and asserts on the parsed
`MessageInstance` / `CallInstance`; a shape the library cannot read fails here. Exits 1 on
any failure.
"""

import datetime as dt
import json
import os
import sys
import time
import traceback

from twilio.base.exceptions import TwilioRestException
from twilio.rest import Client

BASE = os.environ.get("FAKE_TWILIO_BASE", "http://127.0.0.1:18082")
ACCOUNT = os.environ.get("TWILIO_ACCOUNT_SID", "AC00000000000000000000000000000001")
TOKEN = os.environ.get("TWILIO_AUTH_TOKEN", "fake-auth-token")
FROM = "+15005550006"
CONTENT_SID = "HX0123456789abcdef0123456789abcdef"
TWIML = (
    '<Response><Say language="en-US" voice="Polly.Joanna">Your verification code is</Say>'
    '<Pause length="1"/><Say loop="2"><say-as interpret-as="digits">482913</say-as>.</Say></Response>'
)

client = Client(ACCOUNT, TOKEN)
# Every Api-domain request (Messages, Calls) goes to the fake instead of api.twilio.com.
client.api.base_url = BASE
NOW = dt.datetime.now(dt.timezone.utc)


def is_sid(value, prefix):
    return len(value) == 34 and value.startswith(prefix) and all(c in "0123456789abcdefABCDEF" for c in value[2:])


def sender(instance):
    """`MessageInstance.from_`; `CallInstance` keeps `from` as `_from` (twilio-python 9.13)."""
    return instance.from_ if hasattr(instance, "from_") else instance._from


def recent(when):
    return isinstance(when, dt.datetime) and abs((when - NOW).total_seconds()) < 300


def until(fetch, done, what):
    deadline = time.monotonic() + 10
    while True:
        value = fetch()
        if done(value):
            return value
        assert time.monotonic() < deadline, f"timed out waiting for {what}: {value}"
        time.sleep(0.05)


def rest_error(action):
    try:
        action()
    except TwilioRestException as e:
        return e
    raise AssertionError("expected a TwilioRestException")


def check_sms():
    m = client.messages.create(to="+14155550130", from_=FROM, body="Your verification code is 123456")
    assert is_sid(m.sid, "SM"), m.sid
    assert (m.status, m.to, sender(m), m.direction) == ("queued", "+14155550130", FROM, "outbound-api")
    assert m.body == "Your verification code is 123456" and m.account_sid == ACCOUNT
    assert recent(m.date_created) and recent(m.date_updated), m.date_created
    assert m.api_version == "2010-04-01" and m.num_segments == "1" and m.error_code is None
    fetched = until(lambda: client.messages(m.sid).fetch(), lambda f: f.status == "delivered", "delivery")
    assert fetched.sid == m.sid and recent(fetched.date_sent)
    listed = client.messages.list(to="+14155550130", date_sent_after=NOW - dt.timedelta(days=1))
    assert [x.sid for x in listed] == [m.sid], listed


def check_whatsapp():
    to, wa_from = "whatsapp:+14155550132", "whatsapp:" + FROM
    m = client.messages.create(
        to=to, from_=wa_from, content_sid=CONTENT_SID, content_variables=json.dumps({"1": "654321"})
    )
    assert is_sid(m.sid, "SM") and (m.to, m.from_, m.status) == (to, wa_from, "queued")
    assert m.body == "654321 is your verification code. For your security, do not share this code.", m.body
    assert recent(m.date_created)
    until(lambda: client.messages(m.sid).fetch(), lambda f: f.status == "read", "read")
    free = client.messages.create(to=to, from_=wa_from, body="Your code is 654321")
    failed = until(lambda: client.messages(free.sid).fetch(), lambda f: f.status == "failed", "63016")
    assert failed.error_code == 63016, failed.error_code
    e = rest_error(lambda: client.messages.create(to=to, from_=FROM, body="x"))
    assert (e.status, e.code) == (400, 30016), e


def check_call():
    c = client.calls.create(
        to="+14155550131",
        from_=FROM,
        twiml=TWIML,
        status_callback_event=["initiated", "ringing", "answered", "completed"],
        timeout=30,
    )
    assert is_sid(c.sid, "CA"), c.sid
    assert (c.status, c.to, sender(c), c.direction) == ("queued", "+14155550131", FROM, "outbound-api")
    assert c.account_sid == ACCOUNT and c.api_version == "2010-04-01"
    assert recent(c.date_created) and recent(c.date_updated) and c.start_time is None and c.end_time is None
    assert c.duration is None and c.price is None and c.queue_time == "0"
    assert c.uri == f"/2010-04-01/Accounts/{ACCOUNT}/Calls/{c.sid}.json", c.uri
    assert c.to_formatted == "(415) 555-0131" and "recordings" in c.subresource_uris
    done = until(lambda: client.calls(c.sid).fetch(), lambda f: f.status == "completed", "the call to end")
    assert recent(done.start_time) and recent(done.end_time) and done.start_time <= done.end_time
    assert int(done.duration) >= 1, done.duration


def check_call_list_and_errors():
    to = "+14155550133"
    first = client.calls.create(to=to, from_=FROM, twiml=TWIML)
    second = client.calls.create(to=to, from_="+15005550007", url=BASE + "/healthz")
    for c in (first, second):
        until(lambda c=c: client.calls(c.sid).fetch(), lambda f: f.status == "completed", "the calls to end")
    # page_size=1 makes the library follow next_page_uri.
    listed = client.calls.list(to=to, start_time_after=NOW - dt.timedelta(days=1), page_size=1)
    assert [x.sid for x in listed] == [second.sid, first.sid], listed
    assert all(recent(x.date_created) and x.direction == "outbound-api" for x in listed)
    assert [sender(x) for x in listed] == ["+15005550007", FROM]
    assert [x.sid for x in client.calls.list(to=to, from_="+15005550007")] == [second.sid]
    assert [x.sid for x in client.calls.list(to=to, status="completed", start_time=NOW)] == [second.sid, first.sid]
    assert client.calls.list(to=to, start_time_before=NOW - dt.timedelta(days=1)) == []
    assert client.calls.list(to=to, status="busy") == []
    e = rest_error(lambda: client.calls.create(to=to, from_=FROM))
    assert (e.status, e.code) == (400, 21205), e
    e = rest_error(lambda: client.calls("CA0123456789abcdef0123456789abcdef").fetch())
    assert (e.status, e.code) == (404, 20404), e
    e = rest_error(lambda: client.calls.create(to="+15005550001", from_=FROM, twiml=TWIML))
    assert (e.status, e.code) == (400, 21217), e


def main():
    checks = [check_sms, check_whatsapp, check_call, check_call_list_and_errors]
    failed = 0
    for check in checks:
        try:
            check()
            print(f"ok   {check.__name__}")
        except Exception:  # noqa: BLE001 - every failure is reported, then counted
            failed += 1
            print(f"FAIL {check.__name__}")
            traceback.print_exc()
    print(f"helper_library: {len(checks) - failed} passed, {failed} failed")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
