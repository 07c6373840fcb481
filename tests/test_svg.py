"""The SVG writer of the report's figures: well-formed, accessible, escaped, to scale."""

from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest

from endpointc.svg import Bar, Item, Panel, bar_chart, histogram, nice_ticks

NS = "{http://www.w3.org/2000/svg}"


def parse(text: str) -> ET.Element:
    root = ET.fromstring(text)   # raises on markup that is not well-formed
    assert root.tag == f"{NS}svg"
    return root


def texts(root: ET.Element) -> list[str]:
    return [t.text or "" for t in root.iter(f"{NS}text")]


def rects(root: ET.Element) -> list[dict[str, float]]:
    return [{k: float(v) for k, v in r.attrib.items() if k in ("x", "y", "width", "height")}
            for r in root.iter(f"{NS}rect")]


@pytest.mark.parametrize("top, ticks", [
    (0, (0,)), (1, (0, 1)), (3, (0, 1, 2, 3)), (4.5, (0, 2, 4, 6)), (7, (0, 2, 4, 6, 8)),
    (300, (0, 100, 200, 300)), (301, (0, 100, 200, 300, 400)), (12_345, (0, 5000, 10_000, 15_000)),
])
def test_ticks_are_round_and_reach_the_top(top, ticks):
    assert nice_ticks(top) == ticks


def test_histogram_is_accessible_escaped_and_to_scale():
    panels = [Panel("Women <all> & \"others\"", (Bar(0, 10, 100, "100"), Bar(10, 30, 50, "50"),
                                                  Bar(30, 40, 0, "<5"), Bar(40, 120, 0, ""))),
              Panel("Men", note="fewer than 5 cases: not shown")]
    text = histogram(panels, title="Age of <X> & Y", x_max=120, x_ticks=range(0, 110, 10), x_label="age",
                     y_label="cases", description="Women: 100, 50, <5", ident="age")
    root = parse(text)
    assert root.get("role") == "img" and root.get("aria-labelledby") == "age-title age-desc"
    assert root.find(f"{NS}title").text == "Age of <X> & Y" and "&lt;X&gt; &amp; Y" in text
    assert root.find(f"{NS}desc").text == "Women: 100, 50, <5"
    shown = texts(root)
    assert {"Women <all> & \"others\"", "Men", "fewer than 5 cases: not shown", "<5", "age"} <= set(shown)
    assert shown.count("cases") == 1                        # the y label of the panel with bars
    y_ticks = [t.text for t in root.iter(f"{NS}text") if t.get("text-anchor") == "end"]
    assert y_ticks == ["0", "50", "100"]
    assert [shown.count(str(age)) for age in (10, 20, 90)] == [1, 1, 1]   # x ticks under the last panel
    # two bars drawn (none for a length of 0), heights in proportion, widths over the bins
    (a, b) = rects(root)
    assert a["height"] == pytest.approx(2 * b["height"], abs=0.1)
    assert b["width"] + 1 == pytest.approx(2 * (a["width"] + 1), abs=0.2)
    assert a["y"] + a["height"] == pytest.approx(b["y"] + b["height"])   # one baseline


def test_bar_chart_in_order_with_labels_after_the_bars():
    items = [Item("INPAT", 300, "300"), Item("DEATH", 100, "100"), Item("other sources", 0, "masked")]
    root = parse(bar_chart(items, title="Cases by source", x_label="cases", ident="src"))
    assert root.get("aria-labelledby") == "src-title" and root.find(f"{NS}desc") is None
    inpat, death = rects(root)
    assert inpat["y"] < death["y"] and inpat["width"] == pytest.approx(3 * death["width"], abs=0.3)
    labels = {t.text: float(t.get("x")) for t in root.iter(f"{NS}text")}
    assert labels["300"] > inpat["x"] + inpat["width"] and labels["100"] > death["x"] + death["width"]
    assert labels["masked"] <= labels["100"]               # an undrawn bar's label at the axis
    # nothing drawn at all still gives a well-formed chart
    assert not rects(parse(bar_chart([Item("X", 0, "<5")], title="t")))
