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
"""

import kserve
import numpy as np
from kserve.errors import InvalidInput
from kserve.protocol.infer_type import InferOutput, InferRequest, InferResponse
from mllab.serving.protocol import BadRequest, parse_v1, parse_v2_input


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
        return {"predictions": [int(label) for label in probs.argmax(1)]}

    def predict_v2(self, request):
        if not request.inputs:
            raise InvalidInput("a V2 request needs one input tensor: pixels, shape [n, 64], datatype FP32")
        tensor = request.inputs[0]
        try:  # a numeric datatype, shape [n, 64], n*64 values: the flat data reshaped to the shape
            X = parse_v2_input(tensor.name, tensor.datatype, list(tensor.shape), tensor.data)
        except BadRequest as exc:
            raise InvalidInput(str(exc)) from None
        version, probs = self.classify(X)
        labels = probs.argmax(1)
        outputs = [
            InferOutput("predictions", [len(labels)], "INT64", data=[int(v) for v in labels]),
            InferOutput("probabilities", list(probs.shape), "FP32", data=probs.astype(np.float32).ravel().tolist()),
        ]
        return InferResponse(response_id=request.id, model_name=self.name, model_version=version, infer_outputs=outputs)
