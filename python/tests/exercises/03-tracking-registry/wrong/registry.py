"""A plausible wrong lab 3 solution: tracking and registering are right, but promote() reads the
comparison the wrong way round, as if accuracy were a loss: a less accurate model takes the champion."""

import mlflow
from mlflow.exceptions import MlflowException
from sklearn.metrics import accuracy_score, f1_score

TRUSTED = ["sklearn.tree._tree.Tree"]


def log_candidate(model, params, X_test, y_test):
    mlflow.log_params(params)
    pred = model.predict(X_test)
    mlflow.log_metrics({"accuracy": accuracy_score(y_test, pred), "f1_macro": f1_score(y_test, pred, average="macro")})
    info = mlflow.sklearn.log_model(
        model,
        name="model",
        input_example=X_test[:2],
        pip_requirements=["scikit-learn==1.9.1"],
        skops_trusted_types=TRUSTED,
    )
    return info.model_uri


def register(model_uri, name):
    return mlflow.register_model(model_uri, name).version


def promote(client, name, version):
    new = client.get_run(client.get_model_version(name, version).run_id).data.metrics["accuracy"]
    try:
        champion = client.get_model_version_by_alias(name, "champion")
    except MlflowException:
        champion = None
    if champion is None or new < client.get_run(champion.run_id).data.metrics["accuracy"]:
        client.set_registered_model_alias(name, "champion", version)
        return True
    client.set_registered_model_alias(name, "challenger", version)
    return False
