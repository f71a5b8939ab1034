"""Peer: the stock KServe Python SDK server, a plain kserve.Model calling model.predict
(default ModelServer settings). Usage: kserve_stock.py MODEL.joblib PORT"""

import sys

import joblib
import kserve
import numpy as np


class Stock(kserve.Model):
    def __init__(self, path: str) -> None:
        super().__init__("iris")
        self.model = joblib.load(path)
        self.ready = True

    def predict(self, payload, headers=None):
        return {"predictions": self.model.predict(np.asarray(payload["instances"])).tolist()}


if __name__ == "__main__":
    kserve.ModelServer(http_port=int(sys.argv[2])).start([Stock(sys.argv[1])])
