"""What a model states about its answers' trust, stored beside its weights: the conformal
calibration of each task (`store`; the arithmetic is `tasks.conformal`, the kinds' answers are
theirs) and the applicability-domain index, how like the training proteins a protein is (`domain`)."""
