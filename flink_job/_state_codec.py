"""State encoding: a versioned envelope of the state's fields, never a pickle of its class.

Encoded form: ``pickle((ENVELOPE_VERSION, fingerprint, {field: plain value}))`` where plain
values are builtins (str, int, float, bool, None, bytes, list, tuple, set, frozenset, dict),
``datetime``/``date``/``time``/``timedelta`` (aware ones with a fixed-offset
``datetime.timezone``, pydantic's ``TzInfo`` stored as one, or an IANA ``ZoneInfo`` stored by
its key), ``Decimal`` and ``UUID``; nested dataclasses and
models become dicts of their fields, enums their values. Decoding uses a restricted unpickler
that refuses every other global, so stored bytes cannot name a class or run code.

State is stored by value: a value referenced from two places is stored (and decoded) as two
equal values, as nested state objects always were, and a value that contains itself cannot
be stored (a ``StateEncodeError`` dead letter). The pickler runs without its memo (``fast``
mode), which halves the cost of encoding a state of many strings.

``fingerprint`` hashes the state class's schema. When it matches, decoding rebuilds objects
directly (fast path). When it differs (the class changed since the state was written), the
stored fields are validated into the current class with pydantic: new fields take their
defaults, removed fields are dropped, and values that no longer fit fail with a
:class:`StateSchemaError` naming the resolver and field.
"""

from __future__ import annotations

import dataclasses
import datetime as dt
import decimal
import enum
import functools
import hashlib
import inspect
import io
import operator
import pickle
import threading
import types
import typing
import uuid
import zoneinfo
from collections.abc import Callable
from typing import Any

import pydantic
import pydantic_core

from flink_job._types import fields_of, has_fields, is_dataclass_type, is_model
from flink_job.errors import ResolverDefinitionError, StateSchemaError

ENVELOPE_VERSION = 1

Conv = Callable[[Any], Any] | None  # None means: the value is already plain, keep it as is

# The one allow-list: the classes, besides builtins, whose values state stores as they are.
_VALUE_CLASSES: tuple[type, ...] = (
    dt.datetime,
    dt.date,
    dt.time,
    dt.timedelta,
    decimal.Decimal,
    uuid.UUID,
)
# Values stored as they are: builtins and the value classes.
_SCALARS: tuple[type, ...] = (str, int, float, bool, bytes, type(None), *_VALUE_CLASSES)
# Instances the pickler writes by reference: the value classes and the fixed-offset zones of
# aware datetimes.
_ALLOWED_INSTANCES: frozenset[type] = frozenset({*_VALUE_CLASSES, dt.timezone})
# Exactly the globals the encoder writes (protocol 5 writes sets and frozensets as opcodes).
# Nothing else: ``bytearray(n)`` alone would let 33 stored bytes allocate gigabytes. With
# only these, every object the unpickler builds is made from bytes present in the stream, so
# decoding allocates in proportion to the stored size.
_ALLOWED_GLOBALS = {(c.__module__, c.__qualname__) for c in _ALLOWED_INSTANCES} | {
    (__name__, "_zoneinfo")
}
# What state can store, as every error about a value or a field type says it.
STORABLE = (
    "builtins, containers of them, datetime, Decimal, UUID, enums, dataclasses or pydantic models"
)


def _cannot_store(what: str) -> TypeError:
    return TypeError(f"a value of type {what} cannot be stored in state; use {STORABLE}")


def _zoneinfo(key: str) -> zoneinfo.ZoneInfo:
    """An IANA zone by its key: how a stored ``ZoneInfo`` comes back (see _StatePickler)."""
    return zoneinfo.ZoneInfo(key)


class _StateUnpickler(pickle.Unpickler):
    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in _ALLOWED_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"state envelope refers to {module}.{name}; refused")


