"""Trust before deployment: calibration, uncertainty, operating points, OOD, explanations, reports, drift.

Why one package: an auditor needs every number that says "this model can be
trusted at the line" in one place, computed the same way for every run.  The
numeric modules (calibrate, uncertainty, operating_point, ood, monitor) are
numpy/scipy only; TensorFlow is imported only where a model must run
(outputs, explain, cv).
"""

from __future__ import annotations
