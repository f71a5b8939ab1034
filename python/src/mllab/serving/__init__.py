"""The labs' model server, on the KServe Python SDK (`kserve.Model`, `kserve.ModelServer`).

Protocols (the same URLs as KServe on the cluster):

- V1: ``POST /v1/models/NAME:predict`` with ``{"instances": [[64 pixels], ...]}`` -> ``{"predictions": [...]}``
- V2 (Open Inference Protocol): ``POST /v2/models/NAME/infer``, ``GET /v2/health/ready``,
  ``GET /v2/models/NAME`` (metadata), ``GET /v2/models/NAME/ready``.

The protocol is lab 6's exercise: NAME is served by the learner's ``DigitsModel`` (a ``kserve.Model``
in ``digits_model.py`` at $MLLAB_EXERCISE; lab 6's reference solution when that is unset or has no
such file). The server gives it ``classify(X)`` and keeps the rest: which version answers, metrics,
drift, delayed labels.

A canary version (``--canary NAME=DIR:PERCENT``) answers that share of NAME's requests; V2
responses name the ``model_version`` that answered. The split is made inside this server, locally
and in the cluster's InferenceService alike: KServe splits traffic between Knative revisions only
in Serverless mode, and in Standard mode (the kit's) KServe 0.20 runs a ``spec.canary``'s
Deployment but routes no traffic to it.

Prometheus metrics on ``/metrics`` use the monitoring role's names: ``model_predictions_total``,
``model_prediction_latency_seconds``, ``model_prediction_errors_total``, ``model_accuracy`` (fed by
delayed labels posted to ``NAME-feedback``) and ``model_feature_psi`` (live window vs. training data).

Limits (the same options as ``mllab.fastserve``): ``--max-body-mib`` (default 4) and ``--max-rows``
(default 10000), over which a request gets 413; ``--host`` (default 127.0.0.1, ``0.0.0.0`` in a pod).
"""

from __future__ import annotations


def main(argv: list[str] | None = None) -> int:
    """`python -m mllab.serving` (imported on call: `mllab.serving.limits` stays numpy-free for the CLI)."""
    from mllab.serving.server import main as server_main

    return server_main(argv)


__all__ = ["main"]
