"""``@stream``: declare a (stateful) stream resolver.

The decorator inspects the function when it is defined and fails early, with an error naming
the resolver, the parameter or field and the fix. The decorated object stays a plain callable:
``track_unique_ips(event, state)`` runs the body.
"""

from __future__ import annotations

import copy
import dataclasses
import datetime
import functools
import inspect
import warnings
from collections.abc import Callable, Mapping
from typing import Any, Generic, ParamSpec, TypeVar

from flink_job._state_codec import StateCodec
from flink_job._types import (
    MISSING,
    field_type,
    has_fields,
    is_model,
    required_fields,
    without_none,
)
from flink_job.errors import IgnoredArgumentWarning, ResolverDefinitionError, StateSchemaError
from flink_job.features import Feature, FeatureSet, FeaturesType, feature_set
from flink_job.sources import KafkaSource
from flink_job.state import KeyedState, is_state_annotation, state_class

__all__ = ["KafkaSource", "KeyedState", "Resolver", "runs_in", "stream"]

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
    # A pydantic state's initial value validated into its fields' types (pydantic leaves a
    # default such as `since: datetime = "2024-01-01T00:00:00Z"` a str); copied per new key.
    template: Any = None

    def initial(self) -> Any:
        """A fresh initial state for a new key (never shared between keys)."""
        if self.template is not None:
            return copy.deepcopy(self.template)
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
        environments: tuple[str, ...] | None = None,
        ignored: Mapping[str, Any] | None = None,
        call: Callable[[Any, Any], Any] | None = None,
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
        # None: runs in every environment; else only where `--environment` names one of these.
        self.environments = environments
        # Chalk arguments accepted but without meaning on Flink (listed by `flink-job resolvers`).
        self.ignored = dict(ignored or {})
        # How the engine calls the function with (event, state): the state bound by name.
        self.call: Callable[[Any, Any], Any] = call or (lambda event, state: fn(event))  # type: ignore[call-arg]
        functools.update_wrapper(self, fn)

    def __call__(self, *args: P.args, **kwargs: P.kwargs) -> R:
        return self.fn(*args, **kwargs)

    def __repr__(self) -> str:
        return f"<stream resolver {self.name!r} source={self.source.label!r}>"


def stream(
    *,
    source: KafkaSource,
    mode: str | None = None,
    environment: str | list[str] | tuple[str, ...] | None = None,
    machine_type: str | None = None,
    owner: str | None = None,
    parse: Callable[[Any], Any] | None = None,
    keys: Mapping[str, Feature] | None = None,
    timestamp: str | None = None,
    updates_materialized_aggregations: bool = True,
    tags: list[str] | None = None,
    name: str | None = None,
) -> Callable[[Callable[P, R]], Resolver[P, R]]:
    """Declare a stream resolver reading ``source``. Takes every argument of Chalk's ``stream()``.

    Args:
        source: the :class:`KafkaSource` to read.
        mode: Chalk's windowed streams (``"continuous"``, ``"tumbling"``): refused, since no
            windows exist here and ignoring it would change results.
        environment: a name or a list of names: the resolver runs only in a job started with
            ``--environment`` naming one of them. ``None``: runs in every environment.
        machine_type: accepted and ignored with a warning (Flink's slots decide placement).
        owner: the resolver's owner.
        parse: ``(bytes | model) -> model | None``; ``None`` skips the message.
        keys: re-key mapping ``{"attr.path": Feature}``; default: the Kafka record key.
        timestamp: a ``datetime`` field of the message: the event time. It becomes the feature
            row's Kafka record timestamp, and the source's ``late_arrival_deadline`` uses it.
        updates_materialized_aggregations: accepted; ``False`` is ignored with a warning (no
            materialized aggregations exist here).
        tags: free-form tags.
        name: the resolver's name (default: the function's name). Operator uids derive from it.
    """
    ignored: dict[str, Any] = {}
    if machine_type is not None:
        ignored["machine_type"] = machine_type
    if updates_materialized_aggregations is not True:
        ignored["updates_materialized_aggregations"] = updates_materialized_aggregations

    def decorate(fn: Callable[P, R]) -> Resolver[P, R]:
        r = _analyze(fn, source, keys, parse, timestamp, owner, tuple(tags or ()), name)
        rname = r.name
        if mode is not None:
            raise _err(
                rname,
                "mode",
                f"mode={mode!r} (Chalk's windowed streams) is not supported: "
                "there are no windows here, and ignoring it would change results; fix: drop "
                "mode= and keep what the window held in State[...].",
            )
        r.environments = _environments(rname, environment)
        r.ignored = ignored
        for arg, value in ignored.items():
            _warn_once(getattr(fn, "__module__", ""), rname, arg, value)
        return r

    return decorate


