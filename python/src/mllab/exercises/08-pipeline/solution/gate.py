"""Lab 8: the pipeline's quality gate. Does the candidate model replace the one in production?

The pipeline (preprocess -> train -> evaluate -> gate -> deploy) calls should_deploy() in its gate
step, on the control host (in `mllab run 8` itself), once the train and evaluate steps have run (on
the cluster, as Jobs). True registers the candidate in MLflow's model registry, points the
`production` alias at it and deploys it; False stops the pipeline there, with your reason.
"""


def should_deploy(candidate, champion, threshold):
    """Decide whether `candidate` goes to production.

    candidate: the metrics of this pipeline's steps, by step:
        {"train":    {"train_accuracy": ..., "final_train_loss": ..., "train_samples": ...},  # the data it learnt
         "evaluate": {"accuracy": ..., "n_test": ...}}                                      # the held-out test set
    champion: the model in production, {"accuracy": ..., "version": ...} (its evaluate accuracy), or
        None when nothing is in production yet
    threshold: the lowest held-out accuracy a deployed model may have (PIPELINE_ACCURACY_THRESHOLD, 0.9)

    Return (deploy, reason): a bool, and one line saying why (printed, and recorded in MLflow).
    """
    # The held-out accuracy: what the model will do on data it has not seen. The training accuracy
    # says how well it memorised its training data (an overfit model has 1.0 there).
    acc = candidate["evaluate"]["accuracy"]
    if acc < threshold:
        return False, f"accuracy {acc:.4f} < threshold {threshold}: not registered, not deployed"
    if champion is not None and acc < champion["accuracy"]:
        return False, (
            f"accuracy {acc:.4f} < {champion['accuracy']:.4f} of the champion (v{champion['version']}): "
            "the production model stays"
        )
    if champion is None:
        return True, f"accuracy {acc:.4f} >= threshold {threshold}; nothing in production yet"
    return True, f"accuracy {acc:.4f} >= threshold {threshold} and >= the champion's {champion['accuracy']:.4f}"
