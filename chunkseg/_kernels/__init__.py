"""Pure NumPy per-block kernels.

Nothing in this package imports dask or touches storage: every function takes
NumPy arrays and returns NumPy arrays, so each can be tested alone against its
whole-array twin, and each pickles for a distributed cluster.
"""
