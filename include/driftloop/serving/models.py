"""The serving models: registered versions loaded by alias with MLflow's API, one ONNX Runtime
session each.

A version is found by the alias that names it (``MlflowClient.get_model_version_by_alias``) and
its serving artifact — the INT8 ONNX model, the version's own source
(:func:`driftloop.promotion.registry.onnx_model_uris`) — is downloaded with
``mlflow.artifacts.download_artifacts`` into a folder of this process. Before the session is
made, the graph gets the backbone's last feature map as an extra output
(:mod:`driftloop.serving.embedding`); one warm-up run on a grey input learns its channel
count (the projection) and keeps first-use costs out of the first frame's latency.

Sessions run on ``threads`` intra-op threads (default 1, sequential execution: stable latencies,
and several scorers can share a machine). Each version is loaded once per :class:`ModelStore`.
"""

from __future__ import annotations

import logging
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np  # noqa: TID253 (the scorer's process, never a DAG file)

from driftloop.evaluation import detector
from driftloop.promotion import registry
from driftloop.serving import embedding

log = logging.getLogger(__name__)

#: the file name of a version's prepared model (feature map exposed) in the cache
PREPARED_NAME = "serving.onnx"


@dataclass
class ServingModel:
    """One loaded version: its session, the names of its outputs, its input size."""

    name: str
    version: str
    path: Path
    session: Any
    input_name: str
    output_name: str
    feature_name: str
    imgsz: tuple[int, int]
    projection: np.ndarray = field(repr=False, default_factory=lambda: np.zeros((0, 0)))

    @property
    def label(self) -> str:
        return f"{self.name} v{self.version}"

    def run(self, tensor: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """The detector's raw output ``[1, 4 + nc, N]`` and the backbone's feature map."""
        raw, fmap = self.session.run(
            [self.output_name, self.feature_name], {self.input_name: tensor}
        )
        return raw, fmap


def onnx_file(local: str | Path, label: str) -> Path:
    """The ONNX file of a downloaded artifact: the file itself, or the one ``.onnx`` file of
    an MLflow model folder (``model.onnx``)."""
    path = Path(local)
    if path.is_file():
        return path
    found = sorted(path.rglob("*.onnx"))
    if len(found) != 1:
        raise ValueError(
            f"{label}: expected one ONNX file in the downloaded model {path}, found "
            f"{[str(p.relative_to(path)) for p in found] or 'none'}"
        )
    return found[0]


def open_model(
    onnx_path: str | Path, *, name: str, version: str, workdir: str | Path, threads: int = 1
) -> ServingModel:
    """A :class:`ServingModel` of an ONNX detector file (prepared copy under ``workdir``)."""
    import onnx

    label = f"{name} v{version} ({onnx_path})"
    graph = onnx.load(str(onnx_path))
    graph, feature_name = embedding.with_feature_map_output(graph, label)
    prepared = Path(workdir) / PREPARED_NAME
    prepared.parent.mkdir(parents=True, exist_ok=True)
    onnx.save(graph, str(prepared))
    session = detector.session(prepared, threads=threads)
    model = ServingModel(
        name=name,
        version=str(version),
        path=prepared,
        session=session,
        input_name=session.get_inputs()[0].name,
        output_name=session.get_outputs()[0].name,
        feature_name=feature_name,
        imgsz=detector.input_size(session),
    )
    grey = np.full((1, 3, *model.imgsz), detector.PAD_VALUE / 255.0, dtype=np.float32)
    _, fmap = model.run(grey)
    if fmap.ndim != 4:
        raise ValueError(f"{label}: feature map {feature_name!r} has shape {fmap.shape}, not 4-D")
    model.projection = embedding.projection(int(fmap.shape[1]))
    return model


class ModelStore:
    """Registered versions of one model, loaded by alias and kept for the store's life (a
    context manager: the downloaded files go with it, unless ``cache_dir`` was given)."""

    def __init__(
        self,
        client,
        name: str,
        *,
        tracking_uri: str | None = None,
        threads: int = 1,
        cache_dir: str | Path | None = None,
    ):
        if isinstance(threads, bool) or not isinstance(threads, int) or threads < 1:
            raise ValueError(f"threads must be an integer >= 1, got {threads!r}")
        self.client = client
        self.name = name
        self.tracking_uri = tracking_uri
        self.threads = threads
        self._owned = cache_dir is None
        self.cache_dir = Path(cache_dir or tempfile.mkdtemp(prefix="driftloop-serving-"))
        self._loaded: dict[str, ServingModel] = {}

    def __enter__(self) -> ModelStore:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def close(self) -> None:
        self._loaded.clear()
        if self._owned:
            shutil.rmtree(self.cache_dir, ignore_errors=True)

    def aliases(self) -> dict[str, str]:
        """``{alias: version}`` of the model (an unreadable registry raises)."""
        return registry.aliases(self.client, self.name)

    def load(self, alias: str, version: str) -> ServingModel:
        """The version holding ``alias``, which must be ``version`` (the routing was decided on
        it: an alias that moved since is an error, not a silent switch)."""
        version = str(version)
        if version in self._loaded:
            return self._loaded[version]
        found = self.client.get_model_version_by_alias(self.name, alias)
        if str(found.version) != version:
            raise RuntimeError(
                f"{self.name}: alias {alias!r} moved from v{version} to v{found.version} while "
                "the models were loading; run the batch again"
            )
        uri = registry.onnx_model_uris(found)["int8"]
        import mlflow.artifacts

        folder = self.cache_dir / self.name / version
        local = mlflow.artifacts.download_artifacts(
            artifact_uri=uri, dst_path=str(folder / "artifact"), tracking_uri=self.tracking_uri
        )
        label = f"{self.name} v{version} ({uri})"
        model = open_model(
            onnx_file(local, label),
            name=self.name,
            version=version,
            workdir=folder,
            threads=self.threads,
        )
        log.info("loaded %s (@%s) from %s: input %s", model.label, alias, uri, model.imgsz)
        self._loaded[version] = model
        return model