class _StatePickler(pickle.Pickler):
    """Writes only what :class:`_StateUnpickler` reads back: a value of any other class (say a
    user object put into a ``set[str]`` field) fails the encode instead of the next decode."""

    def reducer_override(self, obj: Any) -> Any:
        # Aware datetimes keep their zone exactly: a fixed offset (pydantic parses "Z" and
        # "+02:00" into its own TzInfo) as datetime.timezone, an IANA zone by its key (ZoneInfo
        # itself pickles through builtins.getattr, which the unpickler refuses).
        tp = type(obj)
        if tp is pydantic_core.TzInfo:
            return dt.timezone, (obj.utcoffset(None),)
        if tp is zoneinfo.ZoneInfo:
            if obj.key is None:
                raise TypeError(
                    "a ZoneInfo read from a file (no IANA key) cannot be stored in state; use "
                    "ZoneInfo(key) or a fixed offset (datetime.timezone)"
                )
            return _zoneinfo, (obj.key,)
        if obj is _zoneinfo:
            return NotImplemented  # by reference, as the unpickler allows
        if isinstance(obj, type):
            if (obj.__module__, obj.__qualname__) in _ALLOWED_GLOBALS:
                return NotImplemented
        elif type(obj) in _ALLOWED_INSTANCES:
            return NotImplemented
        raise _cannot_store(obj.__qualname__ if isinstance(obj, type) else type(obj).__qualname__)


_THREAD = threading.local()  # .dumps: this thread's pickling function (see _new_dumps)


class _Chunks:
    """The pickler's file: keeps what it writes (one chunk per dump unless the state is over
    a frame, 64 KiB), without BytesIO's copy in and copy out."""

    __slots__ = ("write",)

    def __init__(self, chunks: list[bytes]) -> None:
        self.write = chunks.append


def _new_dumps() -> Callable[[Any], bytes]:
    """A pickling function over one restricted pickler, reused for every state of the calling
    thread, in fast mode (no memo: every object is written by value; a cycle raises
    ValueError instead of being written). A closure over bound methods: no attribute lookups
    per state."""
    chunks: list[bytes] = []
    pickler = _StatePickler(_Chunks(chunks), protocol=5)
    pickler.fast = True
    dump, pop, clear, join = pickler.dump, chunks.pop, chunks.clear, b"".join

    def dumps(obj: Any) -> bytes:
        try:
            dump(obj)
        except BaseException:
            _THREAD.dumps = _new_dumps()  # a failed dump may leave it half-written
            raise
        if len(chunks) == 1:
            return pop()
        data = join(chunks)
        clear()
        return data

    return dumps


# Stored fields are keyed by attribute name at every level, whatever the models' aliases, and
# fields removed from nested classes are dropped (pydantic >= 2.11; older ones validate by alias).
_BY_NAME: dict[str, Any] = {
    k: v
    for k, v in {"by_alias": False, "by_name": True, "extra": "ignore"}.items()
    if k in inspect.signature(pydantic.TypeAdapter.validate_python).parameters
}


def _encoder(fingerprint: str, to_plain: Callable[[Any], Any]) -> Callable[[Any], bytes]:
    """``StateCodec.encode`` for one state class: a closure over its fingerprint and
    converter that pickles with the calling thread's pickler (one Python call fewer per
    message than a method calling a module function)."""
    local = _THREAD

    def encode(obj: Any) -> bytes:
        envelope = (ENVELOPE_VERSION, fingerprint, to_plain(obj))
        try:
            dumps = local.dumps
        except AttributeError:
            dumps = local.dumps = _new_dumps()
        result: bytes = dumps(envelope)
        return result

    return encode


def _loads(data: bytes) -> Any:
    return _StateUnpickler(io.BytesIO(data)).load()


class _Unsupported(Exception):
    def __init__(self, tp: Any) -> None:
        self.tp = tp


class _NotStored(Exception):
    """A state class holding values that are not fields (so never stored)."""

    def __init__(self, cls: type, what: str) -> None:
        self.cls = cls
        self.what = what


def _check_all_stored(cls: type) -> None:
    """Refuse a model whose instances hold values outside its fields: private attributes
    and ``extra="allow"`` live on the object but are not encoded, so a cached state object
    and the decoded bytes would differ (the job and ``replay`` would disagree)."""
    if not is_model(cls):
        return
    private = sorted(getattr(cls, "__private_attributes__", {}) or {})
    if private:
        raise _NotStored(cls, f"private attributes ({', '.join(private)})")
    if cls.model_config.get("extra") == "allow":  # type: ignore[attr-defined]
        raise _NotStored(cls, 'extra="allow" (extra fields)')


