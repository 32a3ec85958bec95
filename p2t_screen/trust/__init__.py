"""How far to trust an answer: conformal sets and intervals with a stated coverage
(`conformal`), calibrations stored with a model (`store`), and how like the training proteins a
protein is (`domain`)."""
