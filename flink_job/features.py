"""Feature classes and feature references (``@features``, ``Features[...]``, ``Primary``).

A ``@features`` class declares a namespace of features::

    @features
    class User:
        id: str
        unique_ip_count: int

``User.id`` is a :class:`Feature` reference (``str(User.id) == "user.id"``); ``User(id="u1")``
is a row of feature values. The field named ``id``, or the one annotated ``Primary[...]``, is
the primary key.
"""

from __future__ import annotations

import contextlib
import datetime
import inspect
import re
import sys
import warnings
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Annotated, Any, TypedDict, TypeVar, Unpack, overload

from flink_job._types import has_marker
from flink_job.errors import IgnoredArgumentWarning, ResolverDefinitionError

# The public API (what flink_job re-exports); FeatureSet, FeaturesType and feature_set serve
# the other modules of flink_job.
__all__ = [
    "DataFrame",
    "Feature",
    "FeatureTime",
    "Features",
    "Primary",
    "feature",
    "features",
]

T = TypeVar("T")
C = TypeVar("C", bound=type)


class _PrimaryMarker:
    def __repr__(self) -> str:
        return "Primary"


_PRIMARY = _PrimaryMarker()

Primary = Annotated[T, _PRIMARY]
"""Marks the primary-key feature when it is not named ``id``: ``user_id: Primary[str]``."""


class _FeatureTimeMarker:
    def __repr__(self) -> str:
        return "FeatureTime"


FeatureTime = Annotated[datetime.datetime, _FeatureTimeMarker()]
"""Chalk's feature-time feature (``ts: FeatureTime``): here an ordinary ``datetime`` feature. The
feature row's Kafka timestamp comes from the resolver's ``timestamp=`` (else the source record)."""


# Chalk's feature() arguments, by what they do here. Honoured: primary (the primary key);
# description/owner/tags are kept as metadata. Refused: they rename features, compute or
# validate values, so ignoring them would change rows. Any other argument given a value is
# accepted, ignored and warned about (it configures Chalk's stores, caches or query planner).
_FEATURE_HONOURED = ("primary", "description", "owner", "tags")
_FEATURE_REFUSED = {
    "name": "declare the attribute under the name you want",
    "version": "keep one version per feature",
    "versions": "keep one version per feature",
    "default_version": "keep one version per feature",
    "encoder": "convert the value in the resolver",
    "decoder": "convert the value in the resolver",
    "expression": "compute the value in the resolver",
    "underscore": "compute the value in the resolver",
    "offline_expression": "compute the value in the resolver",
    "validations": "check the value in the resolver",
    "strict": "check the value in the resolver",
}


class FeatureOptions:
    """What ``feature(...)`` was given for one attribute (the class attribute's value)."""

    __slots__ = ("given",)

    def __init__(self, given: dict[str, Any]) -> None:
        self.given = given

    def __repr__(self) -> str:
        return f"feature({', '.join(f'{k}={v!r}' for k, v in self.given.items())})"


def feature(
    description: str | None = None,
    owner: str | None = None,
    tags: Any = None,
    name: str | None = None,
    version: int | None = None,
    default_version: int = 1,
    primary: bool | None = None,
    max_staleness: Any = ...,
    cache_nulls: Any = None,
    cache_defaults: Any = None,
    etl_offline_to_online: bool | None = None,
    encoder: Any = None,
    decoder: Any = None,
    min: Any = None,  # Chalk's argument name
    max: Any = None,  # Chalk's argument name
    min_length: int | None = None,
    max_length: int | None = None,
    strict: bool = False,
    validations: Any = None,
    dtype: Any = None,
    default: Any = ...,
    underscore: Any = None,
    expression: Any = None,
    offline_expression: Any = None,
    offline_ttl: Any = ...,
    deprecated: bool = False,
    store_online: bool = True,
    store_offline: bool = True,
    versions: Any = None,
    typ: Any = None,
) -> Any:
    """Chalk's ``feature(...)`` for a ``@features`` attribute: ``x: int = feature(primary=True)``.

    ``primary=True`` marks the primary key; ``description``/``owner``/``tags`` are metadata.
    ``name``, versions, encoders, expressions and validations are refused when the class is
    decorated; any other argument is accepted, ignored and warned about.
    """
    args = dict(locals())
    given = {k: v for k, v in args.items() if v is not _FEATURE_DEFAULTS[k]}
    return FeatureOptions(given)


