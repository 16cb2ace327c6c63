"""``@stream``: declare a (stateful) stream resolver.

The decorator inspects the function when it is defined and fails early, with an error naming
the resolver, the parameter or field and the fix. The decorated object stays a plain callable:
``track_unique_ips(event, state)`` runs the body.
"""

from __future__ import annotations

import copy
import dataclasses
import functools
import inspect
import typing
from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar

import pydantic

from flink_job._state_codec import StateCodec
from flink_job.errors import ResolverDefinitionError, StateSchemaError
from flink_job.features import Feature, FeatureSet, FeaturesType, feature_set
from flink_job.sources import KafkaSource
from flink_job.state import is_state_annotation, state_class

__all__ = ["KafkaSource", "Resolver", "stream"]

P = ParamSpec("P")
R = TypeVar("R")

_NO_DEFAULT = inspect.Parameter.empty


@dataclasses.dataclass(frozen=True)
class KeySpec:
    """One entry of ``keys=``: an attribute path on the message and the feature it fills."""

    path: tuple[str, ...]
    feature: Feature

    @property
    def dotted(self) -> str:
        return ".".join(self.path)


@dataclasses.dataclass(frozen=True)
class StateSpec:
    """The ``State[T]`` parameter: its name, class, initial value and codec."""

    param: str
    cls: type
    default: Any  # the parameter's default, or _NO_DEFAULT: then ``cls()`` per new key
    codec: StateCodec

    def initial(self) -> Any:
        """A fresh initial state for a new key (never shared between keys)."""
        if self.default is _NO_DEFAULT:
            return self.cls()
        return copy.deepcopy(self.default)


@dataclasses.dataclass(frozen=True)
class OutputSpec:
    """What the resolver may return: features of one or more ``@features`` classes."""

    allowed: frozenset[Feature]
    classes: tuple[type, ...]
    primary: Feature | None

    def describe(self) -> str:
        return ", ".join(sorted(f.fqn for f in self.allowed))


class Resolver(Generic[P, R]):
    """A stream resolver: the user's function plus everything learnt from its definition."""

    def __init__(
        self,
        fn: Callable[P, R],
        *,
        name: str,
        source: KafkaSource,
        message_param: str,
        message_type: type,
        keys: tuple[KeySpec, ...],
        parse: Callable[[Any], Any] | None,
        parse_input: type | None,
        state: StateSpec | None,
        output: OutputSpec,
        timestamp: str | None,
        owner: str | None,
        tags: tuple[str, ...],
    ) -> None:
        self.fn = fn
        self.name = name
        self.source = source
        self.message_param = message_param
        self.message_type = message_type
        self.keys = keys
        self.parse = parse
        self.parse_input = parse_input
        self.state = state
        self.output = output
        self.timestamp = timestamp
        self.owner = owner
        self.tags = tags
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<stream resolver {self.name!r} source={self.source.label!r}>"


def stream(
    *,
    source: KafkaSource,
    keys: Mapping[str, Feature] | None = None,
    parse: Callable[[Any], Any] | None = None,
    timestamp: str | None = None,
    owner: str | None = None,
    tags: list[str] | None = None,
    name: str | None = None,
    mode: str | None = None,
    environment: Any = None,
) -> Callable[[Callable[P, R]], Resolver[P, R]]:
    """Declare a stream resolver reading ``source``.

    Args:
        source: the :class:`KafkaSource` to read.
        keys: re-key mapping ``{"attr.path": Feature}``; default: the Kafka record key.
        parse: ``(bytes | model) -> model | None``; ``None`` skips the message.
        timestamp: message attribute holding the event time (documentation for now).
        owner: the resolver's owner.
        tags: free-form tags.
        name: the resolver's name (default: the function's name). Operator uids derive from it.
        mode: accepted for Chalk compatibility.
        environment: accepted for Chalk compatibility.
    """

    def decorate(fn: Callable[P, R]) -> Resolver[P, R]:
        return _analyze(fn, source, keys, parse, timestamp, owner, tuple(tags or ()), name)

    return decorate


def _err(resolver: str, field: str | None, msg: str) -> ResolverDefinitionError:
    return ResolverDefinitionError(f"resolver {resolver!r}: {msg}", resolver=resolver, field=field)


def _annotations(fn: Callable[..., Any], rname: str) -> dict[str, Any]:
    try:
        return inspect.get_annotations(fn, eval_str=True)
    except Exception as e:
        raise _err(
            rname, None, f"cannot evaluate its type annotations ({type(e).__name__}: {e}); "
            "fix: import every name used in the signature at module level."
        ) from None  # fmt: skip


def _is_message_type(tp: Any) -> bool:
    return tp in (str, bytes) or (
        isinstance(tp, type)
        and (issubclass(tp, pydantic.BaseModel) or dataclasses.is_dataclass(tp))
    )


def _unwrap_optional(tp: Any) -> Any:
    args = typing.get_args(tp)
    if typing.get_origin(tp) in (typing.Union, __import__("types").UnionType):
        rest = [a for a in args if a is not type(None)]
        if len(rest) == 1:
            return rest[0]
    return tp


