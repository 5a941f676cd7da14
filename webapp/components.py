"""Input components that refuse a malformed value with one log line instead of a traceback.

Gradio checks an input (a Radio value among its choices, a Slider number within its range)
before the handler runs, and prints a full traceback for every value it refuses — so an
anonymous client could grow the log at will by sending, say, a rating of 7. These subclasses
keep Gradio's checks and its frontend (they are *templates* of the built-in components: same
Svelte component, same API) but turn a refusal into a short `gr.Error` for the person and a
single log line for the operator.
"""

from __future__ import annotations

import html
import logging
from typing import Any

import gradio as gr

log = logging.getLogger("diffbgm.webapp")


def _refuse(label: Any, value: Any, exc: Exception) -> gr.Error:
    """The error for a refused value (shortened), logged as one line."""
    name = str(label) if label else "A field"
    shown = repr(value)
    shown = shown if len(shown) <= 60 else shown[:60] + "..."
    log.info("malformed input refused: %s=%s (%s)", name, shown, type(exc).__name__)
    return gr.Error(  # Gradio renders the message as HTML: show it as text
        html.escape(f"{name} has a value this form does not take: {shown}.", quote=False),
        title="Cannot do that",
        print_exception=False,
    )


class Radio(gr.Radio):
    """gr.Radio whose out-of-choice values are refused quietly (see the module docstring)."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except Exception as exc:
            raise _refuse(self.label, payload, exc) from None


class Dropdown(gr.Dropdown):
    """gr.Dropdown whose out-of-choice values are refused quietly."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except Exception as exc:
            raise _refuse(self.label, payload, exc) from None


class Slider(gr.Slider):
    """gr.Slider whose missing or out-of-range values are refused quietly."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except Exception as exc:
            raise _refuse(self.label, payload, exc) from None


class Number(gr.Number):
    """gr.Number whose non-numbers and out-of-range values are refused quietly."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except Exception as exc:
            raise _refuse(self.label, payload, exc) from None


class Textbox(gr.Textbox):
    """gr.Textbox that refuses values that are not text quietly."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        if payload is not None and not isinstance(payload, str):
            raise _refuse(self.label, payload, TypeError("not text"))
        try:
            return super().preprocess(payload)
        except Exception as exc:
            raise _refuse(self.label, payload, exc) from None


class Video(gr.Video):
    """gr.Video whose malformed payloads are refused quietly."""

    is_template = True

    def preprocess(self, payload: Any) -> Any:
        try:
            return super().preprocess(payload)
        except Exception as exc:
            raise _refuse(self.label, getattr(payload, "orig_name", None), exc) from None