_FEATURE_DEFAULTS = {n: p.default for n, p in inspect.signature(feature).parameters.items()}


@dataclass(slots=True, eq=False, repr=False)
class Feature:
    """A reference to one feature: ``User.unique_ip_count``. ``str()`` gives its full name."""

    owner: type
    namespace: str
    name: str
    annotation: Any
    primary: bool

    @property
    def fqn(self) -> str:
        """The fully qualified name, ``namespace.name``."""
        return f"{self.namespace}.{self.name}"

    def __str__(self) -> str:
        return self.fqn

    def __repr__(self) -> str:
        return f"Feature({self.fqn!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Feature) and other.fqn == self.fqn

    def __hash__(self) -> int:
        return hash(self.fqn)


class _FeatureDescriptor:
    """Class access gives the :class:`Feature`; instances keep values in their ``__dict__``."""

    __slots__ = ("feature",)

    def __init__(self, feature: Feature) -> None:
        self.feature = feature

    def __get__(self, obj: object, owner: type | None = None) -> Any:
        if obj is None:
            return self.feature
        raise AttributeError(
            f"feature {self.feature.fqn!r} has no value in this {type(obj).__name__} row"
        )


@dataclass(frozen=True)
class FeatureSet:
    """What ``@features`` records on a class: its namespace, features and primary key."""

    cls: type
    namespace: str
    features: dict[str, Feature]
    primary: Feature | None
    # @features(...) and feature(...) arguments given (shown by `flink-job resolvers`).
    options: dict[str, Any] = field(default_factory=dict)
    feature_options: dict[str, dict[str, Any]] = field(default_factory=dict)


def feature_set(cls: type) -> FeatureSet | None:
    """The :class:`FeatureSet` of a ``@features`` class, else ``None``."""
    fs = cls.__dict__.get("__flink_features__") if isinstance(cls, type) else None
    return fs if isinstance(fs, FeatureSet) else None


def _snake_case(name: str) -> str:
    s = re.sub(r"([A-Z]+)([A-Z][a-z])", r"\1_\2", name)
    return re.sub(r"([a-z0-9])([A-Z])", r"\1_\2", s).lower()


def _eval_each(cls: type) -> dict[str, Any]:
    """Annotations evaluated one at a time; those that cannot be stay strings."""
    module = sys.modules.get(cls.__module__)
    module_globals = dict(vars(module)) if module is not None else {}
    out: dict[str, Any] = {}
    for name, ann in inspect.get_annotations(cls).items():
        if isinstance(ann, str):
            with contextlib.suppress(Exception):
                ann = eval(ann, module_globals, dict(vars(cls)))
        out[name] = ann
    return out


def _is_primary(ann: Any) -> bool:
    if isinstance(ann, str):  # an unresolvable `Primary[SomeLaterClass]`
        return re.match(r"^\s*(\w+\.)*Primary\[", ann) is not None
    return has_marker(ann, _PRIMARY)


def _row_init_for(fs: FeatureSet) -> Callable[..., None]:
    """The ``__init__`` of the rows of ``fs``'s class: keyword features only, kept in the
    order given (a row's JSON object follows the resolver's call). One C-level subset check,
    and the call's own keyword dict (a new dict on every call, even for ``Row(**d)``) becomes
    the row's ``__dict__``: no Python loop over the features (one row per message)."""
    names = fs.features.keys()

    def __init__(self: Any, **values: Any) -> None:
        if values.keys() <= names:
            self.__dict__ = values
            return
        unknown = next(n for n in values if n not in names)
        raise TypeError(
            f"{type(self).__name__}() got an unknown feature {unknown!r}; "
            f"its features are: {', '.join(fs.features)}"
        )

    return __init__


def _row_repr(self: Any) -> str:
    body = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
    return f"{type(self).__name__}({body})"


def _row_eq(self: Any, other: object) -> bool:
    return type(other) is type(self) and other.__dict__ == self.__dict__