def runs_in(resolver: Resolver[Any, Any], environment: str | None) -> bool:
    """Whether ``resolver`` runs in a job started with ``--environment environment``."""
    return resolver.environments is None or environment in resolver.environments


def _environments(rname: str, environment: Any) -> tuple[str, ...] | None:
    if environment is None:
        return None
    names = (environment,) if isinstance(environment, str) else environment
    if (
        not isinstance(names, list | tuple)
        or not names
        or not all(isinstance(n, str) and n for n in names)
    ):
        raise _err(
            rname,
            "environment",
            f"environment= must be a name or a list of names; got "
            f'{environment!r}; fix: e.g. environment="production" or ["staging", "dev"].',
        )
    return tuple(names)


_WARNED: set[tuple[str, str, str]] = set()


def _warn_once(module: str, rname: str, arg: str, value: Any) -> None:
    if (module, rname, arg) in _WARNED:
        return
    _WARNED.add((module, rname, arg))
    warnings.warn(
        f"resolver {rname!r}: {arg}={value!r} has no meaning on Flink and is ignored "
        "(`flink-job resolvers` lists it); fix: drop it to silence this warning.",
        IgnoredArgumentWarning,
        stacklevel=3,
    )


def _err(resolver: str, field: str | None, msg: str) -> ResolverDefinitionError:
    return ResolverDefinitionError(f"resolver {resolver!r}: {msg}", resolver=resolver, field=field)


def _annotations(fn: Callable[..., Any], rname: str) -> dict[str, Any]:
    try:
        return inspect.get_annotations(fn, eval_str=True)
    except ResolverDefinitionError as e:  # e.g. DataFrame[Message]: already says what and how
        raise _err(rname, e.field, str(e)) from None
    except Exception as e:
        raise _err(
            rname,
            None,
            f"cannot evaluate its type annotations ({type(e).__name__}: {e}); "
            "fix: import every name used in the signature at module level.",
        ) from None


def _is_message_type(tp: Any) -> bool:
    return tp in (str, bytes) or has_fields(tp)


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
            rname,
            None,
            f"@stream decorates a function; got {fn!r}; "
            "fix: put @stream(...) directly above a `def`.",
        )
    if not isinstance(source, KafkaSource):
        raise _err(
            rname,
            "source",
            f"source= must be a KafkaSource; got {source!r}. "
            'Fix: source=KafkaSource(name="logins").',
        )
    anns = _annotations(fn, rname)
    params = list(inspect.signature(fn).parameters.values())

    state: StateSpec | None = None
    state_param: inspect.Parameter | None = None
    message: inspect.Parameter | None = None
    for p in params:
        ann = anns.get(p.name, _NO_DEFAULT)
        if p.kind in (p.VAR_POSITIONAL, p.VAR_KEYWORD):
            stars = "*" if p.kind is p.VAR_POSITIONAL else "**"
            raise _err(
                rname,
                p.name,
                f"parameter {stars}{p.name} has no meaning for a stream resolver; "
                "fix: remove it (a stream resolver takes one message parameter and at most one "
                "State[T]).",
            )
        if is_state_annotation(ann):
            if state is not None:
                raise _err(
                    rname,
                    p.name,
                    f"has two State[...] parameters ({state.param!r} and "
                    f"{p.name!r}); fix: keep one state class holding both.",
                )
            state = _state_spec(rname, p, ann)
            state_param = p
        elif message is None:
            message = p
        elif _is_message_type(ann):
            raise _err(
                rname,
                p.name,
                f"has two message parameters ({message.name!r} and {p.name!r}); "
                "fix: keep one (a stream resolver reads one message at a time; combine "
                "streams with parse= or a second resolver).",
            )
        else:
            raise _err(
                rname,
                p.name,
                f"parameter {p.name!r} is neither the message nor State[...], "
                "and the engine has nothing to pass it (Chalk refuses it too); fix: remove it "
                "and read settings from module-level constants instead.",
            )
    if message is None:
        raise _err(rname, None, "has no message parameter; fix: add one, e.g. `event: LoginEvent`.")
    mtype = anns.get(message.name, _NO_DEFAULT)
    if mtype is _NO_DEFAULT:
        raise _err(
            rname,
            message.name,
            f"message parameter {message.name!r} has no type annotation; "
            "fix: annotate it with a pydantic model, a dataclass, str or bytes.",
        )
    if not _is_message_type(mtype):
        raise _err(
            rname,
            message.name,
            f"message parameter {message.name!r} is annotated {mtype!r}; "
            "fix: use a pydantic model, a dataclass, str or bytes.",
        )

    parse_input: type | None = None
    if parse is not None:
        parse_input = _check_parse(rname, parse, mtype)

    key_specs = _key_specs(rname, keys, mtype)
    _check_timestamp(rname, timestamp, mtype)
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
        call=_binder(fn, message, state_param),
    )


