"""A plausible wrong lab 4 solution: the space is log-scaled and the objective scores the validation
split, but DIRECTION is left at Optuna's default, "minimize": the search hunts for the worst
accuracy (and its goal, "accuracy <= 0.99", is met by the first trial)."""

from sklearn.ensemble import HistGradientBoostingClassifier
from sklearn.metrics import accuracy_score

ALGORITHM = "tpe"
DIRECTION = "minimize"  # optuna.create_study()'s default


def search_space(trial):
    return {
        "max_iter": trial.suggest_int("max_iter", 10, 80),
        "max_depth": trial.suggest_int("max_depth", 2, 8),
        "learning_rate": trial.suggest_float("learning_rate", 0.01, 0.5, log=True),
        "l2_regularization": trial.suggest_float("l2_regularization", 0.0, 1.0),
    }


def objective(params, data, seed):
    model = HistGradientBoostingClassifier(random_state=seed, early_stopping=False, **params)
    model.fit(data.X_train, data.y_train)
    return float(accuracy_score(data.y_val, model.predict(data.X_val)))