def _make_features(cls: C, namespace: str | None, options: dict[str, Any] | None = None) -> C:
    if not isinstance(cls, type):
        raise ResolverDefinitionError(
            f"@features decorates a class; got {cls!r}. Fix: put @features above `class ...:`."
        )
    try:
        annotations = inspect.get_annotations(cls, eval_str=True)
    except Exception:  # unresolvable forward references: evaluate the others one by one
        annotations = _eval_each(cls)
    if not annotations:
        raise ResolverDefinitionError(
            f"@features class {cls.__name__} declares no features; "
            "fix: annotate at least one field, e.g. `id: str`.",
            field=None,
        )
    ns = namespace or _snake_case(cls.__name__)
    feats: dict[str, Feature] = {}
    primaries: list[str] = []
    field_options: dict[str, dict[str, Any]] = {}
    for name, ann in annotations.items():
        is_primary = _is_primary(ann)
        given = cls.__dict__.get(name)
        if isinstance(given, FeatureOptions):
            field_options[name] = _check_feature_options(cls, name, given.given)
            is_primary = is_primary or bool(given.given.get("primary"))
        if is_primary:
            primaries.append(name)
        feats[name] = Feature(cls, ns, name, ann, primary=False)
    if len(primaries) > 1:
        raise ResolverDefinitionError(
            f"@features class {cls.__name__} marks several primary keys ({', '.join(primaries)}); "
            "fix: mark exactly one field Primary[...].",
            field=primaries[1],
        )
    primary_name = primaries[0] if primaries else ("id" if "id" in feats else None)
    if primary_name is not None:
        feats[primary_name].primary = True
    fs = FeatureSet(
        cls,
        ns,
        feats,
        feats[primary_name] if primary_name else None,
        dict(options or {}),
        field_options,
    )
    for name, feat in feats.items():
        setattr(cls, name, _FeatureDescriptor(feat))
    cls.__flink_features__ = fs  # type: ignore[attr-defined]  # set on a user class
    cls.__init__ = _row_init_for(fs)  # type: ignore[misc]  # rows are built from keyword features
    cls.__repr__ = _row_repr  # type: ignore[assignment,method-assign]
    cls.__eq__ = _row_eq  # type: ignore[assignment,method-assign]
    cls.__hash__ = None  # type: ignore[assignment]  # rows are mutable
    return cls


def _check_feature_options(cls: type, name: str, given: dict[str, Any]) -> dict[str, Any]:
    where = f"@features class {cls.__name__}: {name} = feature(...)"
    for arg, value in given.items():
        if arg in _FEATURE_REFUSED:
            raise ResolverDefinitionError(
                f"{where}: {arg}={value!r} is not supported (ignoring it would change the "
                f"rows); fix: drop it and {_FEATURE_REFUSED[arg]}.",
                field=name,
            )
        if arg not in _FEATURE_HONOURED:
            _warn_once(cls, f"{cls.__name__}.{name}", arg, value)
    return given


# @features arguments with no meaning on Flink (Chalk's stores, caches and ETL), and their
# defaults (set to anything else, they are warned about).
_FEATURES_IGNORED = {
    "etl_offline_to_online": False,
    "max_staleness": None,
    "singleton": False,
    "online_store_config": None,
    "cache_nulls": True,
    "cache_defaults": True,
}
_WARNED: set[tuple[str, str, str, str]] = set()


def _warn_once(cls: type, where: str, arg: str, value: Any) -> None:
    key = (cls.__module__, cls.__qualname__, where, arg)
    if key in _WARNED:
        return
    _WARNED.add(key)
    warnings.warn(
        f"{where}: {arg}={value!r} has no meaning on Flink and is ignored; fix: drop it to "
        "silence this warning.",
        IgnoredArgumentWarning,
        stacklevel=4,
    )


class _FeaturesArgs(TypedDict, total=False):
    """The keyword arguments of ``@features(...)`` (Chalk's)."""

    namespace: str | None
    owner: str | None
    tags: Any
    name: str | None
    etl_offline_to_online: bool
    max_staleness: Any
    singleton: bool
    online_store_config: Any
    cache_nulls: Any
    cache_defaults: Any


