"""The JVM keying function (``flinkjob.operators.JsonStateKey``) against Python's own keying.

For every message pydantic accepts, the key computed on the JVM must be exactly the one
``ResolverCore.decode`` gives (or none: the message then goes to Python's fallback keying); a
different one would make the keyed operator dead-letter a valid message as a KeyMismatch.
Messages pydantic refuses are dead letters whatever their key. Checked on thousands of
generated messages: duplicates, defaults along the path, NaN, huge numbers, lone surrogates,
byte-order marks, invalid UTF-8, trailing content, documents that are not objects.
"""

from __future__ import annotations

import json
import random

import pytest
from pydantic import BaseModel

from flink_job import Features, features
from flink_job._core import Decoded, RawMessage, ResolverCore
from flink_job._wire import ABSENT_VALUE, UNKEYABLE
from flink_job.streams import KafkaSource, stream

SOURCE = KafkaSource(name="keys")
LIMIT = 4000


@features
class Account:
    id: str


class Profile(BaseModel):
    id: str = "\ufeffnobody"
    note: str = ""


class Event(BaseModel):
    user_id: str = "anon"
    profile: Profile = Profile()
    x: float = 0.0
    tags: list[str] = []


class Strict(BaseModel):
    user_id: str
    x: float = 0.0


@stream(source=SOURCE, keys={"user_id": Account.id})
def by_user(event: Event) -> Features[Account.id]:
    return Account(id=event.user_id)


@stream(source=SOURCE, keys={"profile.id": Account.id})
def by_profile(event: Event) -> Features[Account.id]:
    return Account(id=event.profile.id)


@stream(source=SOURCE, keys={"user_id": Account.id})
def required(event: Strict) -> Features[Account.id]:
    return Account(id=event.user_id)


@pytest.fixture(scope="module")
def jvm():
    from pyflink.java_gateway import get_gateway
    from pyflink.util.java_utils import add_jars_to_context_class_loader

    from connectors import jars
    from flink_job.config import home

    add_jars_to_context_class_loader([jars.operators_jar(home()).as_uri()])
    return get_gateway().jvm


def _java_keyer(jvm, resolver):  # type: ignore[no-untyped-def]
    from pyflink.common.typeinfo import Types
    from pyflink.datastream import OutputTag

    from flink_job.job import json_key_spec, resolver_ref

    spec = json_key_spec(resolver_ref(resolver, __name__, None, "thread", LIMIT))
    tag = OutputTag("fallback", Types.TUPLE([Types.STRING()]))
    keyer = jvm.flinkjob.operators.JsonStateKey(spec, tag.get_java_output_tag())
    keyer.open(None)
    return keyer


def _java_key(jvm, keyer, value: bytes | None) -> str | None:  # type: ignore[no-untyped-def]
    message = jvm.org.apache.flink.api.java.tuple.Tuple7(
        b"",
        value or b"",
        0,
        0,
        jvm.java.util.HashMap(),
        0 if value is not None else ABSENT_VALUE,
        -1,
    )
    return keyer.key(message)


TRICKY = [
    "u1",
    "\ufeffu",
    "\ufffe\u00d8",
    "\x01x",
    "é\u2028",
    "😀",
    'a: NaN, \\" x',
    "",
    "user_id",
    "}{",
]


def _string(rnd: random.Random) -> str:
    r = rnd.random()
    if r < 0.1:
        return '"\\ud800x"'  # a lone surrogate escape
    if r < 0.15:
        return '"\\ud83d\\ude00"'  # a surrogate pair escape
    if r < 0.2:
        return '"\\ufeffu"'
    return json.dumps(rnd.choice(TRICKY), ensure_ascii=rnd.random() < 0.5)


def _value(rnd: random.Random, depth: int) -> str:
    r = rnd.random()
    if r < 0.25:
        return rnd.choice(["NaN", "Infinity", "-Infinity", "1e999", "7" * 1200, "-3.5", "null"])
    if r < 0.55 or depth > 2:
        return _string(rnd)
    if r < 0.7:
        return "[" + ", ".join(_value(rnd, depth + 1) for _ in range(rnd.randrange(3))) + "]"
    if r < 0.8:
        return rnd.choice(["true", "false", "5"])
    return _object(rnd, depth + 1)