class _Compiler:
    """Compiles a state class into (to_plain, from_plain) converters and a schema description."""

    def __init__(self) -> None:
        self._classes: dict[type, tuple[Callable[[Any], Any], Callable[[Any], Any]]] = {}
        self._describing: set[type] = set()

    def describe(self, tp: Any) -> str:
        origin = typing.get_origin(tp)
        if origin is typing.Annotated:
            return self.describe(typing.get_args(tp)[0])
        if origin is not None:
            args = ",".join(self.describe(a) for a in typing.get_args(tp))
            return f"{getattr(origin, '__qualname__', repr(origin))}[{args}]"
        if has_fields(tp):
            if tp in self._describing:
                return tp.__qualname__
            self._describing.add(tp)
            body = ";".join(f"{n}:{self.describe(a)}" for n, a in fields_of(tp).items())
            self._describing.discard(tp)
            return f"{tp.__module__}.{tp.__qualname__}{{{body}}}"
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return f"{tp.__qualname__}({','.join(repr(m.value) for m in tp)})"
        return getattr(tp, "__qualname__", repr(tp))

    def convs(self, tp: Any) -> tuple[Conv, Conv]:
        """(to_plain, from_plain) for values of type ``tp``."""
        origin = typing.get_origin(tp)
        args = typing.get_args(tp)
        if tp is Any or tp is object:
            return _generic_to_plain, None
        if origin is typing.Annotated:
            return self.convs(args[0])
        if origin is typing.Literal:
            return None, None
        if origin in (typing.Union, types.UnionType):
            pairs = [self.convs(a) for a in args]
            if all(p == (None, None) for p in pairs):
                return None, None
            adapter = pydantic.TypeAdapter(tp)
            return _generic_to_plain, functools.partial(adapter.validate_python, **_BY_NAME)
        if origin in (list, set, frozenset, typing.Sequence, typing.AbstractSet):
            to, frm = self.convs(args[0]) if args else (_generic_to_plain, None)
            kind = list if origin in (list, typing.Sequence) else origin
            if kind is typing.AbstractSet:
                kind = set
            if to is None and frm is None:
                return None, None
            # Elements become plain lists (dicts are unhashable); rebuilt into the container.
            return (
                (lambda v, to=to: [to(x) if to else x for x in v]),
                (lambda v, frm=frm, kind=kind: kind(frm(x) if frm else x for x in v)),
            )
        if origin is tuple:
            if len(args) == 2 and args[1] is Ellipsis:
                to, frm = self.convs(args[0])
                if to is None and frm is None:
                    return None, None
                return (
                    (lambda v, to=to: tuple(to(x) if to else x for x in v)),
                    (lambda v, frm=frm: tuple(frm(x) if frm else x for x in v)),
                )
            pairs = [self.convs(a) for a in args]
            if all(p == (None, None) for p in pairs):
                return None, None
            return (
                (lambda v, ps=pairs: tuple(p[0](x) if p[0] else x for p, x in _zip(ps, v))),
                (lambda v, ps=pairs: tuple(p[1](x) if p[1] else x for p, x in _zip(ps, v))),
            )
        if origin in (dict, typing.Mapping):
            kt, vt = args if args else (Any, Any)
            (kto, kfrm), (vto, vfrm) = self.convs(kt), self.convs(vt)
            if kto is None and kfrm is None and vto is None and vfrm is None:
                return None, None
            return (
                lambda v: {(kto(k) if kto else k): (vto(x) if vto else x) for k, x in v.items()},
                lambda v: {
                    (kfrm(k) if kfrm else k): (vfrm(x) if vfrm else x) for k, x in v.items()
                },
            )
        if origin is None and tp in (list, set, frozenset, tuple, dict):
            return _generic_to_plain, None
        if isinstance(tp, type) and issubclass(tp, enum.Enum):
            return (lambda v: v.value), tp
        if isinstance(tp, type) and issubclass(tp, _SCALARS):
            return None, None
        if has_fields(tp):
            return self.class_convs(tp)
        raise _Unsupported(tp)

    def class_convs(self, cls: type) -> tuple[Callable[[Any], Any], Callable[[Any], Any]]:
        if cls in self._classes:
            return self._classes[cls]
        # Placeholders make recursive classes (a tree of nodes) resolve lazily.
        _check_all_stored(cls)
        cell: dict[str, Callable[[Any], Any]] = {}
        self._classes[cls] = (lambda v: cell["to"](v), lambda v: cell["from"](v))
        plan = [(name, *self.convs(ann)) for name, ann in fields_of(cls).items()]
        n_fields = len(plan)
        names = tuple(n for n, _, _ in plan)
        fields: Callable[[Any], dict[str, Any]]
        if any(to is not None for _, to, _ in plan):

            def fields(obj: Any) -> dict[str, Any]:
                return {n: (to(getattr(obj, n)) if to else getattr(obj, n)) for n, to, _ in plan}

        elif n_fields == 1:  # every field is stored as it is: read without a loop
            read, (only,) = operator.attrgetter(*names), names

            def fields(obj: Any) -> dict[str, Any]:
                return {only: read(obj)}

        elif n_fields:
            read_all = operator.attrgetter(*names)

            def fields(obj: Any) -> dict[str, Any]:
                return dict(zip(names, read_all(obj), strict=True))

        else:

            def fields(obj: Any) -> dict[str, Any]:
                return {}

        to_plain = fields
        if is_dataclass_type(cls):

            def to_plain(obj: Any) -> dict[str, Any]:
                # An attribute set on a dataclass that is not a field would live on the
                # cached object but never be stored: refuse it (a StateEncodeError).
                attrs = getattr(obj, "__dict__", None)
                if attrs is not None and len(attrs) != n_fields:
                    extra = sorted(set(attrs) - set(names))
                    raise TypeError(
                        f"{type(obj).__qualname__} has attributes that are not fields and "
                        f"would not be stored: {', '.join(extra)}; fix: declare them as "
                        "fields of the state class"
                    )
                return fields(obj)

        if is_model(cls):

            def from_plain(d: dict[str, Any]) -> Any:
                return cls.model_construct(  # type: ignore[attr-defined]
                    **{n: (frm(d[n]) if frm else d[n]) for n, _, frm in plan}
                )
        else:
            setter = object.__setattr__

            def from_plain(d: dict[str, Any]) -> Any:
                obj: Any = object.__new__(cls)
                for n, _, frm in plan:
                    setter(obj, n, frm(d[n]) if frm else d[n])
                return obj

        cell["to"], cell["from"] = to_plain, from_plain
        self._classes[cls] = (to_plain, from_plain)
        return to_plain, from_plain


