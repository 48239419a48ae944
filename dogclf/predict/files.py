"""Files and folders -> predictions: batching within the predictor's request cap, and a
bad file reported on its own line instead of failing the run."""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from dogclf.errors import DogclfError
from dogclf.model.dataset import IMAGE_SUFFIXES, image_files
from dogclf.predict.base import InputRejected, Prediction, Predictor


@dataclass
class ImageResult:
    image: str
    predictions: Prediction | None = None
    error: str | None = None

    def as_dict(self) -> dict[str, Any]:
        if self.error is not None:
            return {"image": self.image, "error": self.error}
        return {"image": self.image, "predictions": self.predictions}


@dataclass
class _Batch:
    paths: list[Path] = field(default_factory=list)
    sizes: list[int] = field(default_factory=list)


def collect_images(inputs: Sequence[Path]) -> list[Path]:
    """Files as given; folders searched recursively for image files, sorted."""
    found: list[Path] = []
    for item in inputs:
        if item.is_dir():
            images = image_files(item)
            if not images:
                raise DogclfError(
                    f"no images in {item}", f"it should hold {', '.join(sorted(IMAGE_SUFFIXES))}"
                )
            found += images
        else:
            found.append(item)  # missing/unreadable files are reported per file
    return found


def _batches(predictor: Predictor, paths: Sequence[Path], batch_size: int) -> Iterator[_Batch]:
    """Groups of files up to batch_size, within the predictor's request size cap."""
    cap = predictor.max_request_bytes
    batch = _Batch()
    for path in paths:
        try:
            size = path.stat().st_size
        except OSError:
            size = 0  # reported when read
        if batch.paths and (
            len(batch.paths) >= batch_size
            or (cap is not None and predictor.request_size([*batch.sizes, size]) > cap)
        ):
            yield batch
            batch = _Batch()
        batch.paths.append(path)
        batch.sizes.append(size)
    if batch.paths:
        yield batch


def _read(path: Path, cap: int | None, predictor: Predictor) -> bytes:
    try:
        data = path.read_bytes()
    except IsADirectoryError:
        raise InputRejected("is a folder, not an image") from None
    except OSError as exc:
        raise InputRejected(exc.strerror or str(exc)) from None
    if not data:
        raise InputRejected("empty file")
    if cap is not None and predictor.request_size([len(data)]) > cap:
        raise InputRejected(
            f"{len(data) / 1e6:.1f} MB is over the {cap / 1e6:.1f} MB request limit of "
            f"--via {predictor.name}"
        )
    return data


def predict_files(
    predictor: Predictor, paths: Sequence[Path], top_k: int, batch_size: int
) -> Iterator[ImageResult]:
    """Results per file, in the order given; a bad file becomes an error result, not a failure."""
    for batch in _batches(predictor, paths, batch_size):
        results: list[ImageResult | None] = [None] * len(batch.paths)
        readable: list[tuple[int, bytes]] = []
        for i, path in enumerate(batch.paths):
            try:
                readable.append((i, _read(path, predictor.max_request_bytes, predictor)))
            except InputRejected as exc:
                results[i] = ImageResult(str(path), error=exc.message)
        if readable:
            named = [(str(batch.paths[i]), data) for i, data in readable]
            for (i, _), result in zip(readable, _classify(predictor, named, top_k), strict=True):
                results[i] = result
        yield from (result for result in results if result is not None)


def _classify(
    predictor: Predictor, named: list[tuple[str, bytes]], top_k: int
) -> list[ImageResult]:
    """One request for the batch; if the model refuses it, one per image to name the bad one."""
    try:
        answers = predictor.predict([data for _, data in named], top_k)
    except InputRejected as exc:
        if len(named) == 1:
            return [ImageResult(named[0][0], error=exc.message)]
        results = []
        for name, data in named:
            try:
                results.append(ImageResult(name, predictions=predictor.predict([data], top_k)[0]))
            except InputRejected as single:
                results.append(ImageResult(name, error=single.message))
        return results
    return [
        ImageResult(name, predictions=predictions)
        for (name, _), predictions in zip(named, answers, strict=True)
    ]
