"""Column roles of a table the drift engine watches: which columns are numeric, categorical,
an embedding, or the model's predictions.

The drift engine (sketches, comparisons, the verdict) reads its columns from a
:class:`ColumnContract`, never from a schema module, so it can watch any table: the
project's inference logs are one instance (:func:`inference_contract`), a second model's logs
or any Parquet table are another, written as a small YAML file::

    name: churn-features
    numeric: [age, tenure_days, monthly_spend]
    categorical: [plan, region]
    embedding: {column: text_embedding, dim: 384}   # optional
    prediction: [churn_score]                        # optional: subset of the above

``prediction`` columns are compared like the others; they are named so that the report can
say "the model's outputs moved" (the concept-drift proxy) apart from "its inputs moved".
Imports nothing heavy (DAG files and the CLI read it).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

#: the keys a contract document may have
CONTRACT_KEYS = ("name", "numeric", "categorical", "embedding", "prediction")


class ContractError(ValueError):
    """A column contract that cannot be used; the message names the file and the key."""


@dataclass(frozen=True)
class EmbeddingColumn:
    column: str
    dim: int


@dataclass(frozen=True)
class ColumnContract:
    """The roles of a table's columns for drift statistics."""

    name: str
    numeric: tuple[str, ...]
    categorical: tuple[str, ...] = ()
    embedding: EmbeddingColumn | None = None
    prediction: tuple[str, ...] = field(default=())

    def __post_init__(self) -> None:
        seen: dict[str, str] = {}
        for role, names in (("numeric", self.numeric), ("categorical", self.categorical)):
            for column in names:
                if column in seen:
                    raise ContractError(
                        f"contract {self.name!r}: column {column!r} is both {seen[column]} and {role}"
                    )
                seen[column] = role
        if self.embedding is not None:
            if self.embedding.column in seen:
                raise ContractError(
                    f"contract {self.name!r}: column {self.embedding.column!r} is both "
                    f"{seen[self.embedding.column]} and embedding"
                )
            if self.embedding.dim < 2:
                raise ContractError(
                    f"contract {self.name!r}: embedding.dim must be >= 2, got {self.embedding.dim}"
                )
        if not self.numeric and not self.categorical and self.embedding is None:
            raise ContractError(f"contract {self.name!r} names no column to watch")
        unknown = [c for c in self.prediction if c not in seen]
        if unknown:
            raise ContractError(
                f"contract {self.name!r}: prediction columns {unknown} are not numeric or categorical columns"
            )

    @property
    def columns(self) -> list[str]:
        """Every column the engine reads, in contract order."""
        out = [*self.numeric, *self.categorical]
        if self.embedding is not None:
            out.append(self.embedding.column)
        return out

    def kind_of(self, feature: str) -> str:
        """``numeric``, ``categorical`` or ``embedding``; derived features (``<embedding>_pcN``)
        are numeric."""
        if feature in self.categorical:
            return "categorical"
        if self.embedding is not None and feature == self.embedding.column:
            return "embedding"
        return "numeric"

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "name": self.name,
            "numeric": list(self.numeric),
            "categorical": list(self.categorical),
        }
        if self.embedding is not None:
            out["embedding"] = {"column": self.embedding.column, "dim": self.embedding.dim}
        if self.prediction:
            out["prediction"] = list(self.prediction)
        return out

    @classmethod
    def from_dict(cls, data: Mapping[str, Any], source: str = "<dict>") -> ColumnContract:
        if not isinstance(data, Mapping):
            raise ContractError(f"{source}: a column contract must be a mapping")
        unknown = sorted(set(data) - set(CONTRACT_KEYS))
        if unknown:
            raise ContractError(f"{source}: unknown keys {unknown}; allowed: {list(CONTRACT_KEYS)}")

        def names(key: str) -> tuple[str, ...]:
            value = data.get(key) or []
            if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
                raise ContractError(f"{source}: {key} must be a list of column names")
            return tuple(value)

        embedding = data.get("embedding")
        if embedding is not None:
            if not isinstance(embedding, Mapping) or set(embedding) != {"column", "dim"}:
                raise ContractError(f"{source}: embedding must be {{column: NAME, dim: N}}")
            dim = embedding["dim"]
            if isinstance(dim, bool) or not isinstance(dim, int):
                raise ContractError(f"{source}: embedding.dim must be an integer, got {dim!r}")
            embedding = EmbeddingColumn(str(embedding["column"]), dim)
        try:
            return cls(
                name=str(data.get("name") or Path(source).stem),
                numeric=names("numeric"),
                categorical=names("categorical"),
                embedding=embedding,
                prediction=names("prediction"),
            )
        except ContractError as err:
            raise ContractError(f"{source}: {err}") from None


def load_contract(path: str | Path) -> ColumnContract:
    """A contract from its YAML file; problems raise :class:`ContractError` naming the file."""
    import yaml

    path = Path(path)
    try:
        raw = yaml.safe_load(path.read_text())
    except FileNotFoundError:
        raise ContractError(f"column contract not found: {path}") from None
    except yaml.YAMLError as err:
        raise ContractError(f"{path}: not valid YAML: {err}") from None
    return ColumnContract.from_dict(raw, source=str(path))


def inference_contract() -> ColumnContract:
    """The project's inference logs (:mod:`driftloop.contracts.schema`) as a contract."""
    from driftloop.contracts import schema

    return ColumnContract(
        name="inference",
        numeric=schema.NUMERIC_FEATURES,
        categorical=schema.CATEGORICAL_FEATURES,
        embedding=EmbeddingColumn(schema.EMBEDDING_COLUMN, schema.EMBEDDING_DIM),
        prediction=schema.PREDICTION_FEATURES,
    )
