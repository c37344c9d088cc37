"""Domain exceptions, one tree for the whole service.

RerankError
├── ModelLoadError      a model directory is missing a file, has a bad config or a bad tensor
├── InvalidInput        the request is well-formed JSON but asks for something we cannot do   -> 422
│   └── PayloadTooLarge too many pairs/documents or bytes                                     -> 413
├── UnknownModel        the request names a model this process does not serve                 -> 404
├── Overloaded          the queue is full; retry later                                        -> 429
├── DeadlineExceeded    the request's deadline passed before it was scored                    -> 504
├── NotReady            the model is loading, warming up or draining                          -> 503
└── RuntimeFailure      the inference backend failed; details are logged, not returned        -> 500

The HTTP translation lives in app/api/errors.py; nothing else maps exceptions to statuses.
"""

from __future__ import annotations


class RerankError(Exception):
    """Base of every error hashrank raises on purpose."""

    error_type = "internal_error"

    def __init__(self, message: str, *, param: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.param = param


class ModelLoadError(RerankError):
    error_type = "model_load_error"


class InvalidInput(RerankError):
    error_type = "validation_error"


class PayloadTooLarge(InvalidInput):
    error_type = "payload_too_large"


class UnknownModel(RerankError):
    error_type = "model_not_found"


class Overloaded(RerankError):
    error_type = "overloaded"

    def __init__(self, message: str, *, retry_after_s: int = 1) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


class DeadlineExceeded(RerankError):
    error_type = "timeout"


class NotReady(RerankError):
    error_type = "not_ready"


class RuntimeFailure(RerankError):
    error_type = "internal_error"
