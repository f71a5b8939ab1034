"""Lab 6: the digits model as a KServe model (`kserve.Model`), answering V1 and V2 requests.

The kit's model server (`python -m mllab.serving`, started by `mllab run 6` locally and as the
InferenceService's predictor on the cluster) serves this class. It loads the trained versions
(v1, and v2 when your inferenceservice.yaml adds it as a canary) and gives your model one method,
`self.classify(X)`: it picks the version that answers this request (the canary split), runs the
CNN and returns ``(version, probabilities)``. KServe calls `predict` with the decoded request:

- V1 (``POST /v1/models/digits:predict``): a dict ``{"instances": [[64 pixels], ...]}``;
  the answer is ``{"predictions": [one class label per instance]}``.
- V2 / Open Inference Protocol (``POST /v2/models/digits/infer``): an `InferRequest` whose
  input tensor has a name, a shape ``[n, 64]``, a datatype and its data flattened row-major;
  the answer is an `InferResponse` with output tensors described the same way.

A request the model cannot answer must raise `kserve.errors.InvalidInput`: KServe answers it
with HTTP 400 and the message, and keeps serving.

As given, this file runs, but its answers are not what a client of the protocols expects:
complete the TODOs, then `mllab run 6` and `mllab check 6`.
"""

import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from mllab.serving.protocol import BadRequest, parse_v1, parse_v2_input  # noqa: F401  (you will need them)


class DigitsModel(kserve.Model):
    def classify(self, X):
        """The kit's server replaces this: X float32 [n, 64] -> (version, probabilities [n, 10])."""
        raise NotImplementedError("the kit's model server provides classify()")

    def predict(self, payload, headers=None):
        if isinstance(payload, InferRequest):
            return self.predict_v2(payload)
        return self.predict_v1(payload)

    def predict_v1(self, body):
        try:
            X = parse_v1(body)  # [n, 64] float32; BadRequest says what is wrong with the request
        except BadRequest as exc:
            raise InvalidInput(str(exc)) from None
        _version, probs = self.classify(X)
        # TODO: a V1 client expects one class label per instance (an int, the most probable digit:
        #       probs.argmax(1)), not the [n, 10] probabilities
        return {"predictions": probs.tolist()}

    def predict_v2(self, request):
        tensor = request.inputs[0]
        # TODO: check the input tensor before using it, and raise InvalidInput (HTTP 400) saying what
        #       is wrong: a numeric datatype (FP32...), shape [n, 64], n*64 values in its data.
        #       parse_v2_input(tensor.name, tensor.datatype, list(tensor.shape), tensor.data) does these
        #       checks (it raises BadRequest) and returns the data reshaped to [n, 64]
        X = np.asarray(tensor.data, dtype=np.float32).reshape(-1, 64)
        version, probs = self.classify(X)  # noqa: RUF059  (the TODO below needs version)
        # TODO: the V2 answer: two output tensors, "predictions" (the class labels, datatype INT64,
        #       shape [n]) and "probabilities" (datatype FP32, shape [n, 10], data flattened
        #       row-major); and model_version=version, the version that answered (the canary split
        #       is measured from it)
        outputs = [InferOutput("predictions", list(probs.shape), "FP32", data=probs.ravel().tolist())]
        return InferResponse(response_id=request.id, model_name=self.name, infer_outputs=outputs)
