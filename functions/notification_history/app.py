"""IMSHOP's notification-history webhook behind a Lambda function URL: the entry point is in the layer
(`imshop_push.entrypoints.history_handler`), where it is type-checked with the rest of the code."""

from imshop_push.entrypoints.history_handler import lambda_handler

__all__ = ["lambda_handler"]
