"""Lab 3: track each candidate in MLflow, register it, and promote a champion only on merit.

`mllab run 3` trains classifiers one after the other, as new models arrive over time. For each
one it starts an MLflow run and calls `log_candidate` (params, metrics, the model), then
`register` (a new version of the registered model), then `promote` (the `champion` alias moves
only when the new version is better than the current champion).
As given, this file runs, but it logs the params only and registers nothing, and its `promote`
moves the champion to every new version: complete the TODOs, then `mllab run 3` and `mllab check 3`.
"""

import mlflow
from mlflow.exceptions import MlflowException  # noqa: F401  (you will need it)
from sklearn.metrics import accuracy_score, f1_score  # noqa: F401

METRIC = "accuracy"  # the champion is the version with the highest test accuracy (higher is better)
# MLflow 3 saves scikit-learn models with skops, which refuses types it cannot verify; the random
# forest's trees are ours, so we trust exactly this one type (never "everything it reports").
TRUSTED = ["sklearn.tree._tree.Tree"]
PIP = ["scikit-learn==1.9.1"]  # the model's requirements, stated (inferring them takes seconds per model)


def log_candidate(model, params, X_test, y_test):
    """In the active MLflow run: the params, the test metrics (accuracy, f1_macro) and the fitted
    model. Returns the logged model's URI."""
    mlflow.log_params(params)
    # TODO: log the test metrics accuracy and f1_macro of pred = model.predict(X_test):
    #       mlflow.log_metrics({"accuracy": accuracy_score(y_test, pred),
    #                           "f1_macro": f1_score(y_test, pred, average="macro")})
    # TODO: log the fitted model and return its URI (a models:/m-... URI in MLflow 3):
    #       info = mlflow.sklearn.log_model(model, name="model", input_example=X_test[:2],
    #                                       pip_requirements=PIP, skops_trusted_types=TRUSTED)
    #       return info.model_uri
    return None


def register(model_uri, name):
    """A new version of the registered model `name`, from `model_uri`; returns its version."""
    # TODO: mlflow.register_model(model_uri, name) creates the next version; return its .version
    return None


def promote(client, name, version):
    """Move `champion` to `version` only when its accuracy is higher than the current champion's (or
    there is no champion yet); otherwise point `challenger` at it. Returns True when champion moved."""
    # TODO: read the new version's accuracy and the current champion's, from the runs that logged them:
    #       client.get_model_version(name, version).run_id, then client.get_run(run_id).data.metrics[METRIC];
    #       the champion is client.get_model_version_by_alias(name, "champion") (MlflowException if none).
    # TODO: move champion only when the new accuracy is strictly higher (or there is no champion yet),
    #       else set the "challenger" alias on the new version and leave champion where it is.
    client.set_registered_model_alias(name, "champion", version)
    return True
