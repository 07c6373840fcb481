"""Bar charts written directly as SVG text: the report's figures, without a plotting library.

Two kinds, those the report draws: `histogram` (panels of bars over one numeric x axis, such
as cases by age bin for each sex) and `bar_chart` (one horizontal bar per category). Each is
one ``<svg>`` element to put inline in HTML (or save as a file): a viewBox, so that it
scales; an accessible name and description (``<title>``, ``<desc>``, ``role="img"``); axes
with ticks at round numbers and light grid lines; every piece of text escaped.

A bar's length and its label are given apart: a caller can write a label (say, a masked
count) over a bar it does not draw, and the scale follows the drawn lengths only, so an
undrawn bar's value leaves no trace. The text is a pure function of the arguments.

>>> text = histogram([Panel("Women: 12 cases", (Bar(0, 10, 5, "5"), Bar(10, 20, 7, "7")))],
...                  title="Age at first event", x_max=20, x_ticks=(0, 10, 20))
>>> text.startswith("<svg") and '<title id="histogram-title">Age at first event</title>' in text
True
>>> nice_ticks(7), nice_ticks(140)
((0, 2, 4, 6, 8), (0, 50, 100, 150))
"""

from __future__ import annotations

import html
import math
from dataclasses import dataclass
from typing import Sequence

__all__ = ["Bar", "Panel", "Item", "histogram", "bar_chart", "nice_ticks"]

WIDTH = 640
_FONT = 11            # px: tick and bar labels; titles are 13
_CHAR = 0.62          # an average glyph's width in em, for the room a label needs
_TEXT = "#1d2733"
_MUTED = "#5b6773"
_GRID = "#e3e8ed"


@dataclass(frozen=True)
class Bar:
    """A histogram bar over [low, high): `length` drawn (0: not drawn), `label` written on top."""

    low: float
    high: float
    length: float
    label: str = ""


@dataclass(frozen=True)
class Panel:
    """One row of a histogram: its title and bars, or, with no bars, `note` in their place."""

    title: str
    bars: tuple[Bar, ...] = ()
    note: str = ""


@dataclass(frozen=True)
class Item:
    """A bar of a bar chart: its category, `length` drawn (0: not drawn), `label` at its end."""

    name: str
    length: float
    label: str = ""


def nice_ticks(top: float, *, most: int = 4) -> tuple[int, ...]:
    """0, s, 2s, ... up to the first multiple of s at or above `top`, with s a whole 1, 2 or 5
    times a power of ten, the smallest that needs at most `most` steps."""
    if top <= 0:
        return (0,)
    power = 1
    while True:
        for step in (power, 2 * power, 5 * power):
            steps = math.ceil(top / step)
            if steps <= most:
                return tuple(step * i for i in range(steps + 1))
        power *= 10


def histogram(panels: Sequence[Panel], *, title: str, x_max: float, x_ticks: Sequence[float],
              x_label: str = "", y_label: str = "", description: str = "", colour: str = "#3b6ea5",
              ident: str = "histogram") -> str:
    """Panels stacked over one x axis from 0 to `x_max` (labelled at `x_ticks` under the last
    panel); each panel has its own y scale from 0 to its longest drawn bar."""
    left, right = 58.0, 14.0
    # a panel is its title, room for bar labels, the plot (lower for a note) and a gap
    heights = [96.0 if panel.bars else 30.0 for panel in panels]
    height = 6 + sum(36 + h + 14 for h in heights) + 34
    scale_x = (WIDTH - left - right) / x_max
    out = _open(ident, title, description, height)
    bottom = 6.0 - 14
    for k, (panel, plot_height) in enumerate(zip(panels, heights)):
        top = bottom + 14
        bottom = top + 36 + plot_height
        out.append(_text(left, top + 14, panel.title, size=13, weight="600"))
        if panel.bars:
            ticks = nice_ticks(max(b.length for b in panel.bars))
            scale_y = plot_height / ticks[-1] if ticks[-1] else 0.0
            for tick in ticks:
                y = bottom - tick * scale_y
                if tick:
                    out.append(_line(left, y, WIDTH - right, y, _GRID))
                out.append(_line(left - 4, y, left, y, _TEXT))
                out.append(_text(left - 7, y + 4, _number(tick), anchor="end"))
            out.append(_line(left, bottom, left, bottom - ticks[-1] * scale_y, _TEXT))
            if y_label:
                middle = bottom - plot_height / 2
                out.append(f'<text x="14" y="{_f(middle)}" transform="rotate(-90 14 {_f(middle)})" '
                           f'text-anchor="middle" fill="{_MUTED}">{_escape(y_label)}</text>')
            for bar in panel.bars:
                x0, x1 = left + bar.low * scale_x, left + bar.high * scale_x
                tall = bar.length * scale_y
                if tall > 0:
                    # a white gap between neighbours, as bars of merged bins touch otherwise
                    out.append(f'<rect x="{_f(x0 + 0.5)}" y="{_f(bottom - tall)}" width="{_f(x1 - x0 - 1)}" '
                               f'height="{_f(tall)}" fill="{colour}"/>')
                if bar.label:
                    out.append(_text((x0 + x1) / 2, bottom - tall - 4, bar.label, anchor="middle"))
        else:
            out.append(_text(left + (WIDTH - left - right) / 2, bottom - plot_height / 2, panel.note,
                             anchor="middle", fill=_MUTED))
        out.append(_line(left, bottom, WIDTH - right, bottom, _TEXT))
        for tick in x_ticks:
            x = left + tick * scale_x
            out.append(_line(x, bottom, x, bottom + 4, _TEXT))
            if k == len(panels) - 1:
                out.append(_text(x, bottom + 16, _number(tick), anchor="middle"))
    if x_label:
        out.append(_text(left + (WIDTH - left - right) / 2, height - 8, x_label, anchor="middle", fill=_MUTED))
    return _close(out)


