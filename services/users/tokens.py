"""Access tokens: HS256 JWTs that the gateway verifies on its own (docs/contracts.md)."""
import math
import time
import uuid

import jwt

from bus.config import setting

ALGORITHM = "HS256"
DEFAULT_TTL = 3600


def issue(config, user_id, role, issued_at=None):
    """``{access_token, token_type, expires_in}`` for the user.

    ``iat`` has millisecond precision (a token issued in the second after a password
    change must work, one issued just before it must not); ``issued_at`` (Unix time)
    is when the credentials were read, so a login racing with a password change
    counts as issued before it."""
    secret = setting(config, "JWT_SECRET")
    if not secret:
        # A missing secret is a deployment bug; signing with "" would accept forgeries.
        raise RuntimeError("JWT_SECRET is not configured")
    ttl = int(setting(config, "ACCESS_TOKEN_TTL", DEFAULT_TTL))
    # rounded down, as a password change's time is: rounded up, a token issued in the
    # last half of the millisecond before a change would carry the change's millisecond
    # and outlive it
    now = math.floor((time.time() if issued_at is None else issued_at) * 1000) / 1000
    claims = {"sub": user_id, "role": role, "iat": now, "exp": int(now) + ttl,
              "jti": uuid.uuid4().hex}
    return {
        "access_token": jwt.encode(claims, secret, algorithm=ALGORITHM),
        "token_type": "bearer",
        "expires_in": ttl,
    }
