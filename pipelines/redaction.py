"""Credentials kept out of everything deepsets writes or prints.

A tracking URI may carry a password (``postgresql://user:pw@host/db``, ``https://user:token@host``)
or a secret query parameter (``...?password=pw``, ``?access_token=...``). The jobs connect with
the real value; every copy written to a file, an MLflow param or artifact, a summary or an
error message goes through :func:`redact_uris` (one string) or :func:`redact_secrets` (a
nested dict or list, such as ``RunConfig.as_dict()``) first.

What is redacted, in every ``scheme://...`` found in a string:

- the password of the userinfo: ``postgresql://user:pw@host/db`` -> ``postgresql://user:***@host/db``
  (the user name stays, to say which account; a userinfo without ``:`` has no password and
  stays as it is). A database URI's password runs to its last '@', raw '/', '?' or '#'
  included, as SQLAlchemy (MLflow's database stores) reads it;
- the value of a query parameter whose name ends in password, passwd, pwd, secret, token,
  api_key, apikey or signature, or is sig: ``?password=pw&x=1`` -> ``?password=***&x=1``.

Everything else is left as it was, and redacting twice gives the same text as redacting once.
A config holding a redacted URI cannot connect: :func:`redacted_parts` finds them, so the
job can say so instead of failing on a wrong password.
"""

from __future__ import annotations

import re
from typing import Any

REDACTED = "***"

# scheme://tail, the tail up to the first whitespace
_URI = re.compile(r"(?P<scheme>[A-Za-z][A-Za-z0-9+.\-]*)://(?P<tail>\S*)")
_QUERY_PARAM = re.compile(r"(?P<key>[^&;=#?]+)=(?P<value>[^&;#]*)")
_SECRET_NAME_ENDINGS = ("password", "passwd", "pwd", "secret", "token", "api_key", "apikey", "signature")
_DATABASE_SCHEMES = ("postgresql", "postgres", "mysql", "mariadb", "mssql", "oracle", "sqlite", "cockroachdb")
"""URIs SQLAlchemy reads (MLflow's database stores): their password may hold a raw '/', '?' or '#'."""


def is_secret_name(name: str) -> bool:
    """Whether a query parameter called ``name`` holds a credential (case, '-' and '_' aside)."""
    key = name.strip().lower().replace("-", "_")
    return key == "sig" or key.endswith(_SECRET_NAME_ENDINGS)


def _split_userinfo(scheme: str, tail: str) -> tuple[str | None, str]:
    """``(userinfo or None, host and the rest)`` of a URI's part after ``scheme://``.

    A database URI's userinfo ends at its last '@' (SQLAlchemy takes a raw '/', '?' or '#' in
    the password); any other's at the last '@' before the first '/', '?' or '#' (as
    ``urllib.parse.urlsplit`` reads it).
    """
    if scheme.lower().split("+")[0] in _DATABASE_SCHEMES:
        at = tail.rfind("@")
        if at >= 0 and "/" not in tail[:at].partition(":")[0]:  # a user name never holds '/'
            return tail[:at], tail[at + 1 :]
        return None, tail
    netloc = re.split(r"[/?#]", tail, maxsplit=1)[0]
    at = netloc.rfind("@")
    return (tail[:at], tail[at + 1 :]) if at >= 0 else (None, tail)


def _redact_query(rest: str) -> str:
    path, question, after = rest.partition("?")
    if not question:
        return rest
    query, hash_, fragment = after.partition("#")

    def one(match: re.Match) -> str:
        key, value = match.group("key"), match.group("value")
        return f"{key}={REDACTED}" if value and is_secret_name(key) else match.group(0)

    return f"{path}?{_QUERY_PARAM.sub(one, query)}{hash_}{fragment}"


def redact_uris(text: str) -> str:
    """``text`` with the password and the secret query values of every URI in it replaced by
    ``***``; text without such a URI comes back unchanged.

    Args:
        text: a URI, or any text that may hold URIs (an error message, a traceback).
    """
    if "://" not in text:
        return text

    def one(match: re.Match) -> str:
        scheme = match.group("scheme")
        userinfo, rest = _split_userinfo(scheme, match.group("tail"))
        if userinfo is None:
            return f"{scheme}://{_redact_query(rest)}"
        user, colon, password = userinfo.partition(":")
        shown = f"{user}:{REDACTED}" if colon and password else userinfo
        return f"{scheme}://{shown}@{_redact_query(rest)}"

    return _URI.sub(one, text)


def redact_secrets(value: Any) -> Any:
    """A copy of ``value`` with :func:`redact_uris` applied to every string in it, through
    dicts (their values), lists and tuples; other values are returned as they are.

    Args:
        value: a string, or a nested structure such as ``RunConfig.as_dict()``,
            ``RunConfig.flat_params()`` or a job's summary.
    """
    if isinstance(value, str):
        return redact_uris(value)
    if isinstance(value, dict):
        return {key: redact_secrets(item) for key, item in value.items()}
    if isinstance(value, list):
        return [redact_secrets(item) for item in value]
    if isinstance(value, tuple):
        return tuple(redact_secrets(item) for item in value)
    return value


def redacted_parts(text: str) -> list[str]:
    """The URIs in ``text`` that hold a redacted credential (``user:***@`` or ``password=***``):
    copies written by deepsets, which cannot connect."""
    found = []
    for match in _URI.finditer(text):
        userinfo, rest = _split_userinfo(match.group("scheme"), match.group("tail"))
        query = rest.partition("?")[2].partition("#")[0]
        if (userinfo or "").partition(":")[2] == REDACTED or any(
            m.group("value") == REDACTED and is_secret_name(m.group("key")) for m in _QUERY_PARAM.finditer(query)
        ):
            found.append(match.group(0))
    return found


def config_toml(cfg) -> str:
    """A run config as the TOML text deepsets writes (``config.toml``, ``best.toml``): as
    ``cfg.to_toml()``, every URI's credentials redacted.

    Args:
        cfg: a :class:`deepsets.pipelines.config.RunConfig`.
    """
    from deepsets.pipelines.config.toml_text import dump_toml

    return dump_toml(redact_secrets(cfg.as_dict()))


def require_unredacted(uri: str, field: str = "tracking.mlflow_uri") -> str:
    """``uri`` itself, when it holds no credential that deepsets redacted.

    Raises:
        ConfigError: for a URI copied from what deepsets wrote (``config.toml``, ``best.toml``,
            a checkpoint's ``config.json``) with its password as ``***``: it cannot connect.
    """
    from deepsets.pipelines.errors import ConfigError

    if redacted_parts(uri):
        raise ConfigError(
            field,
            [
                f"{uri} holds a password (or token) that deepsets replaced by {REDACTED} when it wrote this config; give the real "
                f"URI: --set {field}=... (deepsets train also takes MLFLOW_TRACKING_URI when {field} is empty)"
            ],
        )
    return uri
