"""Sandbox corpus: email utils (an ordinary program that must pass in every mode)."""

import email.utils
from email.message import EmailMessage


def addresses(header):
    return [address for _, address in email.utils.getaddresses([header])]


def check(candidate):
    assert candidate("Ann <ann@x.org>, bob@y.com") == ["ann@x.org", "bob@y.com"]


check(addresses)
assert email.utils.parseaddr("Tim <tim@z.net>") == ("Tim", "tim@z.net")
assert email.utils.formatdate(0, usegmt=True) == "Thu, 01 Jan 1970 00:00:00 GMT"
message = EmailMessage()
message["Subject"] = "hi"
message.set_content("body")
assert "Subject: hi" in message.as_string()
print(
    email.utils.formataddr(("Ann", "ann@x.org")),
    email.utils.parsedate_to_datetime("Thu, 01 Jan 1970 00:00:00 GMT").year,
)
