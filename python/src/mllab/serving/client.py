"""A small client for the KServe V1 and V2 protocols, like the tutorial's `requests.post(...)` client."""

from __future__ import annotations

from typing import Any

import numpy as np


class ServerError(RuntimeError):
    def __init__(self, status: int, body: Any) -> None:
        super().__init__(f"HTTP {status}: {body}")
        self.status = status
        self.body = body


class Client:
    def __init__(self, url: str, model: str = "digits", timeout: float = 30.0) -> None:
        import httpx

        self.url = url.rstrip("/")
        self.model = model
        self.http = httpx.Client(timeout=timeout)

    def close(self) -> None:
        self.http.close()

    def __enter__(self) -> Client:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _post(self, path: str, body: Any) -> Any:
        r = self.http.post(self.url + path, json=body)
        if r.status_code != 200:
            raise ServerError(
                r.status_code, r.json() if r.headers.get("content-type", "").startswith("application/json") else r.text
            )
        return r.json()

    def v1_predict(self, instances: np.ndarray | list, model: str | None = None) -> list[int]:
        """POST /v1/models/NAME:predict {"instances": [...]} -> the predictions."""
        body = {"instances": np.asarray(instances).tolist()}
        return self._post(f"/v1/models/{model or self.model}:predict", body)["predictions"]

    def v2_infer(self, X: np.ndarray, request_id: str | None = None) -> dict[str, Any]:
        """POST /v2/models/NAME/infer with one FP32 tensor [n, 64]; returns the whole V2 response."""
        X = np.asarray(X, dtype=np.float32).reshape(len(X), -1)
        body: dict[str, Any] = {
            "inputs": [{"name": "pixels", "shape": list(X.shape), "datatype": "FP32", "data": X.ravel().tolist()}]
        }
        if request_id:
            body["id"] = request_id
        return self._post(f"/v2/models/{self.model}/infer", body)

    @staticmethod
    def v2_predictions(response: dict[str, Any]) -> list[int]:
        out = next(o for o in response["outputs"] if o["name"] == "predictions")
        return [int(v) for v in out["data"]]

    def ready(self) -> bool:
        r = self.http.get(self.url + "/v2/health/ready")
        return r.status_code == 200 and bool(r.json().get("ready"))

    def model_ready(self) -> bool:
        r = self.http.get(f"{self.url}/v2/models/{self.model}/ready")
        return r.status_code == 200 and bool(r.json().get("ready"))

    def metadata(self) -> dict[str, Any]:
        r = self.http.get(f"{self.url}/v2/models/{self.model}")
        r.raise_for_status()
        return r.json()

    def feedback(self, request_id: str, labels: list[int]) -> dict[str, Any]:
        """Delayed labels for an earlier prediction: feeds the model_accuracy gauge."""
        body = {"instances": [{"id": request_id, "labels": [int(v) for v in labels]}]}
        return self._post(f"/v1/models/{self.model}-feedback:predict", body)["predictions"][0]

    def raw_post(self, path: str, content: bytes | str, content_type: str = "application/json") -> tuple[int, Any]:
        r = self.http.post(self.url + path, content=content, headers={"content-type": content_type})
        try:
            return r.status_code, r.json()
        except ValueError:
            return r.status_code, r.text

    def metrics_text(self) -> str:
        r = self.http.get(self.url + "/metrics")
        r.raise_for_status()
        return r.text
