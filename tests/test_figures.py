"""flat_field.png says what it shows, on one colour scale, with nothing clipped."""

from __future__ import annotations

import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.text import Text

from unet_upsampling.figures import flat_field_figure


def test_flat_field_figure_has_one_shared_scale_a_colour_bar_and_titles_that_fit():
    rng = np.random.default_rng(0)
    checker = (np.indices((64, 64)).sum(0) % 2) * 0.32 - 0.16
    maps = {"before training": rng.normal(0, 2e-4, (2, 64, 64)), "step 160": np.stack([checker + 1, -checker / 2])}
    fig = flat_field_figure(maps, class_names=["background", "foreground"])
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 4 and len(fig.axes) == 5  # a panel per stage and class, and one colour bar
    scales = {ax.images[0].get_clim() for ax in panels}
    assert len(scales) == 1 and scales.pop() == pytest.approx((-0.16, 0.16))  # the trained range, shared
    titles = [ax.get_title() for ax in panels]
    assert titles[0].startswith("before training: background") and titles[3] == "step 160: foreground\n±0.08"
    assert "flat grey input" in fig.get_suptitle() and "±0.16" in fig.get_suptitle()
    renderer = FigureCanvasAgg(fig).get_renderer()
    fig.draw(renderer)
    box = fig.bbox
    suptitle = next(t for t in fig.findobj(Text) if t.get_text() == fig.get_suptitle())
    for text in [suptitle, *(ax.title for ax in panels)]:
        extent = text.get_window_extent(renderer)
        assert box.x0 <= extent.x0 and extent.x1 <= box.x1 and extent.y1 <= box.y1, text.get_text()
