"""`--via endpoint`: the deployed SageMaker endpoint, through sagemaker-runtime."""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Any

from dogclf.errors import AwsError, DogclfError
from dogclf.predict.base import (
    InputRejected,
    Prediction,
    PredictOptions,
    Predictor,
    json_request,
    predictions_from_response,
    rejection_message,
)

if TYPE_CHECKING:
    from dogclf.config import DogclfConfig


class EndpointPredictor(Predictor):
    """The deployed SageMaker endpoint, through sagemaker-runtime InvokeEndpoint."""

    name = "endpoint"

    def __init__(self, client: Any, endpoint_name: str, max_request_bytes: int) -> None:
        self.client = client
        self.endpoint_name = endpoint_name
        self.max_request_bytes = max_request_bytes

    @classmethod
    def from_options(cls, cfg: DogclfConfig, options: PredictOptions) -> Predictor:
        from dogclf.aws.serverless import max_request_bytes
        from dogclf.aws.session import AwsContext

        client = AwsContext.from_config(cfg).client("sagemaker-runtime")
        # AWS caps requests at 6 MB, 4 MB on a serverless endpoint: larger ones never leave.
        cap = max_request_bytes(cfg, cfg.serving.max_payload_mb)
        return cls(client, options.endpoint_name or cfg.names.endpoint, cap)

    def predict(self, images: Sequence[bytes], top_k: int) -> list[Prediction]:
        import botocore.exceptions

        from dogclf.aws.session import translate

        body, content_type = json_request(images, top_k)
        what = f"invoke the endpoint {self.endpoint_name}"
        try:
            response = self.client.invoke_endpoint(
                EndpointName=self.endpoint_name,
                Body=body,
                ContentType=content_type,
                Accept="application/json",
                CustomAttributes=f"top_k={top_k}",
            )
            document = json.loads(response["Body"].read())
        except botocore.exceptions.ClientError as exc:
            if exc.response.get("Error", {}).get("Code") == "ModelError":
                raise self._model_error(exc.response) from None
            error = translate(exc, what)
            if error.hint == "check the name and region":
                error.hint = "deploy it with `dogclf deploy`, or pass --endpoint-name"
            raise error from None
        except botocore.exceptions.BotoCoreError as exc:
            raise translate(exc, what) from None
        except ValueError:
            raise DogclfError(f"{what}: the answer is not JSON") from None
        return predictions_from_response(document, len(images))

    def _model_error(self, response: Mapping[str, Any]) -> DogclfError:
        """The container's own answer inside AWS's ModelError: its status (4xx: the input's
        fault) and one line of its body. AWS's Message names the account: never quoted."""
        status = int(str(response.get("OriginalStatusCode") or 0))
        message = rejection_message(str(response.get("OriginalMessage") or ""))
        if 400 <= status < 500:
            return InputRejected(message)
        return AwsError(
            f"the endpoint {self.endpoint_name} failed ({status}): {message}",
            f"see its CloudWatch logs: /aws/sagemaker/Endpoints/{self.endpoint_name}",
        )