def _analyze(
    fn: Callable[..., Any],
    source: Any,
    keys: Mapping[str, Feature] | None,
    parse: Callable[[Any], Any] | None,
    timestamp: str | None,
    owner: str | None,
    tags: tuple[str, ...],
    name: str | None,
) -> Resolver[Any, Any]:
    rname = name or getattr(fn, "__name__", None) or repr(fn)
    if not callable(fn):
        raise _err(
            rname, None, f"@stream decorates a function; got {fn!r}; "
            "fix: put @stream(...) directly above a `def`."
        )  # fmt: skip
    if not isinstance(source, KafkaSource):
        raise _err(
            rname, "source", f"source= must be a KafkaSource; got {source!r}. "
            'Fix: source=KafkaSource(name="logins").'
        )  # fmt: skip
    anns = _annotations(fn, rname)
    params = list(inspect.signature(fn).parameters.values())

    state: StateSpec | None = None
    message: inspect.Parameter | None = None
    for p in params:
        ann = anns.get(p.name, _NO_DEFAULT)
        if is_state_annotation(ann):
            if state is not None:
                raise _err(
                    rname, p.name, f"has two State[...] parameters ({state.param!r} and "
                    f"{p.name!r}); fix: keep one state class holding both."
                )  # fmt: skip
            state = _state_spec(rname, p, ann)
        elif message is None:
            message = p
        elif p.default is _NO_DEFAULT:
            raise _err(
                rname, p.name, f"parameter {p.name!r} is neither the message nor State[...]; "
                "fix: a stream resolver takes one message parameter and at most one State[T]."
            )  # fmt: skip
    if message is None:
        raise _err(rname, None, "has no message parameter; fix: add one, e.g. `event: LoginEvent`.")
    mtype = anns.get(message.name, _NO_DEFAULT)
    if mtype is _NO_DEFAULT:
        raise _err(
            rname, message.name, f"message parameter {message.name!r} has no type annotation; "
            "fix: annotate it with a pydantic model, a dataclass, str or bytes."
        )  # fmt: skip
    if not _is_message_type(mtype):
        raise _err(
            rname, message.name, f"message parameter {message.name!r} is annotated {mtype!r}; "
            "fix: use a pydantic model, a dataclass, str or bytes."
        )  # fmt: skip

    parse_input: type | None = None
    if parse is not None:
        parse_input = _check_parse(rname, parse, mtype)

    key_specs = _key_specs(rname, keys, mtype)
    output = _output_spec(rname, anns.get("return", _NO_DEFAULT), key_specs)
    return Resolver(
        fn,
        name=rname,
        source=source,
        message_param=message.name,
        message_type=mtype,
        keys=key_specs,
        parse=parse,
        parse_input=parse_input,
        state=state,
        output=output,
        timestamp=timestamp,
        owner=owner,
        tags=tags,
    )


def _state_spec(rname: str, p: inspect.Parameter, ann: Any) -> StateSpec:
    cls = state_class(ann)
    if cls is None:
        raise _err(
            rname, p.name, f"parameter {p.name!r} is {ann!r}; fix: State[T] takes a class "
            "(a dataclass or a pydantic model)."
        )  # fmt: skip
    codec = StateCodec(cls, rname, p.name)
    default = p.default
    where = f"parameter {p.name!r} (State[{cls.__qualname__}])"
    if default is _NO_DEFAULT:
        try:
            initial = cls()
        except Exception as e:
            missing = _fields_without_default(cls)
            raise _err(
                rname, missing[0] if missing else p.name,
                f"{where} has no default and {cls.__qualname__}() fails ({type(e).__name__}: "
                f"{e}); fix: give every field of {cls.__qualname__} a default"
                + (f" (missing: {', '.join(missing)})" if missing else "")
                + f", or give the parameter a default: {p.name}: State[{cls.__qualname__}] = "
                f"{cls.__qualname__}(...).",
            ) from None  # fmt: skip
        what = f"{cls.__qualname__}()"
    else:
        if not isinstance(default, cls):
            raise _err(
                rname, p.name, f"{where} has default {default!r} of type "
                f"{type(default).__qualname__}, not {cls.__qualname__}; fix: use "
                f"{cls.__qualname__}(...) as the default or drop it."
            )  # fmt: skip
        initial = default
        what = "the default"
    # The initial state must fit its own schema (the seed's `unique_ips: Set[str] = 0` does not)
    # and must be storable.
    try:
        fields = codec.plain(initial)
    except Exception as e:
        raise _err(
            rname, p.name, f"{where}: {what} cannot be stored ({type(e).__name__}: {e}); fix: "
            f"make every value of {cls.__qualname__} fit its field's declared type."
        ) from None  # fmt: skip
    fix = (
        "fix: give {field} a default of type {type} in the class, or change the field's type."
        if default is _NO_DEFAULT
        else "fix: pass a {type} for {field} in the parameter's default, or drop the default."
    )
    try:
        codec.validate_fields(fields, subject=f"{where}: {what}", fix=fix)
    except StateSchemaError as e:
        raise ResolverDefinitionError(str(e), resolver=rname, field=e.field or p.name) from None
    try:
        codec.encode(initial)
    except Exception as e:
        raise _err(
            rname, p.name, f"{where}: {what} cannot be stored ({type(e).__name__}: {e}); fix: "
            f"make every value of {cls.__qualname__} fit its field's declared type."
        ) from None  # fmt: skip
    return StateSpec(p.name, cls, default, codec)


