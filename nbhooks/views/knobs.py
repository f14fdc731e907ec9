"""A slider per knob of the training graph; each change is marked on the curves.

Sliders are made on the main thread from the knobs found before training; moving one calls
``set_knob`` (the change reaches training at the next step boundary). The publisher hands this
view the :class:`~nbhooks.events.KnobEvent` of every change that reached training: the slider
follows changes made from code, the curves get a vertical line, the status line says when.
"""

from __future__ import annotations

import html
from collections.abc import Callable, Mapping, Sequence
from typing import Any

import ipywidgets as w

from nbhooks.events import KnobEvent
from nbhooks.knobs import KnobSpec
from nbhooks.views.base import View
from nbhooks.views.format import ERROR_COLOUR, MUTED_COLOUR, coloured


def slider(spec: KnobSpec, value: float) -> Any:
    """A FloatLogSlider (``scale="log"``), FloatSlider (both bounds) or FloatText for ``spec``."""
    common = {
        "description": spec.name,
        "continuous_update": False,
        "style": {"description_width": "initial"},
        "layout": w.Layout(width="420px"),
    }
    if spec.scale == "log" and spec.min is not None and spec.max is not None:
        import math

        return w.FloatLogSlider(
            value=value,
            base=10,
            min=math.log10(spec.min),
            max=math.log10(spec.max),
            step=0.01,
            readout_format=".3g",
            **common,
        )
    if spec.min is not None and spec.max is not None:
        return w.FloatSlider(
            value=value,
            min=spec.min,
            max=spec.max,
            step=(spec.max - spec.min) / 200,
            readout_format=".3g",
            **common,
        )
    common.pop("continuous_update")
    return w.FloatText(value=value, **common)


class KnobsView(View):
    """Sliders for ``specs``; ``set_knob(name, value)`` applies a change, ``curves`` (a
    :class:`~nbhooks.views.curves.CurvesView` or None) gets a mark per change."""

    interval = 0.1

    def __init__(
        self,
        specs: Mapping[str, KnobSpec],
        values: Mapping[str, float],
        set_knob: Callable[[str, float], Any],
        curves: Any = None,
    ) -> None:
        self.set_knob = set_knob
        self.curves = curves
        self.sliders: dict[str, Any] = {}
        self._following = False
        for name, spec in specs.items():
            control = slider(spec, values.get(name, spec.default))
            control.add_class("nbh-knob")
            control.add_class(f"nbh-knob-{_css(name)}")
            control.observe(self._on_change(name), names="value")
            self.sliders[name] = control
        self.status = w.HTML(coloured("knobs apply from the next training step", MUTED_COLOUR))
        self.status.add_class("nbh-knobs-status")
        self.widget = w.VBox([*self.sliders.values(), self.status])
        self.widget.add_class("nbh-knobs")

    def _on_change(self, name: str) -> Callable[[Any], None]:
        def changed(change: Any) -> None:
            if self._following:
                return
            try:
                self.set_knob(name, change.new)
            except (TypeError, ValueError, KeyError, RuntimeError) as exc:
                self.status.value = coloured(html.escape(str(exc)), ERROR_COLOUR)

        return changed

    def on_events(self, events: Sequence[Any]) -> None:
        changes = [e for e in events if isinstance(e, KnobEvent)]
        if not changes:
            return
        for event in changes:
            control = self.sliders.get(event.knob)
            if control is not None and control.value != event.value:
                self._following = True
                try:
                    control.value = event.value
                finally:
                    self._following = False
            if self.curves is not None:
                self.curves.mark(event.step, f"{event.knob}={event.value:.3g}")
        last = changes[-1]
        self.status.value = coloured(
            html.escape(f"{last.knob} = {last.value:.4g} from step {last.step}"), MUTED_COLOUR
        )


def _css(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "-" for c in name)
