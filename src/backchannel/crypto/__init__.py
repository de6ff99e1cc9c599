"""Thin typed wrappers over pyca ``cryptography``.

Nothing here implements a primitive. Every function that verifies or decrypts
raises (``SignatureError`` / ``AuthenticationError``) instead of returning a
bool, and every failure to decrypt is one opaque error.
"""
