"""A plausible wrong lab 8 gate: threshold and champion are there, but it judges the train step's
training accuracy, so a model that memorised its training data passes."""


def should_deploy(candidate, champion, threshold):
    acc = candidate["train"]["train_accuracy"]
    if acc < threshold:
        return False, f"accuracy {acc:.4f} < threshold {threshold}"
    if champion is not None and acc < champion["accuracy"]:
        return False, f"accuracy {acc:.4f} < the champion's {champion['accuracy']:.4f}"
    return True, f"accuracy {acc:.4f} >= threshold {threshold}"