def _binder(
    fn: Callable[..., Any], message: inspect.Parameter, state: inspect.Parameter | None
) -> Callable[[Any, Any], Any]:
    """How the engine calls ``fn(event, state)``: each bound to its own parameter by name.

    Parameters are only the message and the state (others are refused), so positional-only
    ones come first and in order; every other one is passed by keyword.
    """
    positional = (inspect.Parameter.POSITIONAL_ONLY, inspect.Parameter.POSITIONAL_OR_KEYWORD)
    order = [p for p in (message, state) if p is not None]
    declared = [p.name for p in inspect.signature(fn).parameters.values()]
    if [p.name for p in order] == declared and all(p.kind in positional for p in order):
        if state is None:
            return lambda event, _state: fn(event)
        return fn  # fn(event, state): the parameters are declared in that order
    if state is None:
        mname = message.name
        if message.kind is inspect.Parameter.POSITIONAL_ONLY:
            return lambda event, _state: fn(event)
        return lambda event, _state: fn(**{mname: event})
    args = [p for p in inspect.signature(fn).parameters.values()]
    slots = ["event" if p.name == message.name else "state" for p in args]
    by_pos = [
        s for p, s in zip(args, slots, strict=True) if p.kind is inspect.Parameter.POSITIONAL_ONLY
    ]
    by_name = {
        p.name: s
        for p, s in zip(args, slots, strict=True)
        if p.kind is not inspect.Parameter.POSITIONAL_ONLY
    }

    def call(event: Any, st: Any) -> Any:
        values = {"event": event, "state": st}
        return fn(*(values[s] for s in by_pos), **{n: values[s] for n, s in by_name.items()})

    return call


def _check_timestamp(rname: str, timestamp: Any, mtype: type) -> None:
    """``timestamp=`` names a ``datetime`` field of the message (Chalk's codes 113 and 114)."""
    if timestamp is None:
        return
    what = getattr(mtype, "__qualname__", repr(mtype))
    if not isinstance(timestamp, str) or not timestamp:
        raise _err(
            rname,
            "timestamp",
            f"timestamp= must name a field of {what}; got {timestamp!r}; "
            'fix: e.g. timestamp="event_time".',
        )
    tp = field_type(mtype, timestamp)
    if tp is MISSING:
        raise _err(
            rname,
            "timestamp",
            f"timestamp={timestamp!r} is not a field of the message "
            f"{what}; fix: name a datetime field of {what}, or parse= into a model that has one.",
        )
    if without_none(tp) is not datetime.datetime:
        raise _err(
            rname,
            "timestamp",
            f"timestamp={timestamp!r}: {what}.{timestamp} is {tp!r}, not "
            f"datetime; fix: annotate it `{timestamp}: datetime` (zoned, e.g. "
            '"2024-01-01T00:00:00Z"), or convert it in parse=.',
        )