def _fields_without_default(cls: type) -> list[str]:
    if isinstance(cls, type) and issubclass(cls, pydantic.BaseModel):
        return [n for n, f in cls.model_fields.items() if f.is_required()]
    if dataclasses.is_dataclass(cls):
        return [
            f.name for f in dataclasses.fields(cls)
            if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        ]  # fmt: skip
    return []


def _check_parse(rname: str, parse: Callable[[Any], Any], mtype: type) -> type:
    if not callable(parse):
        raise _err(
            rname, "parse", f"parse= must be a function; got {parse!r}; "
            "fix: pass a function `(bytes | Model) -> Model | None`."
        )  # fmt: skip
    anns = _annotations(parse, rname)
    params = list(inspect.signature(parse).parameters.values())
    if len(params) != 1:
        raise _err(
            rname, "parse", f"parse= function {getattr(parse, '__name__', parse)!r} takes "
            f"{len(params)} arguments; fix: make it take exactly one (the raw bytes or a model)."
        )  # fmt: skip
    pin = anns.get(params[0].name, bytes)
    if not _is_message_type(pin):
        raise _err(
            rname, "parse", f"parse= argument is annotated {pin!r}; fix: bytes, str, "
            "a pydantic model or a dataclass."
        )  # fmt: skip
    ret = anns.get("return", _NO_DEFAULT)
    if ret is not _NO_DEFAULT and _unwrap_optional(ret) is not mtype:
        raise _err(
            rname, "parse", f"parse= returns {ret!r}, but the resolver's message is "
            f"{mtype.__qualname__}; fix: return {mtype.__qualname__} | None."
        )  # fmt: skip
    return pin


def _field_type(tp: Any, attr: str) -> Any:
    if isinstance(tp, type) and issubclass(tp, pydantic.BaseModel):
        f = tp.model_fields.get(attr)
        return _NO_DEFAULT if f is None else f.annotation
    if dataclasses.is_dataclass(tp):
        hints = typing.get_type_hints(tp)
        names = {f.name for f in dataclasses.fields(tp)}
        return hints.get(attr, Any) if attr in names else _NO_DEFAULT
    return _NO_DEFAULT


def _key_specs(rname: str, keys: Mapping[str, Feature] | None, mtype: type) -> tuple[KeySpec, ...]:
    if keys is None:
        return ()
    if not isinstance(keys, Mapping) or not keys:
        raise _err(
            rname, "keys", f'keys= must be a non-empty dict {{"attr.path": Feature}}; got '
            f'{keys!r}; fix: e.g. keys={{"user_id": User.id}}.'
        )  # fmt: skip
    if mtype in (str, bytes):
        raise _err(
            rname, "keys", f"keys= needs a structured message, but the message is "
            f"{mtype.__name__}; fix: parse into a pydantic model or drop keys= to key by the "
            "Kafka record key."
        )  # fmt: skip
    specs = []
    for path, feat in keys.items():
        if not isinstance(feat, Feature):
            raise _err(
                rname, str(path), f"keys[{path!r}] must be a feature reference; got {feat!r}; "
                "fix: use an attribute of a @features class, e.g. User.id."
            )  # fmt: skip
        parts = tuple(str(path).split("."))
        tp: Any = mtype
        for i, part in enumerate(parts):
            nxt = _field_type(_unwrap_optional(tp), part)
            if nxt is _NO_DEFAULT:
                at = ".".join(parts[:i]) or getattr(mtype, "__qualname__", str(mtype))
                raise _err(
                    rname, str(path), f"keys path {path!r}: {at} has no attribute {part!r}; "
                    f"fix: use a field of {getattr(mtype, '__qualname__', mtype)}."
                )  # fmt: skip
            tp = nxt
        specs.append(KeySpec(parts, feat))
    return tuple(specs)


def _output_spec(rname: str, ret: Any, keys: tuple[KeySpec, ...]) -> OutputSpec:
    fix = "fix: annotate the return type, e.g. -> Features[User.id, User.unique_ip_count]."
    if ret is _NO_DEFAULT:
        raise _err(rname, "return", f"has no return annotation; {fix}")
    base = _unwrap_optional(ret)
    if isinstance(base, FeaturesType):
        allowed = set(base.features)
    elif isinstance(base, type) and (fs := feature_set(base)) is not None:
        allowed = set(fs.features.values())
    else:
        raise _err(rname, "return", f"return annotation {ret!r} is not features; {fix}")
    allowed |= {k.feature for k in keys}
    classes = tuple(dict.fromkeys(f.owner for f in allowed))
    sets: list[FeatureSet] = [fs for c in classes if (fs := feature_set(c)) is not None]
    primaries = [fs.primary for fs in sets if fs.primary is not None and fs.primary in allowed]
    return OutputSpec(frozenset(allowed), classes, primaries[0] if primaries else None)
