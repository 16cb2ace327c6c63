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
import inspect
import re
import sys
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from typing import Annotated, Any, TypeVar, get_args, get_origin, overload

from flink_job.errors import ResolverDefinitionError

__all__ = ["Feature", "Features", "FeaturesType", "Primary", "feature_set", "features"]

T = TypeVar("T")
C = TypeVar("C", bound=type)


class _PrimaryMarker:
    def __repr__(self) -> str:
        return "Primary"


_PRIMARY = _PrimaryMarker()

Primary = Annotated[T, _PRIMARY]
"""Marks the primary-key feature when it is not named ``id``: ``user_id: Primary[str]``."""


class Feature:
    """A reference to one feature: ``User.unique_ip_count``. ``str()`` gives its full name."""

    __slots__ = ("annotation", "name", "namespace", "owner", "primary")

    def __init__(
        self, owner: type, namespace: str, name: str, annotation: Any, primary: bool
    ) -> None:
        self.owner = owner
        self.namespace = namespace
        self.name = name
        self.annotation = annotation
        self.primary = primary

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
    return get_origin(ann) is Annotated and any(m is _PRIMARY for m in get_args(ann)[1:])


def _row_init(self: Any, **values: Any) -> None:
    fs: FeatureSet = type(self).__flink_features__
    for name, value in values.items():
        if name not in fs.features:
            raise TypeError(
                f"{type(self).__name__}() got an unknown feature {name!r}; "
                f"its features are: {', '.join(fs.features)}"
            )
        self.__dict__[name] = value


def _row_repr(self: Any) -> str:
    body = ", ".join(f"{k}={v!r}" for k, v in self.__dict__.items())
    return f"{type(self).__name__}({body})"


def _row_eq(self: Any, other: object) -> bool:
    return type(other) is type(self) and other.__dict__ == self.__dict__


def _make_features(cls: C, namespace: str | None) -> C:
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
    for name, ann in annotations.items():
        is_primary = _is_primary(ann)
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
    fs = FeatureSet(cls, ns, feats, feats[primary_name] if primary_name else None)
    for name, feat in feats.items():
        setattr(cls, name, _FeatureDescriptor(feat))
    cls.__flink_features__ = fs  # type: ignore[attr-defined]  # set on a user class
    cls.__init__ = _row_init  # type: ignore[misc]  # rows are built from keyword features
    cls.__repr__ = _row_repr  # type: ignore[assignment,method-assign]
    cls.__eq__ = _row_eq  # type: ignore[assignment,method-assign]
    cls.__hash__ = None  # type: ignore[assignment]  # rows are mutable
    return cls


@overload
def features(cls: C, /) -> C: ...
@overload
def features(*, namespace: str | None = None, owner: str | None = None) -> Callable[[C], C]: ...
def features(
    cls: C | None = None, /, *, namespace: str | None = None, owner: str | None = None
) -> C | Callable[[C], C]:
    """Declare a feature class. Usable bare (``@features``) or with arguments.

    Args:
        namespace: overrides the namespace (default: the class name in snake_case).
        owner: who owns these features (documentation only).
    """
    if cls is not None:
        return _make_features(cls, namespace)
    return lambda c: _make_features(c, namespace)


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


def _flatten(items: Iterable[Any]) -> Iterable[Any]:
    for item in items:
        if isinstance(item, list | tuple):
            yield from _flatten(item)
        else:
            yield item
