"""Same-model peer: the stock KServe Python SDK server (default ModelServer settings) with a
kserve.Model around ONNX Runtime, loading the very model.onnx fastserve serves, on one intra-op
thread as fastserve's session. Usage: kserve_onnx.py MODEL.onnx PORT"""

import sys

import kserve
import numpy as np
import onnxruntime as ort


class OnnxModel(kserve.Model):
    def __init__(self, path: str) -> None:
        super().__init__("iris")
        opts = ort.SessionOptions()
        opts.intra_op_num_threads = 1
        opts.inter_op_num_threads = 1
        self.session = ort.InferenceSession(path, opts, providers=["CPUExecutionProvider"])
        self.input = self.session.get_inputs()[0].name
        self.label = self.session.get_outputs()[0].name
        self.ready = True

    def predict(self, payload, headers=None):
        x = np.asarray(payload["instances"], dtype=np.float32)
        return {"predictions": self.session.run([self.label], {self.input: x})[0].tolist()}


if __name__ == "__main__":
    kserve.ModelServer(http_port=int(sys.argv[2])).start([OnnxModel(sys.argv[1])])
