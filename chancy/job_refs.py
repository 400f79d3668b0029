"""A reference to a stored job, and the resource limits of one run (importable from chancy.job)."""

from __future__ import annotations

import dataclasses
import enum
import uuid
from collections.abc import Mapping
from typing import Any

from chancy.errors import InvalidJobError


class Reference:
    """Refers to a stored job by id; equal to another Reference, the UUID, or its string."""

    __slots__ = ("identifier",)

    def __init__(self, identifier: Reference | uuid.UUID | str) -> None:
        if isinstance(identifier, Reference):
            identifier = identifier.identifier
        if not isinstance(identifier, uuid.UUID):
            try:
                identifier = uuid.UUID(str(identifier))
            except ValueError:
                raise ValueError(
                    f"{identifier!r} is not a job id; a job id is a UUID such as"
                    " '0192f0c4-7a1e-7c3e-8a4b-1f2e3d4c5b6a'"
                ) from None
        self.identifier: uuid.UUID = identifier

    def __eq__(self, other: object) -> bool:
        if isinstance(other, Reference):
            return self.identifier == other.identifier
        if isinstance(other, uuid.UUID):
            return self.identifier == other
        if isinstance(other, str):
            return str(self.identifier) == other.lower()
        return NotImplemented

    def __hash__(self) -> int:
        return hash(self.identifier)

    def __str__(self) -> str:
        return str(self.identifier)

    def __repr__(self) -> str:
        return f"Reference({str(self.identifier)!r})"


@dataclasses.dataclass(frozen=True, slots=True)
class Limit:
    """A resource limit applied to one run of a job: memory in bytes or time in seconds."""

    class Type(enum.Enum):
        MEMORY = "memory"
        TIME = "time"

    type_: Limit.Type
    value: int

    def __post_init__(self) -> None:
        if not isinstance(self.type_, Limit.Type):
            try:
                object.__setattr__(self, "type_", Limit.Type(self.type_))
            except ValueError:
                raise InvalidJobError(
                    f"unknown limit type {self.type_!r}; use Limit.Type.MEMORY (bytes) or"
                    " Limit.Type.TIME (seconds)"
                ) from None
        if isinstance(self.value, bool) or not isinstance(self.value, int | float):
            raise InvalidJobError(f"a limit's value must be a number, got {self.value!r}")
        if self.value <= 0:
            raise InvalidJobError(f"a limit's value must be positive, got {self.value!r}")

    @classmethod
    def deserialize(cls, data: Mapping[str, Any]) -> Limit:
        try:
            return cls(cls.Type(data["t"]), data["v"])
        except (KeyError, TypeError, ValueError) as exc:
            raise ValueError(
                f"invalid limit {data!r:.200}: a limit is stored as"
                f' {{"t": "memory" or "time", "v": <int>}} ({type(exc).__name__}: {exc})'
            ) from None

    def serialize(self) -> dict[str, Any]:
        return {"t": self.type_.value, "v": self.value}
