"""Exception tree of rt-middleware.

Roots split by who must act::

    RTError
    ├── ConfigError(RTError, ValueError)          at load or construction: fix the configuration
    │   ├── PolicyError                           names the field path of the bad policy value
    │   ├── TokenSchemaError                      a decision token is missing, split or not special
    │   └── MissingExtraError(ConfigError, ImportError)   names the extra to install
    ├── RequestError(RTError, ValueError)         per request: the caller's input; carries tenant_id,
    │   │                                         never the prompt (prompts stay out of logs)
    │   ├── InvalidInputError                     empty text or conversation, non-text content
    │   ├── MissingTenantError                    no tenant given and no default tenant configured
    │   ├── UnknownTenantError(RequestError, KeyError)
    │   └── PromptTooLongError                    the rendered prompt does not fit the context
    └── BackendError(RTError, RuntimeError)       the model backend failed; `retryable`; cause kept
        ├── BackendTimeoutError
        ├── BackendUnavailableError
        └── UnsafeTokenizationError               message text tokenized to a special/control id

A refusal is never an exception: it is a `Decision` value.
"""

from __future__ import annotations

__all__ = [
    "BackendError",
    "BackendTimeoutError",
    "BackendUnavailableError",
    "ConfigError",
    "InvalidInputError",
    "MissingExtraError",
    "MissingTenantError",
    "PolicyError",
    "PromptTooLongError",
    "RTError",
    "RequestError",
    "TokenSchemaError",
    "UnknownTenantError",
    "UnsafeTokenizationError",
]


class RTError(Exception):
    """Base class of every error raised by rt-middleware."""


class ConfigError(RTError, ValueError):
    """A configuration, policy or model is unusable; raised at load or construction."""


class PolicyError(ConfigError):
    """An invalid policy; `field` is the dotted path of the offending value."""

    def __init__(self, message: str, *, field: str | None = None) -> None:
        super().__init__(message)
        self.field = field


class TokenSchemaError(ConfigError):
    """The model's tokenizer lacks a decision token, splits it, or lets user text produce it."""

    def __init__(self, message: str, *, token: str | None = None) -> None:
        super().__init__(message)
        self.token = token


class MissingExtraError(ConfigError, ImportError):
    """An optional dependency is not installed; the message names the extra that brings it."""


class RequestError(RTError, ValueError):
    """A single request cannot be served as asked; other requests are unaffected."""

    def __init__(self, message: str, *, tenant_id: str | None = None) -> None:
        super().__init__(message)
        self.tenant_id = tenant_id


class InvalidInputError(RequestError):
    """The input is empty, has no text, or carries content the model cannot read."""


class MissingTenantError(RequestError):
    """No tenant id was given and the policy store has no default tenant."""


class UnknownTenantError(RequestError, KeyError):
    """The tenant id is not in the policy store and no default tenant is configured."""

    def __str__(self) -> str:  # KeyError would repr() the message
        return str(self.args[0]) if self.args else ""


class PromptTooLongError(RequestError):
    """The rendered prompt plus the decision token exceeds the model's context."""

    def __init__(
        self, message: str, *, n_tokens: int, max_tokens: int, tenant_id: str | None = None
    ) -> None:
        super().__init__(message, tenant_id=tenant_id)
        self.n_tokens = n_tokens
        self.max_tokens = max_tokens


class BackendError(RTError, RuntimeError):
    """The model backend failed; the original exception is kept as ``__cause__``."""

    retryable: bool = False

    def __init__(self, message: str, *, retryable: bool | None = None) -> None:
        super().__init__(message)
        if retryable is not None:
            self.retryable = retryable


class BackendTimeoutError(BackendError):
    """The backend did not answer in time."""

    retryable = True


class BackendUnavailableError(BackendError):
    """The backend cannot be reached or is not loaded."""

    retryable = True


class UnsafeTokenizationError(BackendError):
    """Message text tokenized to a special/control id; the request is refused before the model runs."""
