"""Credentials in URIs: redacted wherever they occur in a string or a nested config, nothing else touched."""

from __future__ import annotations

import json
import string

from hypothesis import given
from hypothesis import strategies as st

from deepsets.pipelines.redaction import REDACTED, is_secret_name, redact_secrets, redact_uris, redacted_parts

# Users, hosts, paths, query values and surrounding text are lower case; every password holds an upper-case letter,
# so it can only appear in the output where it was not redacted.
LOWER = string.ascii_lowercase + string.digits
users = st.text(LOWER + "._-", min_size=1, max_size=8)
hosts = st.builds(
    lambda name, port: name + (f":{port}" if port else ""),
    st.text(LOWER + ".-", min_size=1, max_size=12),
    st.one_of(st.none(), st.integers(1, 65535)),
)
paths = st.lists(st.text(LOWER + "._-", min_size=1, max_size=6), max_size=3).map(
    lambda parts: "".join("/" + p for p in parts)
)
plain_keys = st.text(string.ascii_lowercase + "_", min_size=1, max_size=8).filter(lambda k: not is_secret_name(k))
queries = st.lists(st.tuples(plain_keys, st.text(LOWER, max_size=6)), max_size=3).map(
    lambda pairs: ("?" + "&".join(f"{k}={v}" for k, v in pairs)) if pairs else ""
)
web_schemes = st.sampled_from(["http", "https", "s3", "gs", "ftp", "databricks", "mlflow-artifacts"])
database_schemes = st.sampled_from(["postgresql", "postgresql+psycopg2", "mysql", "mysql+pymysql", "mssql+pyodbc"])


def secrets(extra: str):
    """An upper-case letter, then any of the characters a password of that kind may hold
    ('*' aside: that is what a redacted one holds)."""
    alphabet = string.ascii_letters + string.digits + "!$&'()+,;=:%~-_." + extra
    return st.builds(
        lambda first, rest: first + rest, st.sampled_from(string.ascii_uppercase), st.text(alphabet, max_size=16)
    )


web_passwords = secrets("@")  # urllib reads the userinfo up to the last '@' before the first '/', '?' or '#'
database_passwords = secrets("@/?#")  # SQLAlchemy reads it up to the last '@'
surrounding = st.sampled_from(
    [("", ""), ("error: cannot reach ", " (status 401)"), ("(tracking uri ", "): boom"), ("'", "'")]
)


@st.composite
def uris_with_passwords(draw):
    """``(text holding a URI with user:password, the user, the password)``."""
    if draw(st.booleans()):
        scheme, password, path = draw(web_schemes), draw(web_passwords), draw(paths)
    else:
        scheme, password, path = draw(database_schemes), draw(database_passwords), draw(paths)
    user = draw(users)
    before, after = draw(surrounding)
    return f"{before}{scheme}://{user}:{password}@{draw(hosts)}{path}{draw(queries)}{after}", user, password


@given(uris_with_passwords())
def test_a_password_in_a_uri_never_survives_and_the_user_stays(case):
    text, user, password = case
    redacted = redact_uris(text)
    assert password not in redacted
    assert f"://{user}:{REDACTED}@" in redacted
    assert len(redacted_parts(redacted)) == 1 and redacted_parts(text) == []


@given(
    st.one_of(web_schemes, database_schemes),
    users,
    hosts,
    paths,
    queries,
    st.sampled_from(
        ["password", "sslpassword", "access_token", "x-amz-security-token", "client_secret", "api-key", "sig"]
    ),
    web_passwords.map(lambda s: s.translate(str.maketrans("", "", "&;#@"))),
)
def test_a_secret_query_parameter_never_survives(scheme, user, host, path, query, key, secret):
    joined = f"{query}&" if query else "?"
    text = f"{scheme}://{user}@{host}{path}{joined}{key}={secret}#part"
    redacted = redact_uris(text)
    assert secret not in redacted
    assert redacted == f"{scheme}://{user}@{host}{path}{joined}{key}={REDACTED}#part"  # the rest as it was


