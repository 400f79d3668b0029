"""Public helpers: ids, import paths, JSON, batching and timing."""

from __future__ import annotations

import dataclasses
import gc
import importlib
import json
import random
import re
import time
import uuid
from collections.abc import Callable, Iterable, Iterator
from contextlib import contextmanager
from datetime import date, datetime
from typing import Any, TypeVar

T = TypeVar("T")

_IDENT = r"[A-Za-z_][A-Za-z0-9_]*"
# A function defined inside another one is named ``module.outer.<locals>.inner``: such a path
# is accepted (only the process that defined it can run it; see ``register_function``).
_IMPORT_PATH = re.compile(rf"^{_IDENT}(\.({_IDENT}|<locals>))*\.{_IDENT}$")

#: Functions marked with ``@job`` in this process, by import path. Workers in the same process
#: find a nested function (``<locals>``) here, which no import could reach.
_registered: dict[str, Any] = {}


def chancy_uuid() -> uuid.UUID:
    """Return a new time-ordered UUID (version 7 layout).

    48 bits of Unix milliseconds come first, so ids sort in creation order and new rows land
    at the right edge of the primary key index. A counter in the random bits keeps ids made in
    the same millisecond by this process strictly increasing.
    """
    return chancy_uuids(1)[0]


_last_ms = 0
_seq = 0


def chancy_uuids(n: int) -> list[uuid.UUID]:
    """``n`` new ids in the order ``chancy_uuid`` makes them (it is ``chancy_uuids(1)``), at
    about half the cost each in a batch: the clock is read once per millisecond's worth.

    The random bits only tell apart ids of processes in the same millisecond (the counter
    orders this process's own); ``random`` is reseeded in forked children, and is several
    times cheaper than os.urandom. Each UUID is built directly, as ``uuid.UUID(int=...)``
    would build it without checking its argument."""
    global _last_ms, _seq
    made: list[uuid.UUID] = []
    add = made.append
    while len(made) < n:
        ms = time.time_ns() // 1_000_000
        if ms <= _last_ms:
            ms = _last_ms
            first = _seq + 1
            if first >= 1 << 12:
                ms += 1  # 4096 ids in one millisecond: borrow the next one
                first = 0
        else:
            first = 0
        last = min(first + n - len(made), 1 << 12) - 1
        _last_ms, _seq = ms, last
        base = ((ms & _MS_MASK) << 80) | (0x7 << 76) | (0b10 << 62)
        for seq in range(first, last + 1):
            one = _new_object(_UUID)
            _set_attr(one, "int", base | (seq << 64) | _getrandbits(62))
            _set_attr(one, "is_safe", _SAFE_UNKNOWN)
            add(one)
    return made


_MS_MASK = (1 << 48) - 1
_getrandbits = random.getrandbits
_new_object = object.__new__
_set_attr = object.__setattr__
_UUID = uuid.UUID
_SAFE_UNKNOWN = uuid.SafeUUID.unknown


def is_import_path(value: str) -> bool:
    """True when ``value`` looks like ``module.attribute`` (checked for form only)."""
    return bool(_IMPORT_PATH.match(value))


def register_function(path: str, func: Any) -> None:
    """Remember ``func`` as ``path`` for this process's workers (see ``import_string``)."""
    if "<locals>" in path:
        _registered[path] = func


def import_string(name: str) -> Any:
    """Import ``package.module.attr`` (or ``package.module:attr``) and return the attribute.

    ``__main__.name`` is looked up in the running main module. A nested function's path
    (``module.outer.<locals>.inner``) resolves only in the process that marked it with
    ``@job``; elsewhere it raises ``ImportError`` saying so.
    """
    if "<locals>" in name:
        found = _registered.get(name)
        if found is None:
            raise ImportError(
                f"{name!r} is a function defined inside another function; only the process"
                " that defined it can run it. Move it to the top level of a module."
            )
        return found
    if ":" in name:
        module_name, _, attr_path = name.partition(":")
    else:
        module_name, _, attr_path = name.rpartition(".")
    if not module_name or not attr_path:
        raise ImportError(f"{name!r} is not an import path; expected 'package.module.name'")
    try:
        obj: Any = importlib.import_module(module_name)
    except ModuleNotFoundError:
        # ``package.Class.method``: walk back until a module imports.
        head, _, tail = module_name.rpartition(".")
        if not head:
            raise
        obj = import_string(f"{head}.{tail}")
    for part in attr_path.split("."):
        try:
            obj = getattr(obj, part)
        except AttributeError as exc:
            raise ImportError(f"module {module_name!r} has no attribute {attr_path!r}") from exc
    return obj