def bar_chart(items: Sequence[Item], *, title: str, x_label: str = "", description: str = "",
              colour: str = "#6a8f3b", ident: str = "bar-chart") -> str:
    """One horizontal bar per item, top to bottom in the given order, on one x scale from 0 to
    the longest drawn bar; each label is written after its bar's end."""
    row = 24.0
    left = max([_width(i.name) for i in items] + [40.0]) + 16
    right = max([_width(i.label) for i in items] + [0.0]) + 14
    top, plot_height = 8.0, row * len(items)
    bottom = top + plot_height
    height = bottom + 44
    ticks = nice_ticks(max([i.length for i in items] + [0]), most=5)
    plot_width = WIDTH - left - right
    scale_x = plot_width / ticks[-1] if ticks[-1] else 0.0
    out = _open(ident, title, description, height)
    for tick in ticks:
        x = left + tick * scale_x
        if tick:
            out.append(_line(x, top, x, bottom, _GRID))
        out.append(_line(x, bottom, x, bottom + 4, _TEXT))
        out.append(_text(x, bottom + 16, _number(tick), anchor="middle"))
    for k, item in enumerate(items):
        y = top + k * row
        long = item.length * scale_x
        if long > 0:
            out.append(f'<rect x="{_f(left)}" y="{_f(y + 4)}" width="{_f(long)}" height="{_f(row - 8)}" '
                       f'fill="{colour}"/>')
        out.append(_text(left - 7, y + row / 2 + 4, item.name, anchor="end"))
        if item.label:
            out.append(_text(left + long + 4, y + row / 2 + 4, item.label))
    out.append(_line(left, top, left, bottom, _TEXT))
    out.append(_line(left, bottom, left + (ticks[-1] * scale_x or plot_width), bottom, _TEXT))
    if x_label:
        out.append(_text(left + plot_width / 2, height - 8, x_label, anchor="middle", fill=_MUTED))
    return _close(out)


# -- pieces -------------------------------------------------------------------------------

def _open(ident: str, title: str, description: str, height: float) -> list[str]:
    ident = _escape(ident)
    labelled = f"{ident}-title" + (f" {ident}-desc" if description else "")
    return [f'<svg xmlns="http://www.w3.org/2000/svg" width="{WIDTH}" height="{_f(height)}" '
            f'viewBox="0 0 {WIDTH} {_f(height)}" role="img" aria-labelledby="{labelled}" '
            f'font-family="system-ui, -apple-system, sans-serif" font-size="{_FONT}">',
            f'<title id="{ident}-title">{_escape(title)}</title>'
            + (f'<desc id="{ident}-desc">{_escape(description)}</desc>' if description else "")]


def _close(out: list[str]) -> str:
    return "\n".join(out) + "\n</svg>"


def _text(x: float, y: float, text: str, *, anchor: str = "start", size: int = _FONT, weight: str = "",
          fill: str = _TEXT) -> str:
    extra = (f' font-size="{size}"' if size != _FONT else "") + (f' font-weight="{weight}"' if weight else "")
    return (f'<text x="{_f(x)}" y="{_f(y)}" text-anchor="{anchor}" fill="{fill}"{extra}>'
            f'{_escape(text)}</text>')


def _line(x1: float, y1: float, x2: float, y2: float, colour: str) -> str:
    return f'<line x1="{_f(x1)}" y1="{_f(y1)}" x2="{_f(x2)}" y2="{_f(y2)}" stroke="{colour}"/>'


def _width(text: str) -> float:
    return len(text) * _FONT * _CHAR


def _number(value: float) -> str:
    return str(int(value)) if float(value).is_integer() else f"{value:g}"


def _f(value: float) -> str:
    text = f"{value:.1f}"
    return text[:-2] if text.endswith(".0") else text


def _escape(text: str) -> str:
    return html.escape(str(text), quote=True)