@given(
    st.one_of(web_schemes, database_schemes),
    st.one_of(st.just(""), users.map(lambda u: u + "@")),
    hosts,
    paths,
    queries,
    surrounding,
)
def test_a_uri_without_credentials_is_left_as_it_is(scheme, userinfo, host, path, query, around):
    text = f"{around[0]}{scheme}://{userinfo}{host}{path}{query}{around[1]}"
    assert redact_uris(text) == text
    assert redacted_parts(text) == []


@given(st.text(st.characters(blacklist_categories=("Cs",)), max_size=40).filter(lambda t: "://" not in t))
def test_text_without_a_uri_is_left_as_it_is(text):
    assert redact_uris(text) == text


@given(st.one_of(st.text(max_size=60), uris_with_passwords().map(lambda case: case[0])))
def test_redacting_twice_is_redacting_once(text):
    once = redact_uris(text)
    assert redact_uris(once) == once


@given(
    st.recursive(
        st.one_of(
            uris_with_passwords(),
            st.integers(),
            st.floats(allow_nan=False, allow_infinity=False),
            st.booleans(),
            st.none(),
            st.text(LOWER, max_size=5),
        ),
        lambda children: st.one_of(
            st.lists(children, max_size=3),
            st.dictionaries(st.text(LOWER, min_size=1, max_size=4), children, max_size=3),
        ),
        max_leaves=8,
    )
)
def test_every_string_of_a_nested_config_is_redacted_and_nothing_else_changes(tree):
    def plain(node):  # the tree with each (text, user, password) case as its text
        if isinstance(node, tuple):
            return node[0]
        if isinstance(node, list):
            return [plain(item) for item in node]
        if isinstance(node, dict):
            return {key: plain(item) for key, item in node.items()}
        return node

    def passwords(node):
        if isinstance(node, tuple):
            return [node[2]]
        items = node.values() if isinstance(node, dict) else node if isinstance(node, list) else []
        return [p for item in items for p in passwords(item)]

    def same_shape(before, after):
        if isinstance(before, str):
            return isinstance(after, str) and after == redact_uris(before)
        if isinstance(before, list):
            return isinstance(after, list) and len(before) == len(after) and all(map(same_shape, before, after))
        if isinstance(before, dict):
            return (
                isinstance(after, dict)
                and list(before) == list(after)
                and all(same_shape(before[k], after[k]) for k in before)
            )
        return before == after and type(before) is type(after)

    doc = plain(tree)
    redacted = redact_secrets(doc)
    written = json.dumps(redacted)
    assert not [p for p in passwords(tree) if p in written]
    assert same_shape(doc, redacted)
    assert redact_secrets(redacted) == redacted


def test_known_forms():
    assert redact_uris("postgresql://user:pw@db.example.com/mlflow") == "postgresql://user:***@db.example.com/mlflow"
    assert redact_uris("https://ci:ghp_abc@mlflow.example.com/") == "https://ci:***@mlflow.example.com/"
    assert (
        redact_uris("mysql+pymysql://u:p/w?x#y@h:3306/db?charset=utf8")
        == "mysql+pymysql://u:***@h:3306/db?charset=utf8"
    )
    assert redact_uris("sqlite:////tmp/m.db?password=pw") == "sqlite:////tmp/m.db?password=***"
    assert redact_uris("https://registry.example.com:443/@scope/pkg") == "https://registry.example.com:443/@scope/pkg"
    assert redact_uris("postgresql://reader@host/db") == "postgresql://reader@host/db"  # no password in the URI
    assert redact_secrets(("http://u:p@h", 3)) == ("http://u:***@h", 3)
    assert (
        redact_uris("https://h/p?X-Amz-Security-Token=abc&Password=pw")
        == "https://h/p?X-Amz-Security-Token=***&Password=***"
    )
