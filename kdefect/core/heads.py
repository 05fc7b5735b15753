"""Names of the classifier's head layers: the contract between ``tasks.classify`` (which builds them), ``trust``
(which reads logits and penultimate features for calibration and OOD) and ``export`` (which adds a features output
for the kNN gate)."""

from __future__ import annotations

FEATURES_LAYER = "head_features"
LOGITS_LAYER = "head_logits"
