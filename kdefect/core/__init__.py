"""The contracts every layer shares, at the bottom of the stack and TF-free.

The run folder (``run``), the exported model's sidecar (``sidecar``), the decision rule and its kNN bank
(``decisions``, ``knn``), the decision-log records (``decision_log``) and the detection head layout and decoder
(``detect_decode``). Nothing here imports TensorFlow or any other kdefect layer (only ``errors`` and ``utils``),
so ``kdefect.edge`` on a device and the training stack read and write the same files with the same code.
"""