def importable_name(obj: Any) -> str:
    """Return the import path of a function or class: ``module.qualname``.

    As in Chancy 0.26, a function in ``__main__`` (the script that runs the worker) or inside
    another function gets its path too: a worker in the same program runs it, and a worker
    that cannot import it fails that job with a clear error when it runs, not here. Only a
    lambda, which has no name to find it by, raises ``ValueError``.
    """
    obj = getattr(obj, "__wrapped__", obj)
    module = getattr(obj, "__module__", None)
    qualname = getattr(obj, "__qualname__", None)
    if not module or not qualname:
        raise ValueError(f"{obj!r} has no importable name; use a module-level function")
    if "<lambda>" in qualname:
        raise ValueError(
            f"{module}.{qualname} is a lambda, which no worker can find by name; use a"
            " function defined with def."
        )
    return f"{module}.{qualname}"


def _default(o: Any) -> Any:
    if isinstance(o, datetime | date):
        return o.isoformat()
    if isinstance(o, uuid.UUID):
        return str(o)
    if isinstance(o, set | frozenset):
        return sorted(o)
    raise TypeError(f"Object of type {type(o).__name__} is not JSON serializable")


def json_dumps(obj: Any, **kwargs: Any) -> str:
    """``json.dumps`` that also writes datetimes, UUIDs and sets, compactly."""
    if not kwargs:
        # One encoder for every call: json.dumps builds a new one whenever it gets options.
        return _encode(obj)
    kwargs.setdefault("separators", (",", ":"))
    kwargs.setdefault("default", _default)
    return json.dumps(obj, **kwargs)


def chunked(iterable: Iterable[T], size: int) -> Iterator[list[T]]:
    """Yield lists of at most ``size`` items from ``iterable``."""
    if size < 1:
        raise ValueError("size must be at least 1")
    batch: list[T] = []
    for item in iterable:
        batch.append(item)
        if len(batch) >= size:
            yield batch
            batch = []
    if batch:
        yield batch


class _Timer:
    __slots__ = ("end", "start")

    def __init__(self) -> None:
        self.start = time.monotonic()
        self.end: float | None = None

    @property
    def elapsed(self) -> float:
        return (self.end if self.end is not None else time.monotonic()) - self.start


@contextmanager
def timed_block() -> Iterator[_Timer]:
    """Measure the wall time of a block: ``with timed_block() as t: ...; t.elapsed``."""
    timer = _Timer()
    try:
        yield timer
    finally:
        timer.end = time.monotonic()


@contextmanager
def gc_paused() -> Iterator[None]:
    """Hold the cyclic garbage collector off during a bulk build of small objects.

    Building a batch of 10,000 jobs' rows and references allocates tens of thousands of
    tracked objects, and each 700 allocations start a collection that walks the young
    objects; with a big batch alive (the caller's jobs) the older generations are walked
    too. Pushing 100,000 jobs spent about 30% of its time there (120,000 jobs/s against
    166,000-175,000 with the collector off). The objects built form no cycles, so nothing
    is lost by collecting after the block. A no-op when the collector is already off.
    """
    if not gc.isenabled():
        yield
        return
    gc.disable()
    try:
        yield
    finally:
        gc.enable()


_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_default)
_JSONB_ENCODER = json.JSONEncoder(separators=(",", ":"), default=_default, allow_nan=False)


def _one_shot(encoder: json.JSONEncoder) -> Callable[[Any], str]:
    """``encoder.encode`` without its per-call set-up, where CPython's C encoder exists.

    ``JSONEncoder.encode`` builds a new C encoder (and a dict of markers for circular
    references) on every call: for a job's small kwargs, most of the 1.2 us it took. This
    one is built once, without markers (so it can be shared by threads: the markers dict
    was per call); a structure that refers to itself then ends in RecursionError, and is
    encoded again by the stdlib encoder, which names the problem. Same text otherwise.
    """
    make = getattr(json.encoder, "c_make_encoder", None)
    if make is None:  # pragma: no cover - not CPython
        return encoder.encode
    ascii_string = json.encoder.encode_basestring_ascii
    c_encode = make(
        None,
        encoder.default,
        ascii_string,
        None,
        encoder.key_separator,
        encoder.item_separator,
        encoder.sort_keys,
        encoder.skipkeys,
        encoder.allow_nan,
    )
    join = "".join

    def encode(obj: Any) -> str:
        if isinstance(obj, str):
            return ascii_string(obj)
        try:
            return join(c_encode(obj, 0))
        except RecursionError:
            return encoder.encode(obj)

    return encode


_encode = _one_shot(_ENCODER)
_jsonb_encode = _one_shot(_JSONB_ENCODER)


