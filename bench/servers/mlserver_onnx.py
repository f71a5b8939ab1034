"""Same-model peer: an MLServer custom runtime around ONNX Runtime (MLServer's documented way to
serve a framework it has no runtime for), loading the very model.onnx fastserve serves, on one
intra-op thread. bench/serving.py copies this file into the model's folder (MLServer puts that
folder on sys.path) and names `mlserver_onnx.OnnxRuntime` as the model's implementation; with
max_batch_size/max_batch_time set, MLServer's adaptive batching concatenates queued requests
along the first axis before one predict call."""

import onnxruntime as ort
from mlserver import MLModel
from mlserver.codecs import NumpyCodec, NumpyRequestCodec
from mlserver.types import InferenceRequest, InferenceResponse
from mlserver.utils import get_model_uri


class OnnxRuntime(MLModel):
    async def load(self) -> bool:
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        path = await get_model_uri(self._settings)
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.label = self.session.get_outputs()[0].name
        return True

    async def predict(self, payload: InferenceRequest) -> InferenceResponse:
        x = NumpyRequestCodec.decode_request(payload).astype("float32", copy=False)
        labels = self.session.run([self.label], {self.input: x})[0]
        return InferenceResponse(model_name=self.name, outputs=[NumpyCodec.encode_output("predict", labels)])