def _state_spec(rname: str, p: inspect.Parameter, ann: Any) -> StateSpec:
    cls = state_class(ann)
    if cls is None:
        raise _err(
            rname,
            p.name,
            f"parameter {p.name!r} is {ann!r}; fix: State[T] takes a class "
            "(a dataclass or a pydantic model).",
        )
    codec = StateCodec(cls, rname, p.name)
    default = p.default
    where = f"parameter {p.name!r} (State[{cls.__qualname__}])"
    if default is _NO_DEFAULT:
        try:
            initial = cls()
        except Exception as e:
            missing = required_fields(cls)
            raise _err(
                rname,
                missing[0] if missing else p.name,
                f"{where} has no default and {cls.__qualname__}() fails ({type(e).__name__}: "
                f"{e}); fix: give every field of {cls.__qualname__} a default"
                + (f" (missing: {', '.join(missing)})" if missing else "")
                + f", or give the parameter a default: {p.name}: State[{cls.__qualname__}] = "
                f"{cls.__qualname__}(...).",
            ) from None
        what = f"{cls.__qualname__}()"
    else:
        if not isinstance(default, cls):
            raise _err(
                rname,
                p.name,
                f"{where} has default {default!r} of type "
                f"{type(default).__qualname__}, not {cls.__qualname__}; fix: use "
                f"{cls.__qualname__}(...) as the default or drop it.",
            )
        initial = default
        what = "the default"
    # The initial state must fit its own schema (the seed's `unique_ips: Set[str] = 0` does not)
    # and must be storable.
    try:
        fields = codec.plain(initial)
    except Exception as e:
        raise _err(
            rname,
            p.name,
            f"{where}: {what} cannot be stored ({type(e).__name__}: {e}); fix: "
            f"make every value of {cls.__qualname__} fit its field's declared type.",
        ) from None
    fix = (
        "fix: give {field} a default of type {type} in the class, or change the field's type."
        if default is _NO_DEFAULT
        else "fix: pass a {type} for {field} in the parameter's default, or drop the default."
    )
    try:
        validated = codec.validate_fields(fields, subject=f"{where}: {what}", fix=fix)
    except StateSchemaError as e:
        raise ResolverDefinitionError(str(e), resolver=rname, field=e.field or p.name) from None
    template = None
    if is_model(cls):
        template = initial = validated
    try:
        codec.encode(initial)
    except Exception as e:
        raise _err(
            rname,
            p.name,
            f"{where}: {what} cannot be stored ({type(e).__name__}: {e}); fix: "
            f"make every value of {cls.__qualname__} fit its field's declared type.",
        ) from None
    return StateSpec(p.name, cls, default, codec, template)


def _check_parse(rname: str, parse: Callable[[Any], Any], mtype: type) -> type:
    if not callable(parse):
        raise _err(
            rname,
            "parse",
            f"parse= must be a function; got {parse!r}; "
            "fix: pass a function `(bytes | Model) -> Model | None`.",
        )
    anns = _annotations(parse, rname)
    params = list(inspect.signature(parse).parameters.values())
    if len(params) != 1:
        raise _err(
            rname,
            "parse",
            f"parse= function {getattr(parse, '__name__', parse)!r} takes "
            f"{len(params)} arguments; fix: make it take exactly one (the raw bytes or a model).",
        )
    pin = anns.get(params[0].name, bytes)
    if not _is_message_type(pin):
        raise _err(
            rname,
            "parse",
            f"parse= argument is annotated {pin!r}; fix: bytes, str, "
            "a pydantic model or a dataclass.",
        )
    ret = anns.get("return", _NO_DEFAULT)
    if ret is not _NO_DEFAULT and without_none(ret) is not mtype:
        raise _err(
            rname,
            "parse",
            f"parse= returns {ret!r}, but the resolver's message is "
            f"{mtype.__qualname__}; fix: return {mtype.__qualname__} | None.",
        )
    return pin


def _key_specs(rname: str, keys: Mapping[str, Feature] | None, mtype: type) -> tuple[KeySpec, ...]:
    if keys is None:
        return ()
    if not isinstance(keys, Mapping) or not keys:
        raise _err(
            rname,
            "keys",
            f'keys= must be a non-empty dict {{"attr.path": Feature}}; got '
            f'{keys!r}; fix: e.g. keys={{"user_id": User.id}}.',
        )
    if mtype in (str, bytes):
        raise _err(
            rname,
            "keys",
            f"keys= needs a structured message, but the message is "
            f"{mtype.__name__}; fix: parse into a pydantic model or drop keys= to key by the "
            "Kafka record key.",
        )
    specs = []
    for path, feat in keys.items():
        if not isinstance(feat, Feature):
            raise _err(
                rname,
                str(path),
                f"keys[{path!r}] must be a feature reference; got {feat!r}; "
                "fix: use an attribute of a @features class, e.g. User.id.",
            )
        parts = tuple(str(path).split("."))
        tp: Any = mtype
        for i, part in enumerate(parts):
            nxt = field_type(without_none(tp), part)
            if nxt is MISSING:
                at = ".".join(parts[:i]) or getattr(mtype, "__qualname__", str(mtype))
                raise _err(
                    rname,
                    str(path),
                    f"keys path {path!r}: {at} has no attribute {part!r}; "
                    f"fix: use a field of {getattr(mtype, '__qualname__', mtype)}.",
                )
            tp = nxt
        specs.append(KeySpec(parts, feat))
    return tuple(specs)


def _output_spec(rname: str, ret: Any, keys: tuple[KeySpec, ...]) -> OutputSpec:
    fix = "fix: annotate the return type, e.g. -> Features[User.id, User.unique_ip_count]."
    if ret is _NO_DEFAULT:
        raise _err(rname, "return", f"has no return annotation; {fix}")
    base = without_none(ret)
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
