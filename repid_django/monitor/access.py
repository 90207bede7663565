"""Who may watch the live monitor, checked when the page is served and before every push.

An active staff user with :data:`VIEW_PERMISSION`. The WebSocket consumer re-reads the session
and the user from the database before each snapshot (:func:`session_user`): logging out (or
out everywhere by changing the password), losing the permission or being deactivated ends the
stream at the next push.
"""

from __future__ import annotations

from typing import Any

from django.contrib.auth import BACKEND_SESSION_KEY, HASH_SESSION_KEY, SESSION_KEY, load_backend
from django.utils.crypto import constant_time_compare

VIEW_PERMISSION = "repid_django.view_jobrecord"
"""The permission the monitor needs besides ``is_staff`` (the admin's *Can view job*)."""


def may_watch(user: Any) -> bool:
    return bool(
        user is not None
        and getattr(user, "is_authenticated", False)
        and getattr(user, "is_active", False)
        and getattr(user, "is_staff", False)
        and user.has_perm(VIEW_PERMISSION)
    )


def session_user(scope: dict[str, Any]) -> Any:
    """The user the connection's session is logged in as *now* (read afresh from the session
    store and the database), or ``None`` when it is logged out, its session flushed, or its
    password changed since. Synchronous: call it in a thread."""
    session = scope.get("session")
    key = getattr(session, "session_key", None)
    if session is None or not key:
        return None
    store = session.__class__(session_key=key)  # a fresh read, not the handshake's copy
    user_id = store.get(SESSION_KEY)
    backend_path = store.get(BACKEND_SESSION_KEY)
    if user_id is None or backend_path is None:
        return None
    user = load_backend(backend_path).get_user(user_id)
    if user is None:
        return None
    stored_hash = store.get(HASH_SESSION_KEY)
    check = getattr(user, "get_session_auth_hash", None)
    if check is not None and not (stored_hash and constant_time_compare(stored_hash, check())):
        return None
    return user
