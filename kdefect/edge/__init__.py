"""TF-free on-device runtime.

Everything below ``kdefect.edge`` imports only numpy, Pillow and a TFLite
interpreter (LiteRT, or tflite-runtime on older devices): never TensorFlow,
and nothing from the rest of kdefect that does.
"""