def jsonb_dumps(obj: Any) -> str:
    """JSON text that PostgreSQL's ``jsonb`` accepts, or a ``ValueError`` saying what to fix.

    Beyond ``json_dumps``: NaN and infinities are refused (JSON has no such numbers), and so
    are strings holding the NUL character or a lone surrogate, which ``jsonb`` cannot store.
    The strings are only walked when the text shows an escape that may be one of those.
    """
    text = _jsonb_encode(obj)
    if "\\u0000" in text or "\\ud" in text:
        _check_strings(obj)
    return text


def _check_strings(obj: Any) -> None:
    if isinstance(obj, str):
        check_text(obj)
    elif isinstance(obj, dict):
        for key, value in obj.items():
            _check_strings(key)
            _check_strings(value)
    elif isinstance(obj, list | tuple):
        for value in obj:
            _check_strings(value)


def check_text(value: str, what: str = "a string") -> None:
    """Raise ``ValueError`` when PostgreSQL cannot store ``value`` as text (NUL, surrogates)."""
    if "\x00" in value:
        raise ValueError(
            f"{what} contains the NUL character (\\x00), which PostgreSQL cannot store in text"
            " or jsonb; remove it, or encode binary data (e.g. base64)"
        )
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        raise ValueError(
            f"{what} contains a lone surrogate ({value!r:.60}), which is not valid UTF-8;"
            " decode your input with errors='replace' or fix its encoding"
        ) from None


def safe_text(value: str) -> str:
    """``value`` with what PostgreSQL cannot store (NUL, lone surrogates) escaped visibly."""
    if "\x00" in value:
        value = value.replace("\x00", "\\x00")
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:
        value = value.encode("utf-8", "backslashreplace").decode("utf-8")
    return value


# -- building frozen, slotted dataclasses on hot paths ----------------------------------------

_MISSING = object()


def _slot(cls: type, name: str) -> Any:
    for klass in cls.__mro__:
        if name in klass.__dict__:
            return klass.__dict__[name]
    raise AttributeError(f"{cls.__name__} has no slot {name!r}")


def slot_setter(cls: type, name: str) -> Callable[[Any, Any], None]:
    """The store of field ``name`` of the slotted class ``cls`` (its slot's ``__set__``),
    which bypasses a frozen dataclass's ``__setattr__``: only for objects being built."""
    setter: Callable[[Any, Any], None] = _slot(cls, name).__set__
    return setter


def slot_builder(cls: type[T]) -> Callable[..., T]:
    """A keyword-only constructor for the frozen, slotted dataclass ``cls`` that stores each
    field through its slot descriptor.

    The dataclass's ``__init__`` stores each field with ``object.__setattr__(self, name, v)``
    (frozen) and calls ``__post_init__``; this skips both, so it is only for classes whose
    ``__post_init__`` checks nothing (a stored job is not re-validated). Defaults and default
    factories are honoured. Generated once per class: straight-line stores, no loop.
    """
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_MISSING": _MISSING}
    params: list[str] = []
    body = ["    new = _new(_cls)"]
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        name = field.name
        namespace[f"_s_{name}"] = slot_setter(cls, name)
        if field.default is not dataclasses.MISSING:
            namespace[f"_d_{name}"] = field.default
            params.append(f"{name}=_d_{name}")
        elif field.default_factory is not dataclasses.MISSING:
            namespace[f"_f_{name}"] = field.default_factory
            params.append(f"{name}=_MISSING")
            body.append(f"    if {name} is _MISSING: {name} = _f_{name}()")
        else:
            params.append(name)
        body.append(f"    _s_{name}(new, {name})")
    source = f"def build(*, {', '.join(params)}):\n" + "\n".join(body) + "\n    return new\n"
    exec(source, namespace)
    built: Callable[..., T] = namespace["build"]
    return built


def slot_copier(cls: type[T]) -> Callable[[T, dict[str, Any]], T]:
    """``copy(obj, changes)``: a new ``cls`` with every field of ``obj``, then ``changes``
    applied, stored through the slot descriptors (see ``slot_builder``)."""
    namespace: dict[str, Any] = {"_new": object.__new__, "_cls": cls, "_set": object.__setattr__}
    body = ["def copy(obj, changes):", "    new = _new(_cls)"]
    for field in dataclasses.fields(cls):  # type: ignore[arg-type]
        namespace[f"_s_{field.name}"] = slot_setter(cls, field.name)
        body.append(f"    _s_{field.name}(new, obj.{field.name})")
    body += ["    for name, value in changes.items():", "        _set(new, name, value)"]
    body.append("    return new")
    exec("\n".join(body) + "\n", namespace)
    copier: Callable[[T, dict[str, Any]], T] = namespace["copy"]
    return copier
