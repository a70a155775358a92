"""Fake secrets of every kind the redactor must catch, for tests that assert none survives.

Each canary is the text as it would appear (with its context, e.g. ``password=...``) and the
fragment that must never be seen in any output. All are fake: test card numbers, AWS's
documentation-style key shape, made-up tokens.
"""

from __future__ import annotations

from typing import NamedTuple


class Canary(NamedTuple):
    kind: str
    text: str
    secret: str


JWT = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJjYW5hcnkiLCJyb2xlIjoiYWRtaW4ifQ"
       ".Q2FuYXJ5U2lnbmF0dXJlMDEyMzQ1Njc4OQ")
PEM_BODY = "MIIEowIBAAKCAQEAcanaryPemBody0123456789abcdefghijkl"

CANARIES: tuple[Canary, ...] = (
    Canary("bearer", "Authorization header was Bearer c4n4ryB34r3rT0k3nXYZ123 today",
           "c4n4ryB34r3rT0k3nXYZ123"),
    Canary("jwt", f"session cookie {JWT}", JWT.split(".")[1]),
    Canary("openai", "key sk-proj-CANARYa1b2c3d4e5f6g7h8i9j0k1l2m3 leaked",
           "CANARYa1b2c3d4e5f6g7h8i9j0k1l2m3"),
    Canary("anthropic", "sk-ant-api03-CANARY9z8y7x6w5v4u3t2s1r0q-AA",
           "CANARY9z8y7x6w5v4u3t2s1r0q"),
    Canary("github", "token ghp_GITHUBcanary0123456789abcdefghijklmnopq",
           "GITHUBcanary0123456789abcdefghijklmnopq"),
    Canary("slack", "xoxb-1234567890-CANARYslackBotToken", "CANARYslackBotToken"),
    Canary("google", "AIzaSyGOOGLEcanary0123456789abcdefghijk",
           "SyGOOGLEcanary0123456789abcdefghijk"),
    Canary("aws", "aws_access_key_id AKIACANARY0123456789", "AKIACANARY0123456789"),
    Canary("stripe", "sk_live_STRIPEcanary0123456789ab", "STRIPEcanary0123456789ab"),
    Canary("huggingface", "hf_CANARYabcdefghijklmnopqrstuvwxyz0123",
           "CANARYabcdefghijklmnopqrstuvwxyz0123"),
    Canary("generic-key", "url?key=9f86d081884c7d659a2feaa0c55ad015a3bf4f1b&x=1",
           "9f86d081884c7d659a2feaa0c55ad015a3bf4f1b"),
    Canary("password", "login with password=Canary-Hunter2! failed", "Canary-Hunter2!"),
    Canary("json-secret", '{"client_secret": "CanaryClientSecret42", "n": 1}',
           "CanaryClientSecret42"),
    Canary("url-password", "postgresql://app:CanaryDbPassw0rd@db.internal:5432/rag",
           "CanaryDbPassw0rd"),
    Canary("pem", f"-----BEGIN RSA PRIVATE KEY-----\n{PEM_BODY}\n-----END RSA PRIVATE KEY-----",
           PEM_BODY),
    Canary("visa", "card 4111 1111 1111 1111 on file", "4111 1111 1111 1111"),
    Canary("amex", "amex 3782-822463-10005", "3782-822463-10005"),
    Canary("mastercard", "pan=5555555555554444", "5555555555554444"),
    Canary("email", "contact canary.person@example.com please", "canary.person@example.com"),
)

SECRETS: tuple[str, ...] = tuple(c.secret for c in CANARIES)


def leaked(output: str | bytes) -> list[str]:
    """The canary secrets found in ``output`` (empty when redaction worked)."""
    text = output.decode("utf-8", "replace") if isinstance(output, bytes) else output
    return [secret for secret in SECRETS if secret in text]
