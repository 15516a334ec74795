"""flat_field.png says what it shows, on one colour scale, with nothing clipped; predictions.png tells its errors
apart."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.colors import to_hex
from matplotlib.text import Text

from unet_upsampling.figures import error_kinds, flat_field_figure, prediction_figure


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


def test_a_flat_response_gets_no_colour_scale_even_as_a_strided_float32_view():
    """The probe's maps are views of a channels-last output: a float32 mean over them was off by ~1.6e-5, which made
    flat maps look like a ±1.6e-05 pattern under panel titles saying "flat (<1e-6)"."""
    channels_last = np.empty((144, 144, 2), np.float32)
    channels_last[..., 0], channels_last[..., 1] = 0.47083867, -0.50266254
    flat = channels_last.transpose(2, 0, 1)[:, 40:104, 40:104]  # (C, H, W), strides as the probe's
    fig = flat_field_figure({"before training": flat, "step 40": flat})
    panels = [ax for ax in fig.axes if ax.images]
    assert len(panels) == 4 and len(fig.axes) == 4  # no colour bar
    assert all(ax.get_title().endswith("\nflat (<1e-6)") for ax in panels)
    assert "every map is flat (<1e-6), no colour scale" in fig.get_suptitle() and "±" not in fig.get_suptitle()


def test_errors_are_told_apart_by_kind():
    mask = torch.tensor([[0, 0, 1, 1, 2, 2, -100]])
    pred = torch.tensor([[0, 1, 0, 1, 1, 0, 2]])
    assert error_kinds(mask, pred, num_classes=3).tolist() == [[0, 1, 2, 0, 3, 2, 0]]  # ignored pixels: not scored


@pytest.mark.parametrize(
    "classes, names, legend",
    [
        (
            2,
            ["cell", "membrane"],
            ["false positive: membrane predicted on cell", "false negative: cell predicted on membrane"],
        ),
        (
            3,
            [],
            [
                "false positive: another class predicted on class 0",
                "false negative: class 0 predicted on another class",
                "wrong class: one class predicted on another, neither class 0",
            ],
        ),
    ],
)
def test_the_prediction_figure_colours_each_kind_of_error_with_a_legend_and_says_what_it_shows(classes, names, legend):
    masks = [torch.tensor([[0, 0, 1], [1, classes - 1, 0]])]
    preds = [torch.tensor([[0, 1, 0], [1, 1, 0]])]
    title = "validation of the best checkpoint at step 40, 1 validation image"
    fig = prediction_figure([torch.zeros(1, 2, 3)], masks, preds, classes, title, names)
    assert fig.get_suptitle() == title
    assert [text.get_text() for text in fig.legends[0].get_texts()] == legend
    errors = fig.axes[3]
    assert errors.get_title() == "errors"
    shown = errors.images[0]
    assert np.array_equal(shown.get_array(), error_kinds(masks[0], preds[0], classes).numpy())
    colours = [shown.cmap(shown.norm(kind))[:3] for kind in range(1 + len(legend))]
    assert [to_hex(c) for c in colours[1:]] == [to_hex(p.get_facecolor()) for p in fig.legends[0].get_patches()]
    assert to_hex(colours[0]) == "#ffffff"  # right pixels stay white
