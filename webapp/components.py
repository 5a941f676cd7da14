"""Input components that refuse a malformed value with one log line instead of a traceback.

Gradio checks an input (a Radio value among its choices, a Slider number within its range)
before the handler runs, and prints a full traceback for every value it refuses — so an
anonymous client could grow the log at will by sending, say, a rating of 7. `quiet` keeps
Gradio's checks but turns a refusal into a short `gr.Error` for the person and a single log
line for the operator.

It wraps the `preprocess` of one component instance rather than subclassing: Gradio writes a
`.pyi` stub next to the source of every component subclass it sees, which would litter the
package at import time.
"""

from __future__ import annotations

import functools
import html
import logging
from collections.abc import Callable
from typing import Any, TypeVar

import gradio as gr

log = logging.getLogger("diffbgm.webapp")

C = TypeVar("C", bound=gr.components.Component)


def refusal(label: Any, value: Any, exc: Exception) -> gr.Error:
    """The error for a refused value (shortened, shown as text), logged as one line."""
    name = str(label) if label else "A field"
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:60] + "..."
    log.info("malformed input refused: %s=%s (%s)", name, shown, type(exc).__name__)
    return gr.Error(  # Gradio renders the message as HTML: show it as text
        html.escape(f"{name} has a value this form does not take: {shown}.", quote=False),
        title="Cannot do that",
        print_exception=False,
    )


def quiet(component: C, text_only: bool = False) -> C:
    """`component`, refusing malformed input values quietly (see the module docstring).

    `text_only`: also refuse values that are not text (for Textboxes, which would otherwise
    pass a number or a list on to the handler).
    """
    checked: Callable[[Any], Any] = component.preprocess

    @functools.wraps(checked)
    def preprocess(payload: Any) -> Any:
        if text_only and payload is not None and not isinstance(payload, str):
            raise refusal(component.label, payload, TypeError("not text"))
        try:
            return checked(payload)
        except Exception as exc:
            value = getattr(payload, "orig_name", payload)
            raise refusal(component.label, value, exc) from None

    setattr(component, "preprocess", preprocess)  # noqa: B010 - an instance attribute
    return component
