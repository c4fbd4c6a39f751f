"""The golden-template inspection pipeline: plain synchronous OpenCV on numpy arrays, run by
the worker in its executor. Nothing here knows about NATS, HTTP or the object store."""