def _object(rnd: random.Random, depth: int) -> str:
    names = ["user_id", "profile", "id", "note", "x", "tags", "user\\u005fid", "other"]
    members = [
        f"{json.dumps(rnd.choice(names)) if rnd.random() < 0.9 else chr(34) + names[6] + chr(34)}"
        f"{rnd.choice(['', ' '])}:{rnd.choice(['', ' ', chr(10)])}{_value(rnd, depth)}"
        for _ in range(rnd.randrange(5))
    ]
    return "{" + ", ".join(members) + "}"


def _messages(seed: int, n: int) -> list[bytes | None]:
    rnd = random.Random(seed)
    out: list[bytes | None] = [None, b"", b"   ", b"[]", b'"u1"', b"{", b'{"user_id": "u"} x']
    for _ in range(n):
        doc = _object(rnd, 0).encode()
        r = rnd.random()
        if r < 0.05:
            doc = doc.replace(b"u", b"\xff", 1)  # invalid UTF-8
        elif r < 0.08:
            doc = b"\xef\xbb\xbf" + doc  # a UTF-8 byte-order mark before the document
        elif r < 0.1:
            doc = doc + b"," + doc  # trailing content
        out.append(doc)
    return out


@pytest.mark.parametrize("resolver", [by_user, by_profile, required], ids=lambda r: r.name)
def test_the_jvm_key_is_pythons_key_for_every_message_pydantic_accepts(jvm, resolver):
    keyer = _java_keyer(jvm, resolver)
    core = ResolverCore(resolver, LIMIT)
    accepted = fallbacks = 0
    for i, value in enumerate(_messages(seed=len(resolver.name), n=3000)):
        decoded = core.decode(RawMessage(value, None, "t", 0, i))
        java = _java_key(jvm, keyer, value)
        if isinstance(decoded, Decoded):
            accepted += 1
            if java is None:
                fallbacks += 1
            else:
                assert java == decoded.key, value
    # The generator gives both kinds, and the JVM keys nearly all accepted messages itself.
    assert accepted > 100
    assert fallbacks <= accepted // 20, (fallbacks, accepted)


def test_messages_jackson_refuses_by_default_are_keyed_on_the_jvm(jvm):
    keyer = _java_keyer(jvm, by_user)
    big = b"9" * 1500
    for value, key in [
        (b'{"x": NaN, "user_id": "u1"}', "u1"),
        (b'{"x": -Infinity, "user_id": "\\ufeffu"}', "\x01\ufeffu"),
        (b'{"x": ' + big + b', "user_id": "u2"}', "u2"),
        (b'{"user_id": "a", "user_id": "b"}', "b"),  # the last of duplicates, as pydantic
        (b'{"user_id": 5, "user_id": "c"}', "c"),
        (b'{"x": 1.5}', "anon"),  # absent: the default's key
        (b'{"user_id": null}', UNKEYABLE),  # pydantic refuses null
        (b'{"user_id": "\\udc00"}', UNKEYABLE),  # a lone surrogate: never a Flink key
        (b'{"user_id": "u", "pad": "' + b"p" * LIMIT + b'"}', UNKEYABLE),  # over the limit
    ]:
        assert _java_key(jvm, keyer, value) == key, value
        decoded = ResolverCore(by_user, LIMIT).decode(RawMessage(value))
        if isinstance(decoded, Decoded):
            assert decoded.key == key
    # Invalid UTF-8: Python decides (the fallback), and refuses it.
    assert _java_key(jvm, keyer, b'{"user_id": "\xff"}') is None
    nested = _java_keyer(jvm, by_profile)
    assert _java_key(jvm, nested, b'{"profile": {"id": "p"}, "profile": {"note": "n"}}') == (
        "\x01\ufeffnobody"
    )
    assert _java_key(jvm, nested, b'{"profile": {"note": "n", "id": "p"}}') == "p"
