"""Accounts and API tokens in MongoDB (`users`, `tokens`); passwords and tokens are stored hashed."""

from __future__ import annotations

import hashlib
import re
import secrets
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from bson import ObjectId
from bson.errors import InvalidId
from pymongo.errors import DuplicateKeyError
from werkzeug.security import check_password_hash, generate_password_hash

from shared import cache
from shared.db import get_db

USERNAME = re.compile(r"^[a-z0-9][a-z0-9_.-]{2,31}$")
MIN_PASSWORD = 8
TOKEN_PREFIX = "mw_"
# last_used_at is a hint for the settings page, not an audit log: write it at most this often.
TOUCH_EVERY = timedelta(minutes=1)
# Users and tokens as of the last write to either: every API request and page load looks both up.
_auth = cache.Versioned("auth", max_entries=4096)
# Checked against when the username is unknown, so both answers take as long (no user probing).
_DUMMY_HASH = generate_password_hash("not a password of anyone")


class AccountError(ValueError):
    """A registration or password change that cannot be accepted; the message is for the user."""


@dataclass(frozen=True)
class User:
    """The signed-in user (Flask-Login's user object)."""

    id: str
    username: str
    is_admin: bool = False

    is_authenticated = True
    is_active = True
    is_anonymous = False

    def get_id(self) -> str:
        return self.id

    @classmethod
    def from_doc(cls, doc: dict) -> User:
        """A User from its `users` document."""
        return cls(id=str(doc["_id"]), username=doc["username"], is_admin=bool(doc.get("is_admin")))


def normalize(username: str) -> str:
    """Usernames are case-insensitive: stored and compared lower-case."""
    return (username or "").strip().lower()


def check_password_rules(password: str) -> None:
    """AccountError when the password is too weak to accept."""
    if len(password or "") < MIN_PASSWORD:
        raise AccountError(f"The password needs at least {MIN_PASSWORD} characters.")


def create(username: str, password: str, *, is_admin: bool = False) -> User:
    """Register a user; AccountError when the name is invalid or taken."""
    name = normalize(username)
    if not USERNAME.match(name):
        raise AccountError("Usernames have 3 to 32 letters, digits, '.', '_' or '-', "
                           "starting with a letter or digit.")
    check_password_rules(password)
    doc = {"username": name, "password_hash": generate_password_hash(password),
           "is_admin": is_admin, "created_at": datetime.now(UTC)}
    try:
        doc["_id"] = get_db().users.insert_one(doc).inserted_id
    except DuplicateKeyError:
        raise AccountError(f"The username {name!r} is taken.") from None
    return User.from_doc(doc)


def authenticate(username: str, password: str) -> User | None:
    """The user when the password matches, else None (same work either way)."""
    doc = get_db().users.find_one({"username": normalize(username)})
    if doc is None:
        check_password_hash(_DUMMY_HASH, password or "")
        return None
    if not check_password_hash(doc["password_hash"], password or ""):
        return None
    return User.from_doc(doc)


def get(user_id: str) -> User | None:
    """A user by id; None when unknown or malformed."""
    try:
        oid = ObjectId(str(user_id))
    except (InvalidId, TypeError):
        return None
    db = get_db()
    doc = _auth.get(db.name, ("user", oid), lambda: db.users.find_one({"_id": oid}),
                    keep=cache.unless_written(str(oid)))
    return User.from_doc(doc) if doc else None


def make_admin(username: str, password: str | None = None) -> tuple[User, bool]:
    """Create an admin, or promote an existing user (and reset the password when given); (user, created)."""
    name = normalize(username)
    doc = get_db().users.find_one({"username": name})
    if doc is None:
        if not password:
            raise AccountError(f"There is no user {name!r}; give a password to create one.")
        return create(name, password, is_admin=True), True
    update: dict = {"is_admin": True}
    if password:
        check_password_rules(password)
        update["password_hash"] = generate_password_hash(password)
    get_db().users.update_one({"_id": doc["_id"]}, {"$set": update})
    return User.from_doc({**doc, **update}), False


def token_hash(token: str) -> str:
    """Tokens are 256 random bits, so a plain SHA-256 is enough (no slow hash needed)."""
    return hashlib.sha256(token.encode()).hexdigest()


def create_token(user_id: str, name: str) -> tuple[str, dict]:
    """A new API token: (the token, shown once; its stored document without the secret)."""
    token = TOKEN_PREFIX + secrets.token_urlsafe(32)
    doc = {"token_hash": token_hash(token), "user_id": user_id, "name": (name or "token").strip()[:80],
           "created_at": datetime.now(UTC), "last_used_at": None}
    doc["_id"] = get_db().tokens.insert_one(doc).inserted_id
    return token, doc


def list_tokens(user_id: str) -> list[dict]:
    """The user's tokens, newest first."""
    return list(get_db().tokens.find({"user_id": user_id}, {"token_hash": 0}).sort("created_at", -1))


def revoke_token(user_id: str, token_id: str) -> bool:
    """Delete one of the user's tokens; False when it is not theirs or not there."""
    try:
        oid = ObjectId(str(token_id))
    except (InvalidId, TypeError):
        return False
    return get_db().tokens.delete_one({"_id": oid, "user_id": user_id}).deleted_count == 1


def user_for_token(token: str) -> User | None:
    """The owner of a token, or None when the token is unknown or its user is gone."""
    if not token or not token.startswith(TOKEN_PREFIX) or len(token) > 200:
        return None
    db, digest = get_db(), token_hash(token)
    doc = _auth.get(db.name, ("token", digest), lambda: db.tokens.find_one({"token_hash": digest}),
                    keep=cache.unless_written())
    if doc is None:
        return None
    now = datetime.now(UTC)
    last = doc.get("last_used_at")
    if last is None or now - last > TOUCH_EVERY:
        get_db().tokens.update_one({"_id": doc["_id"]}, {"$set": {"last_used_at": now}})
    return get(doc["user_id"])
