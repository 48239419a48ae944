"""`--via local`: the model in this process, the same decode, transform and top-k as the
endpoint (torch extra)."""

from __future__ import annotations

from collections.abc import Sequence
from typing import TYPE_CHECKING

from dogclf.predict.base import InputRejected, Prediction, PredictOptions, Predictor

if TYPE_CHECKING:
    from contextlib import ExitStack

    from dogclf.config import DogclfConfig
    from dogclf.model.inference import Classifier


class LocalPredictor(Predictor):
    """The model in this process: the same decode, transform and top-k as the endpoint."""

    name = "local"

    def __init__(self, classifier: Classifier, stack: ExitStack | None = None) -> None:
        self.classifier = classifier
        self._stack = stack

    @classmethod
    def from_options(cls, cfg: DogclfConfig, options: PredictOptions) -> Predictor:
        from contextlib import ExitStack

        from dogclf.errors import require_extra

        require_extra("torch", "torch", "predict --via local")
        from dogclf.aws.model_source import open_model_dir
        from dogclf.model.artifact import load_errors
        from dogclf.model.inference import Limits, load_classifier

        s = cfg.serving
        limits = Limits.from_serving(s)
        stack = ExitStack()
        with stack:
            spec = options.model or "latest"
            model_dir = stack.enter_context(open_model_dir(spec, cfg))
            with load_errors(spec):
                classifier = load_classifier(model_dir, limits=limits, precision=s.precision)
            return cls(classifier, stack.pop_all())

    def predict(self, images: Sequence[bytes], top_k: int) -> list[Prediction]:
        from dogclf.model.inference import RequestError

        try:
            return self.classifier.predict(images, top_k)
        except RequestError as exc:
            raise InputRejected(exc.message) from None

    def request_size(self, sizes: Sequence[int]) -> int:
        return sum(sizes)

    def close(self) -> None:
        if self._stack is not None:
            self._stack.close()