def _zip(convs: list[tuple[Conv, Conv]], values: Any) -> Any:
    """Pairs a fixed-length tuple's converters with its values; a wrong length is an error."""
    return zip(convs, values, strict=True)


def _generic_to_plain(v: Any) -> Any:
    """Plain form of a value whose type the schema does not pin down (``Any``, unions)."""
    if isinstance(v, _SCALARS):
        return v
    if isinstance(v, enum.Enum):
        return v.value
    if isinstance(v, list | tuple):
        return type(v)(_generic_to_plain(x) for x in v)
    if isinstance(v, set | frozenset):
        return type(v)(_generic_to_plain(x) for x in v)
    if isinstance(v, dict):
        return {_generic_to_plain(k): _generic_to_plain(x) for k, x in v.items()}
    if isinstance(v, pydantic.BaseModel):
        return {n: _generic_to_plain(getattr(v, n)) for n in type(v).model_fields}
    if dataclasses.is_dataclass(v) and not isinstance(v, type):
        return {f.name: _generic_to_plain(getattr(v, f.name)) for f in dataclasses.fields(v)}
    raise _cannot_store(type(v).__qualname__)


def _not_stored_error(resolver: str, e: _NotStored, field: str) -> ResolverDefinitionError:
    return ResolverDefinitionError(
        f"resolver {resolver!r}: state class {e.cls.__qualname__} has {e.what}, which state "
        "does not store (after a restart they would be lost, and the job and replay would "
        "disagree); fix: declare every value the resolver keeps as a field.",
        resolver=resolver,
        field=field,
    )


_SAVEPOINT_FIX = (
    "fix: give new fields a default, keep old field types compatible, or start this resolver "
    "without the savepoint's state (rename it)."
)


