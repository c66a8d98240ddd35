"""Every SVG chart of the project, as inline SVG strings drawn from numbers only.

Nothing from the corpus reaches a chart: coordinates are formatted by :func:`axes.num` (2 decimals,
never NaN/inf), labels are fixed strings and numbers (escaped). Losses are in nats. Step axes are
logarithmic, a step ``s`` drawn at :func:`quanta_core.steps.step_x` ``= log10(s + 1)``, so that
``step0`` sits at the origin. Colours use ``currentColor`` where they should follow the page's text
colour (light/dark).

* :mod:`.training` — :func:`sparkline_svg` (one loss curve over training: report and model page),
  :func:`loss_over_training_svg` (the same with axes: the model page's overall mean loss),
  :func:`learned_at_distribution_svg` (clusters learned at each step, with the cumulative fraction);
* :mod:`.clusters` — :func:`rank_frequency_svg` (cluster size against rank, log-log: report),
  :func:`envelope_svg` (the sweep's rank-frequency envelope and its slope, log-log);
* :mod:`.learning` — :func:`spectrum_svg` (the learning-time spectrum and the mean loss curve it
  reconstructs), :func:`learned_together_svg` (each cluster's spread of learning times against its
  permutation baseline), :func:`scale_histogram_svg` ("learned at size N", sharp vs gradual);
* :mod:`.axes` — what they share (formatting, axes, ticks, the ``<svg>`` element).
"""

from quanta_core.report.charts.clusters import envelope_svg, rank_frequency_svg
from quanta_core.report.charts.learning import learned_together_svg, scale_histogram_svg, spectrum_svg
from quanta_core.report.charts.training import learned_at_distribution_svg, loss_over_training_svg, sparkline_svg

__all__ = ["envelope_svg", "learned_at_distribution_svg", "learned_together_svg", "loss_over_training_svg",
           "rank_frequency_svg",
           "scale_histogram_svg", "sparkline_svg", "spectrum_svg"]