@overload
def features(cls: C, /) -> C: ...
@overload
def features(**args: Unpack[_FeaturesArgs]) -> Callable[[C], C]: ...
def features(cls: C | None = None, /, **args: Unpack[_FeaturesArgs]) -> C | Callable[[C], C]:
    """Declare a feature class. Usable bare (``@features``) or with Chalk's arguments.

    Args:
        namespace: overrides the namespace (default: the class name in snake_case).
        name: Chalk's name for the same: the namespace.
        owner: who owns these features (metadata).
        tags: tags (metadata).
        etl_offline_to_online, max_staleness, singleton, online_store_config, cache_nulls,
            cache_defaults: accepted; no meaning on Flink: ignored with a warning when set.
    """
    unknown = sorted(set(args) - _FeaturesArgs.__annotations__.keys())
    if unknown:
        raise TypeError(f"features() got an unexpected keyword argument {unknown[0]!r}")
    namespace, name = args.get("namespace"), args.get("name")
    if namespace is not None and name is not None and namespace != name:
        raise ResolverDefinitionError(
            f"@features(namespace={namespace!r}, name={name!r}): both name the namespace; "
            "fix: pass one of them."
        )
    ignored = {
        k: v for k, v in args.items() if k in _FEATURES_IGNORED and v != _FEATURES_IGNORED[k]
    }
    options: dict[str, Any] = {k: args.get(k) for k in ("owner", "tags") if args.get(k)}
    options.update(ignored)

    def make(c: C) -> C:
        made = _make_features(c, namespace or name, options)
        for arg, value in ignored.items():
            _warn_once(c, f"@features class {c.__name__}", arg, value)
        return made

    if cls is not None:
        return make(cls)
    return make


class FeaturesType:
    """The value of ``Features[User.id, User.count]``: the features a resolver may return."""

    __slots__ = ("features",)

    def __init__(self, feats: tuple[Feature, ...]) -> None:
        self.features = feats

    @property
    def namespaces(self) -> set[str]:
        return {f.namespace for f in self.features}

    def __repr__(self) -> str:
        return f"Features[{', '.join(f.fqn for f in self.features)}]"

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        # typing's checks accept only callables in annotations; never called.
        raise TypeError("Features[...] is an annotation, not a constructor")


class Features:
    """Return annotation listing the features a resolver returns: ``Features[User.id, ...]``.

    A ``@features`` class inside the brackets stands for all of its features.
    """

    def __class_getitem__(cls, items: Any) -> FeaturesType:
        if not isinstance(items, tuple):
            items = (items,)
        out: list[Feature] = []
        for item in _flatten(items):
            if isinstance(item, Feature):
                out.append(item)
            elif (fs := feature_set(item)) is not None:
                out.extend(fs.features.values())
            else:
                raise ResolverDefinitionError(
                    f"Features[...] takes feature references such as User.id; got {item!r}. "
                    "Fix: decorate the class with @features and list its attributes."
                )
        return FeaturesType(tuple(out))


class DataFrame(list[Any]):
    """Chalk's ``DataFrame``: as a return annotation (``-> DataFrame[User.id, User.count]`` or
    ``DataFrame[User]``) it lists the features like ``Features[...]``; as a value
    (``DataFrame([User(...), User(...)])``) it is a list of rows, one feature row each, in order.
    """

    def __class_getitem__(cls, items: Any) -> FeaturesType:  # type: ignore[override]  # annotation
        for item in items if isinstance(items, tuple) else (items,):
            if isinstance(item, type) and feature_set(item) is None:
                raise ResolverDefinitionError(
                    f"DataFrame[{item.__qualname__}]: {item.__qualname__} is not a @features "
                    "class; a DataFrame of messages is Chalk's windowed stream input, and there "
                    f"are no windows here; fix: take one message (`event: {item.__qualname__}`) "
                    "and keep what the window held in State[...]."
                )
        return Features.__class_getitem__(items)


def _flatten(items: Iterable[Any]) -> Iterable[Any]:
    for item in items:
        if isinstance(item, list | tuple):
            yield from _flatten(item)
        else:
            yield item
