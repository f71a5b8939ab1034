"""Lab 3: track each candidate in MLflow, register it, and promote a champion only on merit.

`mllab run 3` trains classifiers one after the other, as new models arrive over time. For each
one it starts an MLflow run and calls `log_candidate` (params, metrics, the model), then
`register` (a new version of the registered model), then `promote` (the `champion` alias moves
only when the new version is better than the current champion).
"""

import mlflow
from mlflow.exceptions import MlflowException
from sklearn.metrics import accuracy_score, f1_score

METRIC = "accuracy"  # the champion is the version with the highest test accuracy (higher is better)
# MLflow 3 saves scikit-learn models with skops, which refuses types it cannot verify; the random
# forest's trees are ours, so we trust exactly this one type (never "everything it reports").
TRUSTED = ["sklearn.tree._tree.Tree"]
PIP = ["scikit-learn==1.9.1"]  # the model's requirements, stated (inferring them takes seconds per model)


def log_candidate(model, params, X_test, y_test):
    """In the active MLflow run: the params, the test metrics (accuracy, f1_macro) and the fitted
    model. Returns the logged model's URI."""
    mlflow.log_params(params)
    pred = model.predict(X_test)
    mlflow.log_metrics({"accuracy": accuracy_score(y_test, pred), "f1_macro": f1_score(y_test, pred, average="macro")})
    info = mlflow.sklearn.log_model(
        model, name="model", input_example=X_test[:2], pip_requirements=PIP, skops_trusted_types=TRUSTED
    )
    return info.model_uri


def register(model_uri, name):
    """A new version of the registered model `name`, from `model_uri`; returns its version."""
    return mlflow.register_model(model_uri, name).version


def _metric(client, version):
    """The champion metric of a model version, read from the run that logged it."""
    return client.get_run(version.run_id).data.metrics.get(METRIC, float("-inf"))


def promote(client, name, version):
    """Move `champion` to `version` only when its accuracy is higher than the current champion's (or
    there is no champion yet); otherwise point `challenger` at it. Returns True when champion moved."""
    new = _metric(client, client.get_model_version(name, version))
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except MlflowException:  # no champion yet: the first version takes the alias
        champion = None
    if champion is None or new > _metric(client, champion):
        client.set_registered_model_alias(name, "champion", version)
        return True
    client.set_registered_model_alias(name, "challenger", version)
    return False