def _type_name(tp: Any) -> str:
    return tp.__qualname__ if isinstance(tp, type) else str(tp).replace("typing.", "")


class StateCodec:
    """Encodes and decodes one resolver's state objects (see the module docstring)."""

    def __init__(self, cls: type, resolver: str, param: str = "state") -> None:
        if not has_fields(cls):
            raise ResolverDefinitionError(
                f"resolver {resolver!r}: parameter {param!r} is State[{cls.__qualname__}], "
                f"but {cls.__qualname__} is neither a dataclass nor a pydantic model; "
                "fix: decorate it with @dataclass or subclass pydantic.BaseModel.",
                resolver=resolver,
                field=param,
            )
        self.cls = cls
        self.resolver = resolver
        compiler = _Compiler()
        for name, ann in fields_of(cls).items():
            try:
                compiler.convs(ann)
            except _NotStored as e:
                raise _not_stored_error(resolver, e, name) from None
            except _Unsupported as e:
                raise ResolverDefinitionError(
                    f"resolver {resolver!r}: state field {cls.__qualname__}.{name} has type "
                    f"{e.tp!r}, which state cannot store; fix: use {STORABLE}.",
                    resolver=resolver,
                    field=name,
                ) from None
        try:
            self._to_plain, self._from_plain = compiler.class_convs(cls)
        except _NotStored as e:
            raise _not_stored_error(resolver, e, param) from None
        self.fingerprint = hashlib.sha1(compiler.describe(cls).encode()).hexdigest()[:16]
        self._adapter: pydantic.TypeAdapter[Any] = pydantic.TypeAdapter(cls)
        self._field_names = list(fields_of(cls))
        self.encode = _encoder(self.fingerprint, self._to_plain)

    @property
    def field_names(self) -> list[str]:
        return list(self._field_names)

    # encode(obj) -> bytes: the envelope for ``obj``; raises TypeError if a value cannot be
    # stored. An instance attribute (see _encoder): it runs once per message.
    encode: Callable[[Any], bytes]

    def decode(self, data: bytes) -> Any:
        """The state object stored in ``data``; :class:`StateSchemaError` if it no longer fits."""
        try:
            version, fingerprint, fields = _loads(data)
        except Exception as e:
            raise StateSchemaError(
                f"resolver {self.resolver!r}: stored state is not a flink-job state envelope "
                f"({type(e).__name__}: {e}); fix: restore from a savepoint written by flink-job.",
                resolver=self.resolver,
            ) from None
        if version != ENVELOPE_VERSION:
            raise StateSchemaError(
                f"resolver {self.resolver!r}: stored state has envelope version {version!r}, "
                f"this flink-job reads version {ENVELOPE_VERSION}; fix: upgrade flink-job.",
                resolver=self.resolver,
            )
        if fingerprint == self.fingerprint:
            return self._from_plain(fields)
        return self.validate_fields(fields)

    def validate_fields(
        self,
        fields: dict[str, Any],
        *,
        subject: str = "stored state",
        fix: str = _SAVEPOINT_FIX,
    ) -> Any:
        """Validate plain ``fields`` into the current state class (schema-evolution path).

        ``subject`` and ``fix`` word the error: ``fix`` may use ``{field}`` and ``{type}``.
        """
        known = {k: v for k, v in fields.items() if k in self._field_names}
        try:
            return self._adapter.validate_python(known, **_BY_NAME)
        except pydantic.ValidationError as e:
            err = e.errors()[0]
            loc = ".".join(str(p) for p in err["loc"]) or "?"
            field = str(err["loc"][0]) if err["loc"] else None
            got = f"got {fields[field]!r:.80}" if field in fields else "missing"
            tp = fields_of(self.cls).get(field, Any) if field else Any
            raise StateSchemaError(
                f"resolver {self.resolver!r}: {subject} does not fit "
                f"{self.cls.__qualname__}.{loc}: {err['msg']} ({got}); "
                + fix.format(field=f"{self.cls.__qualname__}.{field}", type=_type_name(tp)),
                resolver=self.resolver,
                field=field,
            ) from None

    def plain(self, obj: Any) -> dict[str, Any]:
        """The envelope's field dict for ``obj`` (used to check initial states)."""
        result: dict[str, Any] = self._to_plain(obj)
        return result
