"""Lab 8: the pipeline's quality gate. Does the candidate model replace the one in production?

The pipeline (preprocess -> train -> evaluate -> gate -> deploy) calls should_deploy() in its gate
step, on the control host (in `mllab run 8` itself), once the train and evaluate steps have run (on
the cluster, as Jobs). True registers the candidate in MLflow's model registry, points the
`production` alias at it and deploys it; False stops the pipeline there, with your reason.
As given, the gate lets every candidate through: complete the TODOs, then `mllab run 8` and
`mllab check 8`.
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
    # TODO: take the candidate's accuracy on the held-out test set: the evaluate step's metrics
    #       (candidate["evaluate"]), not the train step's train_accuracy, which an overfit model aces
    # TODO: refuse, (False, "why"), when that accuracy is below `threshold`
    # TODO: refuse when a champion is in production (champion is not None) and the candidate is worse
    #       than the champion's accuracy: the production model stays
    return True, "no gate yet: every candidate is deployed"
