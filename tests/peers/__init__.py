"""Peer-equality tests: our models against independent implementations (pythae, vector-quantize-pytorch).

Each test module skips with a one-line reason when its peer package is not installed.
"""
