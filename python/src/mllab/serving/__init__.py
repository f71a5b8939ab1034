"""The labs' model server, on the KServe Python SDK (`kserve.Model`, `kserve.ModelServer`).

Protocols (the same URLs as KServe on the cluster):

- V1: ``POST /v1/models/NAME:predict`` with ``{"instances": [[64 pixels], ...]}`` -> ``{"predictions": [...]}``
- V2 (Open Inference Protocol): ``POST /v2/models/NAME/infer``, ``GET /v2/health/ready``,
  ``GET /v2/models/NAME`` (metadata), ``GET /v2/models/NAME/ready``.

A canary revision (``--canary NAME=DIR:PERCENT``) takes that share of NAME's traffic; V2 responses
name the ``model_version`` that answered. (On the cluster, KServe splits traffic between revisions
at the ingress; locally the split happens inside this server, with the same observable effect.)

Prometheus metrics on ``/metrics`` use the monitoring role's names: ``model_predictions_total``,
``model_prediction_latency_seconds``, ``model_prediction_errors_total``, ``model_accuracy`` (fed by
delayed labels posted to ``NAME-feedback``) and ``model_feature_psi`` (live window vs. training data).
"""

from __future__ import annotations

from mllab.serving.server import main

__all__ = ["main"]
